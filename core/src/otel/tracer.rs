//! Server spans and W3C trace context on HTTP headers: what the interceptor's request path and the scaler's
//! gRPC calls use when traces are on. A request carrying a `traceparent` continues that trace; the span's own
//! context is what goes on toward a backend. A span the sampler drops records nothing and is exported never;
//! it costs the header parse, the sampling decision and a new span id.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Starts server spans; cloning it is a reference count.
#[derive(Clone, Debug)]
pub struct Tracer {
    inner: SdkTracer,
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl Tracer {
    pub(super) fn new(provider: &SdkTracerProvider, scope: &'static str) -> Self {
        use opentelemetry::trace::TracerProvider as _;
        let scope = InstrumentationScope::builder(scope).with_version(env!("CARGO_PKG_VERSION")).build();
        Self { inner: provider.tracer_with_scope(scope) }
    }

    /// A server span named `name`, the child of the trace context in `headers` if there is one.
    pub fn server_span(&self, name: impl Into<Cow<'static, str>>, headers: &HeaderMap) -> ServerSpan {
        let parent = if headers.contains_key(TRACEPARENT) {
            TraceContextPropagator::new().extract(&Headers(headers))
        } else {
            opentelemetry::Context::new()
        };
        let builder = self.inner.span_builder(name).with_kind(SpanKind::Server);
        ServerSpan(Box::new(self.inner.build_with_context(builder, &parent)))
    }
}

/// One server span; ended when dropped (or by [`ServerSpan::end`]). Boxed, so that `Option<ServerSpan>` in a
/// request's record is one pointer wide and costs nothing while traces are off.
#[derive(Debug)]
pub struct ServerSpan(Box<Span>);

impl ServerSpan {
    /// Whether attributes are kept (the sampler chose this trace). Set them only then: a dropped span's
    /// attributes would be built for nothing.
    pub fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    pub fn set(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.0.set_attributes(attributes);
    }

    /// Marks the span failed, with `message`.
    pub fn fail(&mut self, message: impl Into<Cow<'static, str>>) {
        self.0.set_status(Status::error(message));
    }

    /// Writes this span's context as `traceparent` (and `tracestate`) into `headers`, replacing the
    /// client's: the next hop is this span's child.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let cx = self.0.span_context();
        if !cx.is_valid() {
            return;
        }
        let value = format!("00-{}-{}-{:02x}", cx.trace_id(), cx.span_id(), cx.trace_flags().to_u8());
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(TRACEPARENT, v);
        }
        let state = cx.trace_state().header();
        match HeaderValue::from_str(&state) {
            Ok(v) if !state.is_empty() => {
                headers.insert(TRACESTATE, v);
            }
            _ => {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// The trace id, as 32 hex digits (for logs).
    pub fn trace_id(&self) -> String {
        self.0.span_context().trace_id().to_string()
    }

    pub fn end(mut self) {
        self.0.end();
    }
}

/// Whether a context carried in `headers` is sampled.
#[cfg(test)]
pub fn parent_is_sampled(headers: &HeaderMap) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    TraceContextPropagator::new().extract(&Headers(headers)).span().span_context().is_sampled()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler};

    fn tracer(sampler: Sampler) -> (Tracer, InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider =
            SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).with_sampler(sampler).build();
        (Tracer::new(&provider, "test"), exporter, provider)
    }

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_client_trace_is_continued_and_the_span_goes_on_toward_the_backend() {
        let (tracer, exporter, _p) = tracer(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=x"));
        let mut span = tracer.server_span("keda-http-interceptor", &headers);
        assert!(span.is_recording());
        span.set([KeyValue::new("http.response.status_code", 200)]);
        span.inject(&mut headers);
        let sent = headers[TRACEPARENT].to_str().unwrap().to_owned();
        assert!(sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && sent.ends_with("-01"), "{sent}");
        assert!(!sent.contains("b7ad6b7169203331"), "the parent id is the interceptor's span: {sent}");
        assert_eq!(headers[TRACESTATE], "vendor=x");
        span.end();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(spans[0].span_kind, SpanKind::Server);
        assert!(spans[0].parent_span_is_remote);
    }

    #[test]
    fn a_dropped_trace_records_nothing_but_still_passes_its_decision_on() {
        let (tracer, exporter, _p) = tracer(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut headers = HeaderMap::new();
        headers
            .insert(TRACEPARENT, HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        let span = tracer.server_span("keda-http-interceptor", &headers);
        assert!(!span.is_recording());
        span.inject(&mut headers);
        assert!(headers[TRACEPARENT].to_str().unwrap().ends_with("-00"));
        assert!(!parent_is_sampled(&headers));
        span.end();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn an_absent_span_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Option<ServerSpan>>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn without_a_client_context_a_new_trace_starts() {
        let (tracer, exporter, _p) = tracer(Sampler::AlwaysOn);
        let mut headers = HeaderMap::new();
        let span = tracer.server_span("keda-http-interceptor", &headers);
        span.inject(&mut headers);
        assert!(parent_is_sampled(&headers));
        let id = span.trace_id();
        span.end();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans[0].span_context.trace_id().to_string(), id);
        assert_eq!(spans[0].parent_span_id, opentelemetry::trace::SpanId::INVALID);
    }
}
