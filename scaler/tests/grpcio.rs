//! KEDA's side of the wire from another gRPC implementation: Python `grpcio`, with stubs generated from the
//! project's `.proto` by `grpcio-tools`, calls IsActive, GetMetricSpec, GetMetrics and reads StreamIsActive
//! as KEDA does; and, with `grpcio-reflection` and no proto file, discovers the services through server
//! reflection as `grpcurl list` does. Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
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

/// Without the proto: grpcio-reflection lists the services and resolves the scaler's by symbol, over both
/// reflection versions (v1alpha through its descriptor database, v1 raw); an unknown symbol is NOT_FOUND.
#[tokio::test(flavor = "multi_thread")]
async fn a_grpcio_reflection_client_discovers_the_services_without_the_proto() {
    let (repo, python) = (repo(), peers_python());
    let dead = Reserved::new();
    let i =
        interceptor(&format!("routes:\n  - {{name: app, hosts: [app.local], upstream: '{}'}}\n", dead.addr())).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |_| {}).await;
    let out = tokio::process::Command::new(python)
        .arg(repo.join("tests/peers/reflection_client.py"))
        .args(["--addr", &s.running.grpc_addr.to_string(), "--symbol", "externalscaler.ExternalScaler"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reflection client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let versions: Vec<&str> = answers.iter().map(|a| a["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["v1alpha", "v1"]);
    for a in &answers {
        let services: Vec<&str> = a["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        for wanted in ["externalscaler.ExternalScaler", "grpc.health.v1.Health"] {
            assert!(services.contains(&wanted), "{} lists {services:?}, not {wanted}", a["version"]);
        }
        let own = format!("grpc.reflection.{}.ServerReflection", a["version"].as_str().unwrap());
        assert!(services.contains(&own.as_str()), "{} lists {services:?}, not {own}", a["version"]);
        assert_eq!(a["file"], "externalscaler.proto");
        let methods = a["methods"].as_array().unwrap();
        for m in ["IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics", "StreamMetricSpec"] {
            assert!(methods.contains(&serde_json::json!(m)), "{} resolves {methods:?}, not {m}", a["version"]);
        }
    }
    let unknown = &answers[1]["unknown_symbol"];
    assert_eq!(unknown["code"], "NOT_FOUND", "{unknown}");
    assert!(unknown["details"].as_str().unwrap().contains("externalscaler.ExternalScalerDoesNotExist"), "{unknown}");
    s.stop().await;
    i.stop().await;
}
