//! Kubernetes mode: where the interceptors are and what the routes say, from the cluster.
//!
//! - [`EndpointSlices`] is the [`Discovery`] source: it watches the EndpointSlices of the interceptor admin
//!   Service (`KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE` in `KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE`) and publishes
//!   `ip:KEDA_HTTP_SCALER_TARGET_ADMIN_PORT` of every ready endpoint, so the collector follows the interceptor
//!   fleet as it scales up and down (reference §4.4 step 1, but watched instead of listed every tick).
//! - [`watch_routes`] keeps [`State::specs`] current from every HTTPScaledObject and InterceptorRoute in the
//!   cluster (an InterceptorRoute wins over an HTTPScaledObject of the same namespace and name).
//!
//! What to do with an event is pure ([`interceptor_addresses`], [`SliceSet`], [`RouteSpecs`]) and unit-tested
//! here; events become steps the way the interceptor's do ([`httpscale_core::watch::Follow`]), and the watch
//! loops only move events in and results out. A watch error is logged and retried with kube's default
//! back-off (0.8 s doubling to 30 s); until the watch recovers the last known state stays in force.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use httpscale_core::Shutdown;
use httpscale_core::index::{RouteSource, RouteStore, Unroutable, ready_ips, socket_address};
use httpscale_core::route::Scaling;
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use httpscale_core::watch::{Follow, Step};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::discovery::Discovery;
use crate::state::State;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The interceptor admin Service and the admin port on each interceptor pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminService {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

impl AdminService {
    fn owns(&self, slice: &EndpointSlice) -> bool {
        slice.metadata.namespace.as_deref() == Some(self.namespace.as_str())
            && slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(self.name.as_str())
    }
}

/// The interceptor admin addresses in `slices`: of every slice belonging to `svc` (its namespace and its
/// `kubernetes.io/service-name` label; others are ignored, as kmock and some proxies ignore label selectors),
/// the first address of every ready endpoint (`conditions.ready` absent or true, as upstream), with `svc.port`.
/// Duplicates are removed.
pub fn interceptor_addresses<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    svc: &AdminService,
) -> BTreeSet<String> {
    slices.into_iter().filter(|s| svc.owns(s)).flat_map(ready_ips).map(|ip| socket_address(ip, svc.port)).collect()
}

/// The EndpointSlices seen so far, by name, and the addresses they give.
#[derive(Debug)]
pub struct SliceSet {
    svc: AdminService,
    slices: BTreeMap<String, EndpointSlice>,
}

impl SliceSet {
    pub fn new(svc: AdminService) -> Self {
        Self { svc, slices: BTreeMap::new() }
    }

    pub fn step(&mut self, step: Step<EndpointSlice>) {
        match step {
            Step::Apply(s) => {
                self.slices.insert(s.name_any(), s);
            }
            Step::Delete(s) => {
                self.slices.remove(&s.name_any());
            }
            Step::Relist(all) => self.slices = all.into_iter().map(|s| (s.name_any(), s)).collect(),
        }
    }

    pub fn addresses(&self) -> BTreeSet<String> {
        interceptor_addresses(self.slices.values(), &self.svc)
    }
}

/// Route specs from HTTPScaledObjects and InterceptorRoutes.
#[derive(Debug, Default)]
pub struct RouteSpecs {
    store: RouteStore,
}

impl RouteSpecs {
    /// Applies one step of a watch of `K`; returns whether an effective route changed and the specs that
    /// cannot route.
    pub fn step<K: RouteSource>(&mut self, step: Step<K>) -> (bool, Vec<Unroutable>) {
        let applied = self.store.step(step);
        (!applied.changes.is_empty(), applied.unroutable)
    }

    /// The scaling spec of every effective route, by `<namespace>/<name>`.
    pub fn specs(&self) -> HashMap<String, Scaling> {
        self.store.routes().into_iter().map(|r| (r.key.to_string(), r.scaling)).collect()
    }
}

/// The interceptor fleet, from the admin Service's EndpointSlices.
pub struct EndpointSlices(Arc<watch::Sender<BTreeSet<String>>>);

impl EndpointSlices {
    /// Starts watching; the set is empty until the first list arrives.
    pub fn start(client: Client, svc: AdminService, stop: Shutdown) -> Self {
        let tx = Arc::new(watch::Sender::new(BTreeSet::new()));
        tokio::spawn(watch_slices(client, svc, tx.clone(), stop));
        Self(tx)
    }
}

impl Discovery for EndpointSlices {
    fn interceptors(&self) -> watch::Receiver<BTreeSet<String>> {
        self.0.subscribe()
    }
}

