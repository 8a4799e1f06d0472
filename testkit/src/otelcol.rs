//! The OpenTelemetry Collector as a real peer: the otlp receiver (gRPC and HTTP) on ports of its own, writing
//! what it receives through the file exporter, which tests read back as [`ReceivedSpan`]s and metric names.
//!
//! The binary is assembled by the Collector Builder and cached by `bash scripts/e2e-build.sh --only otelcol`
//! (`scripts/test.sh` runs it first) under `$HTTPSCALE_E2E_CACHE/otelcol-<OTELCOL_VERSION>/bin/otelcol`, the
//! version pinned in `e2e/versions.env`. A missing binary fails the test with that command, like a missing
//! Python peer: nothing here is skipped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use httpscale_core::otel::{OtelArgs, TraceProtocol};
use serde_json::Value;
use tokio::time::Instant;

use crate::net::Reserved;
use crate::process::{Spawned, repo};

/// `OTELCOL_VERSION` from `e2e/versions.env`.
fn pinned_version() -> String {
    let env = std::fs::read_to_string(repo().join("e2e/versions.env")).unwrap();
    let line =
        env.lines().find_map(|l| l.strip_prefix("OTELCOL_VERSION=")).expect("OTELCOL_VERSION in e2e/versions.env");
    line.split_whitespace().next().unwrap().to_owned()
}

/// Where `scripts/e2e-build.sh` caches its programs.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HTTPSCALE_E2E_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    base.join("httpscale-e2e")
}

/// The collector binary; fails the test, naming the command that builds it, when it is not there.
pub fn otelcol_binary() -> PathBuf {
    let version = pinned_version();
    let bin = cache_dir().join(format!("otelcol-{version}/bin/otelcol"));
    assert!(
        bin.exists(),
        "the OpenTelemetry Collector {version} is missing ({}): build it with `bash scripts/e2e-build.sh --only \
         otelcol` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The exporter's `service.name`.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP's span kind number (2 is SERVER).
    pub kind: i64,
    /// OTLP's status code (2 is ERROR).
    pub status: i64,
    pub attributes: HashMap<String, Value>,
}

/// A running collector, stopped when dropped.
pub struct Collector {
    process: Spawned,
    /// The otlp receiver's gRPC and HTTP addresses.
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

/// An OTLP JSON `AnyValue` as plain JSON.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return i.as_str().and_then(|s| s.parse::<i64>().ok()).map_or_else(|| i.clone(), Value::from);
    }
    v.get("boolValue").or_else(|| v.get("doubleValue")).cloned().unwrap_or(Value::Null)
}

fn attributes(list: &Value) -> HashMap<String, Value> {
    let pairs = list.as_array().into_iter().flatten();
    pairs.filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), any_value(&kv["value"])))).collect()
}

impl Collector {
    /// Starts the collector and waits until it accepts data.
    pub fn start() -> Self {
        let bin = otelcol_binary();
        let (grpc, http) = (Reserved::new(), Reserved::new());
        let dir = tempfile::tempdir().unwrap();
        let out = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: '{}'}}\n      http: {{endpoint: '{}'}}\n\
             exporters:\n  file/traces: {{path: '{}', flush_interval: 50ms}}\n  file/metrics: {{path: '{}', flush_interval: 50ms}}\n\
             service:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n\
             \x20   traces: {{receivers: [otlp], exporters: [file/traces]}}\n\
             \x20   metrics: {{receivers: [otlp], exporters: [file/metrics]}}\n",
            grpc.addr(),
            http.addr(),
            out("traces.json"),
            out("metrics.json"),
        );
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        // The collector binds with SO_REUSEADDR, so it takes the reserved ports over.
        let process = Spawned::start(Command::new(bin).arg("--config").arg(&config_path));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !process.log().contains("Everything is ready") {
            assert!(Instant::now() < deadline, "the collector did not start:\n{}", process.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (grpc_addr, http_addr) = (grpc.addr(), http.addr());
        drop((grpc, http));
        Self { process, grpc: grpc_addr, http: http_addr, dir }
    }

    /// Points `otel` at this collector: traces over `protocol` (its gRPC or HTTP port, the base endpoint as a
    /// user sets it), metrics over OTLP/HTTP every 200 ms.
    pub fn export_to(&self, otel: &mut OtelArgs, protocol: TraceProtocol) {
        otel.traces_enabled = true;
        otel.traces_protocol = protocol;
        let base = if protocol == TraceProtocol::Grpc { self.grpc } else { self.http };
        otel.endpoint = Some(format!("http://{base}"));
        otel.metrics_enabled = true;
        otel.metrics_endpoint = Some(format!("http://{}/v1/metrics", self.http));
        otel.metric_interval = Duration::from_millis(200);
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(self.dir.path().join("traces.json")).unwrap_or_default();
        let mut spans = Vec::new();
        for batch in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            for rs in batch["resourceSpans"].as_array().into_iter().flatten() {
                let resource = attributes(&rs["resource"]["attributes"]);
                let service = resource.get("service.name").and_then(Value::as_str).unwrap_or("").to_owned();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        let text = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                        spans.push(ReceivedSpan {
                            service: service.clone(),
                            name: text("name"),
                            trace_id: text("traceId"),
                            span_id: text("spanId"),
                            parent_span_id: text("parentSpanId"),
                            kind: s["kind"].as_i64().unwrap_or(0),
                            status: s["status"]["code"].as_i64().unwrap_or(0),
                            attributes: attributes(&s["attributes"]),
                        });
                    }
                }
            }
        }
        spans
    }

    /// The first span of `service` that `wanted` accepts, waiting up to 15 s for it (batches are exported
    /// every few seconds).
    pub async fn span(&self, service: &str, wanted: impl Fn(&ReceivedSpan) -> bool) -> ReceivedSpan {
        crate::eventually_some(Duration::from_secs(15), &format!("a span of {service} at the collector"), || {
            let found = self.spans().into_iter().find(|s| s.service == service && wanted(s));
            std::future::ready(found)
        })
        .await
    }

    /// Waits up to 10 s until `service` has sent every metric of `names`.
    pub async fn wait_metrics(&self, service: &str, names: &[&str]) {
        crate::eventually(Duration::from_secs(10), &format!("the metrics of {service} at the collector"), || {
            let got = self.metrics();
            let all = names.iter().all(|n| got.iter().any(|(svc, name)| svc == service && name == n));
            std::future::ready(all)
        })
        .await
    }

    /// The names of every metric received so far, with the `service.name` that sent them.
    pub fn metrics(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("metrics.json")).unwrap_or_default();
        let mut names = Vec::new();
        for batch in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            for rm in batch["resourceMetrics"].as_array().into_iter().flatten() {
                let resource = attributes(&rm["resource"]["attributes"]);
                let service = resource.get("service.name").and_then(Value::as_str).unwrap_or("").to_owned();
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        names.push((service.clone(), m["name"].as_str().unwrap_or("").to_owned()));
                    }
                }
            }
        }
        names
    }

    /// What the collector logged (for failure messages).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
