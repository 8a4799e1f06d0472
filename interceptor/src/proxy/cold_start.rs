//! The cold-start layer.
//!
//! States of a request here:
//! - *warm*: the target's gate is open; the request goes on at once (`X-KEDA-HTTP-Cold-Start: false`).
//! - *placeholder*: the gate is closed and the route has a placeholder; it is served at once (the request was
//!   already counted, so it still wakes the backend). As upstream, the placeholder wins over a fallback.
//!   Except, as upstream 0.16: with its own `maxPendingRequests` and `overflow: Placeholder` the route holds
//!   requests up to that limit, and only the overflow gets the placeholder.
//! - *refused*: the route already holds its cap of requests; 503 with `Retry-After` (or the placeholder
//!   with `overflow: Placeholder`), and `interceptor_cold_start_rejections_total` counts it.
//! - *admitted*: with `coldStart.maxConcurrentPerPod`, a request for a ready backend also waits (held, unsent)
//!   until fewer than that many requests per ready pod are in flight, so a fresh pod is not flooded.
//! - *held*: the request waits, unsent, in arrival order, until the gate opens
//!   (`X-KEDA-HTTP-Cold-Start: true`), the readiness timeout passes (504, or the fallback upstream), the
//!   interceptor stops (503, `Connection: close`), the readiness source refuses (a program that crashed or
//!   did not start in time: 502 or 504 with the reason), or the client leaves (the future is dropped and the
//!   place, the hold slot and the count are given back at once).
//!
//! A request the server parked before reading it ([`Parked`], HTTP/1.1) comes here having waited already: its
//! wait and its readiness deadline count from its arrival, and it is cold (`true`) even when the gate is open
//! by now. Whatever ended the park (the gate opened, the deadline, shutdown, the client leaving) plays out
//! here as for any held request.
//!
//! Every held request's wait is observed once in `interceptor_cold_start_duration_seconds` with how it ended
//! ([`Outcome`]; a refusal over the cap counts as an `overflow` of 0 s), and left in the request's
//! [`RouteSlot`] for the metrics layer (`cold_start="true"`) and the request's span.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Request;
use http::header::HeaderValue;
use httpscale_core::Shutdown;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::error::ProxyError;
use super::fixed::fixed_response;
use super::types::{BoxFuture, OnAnswer, Parked, ProxyResponse, RouteSlot, Routed, Then, UseFallback};
use crate::labels::Outcome;
use crate::metrics::ColdStartMetrics;
use crate::placeholder::Bodies;
use crate::routes::RouteState;

pub use super::types::COLD_START_HEADER;

/// What the cold-start layer uses.
pub struct ColdStartParams {
    /// Add [`COLD_START_HEADER`] to answers (`KEDA_HTTP_ENABLE_COLD_START_HEADER`).
    pub header: bool,
    /// Fires when the listener closes: held requests answer 503 instead of waiting on.
    pub stopping: Shutdown,
    pub metrics: ColdStartMetrics,
    /// ConfigMap bodies for placeholders.
    pub bodies: Bodies,
}

#[derive(Clone)]
pub struct ColdStartLayer {
    params: Arc<ColdStartParams>,
}

impl ColdStartLayer {
    pub fn new(params: Arc<ColdStartParams>) -> Self {
        Self { params }
    }
}

impl<S> Layer<S> for ColdStartLayer {
    type Service = ColdStartService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ColdStartService { inner, params: self.params.clone() }
    }
}

#[derive(Clone)]
pub struct ColdStartService<S> {
    inner: S,
    params: Arc<ColdStartParams>,
}

/// One place in a route's hold queue; given back on drop.
pub struct HoldSlot(Arc<AtomicUsize>);

impl HoldSlot {
    /// A place among at most `max` (0: no limit), or `None` when they are all taken.
    pub fn take(pending: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let before = pending.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= max {
            pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(pending.clone()))
    }
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One held request's wait: observed once, with the outcome it ended with, or as `canceled` if the request's
/// future is dropped first (the client left).
struct Wait<'a> {
    route: &'a RouteState,
    metrics: &'a ColdStartMetrics,
    slot: Option<RouteSlot>,
    started: Instant,
    done: bool,
}

impl<'a> Wait<'a> {
    fn start(route: &'a RouteState, metrics: &'a ColdStartMetrics, slot: Option<RouteSlot>, started: Instant) -> Self {
        Self { route, metrics, slot, started, done: false }
    }

    fn end(&mut self, outcome: Outcome) {
        self.done = true;
        let waited = self.started.elapsed();
        self.metrics.observe(&self.route.labels, outcome, waited.as_secs_f64());
        if let Some(slot) = &self.slot {
            slot.set_held(waited);
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(Outcome::Canceled);
        }
    }
}

/// Sends a request on once the route's per-pod limit (if any) admits it; the place is kept until the
/// response ends. Waiting for admission counts as being held.
async fn admitted<S, B>(
    route: &Arc<RouteState>,
    params: &ColdStartParams,
    inner: &mut S,
    req: Request<B>,
    cold: bool,
) -> Result<ProxyResponse, ProxyError>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    let admission = match route.route.max_concurrent_per_pod {
        None => None,
        Some(per_pod) => Some(tokio::select! {
            a = route.gate.admit(per_pod) => a,
            _ = params.stopping.triggered() => return Err(ProxyError::ShuttingDown),
        }),
    };
    sent(&req, params.header, cold);
    let mut resp = inner.call(req).await?;
    if let Some(a) = admission {
        resp.body_mut().keep(Box::new(a));
    }
    mark(&mut resp, params.header, cold);
    Ok(resp)
}