async fn watch_slices(client: Client, svc: AdminService, tx: Arc<watch::Sender<BTreeSet<String>>>, stop: Shutdown) {
    let api: Api<EndpointSlice> = Api::namespaced(client, &svc.namespace);
    let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", svc.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut follow = Follow::new("the interceptor admin EndpointSlices", Arc::default());
    let mut slices = SliceSet::new(svc.clone());
    tracing::info!(namespace = %svc.namespace, service = %svc.name, port = svc.port, "discovering interceptors from EndpointSlices");
    loop {
        let item = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return },
            _ = stop.triggered() => return,
        };
        let Some(step) = follow.feed(item, Instant::now()) else { continue };
        slices.step(step);
        let addrs = slices.addresses();
        tx.send_if_modified(|current| {
            if *current == addrs {
                return false;
            }
            tracing::info!(interceptors = ?addrs, "interceptor fleet changed");
            *current = addrs;
            true
        });
    }
}

/// Keeps `state.specs` current from every HTTPScaledObject and InterceptorRoute in the cluster until `stop`.
pub async fn watch_routes(client: Client, state: Arc<State>, stop: Shutdown) {
    let mut httpsos =
        watcher(Api::<HTTPScaledObject>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let mut irs = watcher(Api::<InterceptorRoute>::all(client), watcher::Config::default()).default_backoff().boxed();
    let mut httpso_follow = Follow::new("HTTPScaledObjects", Arc::default());
    let mut ir_follow = Follow::new("InterceptorRoutes", Arc::default());
    let mut routes = RouteSpecs::default();
    loop {
        let (changed, unroutable) = tokio::select! {
            Some(item) = httpsos.next() => match httpso_follow.feed(item, Instant::now()) {
                Some(step) => routes.step(step),
                None => continue,
            },
            Some(item) = irs.next() => match ir_follow.feed(item, Instant::now()) {
                Some(step) => routes.step(step),
                None => continue,
            },
            _ = stop.triggered() => return,
            else => return,
        };
        for u in unroutable {
            tracing::warn!(object = %format!("{} {}", u.kind, u.key), reason = %u.error, "route spec cannot route; the scaler ignores it");
        }
        if changed {
            let specs = routes.specs();
            if **state.specs.load() != specs {
                tracing::info!(routes = specs.len(), "route specs updated");
                state.specs.store(Arc::new(specs));
                state.bump();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn svc() -> AdminService {
        AdminService { namespace: "keda".into(), name: "keda-add-ons-http-interceptor-admin".into(), port: 9090 }
    }

    fn slice(name: &str, ns: &str, service: &str, family: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": family,
            "metadata": {"name": name, "namespace": ns, "labels": {SERVICE_NAME_LABEL: service}},
            "endpoints": endpoints,
            "ports": [{"name": "admin", "port": 8000, "protocol": "TCP"}]
        }))
        .unwrap()
    }

    fn ours(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
        slice(name, "keda", "keda-add-ons-http-interceptor-admin", "IPv4", endpoints)
    }

    fn set(addrs: &[&str]) -> BTreeSet<String> {
        addrs.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn ready_endpoints_become_admin_addresses_with_the_configured_port() {
        let s = ours(
            "admin-1",
            serde_json::json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]},
                {"addresses": ["10.0.0.4"], "conditions": {}},
                {"addresses": ["10.0.0.5", "10.0.0.6"], "conditions": {"ready": true, "serving": true}},
                {"addresses": [], "conditions": {"ready": true}},
            ]),
        );
        assert_eq!(
            interceptor_addresses([&s], &svc()),
            set(&["10.0.0.1:9090", "10.0.0.3:9090", "10.0.0.4:9090", "10.0.0.5:9090"]),
            "ready true or absent; the first address only; the slice's own port is not the admin port"
        );
    }

    #[test]
    fn duplicates_across_slices_are_removed() {
        let a = ours("admin-1", serde_json::json!([{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.1"]}]));
        let b = ours("admin-2", serde_json::json!([{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]));
        assert_eq!(interceptor_addresses([&a, &b], &svc()), set(&["10.0.0.1:9090", "10.0.0.2:9090"]));
    }

    #[test]
    fn other_services_and_namespaces_are_ignored() {
        let ep = serde_json::json!([{"addresses": ["10.0.0.9"]}]);
        let proxy = slice("proxy-1", "keda", "keda-add-ons-http-interceptor-proxy", "IPv4", ep.clone());
        let elsewhere = slice("admin-1", "other", "keda-add-ons-http-interceptor-admin", "IPv4", ep.clone());
        let mut unlabelled = ours("admin-2", ep);
        unlabelled.metadata.labels = None;
        assert!(interceptor_addresses([&proxy, &elsewhere, &unlabelled], &svc()).is_empty());
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let s = slice(
            "admin-v6",
            "keda",
            "keda-add-ons-http-interceptor-admin",
            "IPv6",
            serde_json::json!([{"addresses": ["fd00::1"]}, {"addresses": ["fd00::2"], "conditions": {"ready": false}}]),
        );
        assert_eq!(interceptor_addresses([&s], &svc()), set(&["[fd00::1]:9090"]));
    }

    #[test]
    fn a_relist_is_one_step_and_replaces_what_was_known() {
        let mut init = httpscale_core::watch::InitBuffer::default();
        let mut slices = SliceSet::new(svc());
        let a = ours("admin-1", serde_json::json!([{"addresses": ["10.0.0.1"]}]));
        let b = ours("admin-2", serde_json::json!([{"addresses": ["10.0.0.2"]}]));
        slices.step(init.step(Event::Apply(a.clone())).unwrap());
        assert_eq!(slices.addresses(), set(&["10.0.0.1:9090"]));
        assert_eq!(init.step(Event::InitDone), None, "no Init: not taken for an empty list");
        assert_eq!(init.step(Event::Init), None);
        assert_eq!(init.step(Event::InitApply(b.clone())), None, "buffered until InitDone");
        let step = init.step(Event::InitDone).unwrap();
        assert_eq!(step, Step::Relist(vec![b.clone()]));
        slices.step(step);
        assert_eq!(slices.addresses(), set(&["10.0.0.2:9090"]), "admin-1 vanished while the watch was down");
        let mut not_ready = b.clone();
        not_ready.endpoints[0].conditions = Some(Default::default());
        not_ready.endpoints[0].conditions.as_mut().unwrap().ready = Some(false);
        slices.step(init.step(Event::Apply(not_ready)).unwrap());
        assert!(slices.addresses().is_empty(), "scale-down");
        slices.step(init.step(Event::Apply(b.clone())).unwrap());
        slices.step(init.step(Event::Delete(b)).unwrap());
        assert!(slices.addresses().is_empty());
        init.step(Event::Init);
        assert_eq!(init.step(Event::InitDone), Some(Step::Relist(vec![])), "an empty re-list is a real answer");
    }

    fn httpso(name: &str, scaling: &str) -> HTTPScaledObject {
        serde_yaml::from_str(&format!(
            "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  hosts: [{name}.local]\n  scaleTargetRef: {{name: {name}, service: {name}, port: 8080}}\n{scaling}"
        ))
        .unwrap()
    }

    fn ir(name: &str, target: u32) -> InterceptorRoute {
        serde_yaml::from_str(&format!(
            "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  target: {{service: {name}, port: 80}}\n  rules: [{{hosts: [{name}.local]}}]\n  scalingMetric: {{concurrency: {{targetValue: {target}}}}}\n"
        ))
        .unwrap()
    }

    fn concurrency_target(r: &RouteSpecs, key: &str) -> Option<f64> {
        r.specs().get(key).map(|s| s.concurrency_target.unwrap_or(s.fallback_target))
    }

    #[test]
    fn route_specs_follow_applies_deletes_and_relists() {
        let mut r = RouteSpecs::default();
        let (changed, bad) = r.step(Step::Apply(httpso("app", "  targetPendingRequests: 5\n")));
        assert!(changed && bad.is_empty());
        assert_eq!(concurrency_target(&r, "ns/app"), Some(5.0));
        let (changed, _) = r.step(Step::Apply(httpso("app", "  scalingMetric: {concurrency: {targetValue: 3}}\n")));
        assert!(changed);
        assert_eq!(concurrency_target(&r, "ns/app"), Some(3.0));
        assert!(!r.step(Step::Apply(httpso("app", "  scalingMetric: {concurrency: {targetValue: 3}}\n"))).0);

        let (changed, _) = r.step(Step::Apply(ir("app", 9)));
        assert!(changed);
        assert_eq!(concurrency_target(&r, "ns/app"), Some(9.0), "the InterceptorRoute wins");
        assert!(r.step(Step::Delete(ir("app", 9))).0);
        assert_eq!(concurrency_target(&r, "ns/app"), Some(3.0), "the HTTPScaledObject is back");

        let (changed, _) = r.step(Step::Relist(vec![httpso("new", "")]));
        assert!(changed);
        assert_eq!(r.specs().keys().collect::<Vec<_>>(), vec!["ns/new"], "ns/app was deleted while the watch was down");
        assert_eq!(concurrency_target(&r, "ns/new"), Some(100.0), "upstream's default target");
        assert!(r.step(Step::Delete(httpso("new", ""))).0);
        assert!(r.specs().is_empty());
    }

    #[test]
    fn a_spec_that_cannot_route_is_dropped_and_named() {
        let mut r = RouteSpecs::default();
        r.step(Step::Apply(httpso("app", "")));
        let both = "  scalingMetric: {concurrency: {targetValue: 3}, requestRate: {targetValue: 7}}\n";
        let (changed, bad) = r.step(Step::Apply(httpso("app", both)));
        assert!(changed, "the route goes");
        assert!(r.specs().is_empty());
        assert_eq!(bad.len(), 1);
        let said = bad[0].to_string();
        assert!(said.starts_with("HTTPScaledObject ns/app: spec.scalingMetric: "), "{said}");
        let (_, bad) = r.step(Step::Relist(vec![httpso("app", both), httpso("ok", "")]));
        assert_eq!(bad.iter().map(|u| u.key.to_string()).collect::<Vec<_>>(), vec!["ns/app"]);
        assert_eq!(r.specs().len(), 1);
    }
}
