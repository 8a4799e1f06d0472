//! Derived state from watched Kubernetes objects, pure and fed one event at a time:
//!
//! - [`RouteStore`]: the effective routes from every [`RouteSource`] (HTTPScaledObjects and InterceptorRoutes).
//!   An InterceptorRoute wins over an HTTPScaledObject of the same namespace and name, as upstream. Each step
//!   yields the changes to the effective routes it touched, so the routing table can be updated incrementally.
//! - [`EndpointIndex`]: ready endpoints per Service from EndpointSlices. An endpoint is ready when its
//!   `conditions.ready` is absent or true and it has an address, as upstream ([`ready_ips`]).
//! - [`ServiceIndex`]: Service ports (number, name, `appProtocol`), to resolve `portName` targets and h2c.
//!
//! The interceptor and the scaler both feed these from [`crate::watch`] steps.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::route::{self, Route, RouteError, RouteKey, ServicePort, Target};
use crate::spec::{HTTPScaledObject, InterceptorRoute};
use crate::watch::{Step, key_of};

/// What a step did to the effective route of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Box<Route>),
    Remove(RouteKey),
}

/// Which objects a route comes from; a higher layer wins over a lower one for the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    HttpScaledObject = 0,
    InterceptorRoute = 1,
}

/// A kind of object that defines a route.
pub trait RouteSource: ResourceExt {
    /// The kind, for messages.
    const KIND: &'static str;
    const LAYER: Layer;
    /// The route this object defines, or why it defines none.
    fn to_route(&self, key: RouteKey, order: i64) -> Result<Route, RouteError>;
}

impl RouteSource for HTTPScaledObject {
    const KIND: &'static str = "HTTPScaledObject";
    const LAYER: Layer = Layer::HttpScaledObject;
    fn to_route(&self, key: RouteKey, order: i64) -> Result<Route, RouteError> {
        route::from_http_scaled_object(key, &self.spec, order)
    }
}

impl RouteSource for InterceptorRoute {
    const KIND: &'static str = "InterceptorRoute";
    const LAYER: Layer = Layer::InterceptorRoute;
    fn to_route(&self, key: RouteKey, order: i64) -> Result<Route, RouteError> {
        route::from_interceptor_route(key, &self.spec, order)
    }
}

/// An object whose spec cannot route: which one and why. Its route (if it had one) is removed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} {key}: {error}")]
pub struct Unroutable {
    pub kind: &'static str,
    pub key: RouteKey,
    pub error: RouteError,
}

/// What one step did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub unroutable: Vec<Unroutable>,
}

/// Older objects win ties: their creation time in seconds.
fn order_of<K: ResourceExt>(obj: &K) -> i64 {
    obj.meta().creation_timestamp.as_ref().map_or(0, |t| t.0.as_second())
}

#[derive(Debug, Default)]
pub struct RouteStore {
    layers: [HashMap<RouteKey, Route>; 2],
}

impl RouteStore {
    pub fn effective(&self, key: &RouteKey) -> Option<&Route> {
        self.layers.iter().rev().find_map(|l| l.get(key))
    }

    /// Every effective route, in key order.
    pub fn routes(&self) -> Vec<Route> {
        let keys: BTreeSet<&RouteKey> = self.layers.iter().flat_map(|l| l.keys()).collect();
        keys.into_iter().filter_map(|k| self.effective(k).cloned()).collect()
    }

    fn change(&self, key: &RouteKey, before: Option<Route>) -> Option<Change> {
        let after = self.effective(key).cloned();
        if after == before {
            return None;
        }
        Some(after.map_or_else(|| Change::Remove(key.clone()), |r| Change::Upsert(Box::new(r))))
    }

    /// Applies one step of a watch of `K`.
    pub fn step<K: RouteSource>(&mut self, step: Step<K>) -> Applied {
        match step {
            Step::Apply(o) => {
                let (change, unroutable) = self.apply(&o);
                Applied { changes: change.into_iter().collect(), unroutable: unroutable.into_iter().collect() }
            }
            Step::Delete(o) => {
                Applied { changes: self.delete::<K>(&key_of(&o)).into_iter().collect(), unroutable: vec![] }
            }
            Step::Relist(all) => self.relist(&all),
        }
    }

    /// An object was added or changed. A spec that cannot route removes its route and says why.
    pub fn apply<K: RouteSource>(&mut self, obj: &K) -> (Option<Change>, Option<Unroutable>) {
        let key = key_of(obj);
        let before = self.effective(&key).cloned();
        let layer = &mut self.layers[K::LAYER as usize];
        let unroutable = match obj.to_route(key.clone(), order_of(obj)) {
            Ok(r) => {
                layer.insert(key.clone(), r);
                None
            }
            Err(error) => {
                layer.remove(&key);
                Some(Unroutable { kind: K::KIND, key: key.clone(), error })
            }
        };
        (self.change(&key, before), unroutable)
    }

    /// The object `key` of kind `K` is gone.
    pub fn delete<K: RouteSource>(&mut self, key: &RouteKey) -> Option<Change> {
        let before = self.effective(key).cloned();
        self.layers[K::LAYER as usize].remove(key);
        self.change(key, before)
    }

