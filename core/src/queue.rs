//! Per-route request counts: the in-flight concurrency and the monotonic request counter that the scaler
//! reads, and upstream's `/queue` wire format for them (`{"<ns>/<name>": {"Concurrency": n, "RequestCount": n}}`),
//! kept so a Go scaler can read a Rust interceptor and the other way round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One route's counts on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    #[serde(rename = "Concurrency")]
    pub concurrency: i64,
    #[serde(rename = "RequestCount")]
    pub request_count: i64,
}

/// The body of `GET /queue`.
pub type QueueCounts = BTreeMap<String, QueueCount>;

/// A line of the interceptor's `/queue/stream`: the counts, and when a route last left or reached zero
/// in-flight requests (microseconds since the Unix epoch, by the interceptor's clock).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueUpdate {
    pub changed_us: u64,
    pub queue: QueueCounts,
}

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Signals that some route's concurrency left or reached zero: the moments a scaler must hear of at once.
/// The value is when it last happened ([`unix_micros`]).
#[derive(Debug)]
pub struct Activity(watch::Sender<u64>);

impl Default for Activity {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Activity {
    fn poke(&self) {
        self.0.send_replace(unix_micros());
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Live counters for one route. Shared across table rebuilds so a reload never resets them.
#[derive(Debug, Default)]
pub struct RouteCounters {
    concurrency: AtomicI64,
    requests: AtomicI64,
    activity: Option<Arc<Activity>>,
}

impl RouteCounters {
    /// Counters that poke `activity` when their concurrency leaves or reaches zero.
    pub fn with_activity(activity: Arc<Activity>) -> Self {
        Self { activity: Some(activity), ..Default::default() }
    }

    /// Counts a request as arrived and in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.hold()
    }

    /// Holds one unit of concurrency without counting a new request (a tunnel outliving its response).
    pub fn hold(self: &Arc<Self>) -> InFlight {
        if self.concurrency.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(a) = &self.activity
        {
            a.poke();
        }
        InFlight(self.clone())
    }

    pub fn snapshot(&self) -> QueueCount {
        QueueCount {
            // Clamped at 0 as upstream does; it cannot go negative here, but the wire promises it.
            concurrency: self.concurrency.load(Ordering::Acquire).max(0),
            request_count: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// Holds one unit of a route's concurrency; every exit path gives it back by dropping this.
#[derive(Debug)]
pub struct InFlight(Arc<RouteCounters>);

impl InFlight {
    /// Whether this is a unit of `counters`.
    pub fn counts_for(&self, counters: &Arc<RouteCounters>) -> bool {
        Arc::ptr_eq(&self.0, counters)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.concurrency.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(a) = &self.0.activity
        {
            a.poke();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_matches_upstream() {
        let mut counts = QueueCounts::new();
        counts.insert("ollama/ollama".into(), QueueCount { concurrency: 2, request_count: 7 });
        assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"ollama/ollama":{"Concurrency":2,"RequestCount":7}}"#);
    }

    #[test]
    fn activity_fires_when_concurrency_leaves_or_reaches_zero_only() {
        let activity = Arc::new(Activity::default());
        let mut rx = activity.subscribe();
        let c = Arc::new(RouteCounters::with_activity(activity.clone()));
        let a = c.begin();
        assert!(rx.has_changed().unwrap(), "0 -> 1 is announced");
        rx.mark_unchanged();
        let b = c.begin();
        drop(b);
        assert!(!rx.has_changed().unwrap(), "1 -> 2 -> 1 is not");
        drop(a);
        assert!(rx.has_changed().unwrap(), "1 -> 0 is announced");
    }

    #[test]
    fn guard_returns_concurrency_but_keeps_the_count() {
        let c = Arc::new(RouteCounters::default());
        let a = c.begin();
        let b = c.begin();
        assert_eq!(c.snapshot(), QueueCount { concurrency: 2, request_count: 2 });
        drop(a);
        drop(b);
        assert_eq!(c.snapshot(), QueueCount { concurrency: 0, request_count: 2 });
    }
}
