//! Kubernetes mode: the interceptor learns everything from watches. Routes come from HTTPScaledObjects and
//! InterceptorRoutes (an InterceptorRoute wins over an HTTPScaledObject of the same name) and are applied to
//! the routing table one change at a time; readiness comes from EndpointSlices, and a held request is released
//! on the slice event, not a poll; Services give `portName` numbers and `appProtocol: kubernetes.io/h2c`;
//! ConfigMaps labelled `http.keda.sh/response-body=true` give placeholder bodies.
//!
//! `/readyz` is true only after every watch has completed its first full list, and turns false if any watch
//! has been failing for longer than the staleness bound; meanwhile the last table keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use http::uri::Authority;
use httpscale_core::Shutdown;
use httpscale_core::cluster::{Change, EndpointIndex, RouteStore, ServiceIndex, ServiceKey};
use httpscale_core::gate::Gate;
use httpscale_core::route::Target;
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::pods::PodRouter;
use crate::readiness::{ReadinessSource, Tracked};
use crate::routes::{Resolve, Routes, Upstream};

/// The label a ConfigMap needs to serve placeholder bodies.
pub const BODY_LABEL: &str = "http.keda.sh/response-body";

/// Labelled ConfigMaps' data by (namespace, name).
pub type Bodies = HashMap<(String, String), BTreeMap<String, String>>;

const WATCHES: usize = 5;

/// What the data path reads from the cluster, lock-free, plus the gates it drives.
pub struct Cluster {
    services: ArcSwap<ServiceIndex>,
    endpoints: ArcSwap<EndpointIndex>,
    pub bodies: ArcSwap<Bodies>,
    gates: Mutex<HashMap<ServiceKey, Vec<Arc<Gate>>>>,
    synced: [AtomicBool; WATCHES],
    failing_since: Mutex<[Option<Instant>; WATCHES]>,
    max_staleness: Duration,
    pub pods: Option<Arc<PodRouter>>,
}

impl Cluster {
    pub fn new(max_staleness: Duration, direct_pod_routing: bool) -> Self {
        Self {
            services: ArcSwap::default(),
            endpoints: ArcSwap::default(),
            bodies: ArcSwap::default(),
            gates: Mutex::new(HashMap::new()),
            synced: Default::default(),
            failing_since: Mutex::new([None; WATCHES]),
            max_staleness,
            pods: direct_pod_routing.then(|| Arc::new(PodRouter::default())),
        }
    }

    /// Ready: every watch has listed once, and none has been failing for longer than the bound.
    pub fn ready(&self) -> bool {
        let synced = self.synced.iter().all(|s| s.load(Ordering::Acquire));
        let failing = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        synced && failing.iter().flatten().all(|since| since.elapsed() <= self.max_staleness)
    }

    fn set_gates(&self, svc: &ServiceKey) {
        let endpoints = self.endpoints.load();
        let ready = endpoints.ready(svc);
        let count = endpoints.ready_count(svc);
        if let Some(gates) = self.gates.lock().unwrap_or_else(|p| p.into_inner()).get(svc) {
            for g in gates {
                g.set_endpoints(count);
                if g.set_open(ready) {
                    tracing::info!(service = %format!("{}/{}", svc.namespace, svc.name), ready, "service readiness changed");
                }
            }
        }
    }

    fn publish_endpoints(&self, index: EndpointIndex) {
        if let Some(pods) = &self.pods {
            let addresses: Vec<String> = {
                let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
                gates.keys().flat_map(|svc| index.all_ready_addresses(svc)).collect()
            };
            pods.update(index.clone(), addresses);
        }
        self.endpoints.store(Arc::new(index));
    }
}

impl Resolve for Cluster {
    fn resolve(&self, target: &Target, h2c: bool) -> Result<Upstream, String> {
        let (authority, port_name, service_h2c) = self.services.load().resolve(target)?;
        let authority = authority.parse::<Authority>().map_err(|e| format!("{authority}: {e}"))?;
        Ok(Upstream { authority, h2c: h2c || service_h2c, service: ServiceKey::of(target).map(|s| (s, port_name)) })
    }
}

