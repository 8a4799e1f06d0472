//! The watches' effect, fed event by event: no API server, a paused clock.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::json;

use super::*;
use crate::gates::Gates;
use crate::placeholder::BodySource;
use crate::readiness::ReadinessSource;
use crate::routes::{Defaults, Unresolvable};

fn setup() -> (Arc<Cluster>, Arc<Routes>, Follower) {
    let gates = Arc::new(Gates::default());
    let cluster = Arc::new(Cluster::new(gates.clone(), Duration::from_secs(300), false));
    let defaults = Defaults {
        readiness_timeout: Duration::ZERO,
        request_timeout: Duration::ZERO,
        response_header_timeout: Duration::ZERO,
        max_pending: 100,
    };
    let routes = Arc::new(Routes::new(defaults, cluster.clone(), cluster.clone(), gates));
    let follower = Follower::new(cluster.clone(), routes.clone());
    (cluster, routes, follower)
}

fn obj<K: DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn httpso(name: &str, host: &str) -> HTTPScaledObject {
    obj(json!({"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [host], "scaleTargetRef": {"name": name, "service": name, "port": 80}}}))
}

fn ir(name: &str, host: &str, port: serde_json::Value) -> InterceptorRoute {
    let mut target = json!({"service": name});
    target.as_object_mut().unwrap().extend(port.as_object().unwrap().clone());
    obj(json!({"apiVersion": "http.keda.sh/v1beta1", "kind": "InterceptorRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"target": target, "rules": [{"hosts": [host]}], "scalingMetric": {"concurrency": {"targetValue": 1}}}}))
}

fn slice(svc: &str, ready: bool) -> EndpointSlice {
    obj(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("{svc}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}],
        "ports": [{"name": "http", "port": 8080}]}))
}

fn service(name: &str, app_protocol: Option<&str>) -> Service {
    obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 8080, "appProtocol": app_protocol}]}}))
}

/// Every watch lists an empty cluster.
fn list_empty(f: &mut Follower) {
    let now = Instant::now();
    for event in [
        ClusterEvent::HttpScaledObjects(Ok(Event::Init)),
        ClusterEvent::HttpScaledObjects(Ok(Event::InitDone)),
        ClusterEvent::InterceptorRoutes(Ok(Event::Init)),
        ClusterEvent::InterceptorRoutes(Ok(Event::InitDone)),
        ClusterEvent::EndpointSlices(Ok(Event::Init)),
        ClusterEvent::EndpointSlices(Ok(Event::InitDone)),
        ClusterEvent::Services(Ok(Event::Init)),
        ClusterEvent::Services(Ok(Event::InitDone)),
        ClusterEvent::ConfigMaps(Ok(Event::Init)),
        ClusterEvent::ConfigMaps(Ok(Event::InitDone)),
    ] {
        f.handle(event, now);
    }
}

fn found(routes: &Routes, host: &str) -> Option<String> {
    routes.table().lookup(host, "/", &http::HeaderMap::new()).map(|r| r.route.key.to_string())
}

