//! Layer 1: request metrics and request logs.
//!
//! States of a request here: *in progress* (the inner future runs; dropping it means the client left, which
//! is recorded as 499, not 502), *answered* (headers sent; the record waits for the body), and *finished*
//! (body ended or dropped: count and duration recorded once, labelled with the matched route or empty labels).

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Version};
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::body::OnFinish;
use super::{BoxFuture, ClientAddr, ProxyResponse};
use crate::Shared;
use crate::metrics::{MethodLabel, RequestLabels};
use crate::routes::RouteState;

/// Where the route layer leaves the matched route for this layer.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(pub Arc<OnceLock<Arc<RouteState>>>);

#[derive(Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

impl MetricsLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, shared: self.shared.clone() }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

struct LogInfo {
    client: String,
    method: String,
    uri: String,
    host: String,
    version: Version,
}

/// Records one request; runs exactly once, from the body's end or drop, or from a cancelled future.
struct Record {
    shared: Arc<Shared>,
    slot: RouteSlot,
    method: MethodLabel,
    start: Instant,
    log: Option<LogInfo>,
    status: u16,
}

impl Record {
    fn emit(self, completed: bool) {
        let route = self.slot.0.get();
        let labels = route.map(|r| r.labels.clone()).unwrap_or_default();
        let elapsed = self.start.elapsed();
        let req = RequestLabels {
            code: self.status,
            method: self.method,
            route_name: labels.route_name,
            route_namespace: labels.route_namespace,
        };
        self.shared.metrics.requests.get_or_create(&req).inc();
        self.shared.metrics.duration.get_or_create(&req).observe(elapsed.as_secs_f64());
        if let Some(l) = self.log {
            tracing::info!(
                target: "request",
                client = %l.client,
                method = %l.method,
                uri = %l.uri,
                version = ?l.version,
                host = %l.host,
                status = self.status,
                duration_ms = elapsed.as_secs_f64() * 1e3,
                route = route.map(|r| r.route.key.to_string()).unwrap_or_default(),
                completed,
                "request"
            );
        }
    }
}

impl OnFinish for Record {
    fn finish(self: Box<Self>, completed: bool) {
        (*self).emit(completed);
    }
}

/// Records 499 if the request future is dropped before an answer exists.
struct CancelGuard(Option<Record>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            r.status = 499;
            let route = r.slot.0.get().map(|r| r.route.key.to_string()).unwrap_or_default();
            tracing::info!(route, status = 499, "client closed the request before an answer");
            r.emit(false);
        }
    }
}

impl<S> Service<Request<Incoming>> for MetricsService<S>
where
    S: Service<Request<Incoming>, Response = ProxyResponse, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<ProxyResponse, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let slot = RouteSlot::default();
        req.extensions_mut().insert(slot.clone());
        let log = self.shared.log_requests.then(|| LogInfo {
            client: req.extensions().get::<ClientAddr>().map(|a| a.0.to_string()).unwrap_or_default(),
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            host: req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned(),
            version: req.version(),
        });
        let record = Record {
            shared: self.shared.clone(),
            slot,
            method: MethodLabel::from(req.method()),
            start: Instant::now(),
            log,
            status: 0,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut guard = CancelGuard(Some(record));
            let Ok(mut resp) = fut.await;
            if let Some(mut record) = guard.0.take() {
                record.status = resp.status().as_u16();
                resp.body_mut().on_finish(Box::new(record));
            }
            Ok(resp)
        })
    }
}
