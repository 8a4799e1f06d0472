//! Direct pod routing (`KEDA_HTTP_DIRECT_POD_ROUTING=true`): a request for a Service target goes straight to a
//! ready pod's address from the EndpointSlices instead of the Service's cluster IP. The pod with the fewest
//! requests in flight from this interceptor is picked (upstream picks at random), and a pod that refuses the
//! connection is skipped for another before the client sees an error (upstream #1734). With no ready address
//! for the port, the request goes to the Service as upstream does.
//!
//! The endpoint snapshot and the per-pod counters are read without locks; the cluster watcher replaces them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use httpscale_core::index::{EndpointIndex, ServiceKey};

#[derive(Default)]
pub struct PodRouter {
    endpoints: ArcSwap<EndpointIndex>,
    load: ArcSwap<HashMap<String, Arc<AtomicUsize>>>,
    /// Rotates which of equally loaded pods goes first.
    turn: AtomicUsize,
}

/// Holds one request's place on a pod; given back when the response ends.
#[derive(Debug)]
pub struct PodGuard(Arc<AtomicUsize>);

impl Drop for PodGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PodRouter {
    /// Publishes a new endpoint snapshot, keeping the counters of pods that are still there.
    pub fn update(&self, endpoints: EndpointIndex, addresses: impl IntoIterator<Item = String>) {
        let old = self.load.load();
        let load = addresses.into_iter().map(|a| {
            let c = old.get(&a).cloned().unwrap_or_default();
            (a, c)
        });
        self.load.store(Arc::new(load.collect()));
        self.endpoints.store(Arc::new(endpoints));
    }

    /// In-flight requests on `addr` from this interceptor.
    pub fn in_flight(&self, addr: &str) -> usize {
        self.load.load().get(addr).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// The least-loaded ready address for the Service port, skipping `tried`; `None` if there is none.
    pub fn pick(&self, svc: &ServiceKey, port_name: &str, tried: &[String]) -> Option<(String, Option<PodGuard>)> {
        let candidates = self.endpoints.load().ready_addresses(svc, port_name);
        let load = self.load.load();
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let best = (0..n)
            .map(|i| &candidates[(start + i) % n])
            .filter(|a| !tried.contains(a))
            .min_by_key(|a| load.get(*a).map_or(0, |c| c.load(Ordering::Acquire)))?;
        let guard = load.get(best).map(|c| {
            c.fetch_add(1, Ordering::AcqRel);
            PodGuard(c.clone())
        });
        Some((best.clone(), guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn index(ips: &[&str]) -> EndpointIndex {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "addressType": "IPv4",
            "metadata": {"name": "s", "namespace": "ns", "labels": {"kubernetes.io/service-name": "app"}},
            "endpoints": ips.iter().map(|ip| serde_json::json!({"addresses": [ip]})).collect::<Vec<_>>(),
            "ports": [{"name": "http", "port": 80}]
        }))
        .unwrap();
        let mut idx = EndpointIndex::default();
        idx.apply(&slice);
        idx
    }

    #[test]
    fn the_least_loaded_pod_is_picked_and_tried_pods_are_skipped() {
        let r = PodRouter::default();
        let svc = ServiceKey { namespace: "ns".into(), name: "app".into() };
        r.update(index(&["10.0.0.1", "10.0.0.2"]), ["10.0.0.1:80".to_string(), "10.0.0.2:80".to_string()]);
        let (a, ga) = r.pick(&svc, "http", &[]).unwrap();
        let (b, gb) = r.pick(&svc, "http", &[]).unwrap();
        assert_ne!(a, b, "the second request goes to the idle pod");
        drop(ga);
        let (c, _gc) = r.pick(&svc, "http", &[]).unwrap();
        assert_eq!(c, a, "the pod whose request ended is the least loaded again");
        assert_eq!(r.in_flight(&b), 1);
        drop(gb);
        assert_eq!(r.in_flight(&b), 0);
        let (d, _) = r.pick(&svc, "http", std::slice::from_ref(&c)).unwrap();
        assert_ne!(d, c, "a pod that failed for this request is skipped");
        assert!(r.pick(&svc, "http", &[c.clone(), d]).is_none());
        assert!(r.pick(&svc, "grpc", &[]).is_none());
    }

    #[test]
    fn counters_survive_an_endpoint_update() {
        let r = PodRouter::default();
        let svc = ServiceKey { namespace: "ns".into(), name: "app".into() };
        r.update(index(&["10.0.0.1"]), ["10.0.0.1:80".to_string()]);
        let (_, g) = r.pick(&svc, "http", &[]).unwrap();
        r.update(index(&["10.0.0.1", "10.0.0.3"]), ["10.0.0.1:80".to_string(), "10.0.0.3:80".to_string()]);
        assert_eq!(r.in_flight("10.0.0.1:80"), 1);
        drop(g);
        assert_eq!(r.in_flight("10.0.0.1:80"), 0);
    }
}
