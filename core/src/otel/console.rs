//! The `console` trace exporter (upstream's default protocol): one JSON line per span on standard output.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

#[derive(Debug)]
pub(super) struct ConsoleExporter;

/// A span as one JSON object.
fn line(span: &SpanData) -> serde_json::Value {
    let attributes: serde_json::Map<String, serde_json::Value> =
        span.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_string().into())).collect();
    let nanos = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    serde_json::json!({
        "name": span.name,
        "kind": format!("{:?}", span.span_kind),
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": span.parent_span_id.to_string(),
        "start_unix_nano": nanos(span.start_time),
        "end_unix_nano": nanos(span.end_time),
        "status": format!("{:?}", span.status),
        "attributes": attributes,
    })
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for span in &batch {
            let _ = writeln!(out, "{}", line(span));
        }
        Ok(())
    }
}
