//! What the layers hand each other in request extensions, and the pipeline's response type. A leaf of the
//! proxy: every layer imports it, it imports no layer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use httpscale_core::queue::InFlight;
use tokio::time::Instant;

use super::body::ProxyBody;
use crate::routes::RouteState;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a layer does to the answer once it is there ([`Then`]).
pub trait OnAnswer {
    fn on_answer(self, resp: &mut ProxyResponse);
}

pin_project_lite::pin_project! {
    /// The inner layers' answer with `then` done to it: a layer's last step without boxing the inner future
    /// (an allocation and a move per request on the warm path).
    pub struct Then<F, T> {
        #[pin]
        inner: F,
        then: Option<T>,
    }
}

impl<F, T> Then<F, T> {
    pub fn new(inner: F, then: Option<T>) -> Self {
        Self { inner, then }
    }
}

impl<F, T, E> Future for Then<F, T>
where
    F: Future<Output = Result<ProxyResponse, E>>,
    T: OnAnswer,
{
    type Output = Result<ProxyResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(then) = this.then.take() {
            then.on_answer(&mut resp);
        }
        std::task::Poll::Ready(Ok(resp))
    }
}
pub type ProxyResponse = Response<ProxyBody>;

/// The client's address, set per connection by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Set per connection by the server on requests that arrived on the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ArrivedOverTls;

/// Set by the route layer: the matched route and the host the request was routed on.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Arc<RouteState>,
    pub host: HeaderValue,
}

/// Set by the server on the first request of a connection it parked before reading it (`server::park`): when
/// the request arrived, and its route count, begun then and adopted by the count layer, so that the request is
/// counted once, from its arrival, without a gap. The cold-start layer counts the wait from `since`, the route
/// layer the request deadline, the metrics layer the duration.
#[derive(Debug, Clone)]
pub struct Parked(Arc<ParkedInner>);

#[derive(Debug)]
struct ParkedInner {
    since: Instant,
    count: Mutex<Option<InFlight>>,
    claimed: AtomicBool,
}

impl Parked {
    pub fn new(since: Instant, count: InFlight) -> Self {
        Self(Arc::new(ParkedInner { since, count: Mutex::new(Some(count)), claimed: AtomicBool::new(false) }))
    }

    pub fn since(&self) -> Instant {
        self.0.since
    }

    /// `true` the first time only: the connection's first request is the parked one.
    pub fn claim(&self) -> bool {
        !self.0.claimed.swap(true, Ordering::Relaxed)
    }

    /// The count begun at arrival, once.
    pub fn take_count(&self) -> Option<InFlight> {
        self.0.count.lock().ok()?.take()
    }

    /// When `req` arrived: its park's start if it was parked, else now.
    pub fn arrival<B>(req: &Request<B>) -> Instant {
        req.extensions().get::<Parked>().map_or_else(Instant::now, Parked::since)
    }
}

/// Set by the cold-start layer when the readiness wait ran out and the route has a fallback.
#[derive(Debug, Clone, Copy)]
pub struct UseFallback;

/// `X-KEDA-HTTP-Cold-Start`: whether the answer waited for a scale-up.
pub const COLD_START_HEADER: &str = "x-keda-http-cold-start";

/// Where the route layer leaves the matched route, and the cold-start layer how long the request was held, for
/// the metrics layer, which records after the response (and also when the client leaves before there is one,
/// so it cannot wait for response extensions); and the cold-start header of a request sent on, for the rescue
/// layer's answer if the backend then fails. One allocation per request, made by the metrics layer.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(Arc<SlotInner>);

#[derive(Debug, Default)]
struct SlotInner {
    route: OnceLock<Arc<RouteState>>,
    /// The readiness wait in microseconds plus one; 0 while the request has not waited.
    held_us: AtomicU64,
    /// The cold-start header value of a request sent on to its backend: 0 none, 1 `false`, 2 `true`.
    sent: AtomicU8,
}

impl RouteSlot {
    pub fn set_route(&self, route: Arc<RouteState>) {
        let _ = self.0.route.set(route);
    }

    pub fn route(&self) -> Option<&Arc<RouteState>> {
        self.0.route.get()
    }

    /// The request waited `wait` for its backend's readiness (whatever the wait's outcome).
    pub fn set_held(&self, wait: Duration) {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX - 1);
        self.0.held_us.store(us + 1, Ordering::Relaxed);
    }

    /// The request goes on to its backend, and its answer says `X-KEDA-HTTP-Cold-Start: <cold>`.
    pub fn set_sent(&self, cold: bool) {
        self.0.sent.store(if cold { 2 } else { 1 }, Ordering::Relaxed);
    }

    /// The cold-start header value of a request that was sent on (a failed backend's `502`/`504` carries it
    /// too, as upstream's does: its header is set before Go's reverse proxy runs).
    pub fn sent_header(&self) -> Option<HeaderValue> {
        match self.0.sent.load(Ordering::Relaxed) {
            1 => Some(HeaderValue::from_static("false")),
            2 => Some(HeaderValue::from_static("true")),
            _ => None,
        }
    }

    /// How long the request waited for readiness, if it did (upstream's `cold_start` label).
    pub fn held(&self) -> Option<Duration> {
        match self.0.held_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us - 1)),
        }
    }
}
