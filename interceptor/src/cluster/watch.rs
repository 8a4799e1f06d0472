//! The five watches of Kubernetes mode, and what each event does. [`watches`] merges the kube-runtime
//! watchers into one stream of [`ClusterEvent`]s, each named by what it watches; a [`Follower`] turns them
//! into state through [`httpscale_core::watch::Follow`] (re-lists, failures, sync) and the pure indexes of
//! [`httpscale_core::index`], then publishes: routes to the routing table one change at a time, endpoints and
//! bodies to the [`Cluster`] snapshots, readiness to the gates. [`run`] moves events in until shutdown; tests
//! feed a [`Follower`] events directly.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use httpscale_core::Shutdown;
use httpscale_core::index::{Change, EndpointIndex, RouteSource, RouteStore, ServiceIndex, ServiceKey};
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use httpscale_core::watch::{Follow, Step, api};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;

use super::{BodyMaps, Cluster};
use crate::placeholder::BODY_LABEL;
use crate::routes::Routes;

type Item<K> = Result<Event<K>, watcher::Error>;

/// One item of one of the watches.
#[derive(Debug)]
pub enum ClusterEvent {
    HttpScaledObjects(Item<HTTPScaledObject>),
    InterceptorRoutes(Item<InterceptorRoute>),
    EndpointSlices(Item<EndpointSlice>),
    Services(Item<Service>),
    /// Only ConfigMaps labelled [`BODY_LABEL`]`=true`.
    ConfigMaps(Item<ConfigMap>),
}

fn watch<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    named: fn(Item<K>) -> ClusterEvent,
) -> futures_util::stream::BoxStream<'static, ClusterEvent>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, config).default_backoff().map(named).boxed()
}

/// Every watch of Kubernetes mode (in `namespace`, or all), merged.
pub fn watches(
    client: &kube::Client,
    namespace: Option<&str>,
) -> impl Stream<Item = ClusterEvent> + Send + Unpin + use<> {
    let all = watcher::Config::default;
    let bodies = watcher::Config::default().labels(&format!("{BODY_LABEL}=true"));
    futures_util::stream::select_all([
        watch(api::<HTTPScaledObject>(client, namespace), all(), ClusterEvent::HttpScaledObjects),
        watch(api::<InterceptorRoute>(client, namespace), all(), ClusterEvent::InterceptorRoutes),
        watch(api::<EndpointSlice>(client, namespace), all(), ClusterEvent::EndpointSlices),
        watch(api::<Service>(client, namespace), all(), ClusterEvent::Services),
        watch(api::<ConfigMap>(client, namespace), bodies, ClusterEvent::ConfigMaps),
    ])
}

/// Follows `events` until `stop` fires or they end.
pub async fn run(mut follower: Follower, mut events: impl Stream<Item = ClusterEvent> + Unpin, stop: Shutdown) {
    loop {
        let event = tokio::select! {
            next = events.next() => match next { Some(e) => e, None => return },
            _ = stop.triggered() => return,
        };
        follower.handle(event, Instant::now());
    }
}

/// Turns watch events into state (see the module docs).
pub struct Follower {
    cluster: Arc<Cluster>,
    routes: Arc<Routes>,
    store: RouteStore,
    http_scaled_objects: Follow<HTTPScaledObject>,
    interceptor_routes: Follow<InterceptorRoute>,
    endpoint_slices: Follow<EndpointSlice>,
    services: Follow<Service>,
    config_maps: Follow<ConfigMap>,
}

impl Follower {
    pub fn new(cluster: Arc<Cluster>, routes: Arc<Routes>) -> Self {
        let w = &cluster.watches;
        Self {
            http_scaled_objects: Follow::new("HTTPScaledObjects", w.http_scaled_objects.clone()),
            interceptor_routes: Follow::new("InterceptorRoutes", w.interceptor_routes.clone()),
            endpoint_slices: Follow::new("EndpointSlices", w.endpoint_slices.clone()),
            services: Follow::new("Services", w.services.clone()),
            config_maps: Follow::new("ConfigMaps", w.config_maps.clone()),
            store: RouteStore::default(),
            cluster,
            routes,
        }
    }