#[tokio::test(start_paused = true)]
async fn routes_follow_the_objects_and_an_interceptor_route_wins() {
    let (cluster, routes, mut f) = setup();
    let now = Instant::now();
    f.handle(ClusterEvent::HttpScaledObjects(Ok(Event::Apply(httpso("app", "app.local")))), now);
    assert_eq!(found(&routes, "app.local").as_deref(), Some("default/app"), "applied before the first full list");
    assert!(!cluster.current() || !routes.ready(), "not ready before every watch listed once");
    list_empty(&mut f);
    assert_eq!(found(&routes, "app.local"), None, "the re-list says it is gone");
    assert!(routes.ready());

    f.handle(ClusterEvent::HttpScaledObjects(Ok(Event::Apply(httpso("app", "app.local")))), now);
    f.handle(ClusterEvent::InterceptorRoutes(Ok(Event::Apply(ir("app", "ir.local", json!({"port": 80}))))), now);
    assert_eq!((found(&routes, "app.local"), found(&routes, "ir.local").as_deref()), (None, Some("default/app")));
    f.handle(ClusterEvent::InterceptorRoutes(Ok(Event::Delete(ir("app", "ir.local", json!({"port": 80}))))), now);
    assert_eq!(found(&routes, "app.local").as_deref(), Some("default/app"), "the HTTPScaledObject is back");
    f.handle(ClusterEvent::HttpScaledObjects(Ok(Event::Delete(httpso("app", "app.local")))), now);
    assert!(routes.table().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_held_request_is_released_by_the_slice_event_not_a_poll() {
    let (_cluster, routes, mut f) = setup();
    list_empty(&mut f);
    let now = Instant::now();
    f.handle(ClusterEvent::HttpScaledObjects(Ok(Event::Apply(httpso("app", "app.local")))), now);
    let gate = routes.table().routes().next().unwrap().gate.clone();
    let held = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.wait_open().await })
    };
    f.handle(ClusterEvent::EndpointSlices(Ok(Event::Apply(slice("app", false)))), now);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!held.is_finished(), "held while no endpoint is ready");
    f.handle(ClusterEvent::EndpointSlices(Ok(Event::Apply(slice("app", true)))), Instant::now());
    held.await.unwrap().unwrap();
    assert!(gate.is_open());
    f.handle(ClusterEvent::EndpointSlices(Ok(Event::Delete(slice("app", true)))), Instant::now());
    assert!(!gate.is_open(), "closed when the slice goes");
}

#[tokio::test(start_paused = true)]
async fn a_port_name_resolves_once_its_service_is_known_and_h2c_comes_from_app_protocol() {
    let (_cluster, routes, mut f) = setup();
    list_empty(&mut f);
    let now = Instant::now();
    f.handle(
        ClusterEvent::InterceptorRoutes(Ok(Event::Apply(ir("app", "ir.local", json!({"portName": "http"}))))),
        now,
    );
    let upstream = |routes: &Routes| routes.table().routes().next().unwrap().upstream.clone();
    assert!(matches!(upstream(&routes), Err(Unresolvable::Service(_))), "answered 500 until the Service is known");
    f.handle(ClusterEvent::Services(Ok(Event::Apply(service("app", Some("kubernetes.io/h2c"))))), now);
    let up = upstream(&routes).unwrap();
    assert_eq!((up.authority.as_str(), up.h2c), ("app.default:8080", true), "re-resolved on the Service event");
}

#[tokio::test(start_paused = true)]
async fn the_cluster_turns_stale_when_a_watch_fails_for_longer_than_the_bound() {
    let (cluster, _routes, mut f) = setup();
    list_empty(&mut f);
    assert!(cluster.current());
    f.handle(ClusterEvent::Services(Err(watcher::Error::NoResourceVersion)), Instant::now());
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert!(cluster.current(), "within the staleness bound the last state serves");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!cluster.current(), "stale");
    f.handle(ClusterEvent::Services(Ok(Event::Apply(service("app", None)))), Instant::now());
    assert!(cluster.current(), "recovered");
}

#[tokio::test(start_paused = true)]
async fn placeholder_bodies_follow_labelled_config_maps() {
    let (cluster, _routes, mut f) = setup();
    list_empty(&mut f);
    let cm = |labelled: bool| -> ConfigMap {
        let labels = if labelled { json!({BODY_LABEL: "true"}) } else { json!({}) };
        obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "page", "namespace": "default", "labels": labels},
            "data": {"index.html": "<h1>Warming up</h1>"}}))
    };
    let now = Instant::now();
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::Apply(cm(false)))), now);
    assert!(cluster.config_map("default", "page").is_none(), "unlabelled: ignored even if the selector was not");
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::Apply(cm(true)))), now);
    assert_eq!(cluster.config_map("default", "page").unwrap()["index.html"], "<h1>Warming up</h1>");
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::Apply(cm(false)))), now);
    assert!(cluster.config_map("default", "page").is_none(), "the label was removed");
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::Init)), now);
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::InitApply(cm(true)))), now);
    f.handle(ClusterEvent::ConfigMaps(Ok(Event::InitDone)), now);
    assert!(cluster.config_map("default", "page").is_some(), "a re-list replaces the bodies");
}
