//! Kubernetes mode end to end: the interceptor (in-process) against kmock's in-memory API server, with real
//! backends on loopback addresses. Routes and readiness come only from watched objects.
//! Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Response, StatusCode};
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use httpscale_testkit::interceptor::in_cluster;
use httpscale_testkit::*;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// kmock serving what Kubernetes mode watches.
fn kmock() -> (Kmock, kube::Client) {
    let kmock = Kmock::start(&[
        "http.keda.sh/v1alpha1/httpscaledobjects=HTTPScaledObject",
        "http.keda.sh/v1beta1/interceptorroutes=InterceptorRoute",
        "discovery.k8s.io/v1/endpointslices=EndpointSlice",
        "v1/services=Service",
        "v1/configmaps=ConfigMap",
    ]);
    let client = kmock.client();
    (kmock, client)
}

async fn start(client: kube::Client, direct: bool) -> Harness {
    in_cluster(client, |c| c.direct_pod_routing = direct).await
}

fn service(name: &str) -> Service {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .unwrap()
}

fn slice(name: &str, svc: &str, endpoints: &[(&str, bool)], port: u16) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": endpoints.iter().map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}})).collect::<Vec<_>>(),
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]
    }))
    .unwrap()
}

fn httpso(name: &str, host: &str) -> HTTPScaledObject {
    serde_yaml::from_str(&format!(
        "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{host}]\n  scaleTargetRef: {{name: {name}, service: {name}, port: 80}}\n"
    ))
    .unwrap()
}

async fn ready(admin: SocketAddr) -> bool {
    get(admin, "admin", "/readyz").await.0 == StatusCode::OK
}