/// Notes on the request's slot that it goes on with this cold-start header, so that the rescue layer puts it
/// on the answer if the backend fails.
fn sent<B>(req: &Request<B>, enabled: bool, cold: bool) {
    if enabled && let Some(slot) = req.extensions().get::<RouteSlot>() {
        slot.set_sent(cold);
    }
}

fn mark(resp: &mut ProxyResponse, enabled: bool, cold: bool) {
    if enabled {
        let v = if cold { "true" } else { "false" };
        resp.headers_mut().insert(COLD_START_HEADER, HeaderValue::from_static(v));
    }
}

/// `req` with its target and header values copied out of the connection's read buffer, which they share,
/// so that a held request keeps a few hundred bytes alive rather than the whole buffer (8 KiB over HTTP/1.1:
/// the server reads on into a new one meanwhile, to notice a client that leaves). Only held requests pay it.
fn detached<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = http::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(parts.uri.to_string().as_bytes())) {
        parts.uri = uri;
    }
    for value in parts.headers.values_mut() {
        detach(value);
    }
    if let Some(routed) = parts.extensions.get_mut::<Routed>() {
        detach(&mut routed.host);
    }
    Request::from_parts(parts, body)
}

fn detach(value: &mut HeaderValue) {
    if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
        copy.set_sensitive(value.is_sensitive());
        *value = copy;
    }
}

/// A request for a target that is not ready, or admitted per pod, or parked by the server since `parked`:
/// answered, held or refused (see the module docs).
async fn hold<S, B>(
    route: Arc<RouteState>,
    params: Arc<ColdStartParams>,
    mut inner: S,
    req: Request<B>,
    parked: Option<Instant>,
) -> Result<ProxyResponse, ProxyError>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    if route.gate.is_open() {
        // Warm (admitted per ready pod with `coldStart.maxConcurrentPerPod`), or ready after a park.
        if let Some(since) = parked {
            let slot = req.extensions().get::<RouteSlot>().cloned();
            Wait::start(&route, &params.metrics, slot, since).end(Outcome::Ready);
        }
        return Box::pin(admitted(&route, &params, &mut inner, req, parked.is_some())).await;
    }
    if let Some(p) = route.immediate_placeholder() {
        // Nobody waits, but the backend is wanted (a standalone program starts on this).
        route.gate.nudge();
        return fixed_response(p, req.uri().path(), &params.bodies);
    }
    let Some(slot) = HoldSlot::take(&route.pending, route.max_pending) else {
        params.metrics.rejections.get_or_create(&route.labels).inc();
        params.metrics.observe(&route.labels, Outcome::Overflow, 0.0);
        if let Some(p) = route.overflow_placeholder() {
            return fixed_response(p, req.uri().path(), &params.bodies);
        }
        return Err(ProxyError::HoldQueueFull { route: route.route.key.clone(), max: route.max_pending });
    };
    let mut req = detached(req);
    let since = parked.unwrap_or_else(Instant::now);
    let mut record = Wait::start(&route, &params.metrics, req.extensions().get::<RouteSlot>().cloned(), since);
    let wait = route.gate.wait_open();
    let waited = tokio::select! {
        waited = async {
            match route.readiness_timeout {
                None => Some(wait.await),
                Some(t) => tokio::time::timeout_at(since + t, wait).await.ok(),
            }
        } => waited,
        _ = params.stopping.triggered() => {
            record.end(Outcome::Shutdown);
            return Err(ProxyError::ShuttingDown);
        }
    };
    drop(slot);
    record.end(match &waited {
        Some(Ok(())) => Outcome::Ready,
        Some(Err(_)) => Outcome::Error,
        None => Outcome::Timeout,
    });
    match waited {
        Some(Err(refusal)) => Err(ProxyError::BackendRefused(refusal)),
        // Boxed: its state (the forward under way) would otherwise enlarge every held request's future.
        Some(Ok(())) => Box::pin(admitted(&route, &params, &mut inner, req, true)).await,
        None if route.fallback.is_some() => {
            req.extensions_mut().insert(UseFallback);
            inner.call(req).await
        }
        None => Err(ProxyError::ReadinessTimeout {
            upstream: route.route.target.to_string(),
            timeout: route.readiness_timeout.unwrap_or_default(),
        }),
    }
}

impl<S, B> Service<Request<B>> for ColdStartService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    /// Unboxed on the warm path (the gate open), boxed when the request is held.
    type Future = Either<Then<S::Future, Warm>, BoxFuture<Result<ProxyResponse, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let header = self.params.header;
        let Some(route) = req.extensions().get::<Routed>().map(|r| r.route.clone()) else {
            return Either::Left(Then::new(self.inner.call(req), None));
        };
        let parked = req.extensions().get::<Parked>().map(Parked::since);
        if route.gate.is_open() && route.route.max_concurrent_per_pod.is_none() && parked.is_none() {
            sent(&req, header, false);
            return Either::Left(Then::new(self.inner.call(req), Some(Warm { header })));
        }
        // The polled-ready service goes with the request; a fresh clone waits for the next `poll_ready`.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        Either::Right(Box::pin(hold(route, self.params.clone(), ready, req, parked)))
    }
}

/// A request that did not wait: its answer is marked so (`X-KEDA-HTTP-Cold-Start: false`, when enabled).
pub struct Warm {
    header: bool,
}

impl OnAnswer for Warm {
    fn on_answer(self, resp: &mut ProxyResponse) {
        mark(resp, self.header, false);
    }
}

#[cfg(test)]
mod tests;
