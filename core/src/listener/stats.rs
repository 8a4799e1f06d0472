//! Counts of every limit a listener enforces, logged at most once per [`LOG_EVERY`] per limit (with how many
//! hits the silence hid); exposed by [`LimitsCollector`](super::collector::LimitsCollector).

use std::fmt::Display;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The longest silence between two log lines about one limit of one listener.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A limit a connection or request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The listener had its maximum of open connections: `503` and closed.
    Connections,
    /// No request head (or HTTP/2 preface) in time: closed.
    HeaderTimeout,
    /// A kept-alive connection (or an HTTP/2 one with no stream) idle too long: closed.
    IdleTimeout,
    /// A request body stalled: `408` and closed.
    BodyTimeout,
    /// Request headers too large or too many: `431`.
    HeaderSize,
    /// `accept` failed (out of open files, say): retried after a pause.
    AcceptFailed,
    /// A `/queue/stream` subscriber past the cap (admin): `503`.
    QueueStreams,
    /// A gRPC request message over the size bound (scaler): `OUT_OF_RANGE`.
    MessageSize,
    /// A gRPC connection reached its concurrent stream bound (scaler): its next streams wait.
    MaxStreams,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::Connections,
        Limit::HeaderTimeout,
        Limit::IdleTimeout,
        Limit::BodyTimeout,
        Limit::HeaderSize,
        Limit::AcceptFailed,
        Limit::QueueStreams,
        Limit::MessageSize,
        Limit::MaxStreams,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::HeaderTimeout => "header_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::BodyTimeout => "body_timeout",
            Limit::HeaderSize => "header_size",
            Limit::AcceptFailed => "accept_failed",
            Limit::QueueStreams => "queue_streams",
            Limit::MessageSize => "message_size",
            Limit::MaxStreams => "max_streams",
        }
    }
}

const KINDS: usize = Limit::ALL.len();

/// Milliseconds on Tokio's clock since the first call (0 means "never" below, so it starts at 1).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
}

/// One listener's counts.
pub struct Stats {
    listener: &'static str,
    hits: [AtomicU64; KINDS],
    logged_at: [AtomicU64; KINDS],
    pub(super) unlogged: [AtomicU64; KINDS],
}

impl Stats {
    pub fn new(listener: &'static str) -> Self {
        Self { listener, hits: Default::default(), logged_at: Default::default(), unlogged: Default::default() }
    }

    pub fn hits(&self, limit: Limit) -> u64 {
        self.hits[limit as usize].load(Ordering::Relaxed)
    }

    /// Counts a hit of `limit`, and logs `what` unless this limit was logged less than [`LOG_EVERY`] ago.
    pub fn hit(&self, limit: Limit, what: impl Display) {
        let i = limit as usize;
        self.hits[i].fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let last = self.logged_at[i].load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if !due || self.logged_at[i].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.unlogged[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let hidden = self.unlogged[i].swap(0, Ordering::Relaxed);
        tracing::warn!(listener = self.listener, limit = limit.label(), unlogged_since_last_line = hidden, "{what}");
    }
}
