//! OpenTelemetry against the real OpenTelemetry Collector (testkit's `otelcol`, built by
//! `scripts/e2e-build.sh --only otelcol`): the interceptor's server spans arrive over OTLP/gRPC and
//! OTLP/HTTP with the route, status and cold start, continuing the client's W3C trace and handing it on to the
//! backend; its metrics arrive over OTLP; and `/metrics` answers a plain Prometheus text scrape and OpenMetrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::Full;
use httpscale_core::otel::TraceProtocol;
use httpscale_testkit::otelcol::{Collector, ReceivedSpan};
use httpscale_testkit::*;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn route_to(upstream: std::net::SocketAddr) -> String {
    format!("routes:\n  - name: app\n    hosts: [app.local]\n    upstream: '{upstream}'\n")
}

/// The interceptor's span of the request that carried `trace_id`, once the collector has it.
async fn span_of(collector: &Collector, trace_id: &str) -> ReceivedSpan {
    collector.span("keda-http-interceptor", |s| s.trace_id == trace_id).await
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_over_grpc_continue_the_client_trace_and_reach_the_backend_and_metrics_arrive() {
    let collector = Collector::start();
    let b = named_backend("app").await;
    let h = interceptor_with(&route_to(b.addr), |c| {
        collector.export_to(&mut c.otel, TraceProtocol::Grpc);
    })
    .await;
    let req = request(h.proxy(), "app.local", "/hello")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .body(Full::default())
        .unwrap();
    let (status, _, _) = send(req).await;
    assert_eq!(status, StatusCode::OK);

    let sent = b.seen()[0].headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"), "the backend continues the trace: {sent}");
    assert_ne!(parts[2], CLIENT_SPAN, "its parent is the interceptor's span, not the client's");

    let span = span_of(&collector, CLIENT_TRACE).await;
    assert_eq!((span.name.as_str(), span.kind), ("keda-http-interceptor", 2), "a SERVER span: {span:?}");
    assert_eq!(span.parent_span_id, CLIENT_SPAN, "the child of the client's span");
    assert_eq!(span.span_id, parts[2], "the span the backend was told about");
    let attr = |k: &str| span.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr("http.response.status_code"), 200);
    assert_eq!((attr("keda.route.name"), attr("keda.route.namespace")), ("app".into(), "default".into()));
    assert_eq!((attr("http.request.method"), attr("url.path")), ("GET".into(), "/hello".into()));
    assert_eq!(attr("keda.cold_start"), false);

    let names = ["interceptor.request.count", "interceptor.request.duration", "interceptor.request.concurrency"];
    collector.wait_metrics("keda-http-interceptor", &names).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_request_over_http_protobuf_has_its_cold_start_on_its_span() {
    let collector = Collector::start();
    let port = Reserved::new();
    let h = interceptor_with(&route_to(port.addr()), |c| {
        collector.export_to(&mut c.otel, TraceProtocol::HttpProtobuf);
    })
    .await;
    let proxy = h.proxy();
    let pending = tokio::spawn(async move { get(proxy, "app.local", "/").await });
    eventually(Duration::from_secs(2), "held", || async { concurrency(h.admin(), "default/app").await == 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = backend_on(port.listen(), |_| Response::new(full("woke up")));
    let (status, headers, _) = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert_eq!(
        (status, &headers["x-keda-http-cold-start"]),
        (StatusCode::OK, &"true".parse::<http::HeaderValue>().unwrap())
    );
    // Without a client context the interceptor starts the trace, and the backend is told.
    let sent = b.seen()[0].headers["traceparent"].to_str().unwrap().to_owned();
    let trace_id = sent.split('-').nth(1).unwrap().to_owned();

    let span = span_of(&collector, &trace_id).await;
    assert!(span.parent_span_id.is_empty(), "a root span: {span:?}");
    assert_eq!(span.attributes["keda.cold_start"], true);
    let waited = span.attributes["keda.cold_start.wait_seconds"].as_f64().unwrap();
    assert!(waited >= 0.3, "held at least 300 ms, the span says {waited}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_answer_prometheus_text_to_a_plain_scrape_and_openmetrics_when_asked() {
    let b = named_backend("app").await;
    let h = interceptor(&route_to(b.addr)).await;
    let _ = get(h.proxy(), "app.local", "/").await;
    let addr = h.running.metrics_addr.unwrap();
    let scrape = |accept: Option<&'static str>| async move {
        let mut req = request(addr, "metrics", "/metrics");
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        send(req.body(Full::default()).unwrap()).await
    };
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (status, headers, body) = scrape(accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers["content-type"], "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
            "Accept: {accept:?}"
        );
        assert!(body.contains("# TYPE interceptor_request_count_total counter\n"), "{body}");
        assert!(!body.contains("# EOF"), "{body}");
    }
    let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
    let (_, headers, body) = scrape(Some(prometheus)).await;
    assert_eq!(headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.contains("# TYPE interceptor_request_count counter\n") && body.ends_with("# EOF\n"), "{body}");
    h.stop().await;
}

/// Upstream's values and the standard ones are checked before anything starts: a bad one stops start-up (exit
/// 64) naming the variable, instead of tracing that silently does nothing.
#[test]
fn a_bad_otel_setting_stops_start_up_naming_it() {
    let bin = env!("CARGO_BIN_EXE_interceptor");
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "zipkin"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENABLED", "yes please"),
    ] {
        let out = std::process::Command::new(bin).env(var, value).args(["--config", "x.yaml"]).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}