    /// Applies one event seen at `now`.
    pub fn handle(&mut self, event: ClusterEvent, now: Instant) {
        let changes = match event {
            ClusterEvent::HttpScaledObjects(item) => {
                route_changes(&mut self.store, &mut self.http_scaled_objects, item, now)
            }
            ClusterEvent::InterceptorRoutes(item) => {
                route_changes(&mut self.store, &mut self.interceptor_routes, item, now)
            }
            ClusterEvent::EndpointSlices(item) => {
                if let Some(step) = self.endpoint_slices.feed(item, now) {
                    self.slice_step(step);
                }
                Vec::new()
            }
            ClusterEvent::Services(item) => {
                let step = self.services.feed(item, now);
                step.map(|s| self.service_step(s)).unwrap_or_default()
            }
            ClusterEvent::ConfigMaps(item) => {
                if let Some(step) = self.config_maps.feed(item, now) {
                    self.config_map_step(step);
                }
                Vec::new()
            }
        };
        for change in changes {
            match change {
                Change::Upsert(route) => {
                    let key = route.key.clone();
                    self.routes.upsert(*route);
                    tracing::info!(route = %key, "route applied");
                }
                Change::Remove(key) => {
                    self.routes.remove(&key);
                    tracing::info!(route = %key, "route removed");
                }
            }
        }
        if self.cluster.watches.synced() {
            self.routes.mark_loaded();
        }
    }

    fn slice_step(&mut self, step: Step<EndpointSlice>) {
        let mut index = EndpointIndex::clone(&self.cluster.endpoints.load());
        let touched: Vec<ServiceKey> = match step {
            Step::Apply(s) => index.apply(&s).into_iter().collect(),
            Step::Delete(s) => index.delete(&s).into_iter().collect(),
            Step::Relist(all) => index.reset(&all).into_iter().collect(),
        };
        if !touched.is_empty() {
            self.cluster.publish_endpoints(index);
            touched.iter().for_each(|svc| self.cluster.set_gates(svc));
        }
    }

    /// Port names and h2c may have changed for routes targeting the touched Services: those are re-applied.
    fn service_step(&mut self, step: Step<Service>) -> Vec<Change> {
        let mut index = ServiceIndex::clone(&self.cluster.services.load());
        let touched: Vec<ServiceKey> = match step {
            Step::Apply(s) => index.apply(&s).into_iter().collect(),
            Step::Delete(s) => index.delete(&s).into_iter().collect(),
            Step::Relist(all) => index.reset(&all).into_iter().collect(),
        };
        if touched.is_empty() {
            return Vec::new();
        }
        self.cluster.services.store(Arc::new(index));
        self.store
            .routes()
            .into_iter()
            .filter(|r| {
                std::iter::once(&r.target)
                    .chain(r.fallback.iter())
                    .filter_map(ServiceKey::of)
                    .any(|s| touched.contains(&s))
            })
            .map(|r| Change::Upsert(Box::new(r)))
            .collect()
    }

    fn config_map_step(&mut self, step: Step<ConfigMap>) {
        let mut bodies = BodyMaps::clone(&self.cluster.bodies.load());
        match step {
            Step::Apply(c) if labelled(&c) => {
                bodies.insert(config_map_key(&c), Arc::new(c.data.unwrap_or_default()));
            }
            Step::Apply(c) | Step::Delete(c) => {
                bodies.remove(&config_map_key(&c));
            }
            Step::Relist(all) => {
                bodies = all
                    .into_iter()
                    .filter(labelled)
                    .map(|c| (config_map_key(&c), Arc::new(c.data.unwrap_or_default())))
                    .collect();
            }
        }
        self.cluster.bodies.store(Arc::new(bodies));
    }
}

/// What one item of a watch of route objects changes in the effective routes.
fn route_changes<K: RouteSource>(
    store: &mut RouteStore,
    follow: &mut Follow<K>,
    item: Item<K>,
    now: Instant,
) -> Vec<Change> {
    let Some(step) = follow.feed(item, now) else { return Vec::new() };
    let applied = store.step(step);
    for u in &applied.unroutable {
        tracing::warn!(route = %u.key, kind = u.kind, cause = %u.error, "object cannot route; its route is removed");
    }
    applied.changes
}

/// The watch's label selector is not honoured everywhere (some emulators ignore it): check again.
fn labelled(c: &ConfigMap) -> bool {
    c.labels().get(BODY_LABEL).is_some_and(|v| v == "true")
}

fn config_map_key(c: &ConfigMap) -> (String, String) {
    (c.namespace().unwrap_or_default(), c.name_any())
}

#[cfg(test)]
mod tests;
