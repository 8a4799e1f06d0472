//! Bodies on both sides of the proxy.
//!
//! [`ProxyBody`] is every response the interceptor sends: the backend's streamed body, a fixed one or one the
//! interceptor streams itself (the keep-alive of a held SSE request), plus
//! what must happen when it ends or is dropped: the route's in-flight count is returned, the request metric
//! is recorded, and an optional request deadline cuts the stream. Frames pass through as they arrive; nothing
//! is buffered.
//!
//! [`AttemptBody`] is the request body handed to the upstream client. A failed connect never polls it, so the
//! client's body stays in a shared slot and the next connect attempt can send it. It works for any request
//! body type (hyper's `Incoming` in the server, simple bodies in tests). It also bounds how long the client
//! may take over its body once it is being sent ([`pace`](super::pace): a stall, a trickle), and remembers
//! when the client broke it (a framing error, a body cut short, too slow), so the failure is answered as the
//! client's ([`ClientFault`]), not the backend's.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use httpscale_core::listener::RequestGuard;
use httpscale_core::queue::InFlight;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::pace::{BodyLimits, Overrun, Pace};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Called once when a response ends, fails or is dropped.
pub trait OnFinish: Send + Sync {
    fn finish(self: Box<Self>, completed: bool);
}

/// A body the interceptor streams itself.
pub type StreamedBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>;

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
    Streamed(StreamedBody),
}

pub struct ProxyBody {
    inner: Inner,
    in_flight: Option<InFlight>,
    /// Anything else that must live until the response ends (a pod's in-flight place, an admission).
    kept: Vec<Box<dyn Send + Sync>>,
    /// The request's place on its client connection (the connection is busy until the answer ends).
    connection: Option<RequestGuard>,
    on_finish: Option<Box<dyn OnFinish>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyBody")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request deadline exceeded while streaming the response")]
pub struct DeadlineExceeded;

impl ProxyBody {
    pub fn upstream(body: Incoming) -> Self {
        Self::with(Inner::Upstream(body))
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        Self::with(Inner::Full((!b.is_empty()).then_some(b)))
    }

    /// A body the interceptor streams itself.
    pub fn streamed(body: impl Body<Data = Bytes, Error = BoxError> + Send + 'static) -> Self {
        Self::with(Inner::Streamed(Box::pin(body)))
    }

    fn with(inner: Inner) -> Self {
        Self { inner, in_flight: None, kept: Vec::new(), connection: None, on_finish: None, deadline: None }
    }

    /// Keeps the route's request counted until this body ends or is dropped.
    pub fn hold_in_flight(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Keeps `value` alive until this body ends or is dropped.
    pub fn keep(&mut self, value: Box<dyn Send + Sync>) {
        self.kept.push(value);
    }

    /// Keeps the client connection busy with this request until this body ends or is dropped.
    pub fn hold_connection(&mut self, guard: RequestGuard) {
        self.connection = Some(guard);
    }

    pub fn on_finish(&mut self, f: Box<dyn OnFinish>) {
        self.on_finish = Some(f);
    }

    /// Ends a backend's stream with an error at `deadline` (answers made here are complete already).
    pub fn set_deadline(&mut self, deadline: Instant) {
        if matches!(self.inner, Inner::Upstream(_) | Inner::Streamed(_)) && !self.is_end_stream() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
    }

    fn done(&mut self, completed: bool) {
        self.in_flight = None;
        self.kept.clear();
        self.deadline = None;
        self.connection = None;
        if let Some(f) = self.on_finish.take() {
            f.finish(completed);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.done(false);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.done(false);
            return Poll::Ready(Some(Err(Box::new(DeadlineExceeded))));
        }
        let polled = match &mut this.inner {
            Inner::Upstream(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map(|r| r.map_err(BoxError::from)),
            },
            Inner::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Inner::Streamed(b) => match b.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            },
        };
        match &polled {
            None => this.done(true),
            Some(Err(_)) => this.done(false),
            Some(Ok(_)) if this.inner_is_end() => this.done(true),
            Some(Ok(_)) => {}
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner_is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Streamed(b) => b.size_hint(),
        }
    }
}

impl ProxyBody {
    fn inner_is_end(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
            Inner::Streamed(b) => b.is_end_stream(),
        }
    }
}

/// Why the client's own request body failed: answered `400` (or `408` when it was too slow), never blamed on
/// the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFault {
    Slow(Overrun),
    Malformed(String),
}

struct Shared<B> {
    body: Option<B>,
    fault: Option<ClientFault>,
}

type Slot<B> = Arc<Mutex<Shared<B>>>;

/// A request body that survives failed connect attempts (see the module docs), and remembers whether the
/// client broke it.
#[derive(Debug)]
pub struct Replayable<B> {
    slot: Option<Slot<B>>,
    hint: SizeHint,
    limits: BodyLimits,
}

impl<B> std::fmt::Debug for Shared<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("fault", &self.fault).finish()
    }
}

impl<B: Body> Replayable<B> {
    /// `limits`: how long the client may take over the body once it is being sent.
    pub fn new(body: B, limits: BodyLimits) -> Self {
        let hint = body.size_hint();
        let slot = (!body.is_end_stream()).then(|| Arc::new(Mutex::new(Shared { body: Some(body), fault: None })));
        Self { slot, hint, limits }
    }

    /// A body for the next attempt, or `None` if an earlier attempt already started sending it.
    pub fn attempt(&self) -> Option<AttemptBody<B>> {
        let body = |slot| AttemptBody { slot, taken: None, hint: self.hint, pace: Pace::new(self.limits) };
        match &self.slot {
            None => Some(AttemptBody { hint: SizeHint::with_exact(0), ..body(None) }),
            Some(slot) => {
                let available = slot.lock().map(|s| s.body.is_some()).unwrap_or(false);
                available.then(|| body(Some(slot.clone())))
            }
        }
    }

    /// Whether the request has no body to send.
    pub fn is_empty(&self) -> bool {
        self.slot.is_none()
    }

    /// How the client broke its body, if it did.
    pub fn client_fault(&self) -> Option<ClientFault> {
        self.slot.as_ref().and_then(|s| s.lock().ok().and_then(|s| s.fault.clone()))
    }
}

#[derive(Debug)]
pub struct AttemptBody<B> {
    slot: Option<Slot<B>>,
    taken: Option<B>,
    hint: SizeHint,
    pace: Pace,
}

impl<B> AttemptBody<B> {
    fn fail(&mut self, fault: ClientFault) {
        if let Some(mut s) = self.slot.as_ref().and_then(|s| s.lock().ok()) {
            s.fault = Some(fault);
        }
    }
}

impl<B> Body for AttemptBody<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.taken.is_none() {
            let Some(slot) = &this.slot else { return Poll::Ready(None) };
            this.taken = slot.lock().ok().and_then(|mut s| s.body.take());
        }
        let Some(body) = this.taken.as_mut() else { return Poll::Ready(None) };
        match this.pace.poll_frame(body, cx) {
            Poll::Ready(Ok(Some(Err(e)))) => {
                let e: BoxError = e.into();
                this.fail(ClientFault::Malformed(e.to_string()));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Ok(other)) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Ready(Err(overrun)) => {
                this.fail(ClientFault::Slow(overrun.clone()));
                Poll::Ready(Some(Err(Box::new(overrun))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(b) => b.is_end_stream(),
            None => self.slot.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}