    /// A full re-list of `K` replaced what was known (objects deleted while the watch was down disappear).
    pub fn relist<K: RouteSource>(&mut self, objs: &[K]) -> Applied {
        let keys: BTreeSet<RouteKey> =
            self.layers[K::LAYER as usize].keys().cloned().chain(objs.iter().map(key_of)).collect();
        let before: Vec<(RouteKey, Option<Route>)> = keys
            .into_iter()
            .map(|k| {
                let b = self.effective(&k).cloned();
                (k, b)
            })
            .collect();
        self.layers[K::LAYER as usize].clear();
        let mut unroutable = Vec::new();
        for o in objs {
            match o.to_route(key_of(o), order_of(o)) {
                Ok(r) => {
                    self.layers[K::LAYER as usize].insert(key_of(o), r);
                }
                Err(error) => unroutable.push(Unroutable { kind: K::KIND, key: key_of(o), error }),
            }
        }
        Applied { changes: before.into_iter().filter_map(|(k, b)| self.change(&k, b)).collect(), unroutable }
    }
}

/// The addresses of a slice's ready endpoints: `conditions.ready` absent or true, the first address of each.
pub fn ready_ips(slice: &EndpointSlice) -> impl Iterator<Item = &String> {
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.addresses.first())
}

/// `ip:port`, with an IPv6 address in brackets.
pub fn socket_address(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
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
        let mut ready: Vec<String> = ready_ips(s).cloned().collect();
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
                s.ready.iter().filter_map(move |ip| port.map(|p| socket_address(ip, p)))
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
    pub fn resolve(&self, target: &Target) -> Result<ResolvedPort, ResolveError> {
        let Target::Service { namespace, name, port } = target else {
            return Err(ResolveError::NotAService(target.to_string()));
        };
        let ports = self.services.get(&ServiceKey { namespace: namespace.clone(), name: name.clone() });
        let info = match (port, ports) {
            (ServicePort::Number(n), Some(ps)) => ps.iter().find(|p| p.port == *n).cloned(),
            (ServicePort::Number(n), None) => Some(ServicePortInfo { name: String::new(), port: *n, h2c: false }),
            (ServicePort::Name(n), Some(ps)) => ps.iter().find(|p| &p.name == n).cloned(),
            (ServicePort::Name(_), None) => None,
        };
        let resolved = |port: u16, port_name: String, h2c: bool| ResolvedPort {
            authority: format!("{name}.{namespace}:{port}"),
            port_name,
            h2c,
        };
        match (info, port) {
            (Some(i), _) => Ok(resolved(i.port, i.name, i.h2c)),
            (None, ServicePort::Number(n)) => Ok(resolved(*n, String::new(), false)),
            (None, ServicePort::Name(n)) => {
                Err(ResolveError::NoSuchPort { service: format!("{namespace}/{name}"), port: n.clone() })
            }
        }
    }
}

/// A Service target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPort {
    /// `<service>.<namespace>:<port number>`.
    pub authority: String,
    /// The port's name (`""` if unnamed or unknown).
    pub port_name: String,
    /// The port says `appProtocol: kubernetes.io/h2c`.
    pub h2c: bool,
}

/// Why a target has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} is not a Service target")]
    NotAService(String),
    #[error("Service {service} has no port named {port:?}")]
    NoSuchPort { service: String, port: String },
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
        let (c, e) = s.apply(&httpso("app", "a.local"));
        assert_eq!((hosts_of(&c), e), (Some(vec!["a.local".into()]), None));
        assert_eq!(s.apply(&httpso("app", "a.local")).0, None, "no change, no event");
        let (c, _) = s.apply(&ir("app", "b.local"));
        assert_eq!(hosts_of(&c), Some(vec!["b.local".into()]), "the InterceptorRoute takes over");
        assert_eq!(s.apply(&httpso("app", "c.local")).0, None, "an HTTPSO edit is hidden by the IR");
        let c = s.delete::<InterceptorRoute>(&key);
        assert_eq!(hosts_of(&c), Some(vec!["c.local".into()]), "the HTTPSO is back");
        assert_eq!(s.delete::<HTTPScaledObject>(&key), Some(Change::Remove(key.clone())));
        assert_eq!(s.delete::<HTTPScaledObject>(&key), None);
    }

    #[test]
    fn a_spec_that_cannot_route_removes_the_route_and_says_why() {
        let mut s = RouteStore::default();
        s.apply(&httpso("app", "a.local"));
        let mut bad = httpso("app", "a.local");
        bad.spec.scale_target_ref.port_name = Some("http".into());
        let (c, e) = s.apply(&bad);
        assert_eq!(c, Some(Change::Remove(RouteKey::new("ns", "app"))));
        let said = e.unwrap().to_string();
        assert!(said.starts_with("HTTPScaledObject ns/app: ") && said.contains("portName"), "{said}");
    }

    #[test]
    fn a_relist_removes_what_was_deleted_while_the_watch_was_down() {
        let mut s = RouteStore::default();
        s.apply(&httpso("gone", "g.local"));
        s.apply(&httpso("kept", "k.local"));
        let Applied { changes, unroutable } = s.relist(&[httpso("kept", "k.local"), httpso("new", "n.local")]);
        assert!(unroutable.is_empty());
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
        let r = |authority: &str, port_name: &str, h2c| {
            Ok(ResolvedPort { authority: authority.into(), port_name: port_name.into(), h2c })
        };
        assert_eq!(idx.resolve(&t(ServicePort::Name("grpc".into()))), r("app.ns:9000", "grpc", true));
        assert_eq!(idx.resolve(&t(ServicePort::Number(80))), r("app.ns:80", "http", false));
        let e = idx.resolve(&t(ServicePort::Name("nope".into()))).unwrap_err();
        assert_eq!(e.to_string(), "Service ns/app has no port named \"nope\"");
        let unknown = Target::Service { namespace: "ns".into(), name: "x".into(), port: ServicePort::Number(8080) };
        assert_eq!(idx.resolve(&unknown), r("x.ns:8080", "", false), "numbers need no Service");
    }
}
