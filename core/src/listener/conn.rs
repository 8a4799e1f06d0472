//! The time limits of one connection, enforced where every byte passes: [`Guarded`] wraps the socket and
//! fails the server's read (which closes the connection) once a deadline passes. The deadline follows the
//! connection's state, kept in atomics by [`ConnState`]:
//!
//! - *fresh* (HTTP/1, no request yet): the head must be complete within the header timeout of accept;
//! - *idle* (no request in flight): HTTP/1 waits up to the idle timeout for the next request's first byte,
//!   then the header timeout for the rest of its head; HTTP/2 is closed after the idle timeout with no
//!   open stream;
//! - *busy* (a request in flight, counted by [`RequestGuard`] until its response body ends) and *upgraded*
//!   (a WebSocket tunnel): no deadline here (the request body and the answer have their own bounds).
//!
//! Per request this costs two atomic updates, and one clock read when the next head starts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::gate::{Gatekeeper, Permit, Protocol};
use super::stats::Limit;

const NEVER: u64 = u64::MAX;

/// What the limits of one connection follow (see the module docs).
pub struct ConnState {
    gate: Arc<Gatekeeper>,
    protocol: Protocol,
    start: Instant,
    in_flight: AtomicU32,
    served: AtomicBool,
    upgraded: AtomicBool,
    /// Milliseconds after `start`.
    idle_since: AtomicU64,
    head_since: AtomicU64,
    reader: AtomicWaker,
    _permit: Permit,
}

impl ConnState {
    /// The state of a connection accepted at `start` (its head time runs from then).
    pub fn new(permit: Permit, protocol: Protocol, start: Instant) -> Arc<Self> {
        Arc::new(Self {
            gate: permit.0.clone(),
            protocol,
            start,
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            reader: AtomicWaker::new(),
            _permit: permit,
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// A request starts: the connection is busy until the guard (moved into the response body) drops.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.head_since.store(NEVER, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// The connection switched protocols (a tunnel now): no more deadlines.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// No request in flight, and none begun on this HTTP/1 connection since it went idle: closing it now
    /// loses nothing (a fresh connection, or one with a head on its way, is not quiet).
    pub fn quiet(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && (self.protocol == Protocol::Http2
                || (self.served.load(Ordering::Relaxed) && self.head_since.load(Ordering::Relaxed) == NEVER))
    }

    /// Counts (and logs, rate-limited) a limit this connection's request ran into.
    pub fn hit(&self, limit: Limit, what: &str) {
        self.gate.stats.hit(limit, what);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn bytes_read(&self) {
        if self.protocol == Protocol::Http1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NEVER
        {
            self.head_since.store(self.ms(), Ordering::Relaxed);
        }
    }

    /// When the connection must close, and which limit that is.
    fn deadline(&self) -> Option<(Instant, Limit)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let limits = self.gate.limits;
        let at = |ms: u64, d: Duration| self.start + Duration::from_millis(ms) + d;
        let head = self.head_since.load(Ordering::Relaxed);
        match self.protocol {
            Protocol::Http1 if head != NEVER => limits.header_timeout.map(|d| (at(head, d), Limit::HeaderTimeout)),
            _ => {
                let idle = self.idle_since.load(Ordering::Relaxed);
                limits.idle_timeout.map(|d| (at(idle, d), Limit::IdleTimeout))
            }
        }
    }
}

/// One request in flight on a connection (see [`ConnState::begin`]).
pub struct RequestGuard(Arc<ConnState>);

impl RequestGuard {
    pub fn state(&self) -> &ConnState {
        &self.0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            s.idle_since.store(s.ms(), Ordering::Relaxed);
            s.reader.wake();
        }
    }
}

/// A connection's socket with its deadlines (see the module docs).
pub struct Guarded<T> {
    io: T,
    state: Arc<ConnState>,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<T> Guarded<T> {
    pub fn new(io: T, state: Arc<ConnState>) -> Self {
        Self { io, state, timer: None }
    }

    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    /// `Err` once the connection's deadline has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.reader.register(cx.waker());
        let Some((at, limit)) = self.state.deadline() else { return Ok(()) };
        match &mut self.timer {
            Some((armed, sleep)) if *armed != at => {
                sleep.as_mut().reset(at);
                *armed = at;
            }
            Some(_) => {}
            None => self.timer = Some((at, Box::pin(tokio::time::sleep_until(at)))),
        }
        let Some((_, sleep)) = &mut self.timer else { return Ok(()) };
        if sleep.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        self.state.gate.stats.hit(limit, format_args!("connection closed: {} reached", limit.label()));
        Err(io::Error::new(io::ErrorKind::TimedOut, limit.label()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.bytes_read();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted on the connection until it ends or is dropped.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, guard: Option<RequestGuard>) -> Self {
        Self { inner, guard }
    }
}

impl<B: Body<Data = Bytes>> Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            *this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
