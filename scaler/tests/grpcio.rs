//! KEDA's side of the wire from another gRPC implementation: Python `grpcio`, with stubs generated from the
//! project's `.proto` by `grpcio-tools`, calls IsActive, GetMetricSpec, GetMetrics and reads StreamIsActive
//! as KEDA does. Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use httpscale_testkit::process::peers_python;
use httpscale_testkit::scaler::{metric_values, scaler, send_held, so_ref};
use httpscale_testkit::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_grpcio_client_reads_the_scaler_like_keda() {
    let (repo, python) = (repo(), peers_python());
    let dead = Reserved::new();
    let i =
        interceptor(&format!("routes:\n  - {{name: app, hosts: [app.local], upstream: '{}'}}\n", dead.addr())).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| c.tick = Duration::from_millis(100)).await;
    let _held: Vec<_> = (0..2).map(|_| send_held(i.proxy(), "app.local")).collect();
    let client = s.client().await;
    let r = so_ref("app", "default", &[("httpScaledObject", "app")]);
    eventually(Duration::from_secs(3), "held requests counted", || {
        let (mut c, r) = (client.clone(), r.clone());
        async move { metric_values(&mut c, &r).await[0].metric_value_float == 2.0 }
    })
    .await;

    let gen_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(python)
        .arg(repo.join("tests/peers/keda_scaler_client.py"))
        .args(["--addr", &s.running.grpc_addr.to_string(), "--name", "app", "--namespace", "default"])
        .args(["-m", "httpScaledObject=app", "-m", "scalerAddress=keda-add-ons-http-external-scaler.keda:9090"])
        .args(["--stream-count", "3"])
        .env("EXTERNALSCALER_PROTO", repo.join("scaler/proto/externalscaler.proto"))
        .env("EXTERNALSCALER_GEN_DIR", gen_dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "grpcio client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let calls: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by = |name: &str| calls.iter().filter(|c| c["call"] == name).collect::<Vec<_>>();
    assert_eq!(by("IsActive")[0]["response"]["result"], true);
    let spec = &by("GetMetricSpec")[0]["response"]["metricSpecs"][0];
    assert_eq!(spec["metricName"], "http-default_002Fapp");
    assert_eq!(spec["targetSize"], "100", "int64 travels as a JSON string");
    assert_eq!(spec["targetSizeFloat"], 100.0);
    let value = &by("GetMetrics")[0]["response"]["metricValues"][0];
    assert_eq!((value["metricValue"].as_str(), value["metricValueFloat"].as_f64()), (Some("2"), Some(2.0)));
    let stream = by("StreamIsActive");
    assert_eq!(stream.len(), 3);
    assert!(stream.iter().all(|m| m["response"]["result"] == true));
    s.stop().await;
    i.stop().await;
}