/// Routing details the real-cluster suite does not reach: an InterceptorRoute wins over an HTTPScaledObject of
/// the same name, its `portName` resolves through the Service, and a deleted route is 404 at once. (Held until
/// the EndpointSlice turns ready, then released with `X-KEDA-HTTP-Cold-Start: true`: the e2e `tutorial`, on a
/// real API server.)
#[tokio::test(flavor = "multi_thread")]
async fn a_same_named_interceptor_route_wins_port_names_resolve_and_deleted_routes_are_404() {
    let (_apiserver, client) = kmock();
    let backend_port = Reserved::new();
    let backend_addr = backend_port.addr();
    let h = start(client.clone(), true).await;
    let (proxy, admin) = (h.proxy(), h.admin());
    eventually(Duration::from_secs(10), "first full sync", || ready(admin)).await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let httpsos: Api<HTTPScaledObject> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &service("app")).await.unwrap();
    slices
        .create(&PostParams::default(), &slice("app-1", "app", &[("127.0.0.1", true)], backend_addr.port()))
        .await
        .unwrap();
    let _backend = backend_on(backend_port.listen(), |_| Response::new(full("from the pod")));
    httpsos.create(&PostParams::default(), &httpso("app", "app.local")).await.unwrap();
    eventually(Duration::from_secs(10), "route from the HTTPScaledObject", || async {
        get(proxy, "app.local", "/").await.2 == "from the pod"
    })
    .await;

    // An InterceptorRoute of the same name wins over the HTTPScaledObject.
    let irs: Api<InterceptorRoute> = Api::namespaced(client.clone(), "default");
    let ir: InterceptorRoute = serde_yaml::from_str(
        "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {name: app, namespace: default}\nspec:\n  target: {service: app, portName: http}\n  rules: [{hosts: [ir.local]}]\n  scalingMetric: {concurrency: {targetValue: 10}}\n",
    )
    .unwrap();
    irs.create(&PostParams::default(), &ir).await.unwrap();
    eventually(Duration::from_secs(5), "IR wins", || async {
        get(proxy, "app.local", "/").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(get(proxy, "ir.local", "/").await.2, "from the pod", "portName resolved through the Service");
    irs.delete("app", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(5), "HTTPSO back", || async {
        get(proxy, "app.local", "/").await.0 == StatusCode::OK
    })
    .await;

    // Deleting the route: 404, never forwarded.
    httpsos.delete("app", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(5), "route gone", || async {
        get(proxy, "app.local", "/").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(queue(admin).await.get("default/app").is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_pod_routing_shares_load_by_in_flight_count_and_skips_a_dead_pod() {
    let (_apiserver, client) = kmock();
    // Two pods on two loopback addresses with the same port; a third address is held with nothing listening.
    let first = Reserved::new();
    let port = first.port();
    let on = |ip: [u8; 4]| Reserved::on(SocketAddr::from((ip, port)));
    let (second, dead) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    let a = backend_on(first.listen(), |_| delayed(300, "a"));
    let b = backend_on(second.listen(), |_| delayed(300, "b"));
    let h = start(client.clone(), true).await;
    let (proxy, admin) = (h.proxy(), h.admin());
    eventually(Duration::from_secs(10), "first full sync", || ready(admin)).await;
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &service("pods"))
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .create(&PostParams::default(), &slice("pods-1", "pods", &[("127.0.0.1", true), ("127.0.0.2", true)], port))
        .await
        .unwrap();
    Api::<HTTPScaledObject>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &httpso("pods", "pods.local"))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "route", || async { queue(admin).await.get("default/pods").is_some() }).await;
    eventually(Duration::from_secs(5), "warm", || async { get(proxy, "pods.local", "/").await.0 == StatusCode::OK })
        .await;
    let (before_a, before_b) = (a.seen().len(), b.seen().len());

    let burst: Vec<_> = (0..10).map(|_| tokio::spawn(async move { get(proxy, "pods.local", "/").await })).collect();
    for r in burst {
        assert_eq!(r.await.unwrap().0, StatusCode::OK);
    }
    let (na, nb) = (a.seen().len() - before_a, b.seen().len() - before_b);
    assert_eq!(na + nb, 10);
    assert!(na.abs_diff(nb) <= 1, "by in-flight count, not at random: a={na} b={nb}");

    // A dead pod in the slice: connections to it are refused and retried on the others at once.
    slices
        .replace(
            "pods-1",
            &PostParams::default(),
            &slice("pods-1", "pods", &[("127.0.0.1", true), ("127.0.0.2", true), ("127.0.0.3", true)], port),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst: Vec<_> = (0..9).map(|_| tokio::spawn(async move { get(proxy, "pods.local", "/").await })).collect();
    for r in burst {
        let (status, _, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(!h.metrics().await.contains("code=\"502\""));
    h.stop().await;
    drop(dead);
}

#[tokio::test(flavor = "multi_thread")]
async fn placeholder_bodies_come_from_labelled_config_maps() {
    let (_apiserver, client) = kmock();
    let h = start(client.clone(), false).await;
    let (proxy, admin) = (h.proxy(), h.admin());
    eventually(Duration::from_secs(10), "first full sync", || ready(admin)).await;
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "page", "namespace": "default", "labels": {"http.keda.sh/response-body": "true"}},
        "data": {"index.html": "<h1>Warming up</h1>", "status.json": "{\"ready\":false}", "loading": "<html><p>soon"}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &cm).await.unwrap();
    let ir: InterceptorRoute = serde_yaml::from_str(
        "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {name: web, namespace: default}\nspec:\n  target: {service: web, port: 80}\n  rules: [{hosts: [web.local]}]\n  scalingMetric: {concurrency: {targetValue: 10}}\n  coldStart:\n    placeholder: {response: {statusCode: 503, bodyFromConfigMap: {name: page}}}\n",
    )
    .unwrap();
    let irs: Api<InterceptorRoute> = Api::namespaced(client.clone(), "default");
    irs.create(&PostParams::default(), &ir).await.unwrap();
    eventually(Duration::from_secs(10), "route", || async { queue(admin).await.get("default/web").is_some() }).await;
    eventually(Duration::from_secs(5), "ConfigMap seen", || async {
        get(proxy, "web.local", "/").await.2.contains("Warming up")
    })
    .await;
    let (status, headers, body) = get(proxy, "web.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "<h1>Warming up</h1>"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8", "inferred from the key");
    let (_, headers, body) = get(proxy, "web.local", "/status.json").await;
    assert_eq!(body, "{\"ready\":false}");
    assert_eq!(headers["content-type"], "application/json");
    // A key without an extension Go knows is sniffed, as upstream's Go server does (not a download).
    let (_, headers, body) = get(proxy, "web.local", "/loading").await;
    assert_eq!(body, "<html><p>soon");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let (_, headers, body) = get(proxy, "web.local", "/missing.txt").await;
    assert_eq!(body, "", "a missing path-derived key is an empty body");
    assert!(headers.get("content-type").is_none(), "and gets no Content-Type, as in Go");
    // An explicit key that does not exist is a 500.
    irs.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"coldStart": {"placeholder": {"response": {"bodyFromConfigMap": {"name": "page", "key": "nope.html"}}}}}})))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "500 for a missing explicit key", || async {
        get(proxy, "web.local", "/").await.0 == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    h.stop().await;
}