impl ReadinessSource for Cluster {
    fn track(&self, targets: Vec<Tracked>) {
        let mut by_service: HashMap<ServiceKey, Vec<Arc<Gate>>> = HashMap::new();
        for t in targets {
            if let Some(svc) = ServiceKey::of(&t.target) {
                by_service.entry(svc).or_default().push(t.gate);
            }
        }
        let services: Vec<ServiceKey> = by_service.keys().cloned().collect();
        *self.gates.lock().unwrap_or_else(|p| p.into_inner()) = by_service;
        for svc in &services {
            self.set_gates(svc);
        }
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

enum Watched {
    Httpso(Event<HTTPScaledObject>),
    Ir(Event<InterceptorRoute>),
    Slice(Event<EndpointSlice>),
    Service(Event<Service>),
    ConfigMap(Event<ConfigMap>),
}

type Item = (usize, Result<Watched, watcher::Error>);

fn watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    index: usize,
    wrap: F,
) -> std::pin::Pin<Box<dyn Stream<Item = Item> + Send>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(Event<K>) -> Watched + Send + 'static,
{
    Box::pin(watcher::watcher(api, config).default_backoff().map(move |r| (index, r.map(&wrap))))
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Buffers of objects seen during a re-list, by watch.
#[derive(Default)]
struct Relist {
    httpso: Vec<HTTPScaledObject>,
    ir: Vec<InterceptorRoute>,
    slices: Vec<EndpointSlice>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
}

/// Follows the cluster until `stop` fires.
pub async fn run(
    cluster: Arc<Cluster>,
    client: kube::Client,
    namespace: Option<String>,
    routes: Arc<Routes>,
    stop: Shutdown,
) {
    let ns = namespace.as_deref();
    let bodies_cfg = watcher::Config::default().labels(&format!("{BODY_LABEL}=true"));
    let mut events = futures_util::stream::select_all([
        watch(api::<HTTPScaledObject>(&client, ns), watcher::Config::default(), 0, Watched::Httpso),
        watch(api::<InterceptorRoute>(&client, ns), watcher::Config::default(), 1, Watched::Ir),
        watch(api::<EndpointSlice>(&client, ns), watcher::Config::default(), 2, Watched::Slice),
        watch(api::<Service>(&client, ns), watcher::Config::default(), 3, Watched::Service),
        watch(api::<ConfigMap>(&client, ns), bodies_cfg, 4, Watched::ConfigMap),
    ]);
    let mut store = RouteStore::default();
    let mut relist = Relist::default();
    loop {
        let (index, item) = tokio::select! {
            next = events.next() => match next { Some(n) => n, None => return },
            _ = stop.triggered() => return,
        };
        let event = match item {
            Ok(e) => {
                cluster.failing_since.lock().unwrap_or_else(|p| p.into_inner())[index] = None;
                e
            }
            Err(e) => {
                let mut failing = cluster.failing_since.lock().unwrap_or_else(|p| p.into_inner());
                if failing[index].is_none() {
                    tracing::warn!(cause = %e, "a cluster watch failed; serving the last known routes while it retries");
                    failing[index] = Some(Instant::now());
                }
                continue;
            }
        };
        let mut changes: Vec<Change> = Vec::new();
        match event {
            Watched::Httpso(e) => match e {
                Event::Apply(o) => changes.extend(log_invalid(&o, store.apply_httpso(&o))),
                Event::Delete(o) => changes.extend(store.delete_httpso(&key(&o))),
                Event::Init => relist.httpso.clear(),
                Event::InitApply(o) => relist.httpso.push(o),
                Event::InitDone => {
                    let (c, errors) = store.relist_httpso(&std::mem::take(&mut relist.httpso));
                    errors
                        .iter()
                        .for_each(|(k, e)| tracing::warn!(route = %k, cause = %e, "HTTPScaledObject cannot route"));
                    changes.extend(c);
                    cluster.synced[0].store(true, Ordering::Release);
                }
            },
            Watched::Ir(e) => match e {
                Event::Apply(o) => changes.extend(log_invalid(&o, store.apply_ir(&o))),
                Event::Delete(o) => changes.extend(store.delete_ir(&key(&o))),
                Event::Init => relist.ir.clear(),
                Event::InitApply(o) => relist.ir.push(o),
                Event::InitDone => {
                    let (c, errors) = store.relist_ir(&std::mem::take(&mut relist.ir));
                    errors
                        .iter()
                        .for_each(|(k, e)| tracing::warn!(route = %k, cause = %e, "InterceptorRoute cannot route"));
                    changes.extend(c);
                    cluster.synced[1].store(true, Ordering::Release);
                }
            },
            Watched::Slice(e) => {
                let mut index = EndpointIndex::clone(&cluster.endpoints.load());
                let touched: Vec<ServiceKey> = match e {
                    Event::Apply(s) => index.apply(&s).into_iter().collect(),
                    Event::Delete(s) => index.delete(&s).into_iter().collect(),
                    Event::Init => {
                        relist.slices.clear();
                        Vec::new()
                    }
                    Event::InitApply(s) => {
                        relist.slices.push(s);
                        Vec::new()
                    }
                    Event::InitDone => {
                        cluster.synced[2].store(true, Ordering::Release);
                        index.reset(&std::mem::take(&mut relist.slices)).into_iter().collect()
                    }
                };
                if !touched.is_empty() {
                    cluster.publish_endpoints(index);
                    touched.iter().for_each(|svc| cluster.set_gates(svc));
                }
            }
            Watched::Service(e) => {
                let mut index = ServiceIndex::clone(&cluster.services.load());
                let touched: Vec<ServiceKey> = match e {
                    Event::Apply(s) => index.apply(&s).into_iter().collect(),
                    Event::Delete(s) => index.delete(&s).into_iter().collect(),
                    Event::Init => {
                        relist.services.clear();
                        Vec::new()
                    }
                    Event::InitApply(s) => {
                        relist.services.push(s);
                        Vec::new()
                    }
                    Event::InitDone => {
                        cluster.synced[3].store(true, Ordering::Release);
                        index.reset(&std::mem::take(&mut relist.services)).into_iter().collect()
                    }
                };
                if !touched.is_empty() {
                    cluster.services.store(Arc::new(index));
                    // Port names and h2c may have changed for routes targeting these Services.
                    for r in store.routes() {
                        let targets_touched = std::iter::once(&r.target)
                            .chain(r.fallback.iter())
                            .filter_map(ServiceKey::of)
                            .any(|s| touched.contains(&s));
                        if targets_touched {
                            changes.push(Change::Upsert(Box::new(r)));
                        }
                    }
                }
            }
            Watched::ConfigMap(e) => {
                let mut bodies = Bodies::clone(&cluster.bodies.load());
                match e {
                    Event::Apply(c) if labelled(&c) => {
                        bodies.insert(cm_key(&c), c.data.unwrap_or_default());
                    }
                    Event::Apply(c) | Event::Delete(c) => {
                        bodies.remove(&cm_key(&c));
                    }
                    Event::Init => relist.config_maps.clear(),
                    Event::InitApply(c) => relist.config_maps.push(c),
                    Event::InitDone => {
                        bodies = std::mem::take(&mut relist.config_maps)
                            .into_iter()
                            .filter(labelled)
                            .map(|c| (cm_key(&c), c.data.unwrap_or_default()))
                            .collect();
                        cluster.synced[4].store(true, Ordering::Release);
                    }
                }
                cluster.bodies.store(Arc::new(bodies));
            }
        }
        for change in changes {
            match change {
                Change::Upsert(route) => {
                    let key = route.key.clone();
                    routes.upsert(*route);
                    tracing::info!(route = %key, "route applied");
                }
                Change::Remove(key) => {
                    routes.remove(&key);
                    tracing::info!(route = %key, "route removed");
                }
            }
        }
        if cluster.synced.iter().all(|s| s.load(Ordering::Acquire)) {
            routes.mark_loaded();
        }
    }
}

fn key<K: ResourceExt>(o: &K) -> httpscale_core::route::RouteKey {
    httpscale_core::route::RouteKey::new(o.namespace().unwrap_or_default(), o.name_any())
}

fn log_invalid<K: ResourceExt>(
    o: &K,
    (change, error): (Option<Change>, Option<httpscale_core::route::RouteError>),
) -> Option<Change> {
    if let Some(e) = error {
        tracing::warn!(route = %key(o), cause = %e, "object cannot route; its route is removed");
    }
    change
}

/// The watch's label selector is not honoured everywhere (some emulators ignore it): check again.
fn labelled(c: &ConfigMap) -> bool {
    c.labels().get(BODY_LABEL).is_some_and(|v| v == "true")
}

fn cm_key(c: &ConfigMap) -> (String, String) {
    (c.namespace().unwrap_or_default(), c.name_any())
}
