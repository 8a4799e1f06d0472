//! A server span per gRPC call when traces are on (`OTEL_EXPORTER_OTLP_TRACES_ENABLED`), as upstream's
//! `otelgrpc` handler records them: named `<service>/<method>`, the child of a W3C `traceparent` in the call's
//! metadata, with `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`. A streaming call's
//! span lasts until its stream ends. Without a tracer the layer passes calls through untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use httpscale_core::otel::{KeyValue, ServerSpan, Tracer};

/// The layer; `None` turns it into a pass-through.
#[derive(Clone)]
pub struct TraceCalls<S> {
    inner: S,
    tracer: Option<Tracer>,
}

impl<S> TraceCalls<S> {
    pub fn layer(tracer: Option<Tracer>) -> impl tower::Layer<S, Service = TraceCalls<S>> + Clone {
        tower::layer::layer_fn(move |inner| TraceCalls { inner, tracer: tracer.clone() })
    }
}

/// `/package.Service/Method` as (service, method).
fn rpc_names(path: &str) -> (&str, &str) {
    path.trim_start_matches('/').split_once('/').unwrap_or((path, ""))
}

/// Starts a call's span and records what the request says about it.
fn start<B>(tracer: &Tracer, req: &Request<B>) -> ServerSpan {
    let path = req.uri().path();
    let (service, method) = rpc_names(path);
    let mut span = tracer.server_span(path.trim_start_matches('/').to_owned(), req.headers());
    if span.is_recording() {
        span.set([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
        ]);
    }
    span
}

/// Records a `grpc-status` (in the response headers of a trailers-only answer, or in the trailers).
fn record_status(span: &mut ServerSpan, headers: &HeaderMap) -> bool {
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i64>().ok()) else {
        return false;
    };
    span.set([KeyValue::new("rpc.grpc.status_code", code)]);
    if code != 0 {
        let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
        span.fail(format!("gRPC status {code}: {message}"));
    }
    true
}

impl<S, B, RB> tower::Service<Request<B>> for TraceCalls<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<SpanBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = self.tracer.as_ref().map(|t| start(t, &req));
        let call = self.inner.call(req);
        Box::pin(async move {
            let resp = call.await?;
            let mut span = span;
            if let Some(s) = span.as_mut()
                && record_status(s, resp.headers())
            {
                // A trailers-only answer (an error): the call is over.
                if let Some(s) = span.take() {
                    s.end();
                }
            }
            Ok(resp.map(|inner| SpanBody { inner, span }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A call's response body; its span ends with the trailers, or when the body is dropped (the client left).
    pub struct SpanBody<B> {
        #[pin]
        inner: B,
        span: Option<ServerSpan>,
    }
}

impl<B: Body<Data = Bytes>> Body for SpanBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(span)) = (frame.trailers_ref(), this.span.as_mut()) {
                    record_status(span, trailers);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(s) = this.span.take() {
                    s.end();
                }
            }
            Poll::Pending => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_name_the_service_and_method() {
        assert_eq!(
            rpc_names("/externalscaler.ExternalScaler/StreamMetricSpec"),
            ("externalscaler.ExternalScaler", "StreamMetricSpec")
        );
    }
}