/// An InterceptorRoute per model (httpscale's `rules[].models` extension), all on one host: each request goes
/// to the Service of the model its body names, each model is counted on its own, and `/v1/models` lists both.
#[tokio::test(flavor = "multi_thread")]
async fn interceptor_routes_match_on_the_model_a_request_names() {
    let (_apiserver, client) = kmock();
    let h = start(client.clone(), true).await; // direct pod routing: the endpoints are loopback addresses
    let (proxy, admin) = (h.proxy(), h.admin());
    eventually(Duration::from_secs(10), "first full sync", || ready(admin)).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let irs: Api<InterceptorRoute> = Api::namespaced(client.clone(), "default");
    let mut backends = Vec::new();
    for (name, models) in [("llama", "['llama3:8b', 'llama3.1*']"), ("qwen", "['qwen2.5:7b']")] {
        let port = Reserved::new();
        let addr = port.addr();
        backends.push(backend_on(port.listen(), move |_| Response::new(full(format!("from {name}")))));
        services.create(&PostParams::default(), &service(name)).await.unwrap();
        let slice = slice(&format!("{name}-1"), name, &[("127.0.0.1", true)], addr.port());
        slices.create(&PostParams::default(), &slice).await.unwrap();
        let ir: InterceptorRoute = serde_yaml::from_str(&format!(
            "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  target: {{service: {name}, portName: http}}\n  rules: [{{hosts: [models.local], models: {models}}}]\n  scalingMetric: {{concurrency: {{targetValue: 1}}}}\n"
        ))
        .unwrap();
        irs.create(&PostParams::default(), &ir).await.unwrap();
    }
    eventually(Duration::from_secs(10), "both routes", || async {
        let q = queue(admin).await;
        q.get("default/llama").is_some() && q.get("default/qwen").is_some()
    })
    .await;
    let chat = |model: &str| {
        let body = format!(r#"{{"model": "{model}", "messages": []}}"#);
        let req = request(proxy, "models.local", "/v1/chat/completions").method("POST");
        send(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap())
    };
    assert_eq!(chat("llama3.1:70b").await.2, "from llama", "a prefix pattern");
    assert_eq!(chat("qwen2.5:7b").await.2, "from qwen");
    assert_eq!(chat("qwen2.5:7b").await.2, "from qwen");
    assert_eq!(chat("mistral").await.0, StatusCode::NOT_FOUND);
    let (_, _, list) = get(proxy, "models.local", "/v1/models").await;
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&list).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["llama3:8b", "qwen2.5:7b"], "exact names only");
    let q = queue(admin).await;
    assert_eq!(
        (q["default/llama"]["RequestCount"].as_i64(), q["default/qwen"]["RequestCount"].as_i64()),
        (Some(1), Some(2))
    );
    h.stop().await;
}
