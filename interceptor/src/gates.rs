//! The one owner of readiness gates: one [`Gate`] per target, shared by every route that forwards there and
//! kept across table rebuilds (so held requests survive a reload). The routing table takes gates from here;
//! readiness sources open and close them, the Kubernetes one by Service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use httpscale_core::gate::Gate;
use httpscale_core::index::ServiceKey;
use httpscale_core::route::Target;

#[derive(Debug, Default)]
pub struct Gates {
    by_target: Mutex<HashMap<Target, Arc<Gate>>>,
}

impl Gates {
    fn lock(&self) -> MutexGuard<'_, HashMap<Target, Arc<Gate>>> {
        self.by_target.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The target's gate; a new target starts closed.
    pub fn get(&self, target: &Target) -> Arc<Gate> {
        self.lock().entry(target.clone()).or_insert_with(|| Arc::new(Gate::new(false))).clone()
    }

    /// Forgets the gates of targets no longer in use.
    pub fn retain(&self, in_use: impl Fn(&Target) -> bool) {
        self.lock().retain(|t, _| in_use(t));
    }

    /// The gates of every target that is a port of the Service `svc`.
    pub fn of_service(&self, svc: &ServiceKey) -> Vec<Arc<Gate>> {
        self.lock().iter().filter(|(t, _)| ServiceKey::of(t).as_ref() == Some(svc)).map(|(_, g)| g.clone()).collect()
    }

    /// Every Service some gate's target belongs to.
    pub fn services(&self) -> Vec<ServiceKey> {
        let mut out: Vec<ServiceKey> = self.lock().keys().filter_map(ServiceKey::of).collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httpscale_core::route::ServicePort;

    #[test]
    fn one_gate_per_target_found_by_service_and_forgotten_when_unused() {
        let gates = Gates::default();
        let svc =
            |port| Target::Service { namespace: "ns".into(), name: "app".into(), port: ServicePort::Number(port) };
        let a = gates.get(&svc(80));
        assert!(Arc::ptr_eq(&a, &gates.get(&svc(80))), "the same gate for the same target");
        let b = gates.get(&svc(81));
        gates.get(&Target::Address("127.0.0.1:1".into()));
        let key = ServiceKey { namespace: "ns".into(), name: "app".into() };
        assert_eq!(gates.of_service(&key).len(), 2);
        assert_eq!(gates.services(), vec![key.clone()]);
        gates.retain(|t| t == &svc(81));
        let left = gates.of_service(&key);
        assert!(left.len() == 1 && Arc::ptr_eq(&left[0], &b));
        assert!(!a.is_open(), "new gates start closed");
    }
}
