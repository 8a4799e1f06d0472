//! The request's server span (traces on): started from the client's trace context, handed on to the backend in
//! the request's headers, and ended with what the request became. Attributes follow the OpenTelemetry HTTP
//! conventions where one exists; the route and the cold start use names of our own (`keda.*`).

use std::time::Duration;

use http::Request;
use httpscale_core::otel::{KeyValue, ServerSpan, Tracer};
use httpscale_core::route::RouteKey;

use crate::labels::MethodLabel;

/// Upstream's span name for the interceptor's requests.
pub const SPAN_NAME: &str = "keda-http-interceptor";

/// Starts the span (the child of the request's `traceparent`, if any) and writes its context into the request,
/// in place of the client's, for the backend.
pub fn start<B>(tracer: &Tracer, method: MethodLabel, req: &mut Request<B>) -> ServerSpan {
    let mut span = tracer.server_span(SPAN_NAME, req.headers());
    if span.is_recording() {
        let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().host());
        span.set([
            KeyValue::new("http.request.method", method.as_str()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("server.address", host.unwrap_or("").to_owned()),
        ]);
    }
    span.inject(req.headers_mut());
    span
}

/// Ends the span with the answer's status, the matched route, and the readiness wait if the request was held.
pub fn end(mut span: ServerSpan, route: Option<&RouteKey>, status: u16, held: Option<Duration>, completed: bool) {
    if span.is_recording() {
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("keda.cold_start", held.is_some()),
            KeyValue::new("keda.cold_start.wait_seconds", held.unwrap_or_default().as_secs_f64()),
        ];
        if let Some(key) = route {
            attributes.push(KeyValue::new("keda.route.name", key.name.to_string()));
            attributes.push(KeyValue::new("keda.route.namespace", key.namespace.to_string()));
        }
        if !completed {
            attributes.push(KeyValue::new("keda.response.completed", false));
        }
        span.set(attributes);
        if status >= 500 {
            span.fail(format!("answered {status}"));
        }
    }
    span.end();
}
