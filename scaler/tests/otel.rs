//! The scaler's OpenTelemetry against the real OpenTelemetry Collector (testkit's `otelcol`): a server span
//! per gRPC call, continuing the caller's W3C trace from the call's metadata, with the method and the gRPC
//! status; its metrics over OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use httpscale_core::otel::TraceProtocol;
use httpscale_testkit::otelcol::{Collector, ReceivedSpan};
use httpscale_testkit::scaler::{scaler, so_ref};
use httpscale_testkit::*;
use tonic::Request;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn span_named(collector: &Collector, name: &str) -> ReceivedSpan {
    collector.span("keda-http-external-scaler", |s| s.name == name).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grpc_call_gets_a_span_continuing_the_callers_trace_and_metrics_arrive() {
    let collector = Collector::start();
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n  - name: app\n    hosts: [app.local]\n    upstream: '{}'\n", dead.addr()))
        .await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| {
        collector.export_to(&mut c.otel, TraceProtocol::Grpc);
    })
    .await;
    let mut client = s.client().await;
    let app = so_ref("app", "default", &[("httpScaledObject", "app")]);
    let mut call = Request::new(app.clone());
    call.metadata_mut().insert("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01").parse().unwrap());
    client.get_metric_spec(call).await.unwrap();
    let _ = client.is_active(so_ref("gone", "default", &[("httpScaledObject", "gone")])).await.unwrap_err();

    let spec = span_named(&collector, "externalscaler.ExternalScaler/GetMetricSpec").await;
    assert_eq!((spec.trace_id.as_str(), spec.parent_span_id.as_str()), (TRACE, CALLER_SPAN), "{spec:?}");
    assert_eq!(spec.kind, 2, "a SERVER span");
    assert_eq!(spec.attributes["rpc.system"], "grpc");
    assert_eq!(spec.attributes["rpc.method"], "GetMetricSpec");
    assert_eq!(spec.attributes["rpc.grpc.status_code"], 0);
    let failed = span_named(&collector, "externalscaler.ExternalScaler/IsActive").await;
    assert_eq!(failed.attributes["rpc.grpc.status_code"], 5, "NOT_FOUND: {failed:?}");
    assert_eq!(failed.status, 2, "an error span");

    collector.wait_metrics("keda-http-external-scaler", &["scaler.pinger.fetch.duration"]).await;
    s.stop().await;
    i.stop().await;
}
