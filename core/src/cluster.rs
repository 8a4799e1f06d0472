//! Derived state from watched Kubernetes objects, pure and fed one event at a time:
//!
//! - [`RouteStore`]: the effective routes from HTTPScaledObjects and InterceptorRoutes. An InterceptorRoute wins
//!   over an HTTPScaledObject of the same namespace and name, as upstream. Each event yields the one change to
//!   the effective route of its key, so the routing table can be updated incrementally; a re-list yields the
//!   changes for every key it touches.
//! - [`EndpointIndex`]: ready endpoints per Service from EndpointSlices. An endpoint is ready when its
//!   `conditions.ready` is absent or true and it has an address, as upstream.
//! - [`ServiceIndex`]: Service ports (number, name, `appProtocol`), to resolve `portName` targets and h2c.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::route::{self, Route, RouteError, RouteKey, ServicePort, Target};
use crate::spec::{HTTPScaledObject, InterceptorRoute};

/// What an event did to the effective route of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Box<Route>),
    Remove(RouteKey),
}

fn key_of<K: ResourceExt>(obj: &K) -> RouteKey {
    RouteKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Older objects win ties: their creation time in seconds.
fn order_of<K: ResourceExt>(obj: &K) -> i64 {
    obj.meta().creation_timestamp.as_ref().map_or(0, |t| t.0.as_second())
}

#[derive(Debug, Default)]
pub struct RouteStore {
    httpso: HashMap<RouteKey, Route>,
    ir: HashMap<RouteKey, Route>,
}

impl RouteStore {
    pub fn effective(&self, key: &RouteKey) -> Option<&Route> {
        self.ir.get(key).or_else(|| self.httpso.get(key))
    }

    /// Every effective route.
    pub fn routes(&self) -> Vec<Route> {
        let keys: BTreeSet<&RouteKey> = self.ir.keys().chain(self.httpso.keys()).collect();
        keys.into_iter().filter_map(|k| self.effective(k).cloned()).collect()
    }

    fn change(&self, key: &RouteKey, before: Option<Route>) -> Option<Change> {
        let after = self.effective(key).cloned();
        if after == before {
            return None;
        }
        Some(after.map_or_else(|| Change::Remove(key.clone()), |r| Change::Upsert(Box::new(r))))
    }

    /// An HTTPScaledObject was added or changed. A spec that cannot route removes its route and says why.
    pub fn apply_httpso(&mut self, obj: &HTTPScaledObject) -> (Option<Change>, Option<RouteError>) {
        let key = key_of(obj);
        let before = self.effective(&key).cloned();
        let error = match route::from_http_scaled_object(key.clone(), &obj.spec, order_of(obj)) {
            Ok(r) => {
                self.httpso.insert(key.clone(), r);
                None
            }
            Err(e) => {
                self.httpso.remove(&key);
                Some(e)
            }
        };
        (self.change(&key, before), error)
    }

    pub fn delete_httpso(&mut self, key: &RouteKey) -> Option<Change> {
        let before = self.effective(key).cloned();
        self.httpso.remove(key);
        self.change(key, before)
    }

    /// An InterceptorRoute was added or changed.
    pub fn apply_ir(&mut self, obj: &InterceptorRoute) -> (Option<Change>, Option<RouteError>) {
        let key = key_of(obj);
        let before = self.effective(&key).cloned();
        let error = match route::from_interceptor_route(key.clone(), &obj.spec, order_of(obj)) {
            Ok(r) => {
                self.ir.insert(key.clone(), r);
                None
            }
            Err(e) => {
                self.ir.remove(&key);
                Some(e)
            }
        };
        (self.change(&key, before), error)
    }

    pub fn delete_ir(&mut self, key: &RouteKey) -> Option<Change> {
        let before = self.effective(key).cloned();
        self.ir.remove(key);
        self.change(key, before)
    }

    /// A full re-list of HTTPScaledObjects replaced what was known (objects deleted while the watch was down
    /// disappear). Returns the changes and the specs that could not route.
    pub fn relist_httpso(&mut self, objs: &[HTTPScaledObject]) -> (Vec<Change>, Vec<(RouteKey, RouteError)>) {
        let before: HashMap<RouteKey, Option<Route>> = self
            .httpso
            .keys()
            .chain(objs.iter().map(key_of).collect::<Vec<_>>().iter())
            .map(|k| (k.clone(), self.effective(k).cloned()))
            .collect();
        self.httpso.clear();
        let mut errors = Vec::new();
        for o in objs {
            match route::from_http_scaled_object(key_of(o), &o.spec, order_of(o)) {
                Ok(r) => {
                    self.httpso.insert(key_of(o), r);
                }
                Err(e) => errors.push((key_of(o), e)),
            }
        }
        (before.into_iter().filter_map(|(k, b)| self.change(&k, b)).collect(), errors)
    }

    /// A full re-list of InterceptorRoutes (see [`RouteStore::relist_httpso`]).
    pub fn relist_ir(&mut self, objs: &[InterceptorRoute]) -> (Vec<Change>, Vec<(RouteKey, RouteError)>) {
        let before: HashMap<RouteKey, Option<Route>> = self
            .ir
            .keys()
            .chain(objs.iter().map(key_of).collect::<Vec<_>>().iter())
            .map(|k| (k.clone(), self.effective(k).cloned()))
            .collect();
        self.ir.clear();
        let mut errors = Vec::new();
        for o in objs {
            match route::from_interceptor_route(key_of(o), &o.spec, order_of(o)) {
                Ok(r) => {
                    self.ir.insert(key_of(o), r);
                }
                Err(e) => errors.push((key_of(o), e)),
            }
        }
        (before.into_iter().filter_map(|(k, b)| self.change(&k, b)).collect(), errors)
    }
}

/// `<namespace>/<name>` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn of(target: &Target) -> Option<Self> {
        match target {
            Target::Service { namespace, name, .. } => Some(Self { namespace: namespace.clone(), name: name.clone() }),
            Target::Address(_) => None,
        }
    }
}

