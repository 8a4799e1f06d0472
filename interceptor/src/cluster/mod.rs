//! Kubernetes mode: the interceptor learns everything from watches ([`watch`]). Routes come from
//! HTTPScaledObjects and InterceptorRoutes and are applied to the routing table one change at a time;
//! readiness comes from EndpointSlices, and a held request is released on the slice event, not a poll;
//! Services give `portName` numbers and `appProtocol: kubernetes.io/h2c`; ConfigMaps labelled
//! `http.keda.sh/response-body=true` give placeholder bodies; with direct pod routing, [`pods`] picks pods.
//!
//! [`Cluster`] is what the watches know, as snapshots the data path reads without locks: it resolves targets,
//! serves ConfigMap bodies, and is the readiness source (the gates it opens are [`Gates`]'). It is current
//! (`/readyz`) once every watch has listed once and while none has been failing for longer than the staleness
//! bound; meanwhile the last table keeps serving.

pub mod pods;
pub mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use httpscale_core::index::{EndpointIndex, ServiceIndex, ServiceKey};
use httpscale_core::route::Target;
use httpscale_core::watch::Health;

use crate::gates::Gates;
use crate::placeholder::{BodySource, ConfigMapData};
use crate::readiness::{ReadinessSource, Tracked};
use crate::routes::{Resolve, Scheme, Unresolvable, Upstream, authority};
use pods::PodRouter;

/// Labelled ConfigMaps' data by (namespace, name).
pub type BodyMaps = HashMap<(String, String), ConfigMapData>;

/// The health of each watch, by name.
#[derive(Debug, Default)]
pub struct Watches {
    pub http_scaled_objects: Arc<Health>,
    pub interceptor_routes: Arc<Health>,
    pub endpoint_slices: Arc<Health>,
    pub services: Arc<Health>,
    pub config_maps: Arc<Health>,
}

impl Watches {
    fn all(&self) -> [&Health; 5] {
        [&self.http_scaled_objects, &self.interceptor_routes, &self.endpoint_slices, &self.services, &self.config_maps]
    }

    /// Every watch has listed once.
    pub fn synced(&self) -> bool {
        self.all().iter().all(|h| h.synced())
    }
}

/// What the data path reads from the cluster, lock-free, plus the gates it drives.
pub struct Cluster {
    services: ArcSwap<ServiceIndex>,
    endpoints: ArcSwap<EndpointIndex>,
    bodies: ArcSwap<BodyMaps>,
    gates: Arc<Gates>,
    pub watches: Watches,
    max_staleness: Duration,
    pub pods: Option<Arc<PodRouter>>,
}

impl Cluster {
    pub fn new(gates: Arc<Gates>, max_staleness: Duration, direct_pod_routing: bool) -> Self {
        Self {
            services: ArcSwap::default(),
            endpoints: ArcSwap::default(),
            bodies: ArcSwap::default(),
            gates,
            watches: Watches::default(),
            max_staleness,
            pods: direct_pod_routing.then(|| Arc::new(PodRouter::default())),
        }
    }

    /// Opens or closes the gates of the Service's targets from its ready endpoints.
    fn set_gates(&self, svc: &ServiceKey) {
        let endpoints = self.endpoints.load();
        let (ready, count) = (endpoints.ready(svc), endpoints.ready_count(svc));
        for g in self.gates.of_service(svc) {
            g.set_endpoints(count);
            if g.set_open(ready) {
                tracing::info!(service = %format!("{}/{}", svc.namespace, svc.name), ready, "service readiness changed");
            }
        }
    }

    fn publish_endpoints(&self, index: EndpointIndex) {
        if let Some(pods) = &self.pods {
            let addresses: Vec<String> =
                self.gates.services().iter().flat_map(|svc| index.all_ready_addresses(svc)).collect();
            pods.update(index.clone(), addresses);
        }
        self.endpoints.store(Arc::new(index));
    }
}

impl Resolve for Cluster {
    fn resolve(&self, target: &Target, h2c: bool) -> Result<Upstream, Unresolvable> {
        let resolved = self.services.load().resolve(target)?;
        Ok(Upstream {
            authority: authority(&resolved.authority)?,
            h2c: h2c || resolved.h2c,
            scheme: Scheme::AsListener,
            service: ServiceKey::of(target).map(|s| (s, resolved.port_name)),
        })
    }
}

impl BodySource for Cluster {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapData> {
        self.bodies.load().get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

impl ReadinessSource for Cluster {
    fn track(&self, targets: Vec<Tracked>) {
        let mut services: Vec<ServiceKey> = targets.iter().filter_map(|t| ServiceKey::of(&t.target)).collect();
        services.sort();
        services.dedup();
        for svc in &services {
            self.set_gates(svc);
        }
    }

    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }

    fn current(&self) -> bool {
        let now = tokio::time::Instant::now();
        self.watches.all().iter().all(|h| h.fresh(now, self.max_staleness))
    }
}
