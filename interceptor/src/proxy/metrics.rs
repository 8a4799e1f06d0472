//! The metrics layer (outermost): request metrics, request logs and, when traces are on, the request's server
//! span.
//!
//! States of a request here: *in progress* (the inner future runs; dropping it means the client left, which
//! is recorded as 499, not 502), *answered* (headers sent; the record waits for the body), and *finished*
//! (body ended or dropped: count and duration recorded once, labelled with the matched route or empty labels,
//! and `cold_start` if the cold-start layer held the request).
//!
//! With a [`Tracer`], each request gets a server span named `keda-http-interceptor` (upstream's), the child of
//! the client's W3C `traceparent` if it sent one; the span's own context replaces the client's in the headers
//! the backend receives. The span ends with the record, carrying the route, the status and the cold start
//! ([`span`]). Without one (the default) nothing here touches tracing: the record's span is `None`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Version};
use tokio::time::Instant;
use tower::{Layer, Service};

use httpscale_core::otel::{ServerSpan, Tracer};

use super::body::OnFinish;
use super::types::{BoxFuture, ClientAddr, Parked, ProxyResponse, RouteSlot};
use crate::labels::{MethodLabel, RequestLabels};
use crate::metrics::RequestMetrics;

mod span;

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<RequestMetrics>,
    log_requests: bool,
    tracer: Option<Tracer>,
}

impl MetricsLayer {
    /// Records into `metrics`; with `log_requests`, also logs one line per request; with `tracer`, traces it.
    pub fn new(metrics: Arc<RequestMetrics>, log_requests: bool, tracer: Option<Tracer>) -> Self {
        Self { metrics, log_requests, tracer }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
            log_requests: self.log_requests,
            tracer: self.tracer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
    log_requests: bool,
    tracer: Option<Tracer>,
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
    metrics: Arc<RequestMetrics>,
    slot: RouteSlot,
    method: MethodLabel,
    start: Instant,
    log: Option<LogInfo>,
    span: Option<ServerSpan>,
    status: u16,
}

impl Record {
    fn emit(self, completed: bool) {
        let route = self.slot.route();
        let labels = route.map(|r| r.labels.clone()).unwrap_or_default();
        let elapsed = self.start.elapsed();
        let held = self.slot.held();
        let request = RequestLabels::new(self.status, self.method, labels);
        self.metrics.record(&request, held.is_some(), elapsed.as_secs_f64());
        if let Some(s) = self.span {
            span::end(s, route.map(|r| &r.route.key), self.status, held, completed);
        }
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
            let route = r.slot.route().map(|r| r.route.key.to_string()).unwrap_or_default();
            tracing::info!(route, status = 499, "client closed the request before an answer");
            r.emit(false);
        }
    }
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<ProxyResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let slot = RouteSlot::default();
        req.extensions_mut().insert(slot.clone());
        let log = self.log_requests.then(|| LogInfo {
            client: req.extensions().get::<ClientAddr>().map(|a| a.0.to_string()).unwrap_or_default(),
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            host: req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned(),
            version: req.version(),
        });
        let method = MethodLabel::from(req.method());
        let span = self.tracer.as_ref().map(|t| span::start(t, method, &mut req));
        let record =
            Record { metrics: self.metrics.clone(), slot, method, start: Parked::arrival(&req), log, span, status: 0 };
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

#[cfg(test)]
mod tests;