/// One ready endpoint address with its ports by name (`""` for an unnamed port).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slice {
    service: ServiceKey,
    ready: Vec<String>,
    ports: Vec<(String, u16)>,
}

#[derive(Debug, Default, Clone)]
pub struct EndpointIndex {
    slices: HashMap<(String, String), Slice>,
}

impl EndpointIndex {
    fn slice_key(s: &EndpointSlice) -> (String, String) {
        (s.namespace().unwrap_or_default(), s.name_any())
    }

    fn parse(s: &EndpointSlice) -> Option<Slice> {
        let service = s.labels().get("kubernetes.io/service-name")?.clone();
        let mut ready: Vec<String> = s
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .filter_map(|e| e.addresses.first().cloned())
            .collect();
        ready.sort();
        ready.dedup();
        let ports = s
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), u16::try_from(p.port?).ok()?)))
            .collect();
        Some(Slice {
            service: ServiceKey { namespace: s.namespace().unwrap_or_default(), name: service },
            ready,
            ports,
        })
    }

    /// A slice was added or changed; returns the Service whose readiness may have changed.
    pub fn apply(&mut self, s: &EndpointSlice) -> Option<ServiceKey> {
        let key = Self::slice_key(s);
        let old = self.slices.remove(&key);
        match Self::parse(s) {
            Some(parsed) => {
                let svc = parsed.service.clone();
                let changed = old.as_ref() != Some(&parsed);
                self.slices.insert(key, parsed);
                changed.then_some(svc)
            }
            None => old.map(|o| o.service),
        }
    }

    pub fn delete(&mut self, s: &EndpointSlice) -> Option<ServiceKey> {
        self.slices.remove(&Self::slice_key(s)).map(|o| o.service)
    }

    /// Replaces everything (re-list); returns every Service that had or has slices.
    pub fn reset(&mut self, slices: &[EndpointSlice]) -> BTreeSet<ServiceKey> {
        let mut touched: BTreeSet<ServiceKey> = self.slices.values().map(|s| s.service.clone()).collect();
        self.slices = slices.iter().filter_map(|s| Some((Self::slice_key(s), Self::parse(s)?))).collect();
        touched.extend(self.slices.values().map(|s| s.service.clone()));
        touched
    }

    /// Whether the Service has a ready endpoint.
    pub fn ready(&self, svc: &ServiceKey) -> bool {
        self.slices.values().any(|s| &s.service == svc && !s.ready.is_empty())
    }

    /// Distinct ready endpoint addresses of the Service.
    pub fn ready_count(&self, svc: &ServiceKey) -> usize {
        let mut ips: Vec<&String> =
            self.slices.values().filter(|s| &s.service == svc).flat_map(|s| s.ready.iter()).collect();
        ips.sort();
        ips.dedup();
        ips.len()
    }

    /// Ready `ip:port` addresses for every port of the Service.
    pub fn all_ready_addresses(&self, svc: &ServiceKey) -> Vec<String> {
        let mut out: Vec<String> = self
            .slices
            .values()
            .filter(|s| &s.service == svc)
            .flat_map(|s| s.ports.iter().flat_map(|(name, _)| self.ready_addresses(svc, name)).collect::<Vec<_>>())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Ready `ip:port` addresses for the Service's port named `port_name` (`""` for an unnamed port),
    /// duplicates removed.
    pub fn ready_addresses(&self, svc: &ServiceKey, port_name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .slices
            .values()
            .filter(|s| &s.service == svc)
            .flat_map(|s| {
                let port = s.ports.iter().find(|(n, _)| n == port_name).map(|(_, p)| *p);
                s.ready.iter().filter_map(move |ip| {
                    port.map(|p| if ip.contains(':') { format!("[{ip}]:{p}") } else { format!("{ip}:{p}") })
                })
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A Service port as a route needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub name: String,
    pub port: u16,
    pub h2c: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ServiceIndex {
    services: HashMap<ServiceKey, Vec<ServicePortInfo>>,
}

impl ServiceIndex {
    fn key(s: &Service) -> ServiceKey {
        ServiceKey { namespace: s.namespace().unwrap_or_default(), name: s.name_any() }
    }

    fn ports(s: &Service) -> Vec<ServicePortInfo> {
        s.spec
            .iter()
            .flat_map(|spec| spec.ports.iter().flatten())
            .filter_map(|p| {
                Some(ServicePortInfo {
                    name: p.name.clone().unwrap_or_default(),
                    port: u16::try_from(p.port).ok()?,
                    h2c: p.app_protocol.as_deref() == Some("kubernetes.io/h2c"),
                })
            })
            .collect()
    }

    /// Returns the Service if its ports changed.
    pub fn apply(&mut self, s: &Service) -> Option<ServiceKey> {
        let key = Self::key(s);
        let ports = Self::ports(s);
        (self.services.insert(key.clone(), ports.clone()).as_ref() != Some(&ports)).then_some(key)
    }

    pub fn delete(&mut self, s: &Service) -> Option<ServiceKey> {
        let key = Self::key(s);
        self.services.remove(&key).map(|_| key)
    }

    pub fn reset(&mut self, services: &[Service]) -> BTreeSet<ServiceKey> {
        let mut touched: BTreeSet<ServiceKey> = self.services.keys().cloned().collect();
        self.services = services.iter().map(|s| (Self::key(s), Self::ports(s))).collect();
        touched.extend(self.services.keys().cloned());
        touched
    }

    /// Resolves a Service target: the `<service>.<namespace>:<port>` authority, the port's name (for direct
    /// pod routing) and whether it speaks h2c. A port given by number works without the Service object (it
    /// just cannot say h2c); a port given by name needs it.
    pub fn resolve(&self, target: &Target) -> Result<(String, String, bool), String> {
        let Target::Service { namespace, name, port } = target else {
            return Err(format!("{target} is not a Service target"));
        };
        let ports = self.services.get(&ServiceKey { namespace: namespace.clone(), name: name.clone() });
        let info = match (port, ports) {
            (ServicePort::Number(n), Some(ps)) => ps.iter().find(|p| p.port == *n).cloned(),
            (ServicePort::Number(n), None) => Some(ServicePortInfo { name: String::new(), port: *n, h2c: false }),
            (ServicePort::Name(n), Some(ps)) => ps.iter().find(|p| &p.name == n).cloned(),
            (ServicePort::Name(_), None) => None,
        };
        match (info, port) {
            (Some(i), _) => Ok((format!("{name}.{namespace}:{}", i.port), i.name, i.h2c)),
            (None, ServicePort::Number(n)) => Ok((format!("{name}.{namespace}:{n}"), String::new(), false)),
            (None, ServicePort::Name(n)) => Err(format!("Service {namespace}/{name} has no port named {n:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn httpso(name: &str, hosts: &str) -> HTTPScaledObject {
        serde_yaml::from_str(&format!(
            "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  hosts: [{hosts}]\n  scaleTargetRef: {{name: {name}, service: {name}, port: 8080}}\n"
        ))
        .unwrap()
    }

    fn ir(name: &str, hosts: &str) -> InterceptorRoute {
        serde_yaml::from_str(&format!(
            "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  target: {{service: {name}-ir, port: 80}}\n  rules: [{{hosts: [{hosts}]}}]\n  scalingMetric: {{concurrency: {{targetValue: 1}}}}\n"
        ))
        .unwrap()
    }

    fn hosts_of(c: &Option<Change>) -> Option<Vec<String>> {
        match c {
            Some(Change::Upsert(r)) => Some(r.rules[0].hosts.clone()),
            _ => None,
        }
    }

    #[test]
    fn apply_delete_and_the_interceptor_route_wins() {
        let mut s = RouteStore::default();
        let key = RouteKey::new("ns", "app");
        let (c, e) = s.apply_httpso(&httpso("app", "a.local"));
        assert_eq!((hosts_of(&c), e), (Some(vec!["a.local".into()]), None));
        assert_eq!(s.apply_httpso(&httpso("app", "a.local")).0, None, "no change, no event");
        let (c, _) = s.apply_ir(&ir("app", "b.local"));
        assert_eq!(hosts_of(&c), Some(vec!["b.local".into()]), "the InterceptorRoute takes over");
        assert_eq!(s.apply_httpso(&httpso("app", "c.local")).0, None, "an HTTPSO edit is hidden by the IR");
        let c = s.delete_ir(&key);
        assert_eq!(hosts_of(&c), Some(vec!["c.local".into()]), "the HTTPSO is back");
        assert_eq!(s.delete_httpso(&key), Some(Change::Remove(key.clone())));
        assert_eq!(s.delete_httpso(&key), None);
    }

    #[test]
    fn a_spec_that_cannot_route_removes_the_route_and_says_why() {
        let mut s = RouteStore::default();
        s.apply_httpso(&httpso("app", "a.local"));
        let mut bad = httpso("app", "a.local");
        bad.spec.scale_target_ref.port_name = Some("http".into());
        let (c, e) = s.apply_httpso(&bad);
        assert_eq!(c, Some(Change::Remove(RouteKey::new("ns", "app"))));
        assert!(e.unwrap().to_string().contains("portName"));
    }

    #[test]
    fn a_relist_removes_what_was_deleted_while_the_watch_was_down() {
        let mut s = RouteStore::default();
        s.apply_httpso(&httpso("gone", "g.local"));
        s.apply_httpso(&httpso("kept", "k.local"));
        let (changes, errors) = s.relist_httpso(&[httpso("kept", "k.local"), httpso("new", "n.local")]);
        assert!(errors.is_empty());
        assert!(changes.contains(&Change::Remove(RouteKey::new("ns", "gone"))));
        assert!(changes.iter().any(|c| matches!(c, Change::Upsert(r) if r.key.name == "new")));
        assert_eq!(changes.len(), 2, "the unchanged route is not touched: {changes:?}");
        assert_eq!(s.routes().len(), 2);
    }

    fn slice(name: &str, svc: &str, endpoints: &[(&str, Option<bool>)], port: (&str, i32)) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": endpoints.iter().map(|(ip, ready)| {
                let mut e = serde_json::json!({"addresses": [ip]});
                if let Some(r) = ready { e["conditions"] = serde_json::json!({"ready": r}); }
                e
            }).collect::<Vec<_>>(),
            "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}]
        }))
        .unwrap()
    }

    #[test]
    fn readiness_from_endpoint_slices() {
        let mut idx = EndpointIndex::default();
        let svc = ServiceKey { namespace: "ns".into(), name: "app".into() };
        assert_eq!(idx.apply(&slice("app-1", "app", &[("10.0.0.1", Some(false))], ("http", 8080))), Some(svc.clone()));
        assert!(!idx.ready(&svc), "not ready");
        idx.apply(&slice("app-1", "app", &[("10.0.0.1", Some(true)), ("10.0.0.2", None)], ("http", 8080)));
        assert!(idx.ready(&svc), "ready: true, or no condition at all, as upstream");
        assert_eq!(idx.ready_addresses(&svc, "http"), vec!["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert!(idx.ready_addresses(&svc, "grpc").is_empty());
        assert_eq!(
            idx.apply(&slice("app-1", "app", &[("10.0.0.1", Some(true)), ("10.0.0.2", None)], ("http", 8080))),
            None,
            "unchanged"
        );
        idx.delete(&slice("app-1", "app", &[], ("http", 8080)));
        assert!(!idx.ready(&svc));
        let touched = idx.reset(&[slice("other-1", "other", &[("10.0.0.3", None)], ("", 80))]);
        assert!(touched.contains(&ServiceKey { namespace: "ns".into(), name: "other".into() }));
    }

    #[test]
    fn service_ports_resolve_names_numbers_and_h2c() {
        let mut idx = ServiceIndex::default();
        let svc: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "ns"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}]}
        }))
        .unwrap();
        idx.apply(&svc);
        let t = |port| Target::Service { namespace: "ns".into(), name: "app".into(), port };
        assert_eq!(idx.resolve(&t(ServicePort::Name("grpc".into()))), Ok(("app.ns:9000".into(), "grpc".into(), true)));
        assert_eq!(idx.resolve(&t(ServicePort::Number(80))), Ok(("app.ns:80".into(), "http".into(), false)));
        assert!(idx.resolve(&t(ServicePort::Name("nope".into()))).unwrap_err().contains("no port named"));
        let unknown = Target::Service { namespace: "ns".into(), name: "x".into(), port: ServicePort::Number(8080) };
        assert_eq!(idx.resolve(&unknown), Ok(("x.ns:8080".into(), String::new(), false)), "numbers need no Service");
    }
}
