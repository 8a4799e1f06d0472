//! Kubernetes mode end to end: the real scaler, started in-process against kmock's in-memory Kubernetes API
//! server, finds a real interceptor through the EndpointSlice of the interceptor admin Service and takes its
//! route specs from HTTPScaledObjects and InterceptorRoutes; it follows the slice as the interceptor turns
//! not ready and ready again (a scripted slice sequence), and follows edits and deletions of the route objects.
//! What the real control plane covers is not repeated here (docs/testing.md, "Where kmock stays"): activation
//! through KEDA (e2e `tutorial`, `activation`), two interceptors summed (`two-interceptors`), StreamMetricSpec
//! pushing an InterceptorRoute edit to KEDA (`ownership`), answering from the last known state while the API
//! server is down (`apiserver-restart`).
//! Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use httpscale_scaler::kubernetes::AdminService;
use httpscale_scaler::proto::externalscaler::ScaledObjectRef;
use httpscale_testkit::process::Spawned;
use httpscale_testkit::scaler::{Scaler, in_cluster, metric_values, send_held, so_ref};
use httpscale_testkit::*;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tonic::Code;

const ADMIN_SERVICE: &str = "keda-add-ons-http-interceptor-admin";

/// kmock serving what the scaler watches, and a client for it.
fn kmock() -> (Kmock, kube::Client) {
    let kmock = Kmock::start(&[
        "discovery.k8s.io/v1/endpointslices=EndpointSlice",
        "http.keda.sh/v1alpha1/httpscaledobjects=HTTPScaledObject",
        "http.keda.sh/v1beta1/interceptorroutes=InterceptorRoute",
    ]);
    let client = kmock.client();
    (kmock, client)
}

fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "keda", "labels": {"kubernetes.io/service-name": service}},
        "endpoints": endpoints,
        "ports": [{"name": "admin", "port": 9090, "protocol": "TCP"}]
    }))
    .unwrap()
}

fn one_endpoint(ready: bool) -> serde_json::Value {
    serde_json::json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}])
}

fn httpso(name: &str, target: u32) -> HTTPScaledObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [format!("{name}.local")],
            "scaleTargetRef": {"name": name, "service": name, "port": 8080},
            "scalingMetric": {"concurrency": {"targetValue": target}}
        }
    }))
    .unwrap()
}

fn httpso_ref(name: &str) -> ScaledObjectRef {
    so_ref(name, "default", &[("httpScaledObject", name), ("scalerAddress", "unused:9090")])
}

/// Starts the scaler in Kubernetes mode against `client`, discovering interceptors whose admin port is `port`.
async fn k8s_scaler(client: &kube::Client, admin_port: u16) -> Scaler {
    let svc = AdminService { namespace: "keda".into(), name: ADMIN_SERVICE.into(), port: admin_port };
    in_cluster(client.clone(), &svc, |c| c.tick = Duration::from_millis(100)).await
}

/// The HTTPScaledObject trigger's target, or the gRPC code when it has none.
async fn target_of(s: &Scaler, name: &str) -> Result<f64, Code> {
    let mut c = s.client().await;
    match c.get_metric_spec(httpso_ref(name)).await {
        Ok(r) => Ok(r.into_inner().metric_specs[0].target_size_float),
        Err(e) => Err(e.code()),
    }
}

async fn value_of(s: &Scaler, name: &str) -> f64 {
    metric_values(&mut s.client().await, &httpso_ref(name)).await[0].metric_value_float
}

