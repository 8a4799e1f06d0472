//! Layer 4: the cold start.
//!
//! States of a request here:
//! - *warm*: the target's gate is open; the request goes on at once (`X-KEDA-HTTP-Cold-Start: false`).
//! - *placeholder*: the gate is closed and the route has a placeholder; it is served at once (the request was
//!   already counted, so it still wakes the backend). As upstream, the placeholder wins over a fallback.
//! - *refused*: the route already holds its cap of requests; 503 with `Retry-After` (or the placeholder
//!   with `overflow: Placeholder`), and `interceptor_cold_start_rejections_total` counts it.
//! - *admitted*: with `coldStart.maxConcurrentPerPod`, a request for a ready backend also waits (held, unsent)
//!   until fewer than that many requests per ready pod are in flight, so a fresh pod is not flooded.
//! - *held*: the request waits, unsent, in arrival order, until the gate opens
//!   (`X-KEDA-HTTP-Cold-Start: true`), the readiness timeout passes (504, or the fallback upstream), the
//!   interceptor stops (503, `Connection: close`), the readiness source refuses (a program that crashed or
//!   did not start in time: 502 or 504 with the reason), or the client leaves (the future is dropped and the
//!   place, the hold slot and the count are given back at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::Request;
use http::header::HeaderValue;
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::{BoxFuture, ProxyError, ProxyResponse, Routed, UseFallback, fixed_response};
use crate::Shared;
use crate::routes::RouteState;
use httpscale_core::gate::RefusalKind;

pub const COLD_START_HEADER: &str = "x-keda-http-cold-start";

#[derive(Clone)]
pub struct ColdStartLayer {
    shared: Arc<Shared>,
}

impl ColdStartLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for ColdStartLayer {
    type Service = ColdStartService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ColdStartService { inner, shared: self.shared.clone() }
    }
}

#[derive(Clone)]
pub struct ColdStartService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// One place in a route's hold queue; given back on drop.
struct HoldSlot<'a>(&'a AtomicUsize);

impl<'a> HoldSlot<'a> {
    fn take(pending: &'a AtomicUsize, max: usize) -> Option<Self> {
        let before = pending.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= max {
            pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(pending))
    }
}

impl Drop for HoldSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends a request on once the route's per-pod limit (if any) admits it; the place is kept until the
/// response ends. Waiting for admission counts as being held.
async fn admitted<S>(
    route: &Arc<RouteState>,
    shared: &Shared,
    inner: &mut S,
    req: Request<Incoming>,
    cold: bool,
) -> Result<ProxyResponse, ProxyError>
where
    S: Service<Request<Incoming>, Response = ProxyResponse, Error = ProxyError>,
{
    let admission = match route.route.max_concurrent_per_pod {
        None => None,
        Some(per_pod) => Some(tokio::select! {
            a = route.gate.admit(per_pod) => a,
            _ = shared.stopping.triggered() => return Err(ProxyError::ShuttingDown),
        }),
    };
    let mut resp = inner.call(req).await?;
    if let Some(a) = admission {
        resp.body_mut().keep(Box::new(a));
    }
    mark(&mut resp, shared.cold_start_header, cold);
    Ok(resp)
}

fn mark(resp: &mut ProxyResponse, enabled: bool, cold: bool) {
    if enabled {
        let v = if cold { "true" } else { "false" };
        resp.headers_mut().insert(COLD_START_HEADER, HeaderValue::from_static(v));
    }
}

impl<S> Service<Request<Incoming>> for ColdStartService<S>
where
    S: Service<Request<Incoming>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<Result<ProxyResponse, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let header = self.shared.cold_start_header;
        let Some(route) = req.extensions().get::<Routed>().map(|r| r.route.clone()) else {
            return Box::pin(self.inner.call(req));
        };
        if route.gate.is_open() && route.route.max_concurrent_per_pod.is_none() {
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let mut resp = fut.await?;
                mark(&mut resp, header, false);
                Ok(resp)
            });
        }
        let mut inner = self.inner.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            if route.gate.is_open() {
                // Warm, but admitted per ready pod (`coldStart.maxConcurrentPerPod`).
                return admitted(&route, &shared, &mut inner, req, false).await;
            }
            if let Some(p) = &route.placeholder {
                // Nobody waits, but the backend is wanted (a standalone program starts on this).
                route.gate.nudge();
                return fixed_response(p, req.uri().path(), &shared);
            }
            let Some(slot) = HoldSlot::take(&route.pending, route.max_pending) else {
                shared.metrics.cold_start_rejections.get_or_create(&route.labels).inc();
                if let Some(p) = route.overflow_placeholder() {
                    return fixed_response(p, req.uri().path(), &shared);
                }
                return Err(ProxyError::HoldQueueFull { route: route.route.key.to_string(), max: route.max_pending });
            };
            let started = Instant::now();
            let wait = route.gate.wait_open();
            let waited = tokio::select! {
                waited = async {
                    match route.readiness_timeout {
                        None => Some(wait.await),
                        Some(t) => tokio::time::timeout(t, wait).await.ok(),
                    }
                } => waited,
                _ = shared.stopping.triggered() => return Err(ProxyError::ShuttingDown),
            };
            drop(slot);
            if let Some(Err(refusal)) = waited {
                return Err(match refusal.kind {
                    RefusalKind::Failed => ProxyError::BackendFailed(refusal.reason.clone()),
                    RefusalKind::TimedOut => ProxyError::BackendStartTimeout(refusal.reason.clone()),
                });
            }
            if waited.is_some() {
                shared.metrics.cold_start_wait.get_or_create(&route.labels).observe(started.elapsed().as_secs_f64());
                return admitted(&route, &shared, &mut inner, req, true).await;
            }
            if route.fallback.is_some() {
                req.extensions_mut().insert(UseFallback);
                return inner.call(req).await;
            }
            Err(ProxyError::ReadinessTimeout {
                upstream: route.route.target.to_string(),
                timeout: route.readiness_timeout.unwrap_or_default(),
            })
        })
    }
}