/// `scaler_pinger_fetch_duration_seconds_count` from the scaler's `/metrics`.
async fn fetches(s: &Scaler) -> u64 {
    let text = s.metrics().await;
    let line = text.lines().find(|l| l.starts_with("scaler_pinger_fetch_duration_seconds_count")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scaler_finds_interceptors_and_route_specs_in_the_cluster() {
    let (_apiserver, client) = kmock();
    let dead = Reserved::new();
    let i =
        interceptor(&format!("routes:\n  - {{name: app, hosts: [app.local], upstream: '{}'}}\n", dead.addr())).await;
    let pp = PostParams::default();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "keda");
    slices.create(&pp, &slice("admin-abc", ADMIN_SERVICE, one_endpoint(true))).await.unwrap();
    // Another Service's slice in the same namespace: kmock ignores label selectors, so the scaler must filter.
    slices
        .create(
            &pp,
            &slice(
                "proxy-abc",
                "keda-add-ons-http-interceptor-proxy",
                serde_json::json!([{"addresses": ["127.0.0.9"]}]),
            ),
        )
        .await
        .unwrap();
    let httpsos: Api<HTTPScaledObject> = Api::namespaced(client.clone(), "default");
    httpsos.create(&pp, &httpso("app", 5)).await.unwrap();

    let s = k8s_scaler(&client, i.admin().port()).await;
    eventually(Duration::from_secs(10), "the HTTPScaledObject's spec", || async {
        target_of(&s, "app").await == Ok(5.0)
    })
    .await;
    eventually(Duration::from_secs(10), "the interceptor found through its EndpointSlice", || async {
        s.running.state.metrics.push_updates.get() > 0
    })
    .await;
    // A push can arrive before the first polling round has set the gauge.
    eventually(Duration::from_secs(10), "the first polling round", || async {
        s.running.state.metrics.endpoints.get() > 0
    })
    .await;
    assert_eq!(s.running.state.metrics.endpoints.get(), 1, "only the admin Service's endpoint is followed");

    // Activation: a request held at the interceptor reaches an open StreamIsActive.
    let mut grpc = s.client().await;
    let mut stream = grpc.stream_is_active(httpso_ref("app")).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(!first.result, "idle at first");
    let sent = tokio::time::Instant::now();
    let _held = send_held(i.proxy(), "app.local");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("true arrives")
            .unwrap()
            .unwrap();
        if msg.result {
            break;
        }
    }
    eprintln!("kubernetes mode: request held -> StreamIsActive true in {:?}", sent.elapsed());
    assert_eq!(value_of(&s, "app").await, 1.0);

    // An edit of the HTTPScaledObject changes the metric spec.
    httpsos
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scalingMetric": {"concurrency": {"targetValue": 3}}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the edited target", || async { target_of(&s, "app").await == Ok(3.0) }).await;

    // InterceptorRoutes are watched too.
    let irs: Api<InterceptorRoute> = Api::namespaced(client.clone(), "default");
    let ir: InterceptorRoute = serde_json::from_value(serde_json::json!({
        "apiVersion": "http.keda.sh/v1beta1", "kind": "InterceptorRoute",
        "metadata": {"name": "ir", "namespace": "default"},
        "spec": {
            "target": {"service": "ir", "port": 80},
            "rules": [{"hosts": ["ir.local"]}],
            "scalingMetric": {"concurrency": {"targetValue": 4}, "requestRate": {"targetValue": 10}}
        }
    }))
    .unwrap();
    irs.create(&pp, &ir).await.unwrap();
    let ir_ref = so_ref("ir-so", "default", &[("interceptorRoute", "ir")]);
    eventually(Duration::from_secs(5), "the InterceptorRoute's metrics", || {
        let (mut c, r) = (grpc.clone(), ir_ref.clone());
        async move {
            c.get_metric_spec(r).await.is_ok_and(|resp| {
                let specs = resp.into_inner().metric_specs;
                specs.iter().map(|m| (m.metric_name.clone(), m.target_size_float)).collect::<Vec<_>>()
                    == vec![("http_ir_concurrency".to_string(), 4.0), ("http_ir_rate".to_string(), 10.0)]
            })
        }
    })
    .await;

    // Scale-down: the endpoint turns not ready; the interceptor is dropped, its counts with it.
    let slice_patch = |ready| Patch::Merge(serde_json::json!({"endpoints": one_endpoint(ready)}));
    slices.patch("admin-abc", &PatchParams::default(), &slice_patch(false)).await.unwrap();
    eventually(Duration::from_secs(5), "the not-ready interceptor dropped", || async {
        s.running.state.metrics.endpoints.get() == 0 && value_of(&s, "app").await == 0.0
    })
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let m = stream.message().await.unwrap().unwrap();
            if !m.result {
                return m;
            }
        }
    })
    .await
    .expect("StreamIsActive turns false");
    assert!(!msg.result);
    let (f, p) = (fetches(&s).await, s.running.state.metrics.push_updates.get());
    tokio::time::sleep(Duration::from_millis(1500)).await; // 15 ticks, and the interceptor streams every second
    assert_eq!(fetches(&s).await, f, "no /queue fetch after the interceptor left");
    assert_eq!(s.running.state.metrics.push_updates.get(), p, "its count stream is closed");

    // Scale-up: ready again, followed again.
    slices.patch("admin-abc", &PatchParams::default(), &slice_patch(true)).await.unwrap();
    eventually(Duration::from_secs(5), "the interceptor back", || async { value_of(&s, "app").await == 1.0 }).await;
    assert!(fetches(&s).await > f);

    // The slice deleted: gone again.
    slices.delete("admin-abc", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(5), "the interceptor gone with its slice", || async {
        s.running.state.metrics.endpoints.get() == 0 && value_of(&s, "app").await == 0.0
    })
    .await;

    // The HTTPScaledObject deleted: its trigger is unknown.
    httpsos.delete("app", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(5), "NOT_FOUND once deleted", || async {
        target_of(&s, "app").await == Err(Code::NotFound)
    })
    .await;
    let e = grpc.is_active(httpso_ref("app")).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "HTTPScaledObject default/app not found"));
    s.stop().await;
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_switches_to_kubernetes_mode_on_upstreams_settings() {
    let (apiserver, client) = kmock();
    let pp = PostParams::default();
    Api::<HTTPScaledObject>::namespaced(client.clone(), "default").create(&pp, &httpso("app", 7)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = apiserver.kubeconfig(dir.path(), None);
    // The chart's settings, with no routes file and an empty interceptor list: Kubernetes mode. The gRPC port
    // is picked by the OS and read from the start-up line.
    let scaler = |kubeconfig: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_scaler"));
        c.env("KUBECONFIG", kubeconfig)
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("HTTPSCALE_CONFIG")
            .env("HTTPSCALE_INTERCEPTORS", "")
            .env("KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE", "keda")
            .env("KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE", ADMIN_SERVICE)
            .env("KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT", "keda-add-ons-http-interceptor")
            .env("KEDA_HTTP_SCALER_TARGET_ADMIN_PORT", "9090")
            .env("KEDA_HTTP_SCALER_PORT", "0")
            .env("HTTPSCALE_BIND_ADDRESS", "127.0.0.1")
            .env("HTTPSCALE_LOG_FORMAT", "json")
            .env("OTEL_PROM_EXPORTER_ENABLED", "false");
        c
    };
    let mut running = Spawned::start(&mut scaler(&kubeconfig));
    let grpc = running.wait_for("scaler listening", Duration::from_secs(20))["grpc"].as_str().unwrap().to_owned();
    let r = httpso_ref("app");
    eventually(Duration::from_secs(20), "the binary answers from the cluster's HTTPScaledObject", || {
        let (r, grpc) = (r.clone(), grpc.clone());
        async move {
            let Ok(mut c) =
                httpscale_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient::connect(
                    format!("http://{grpc}"),
                )
                .await
            else {
                return false;
            };
            c.get_metric_spec(r).await.is_ok_and(|resp| resp.into_inner().metric_specs[0].target_size_float == 7.0)
        }
    })
    .await;

    // Without a reachable cluster configuration it refuses to start (exit 1, not a configuration error).
    let out = scaler(&dir.path().join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot configure the Kubernetes client"));
}
