//! The standalone routes file: httpscale without Kubernetes. One YAML file lists routes with the CRD spec
//! fields plus an `upstream` `host:port`; the interceptor serves them and the scaler reads the same file.
//!
//! ```yaml
//! proxyPort: 8080          # optional; flags/env win
//! adminPort: 9090
//! routes:
//!   - name: demo           # key in /queue: <namespace>/<name>
//!     namespace: default   # optional
//!     hosts: [demo.local]
//!     pathPrefixes: [/]
//!     upstream: 127.0.0.1:8000
//! ```
//!
//! A route may also match on the model a request names (`models`), and a route's program may belong to a
//! group of programs that share a machine (`groups`; see [`ProcessGroup`]).
//!
//! Errors carry the field path and the line (serde_yaml adds `at line L column C`); the caller adds the file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::duration::GoDuration;
use crate::route::{self, Route, RouteError, RouteKey, Rule, Scaling, Target, route_err};
use crate::settings;
use crate::spec::{
    ColdStartSpec, HeaderMatch, Overflow, PlaceholderSpec, RouteTimeoutsSpec, RoutingRule, ScalingMetric, StaticRoute,
    StreamKeepAlive,
};

/// How the interceptor learns that a standalone upstream is ready.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Probe {
    /// A TCP connect succeeds.
    #[default]
    Tcp,
    /// `GET <path>` answers 2xx or 3xx.
    HttpGet(String),
}

/// A parsed routes file.
#[derive(Debug, Clone, PartialEq)]
pub struct StandaloneConfig {
    pub proxy_port: Option<u16>,
    pub admin_port: Option<u16>,
    pub routes: Vec<StandaloneRoute>,
}

/// One route of the file: the normalised route plus what only standalone mode has.
#[derive(Debug, Clone, PartialEq)]
pub struct StandaloneRoute {
    pub route: Route,
    pub probe: Probe,
    /// A local program the interceptor starts on demand and stops when idle.
    pub process: Option<ProcessSpec>,
}

/// The `process` section: a local scale target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// Longest time from start to ready; then the start counts as failed (held requests get 504).
    pub start_timeout: Duration,
    /// Stop after this long with no request in flight (`HTTPScaledObject.spec.scaledownPeriod`).
    pub scaledown_period: Duration,
    pub stop_signal: StopSignal,
    /// After the stop signal, wait this long, then SIGKILL the process group.
    pub stop_timeout: Duration,
    /// The group of programs this one shares the machine with, if any.
    pub group: Option<ProcessGroup>,
    /// Quote the program's last output lines in the answers to clients when it fails (off by default:
    /// output can hold secrets; it is always in the log).
    pub expose_output: bool,
}

/// A program's group (`process.group`, defined under the file's `groups`): programs that compete for one
/// machine's resources. Before a member starts, members that would not leave it room are stopped, each after
/// its in-flight requests end or `drainTimeout` passes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessGroup {
    pub name: String,
    pub policy: GroupPolicy,
    /// How long a member asked to make room may finish its in-flight requests before it is stopped anyway.
    pub drain_timeout: Duration,
    /// This member's share of a memory budget, in bytes (`process.memory`; 0 without a budget).
    pub memory: u64,
}

/// How many members of a group may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupPolicy {
    /// One at a time (one GPU): starting a member first stops the one running.
    Exclusive,
    /// Side by side, without limit.
    SideBySide,
    /// Side by side while the sum of their `process.memory` fits in this many bytes.
    MemoryBudget(u64),
}

impl ProcessGroup {
    /// The member's weight and the group's capacity in the same unit (`None`: unlimited).
    pub fn weight_and_capacity(&self) -> (u64, Option<u64>) {
        match self.policy {
            GroupPolicy::Exclusive => (1, Some(1)),
            GroupPolicy::SideBySide => (0, None),
            GroupPolicy::MemoryBudget(budget) => (self.memory, Some(budget)),
        }
    }
}

/// Signals a program may be asked to stop with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopSignal {
    Term,
    Int,
    Quit,
    Hup,
    Kill,
    Usr1,
    Usr2,
}

impl StopSignal {
    fn parse(s: &str) -> Option<Self> {
        let name = s.strip_prefix("SIG").unwrap_or(s);
        Some(match name {
            "TERM" => Self::Term,
            "INT" => Self::Int,
            "QUIT" => Self::Quit,
            "HUP" => Self::Hup,
            "KILL" => Self::Kill,
            "USR1" => Self::Usr1,
            "USR2" => Self::Usr2,
            _ => return None,
        })
    }
}

impl AsRef<Route> for StandaloneRoute {
    fn as_ref(&self) -> &Route {
        &self.route
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    proxy_port: Option<u16>,
    #[serde(default)]
    admin_port: Option<u16>,
    #[serde(default)]
    groups: BTreeMap<String, RawGroup>,
    routes: Vec<CheckedRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGroup {
    #[serde(default)]
    exclusive: Option<bool>,
    #[serde(default)]
    memory_budget: Option<Size>,
    #[serde(default)]
    drain_timeout: Option<GoDuration>,
}

/// A size: bytes as a number, or a string with a quantity suffix (`24Gi`).
#[derive(Clone, Copy)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Size(n)),
            Either::Text(t) => settings::bytes(&t).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "RawRoute")]
struct CheckedRoute(StandaloneRoute);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRoute {
    name: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default)]
    headers: Vec<HeaderMatch>,
    /// The models named in the request body (see `RoutingRule::models`).
    #[serde(default)]
    models: Vec<String>,
    /// InterceptorRoute-style rules, as an alternative to hosts/pathPrefixes/headers/models.
    #[serde(default)]
    rules: Option<Vec<RoutingRule>>,
    upstream: String,
    /// `kubernetes.io/h2c` (or `h2c`) to speak HTTP/2 cleartext to the upstream, as gRPC servers need.
    #[serde(default)]
    app_protocol: Option<String>,
    #[serde(default)]
    readiness: Option<RawProbe>,
    #[serde(default)]
    timeouts: Option<RouteTimeoutsSpec>,
    #[serde(default)]
    scaling_metric: Option<ScalingMetric>,
    #[serde(default)]
    cold_start: Option<RawColdStart>,
    #[serde(default)]
    process: Option<RawProcess>,
    /// InterceptorRoute-style static routes.
    #[serde(default)]
    static_routes: Vec<StaticRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProcess {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    working_dir: Option<PathBuf>,
    /// Same meaning as the route's `readiness`; accepted here too.
    #[serde(default)]
    readiness: Option<RawProbe>,
    #[serde(default)]
    start_timeout: Option<GoDuration>,
    #[serde(default, deserialize_with = "seconds_or_duration")]
    scaledown_period: Option<Duration>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    stop_timeout: Option<GoDuration>,
    /// A name under the file's `groups`.
    #[serde(default)]
    group: Option<String>,
    /// The program's share of its group's `memoryBudget`.
    #[serde(default)]
    memory: Option<Size>,
    #[serde(default)]
    expose_output: bool,
}

/// `scaledownPeriod` as in an HTTPScaledObject (integer seconds) or as a duration string (`5m`).
fn seconds_or_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Seconds(u64),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Seconds(s)) => Ok(Some(Duration::from_secs(s))),
        Some(Either::Text(t)) => t.parse::<GoDuration>().map(|d| Some(d.0)).map_err(serde::de::Error::custom),
    }
}

fn process_spec(raw: RawProcess) -> Result<ProcessSpec, RouteError> {
    if raw.command.first().is_none_or(|c| c.is_empty()) {
        return Err(route_err("process.command", "needs at least the program to run"));
    }
    let stop_signal = match raw.stop_signal.as_deref() {
        None => StopSignal::Term,
        Some(s) => StopSignal::parse(s).ok_or_else(|| {
            route_err(
                "process.stopSignal",
                format!("{s:?} is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1, SIGUSR2"),
            )
        })?,
    };
    if raw.memory.is_some() && raw.group.is_none() {
        return Err(route_err("process.memory", "counts only towards a group's memoryBudget: set process.group"));
    }
    let start_timeout = raw.start_timeout.map_or(Duration::from_secs(120), |d| d.0);
    if start_timeout.is_zero() {
        return Err(route_err("process.startTimeout", "must be above 0"));
    }
    Ok(ProcessSpec {
        command: raw.command,
        env: raw.env,
        working_dir: raw.working_dir,
        start_timeout,
        scaledown_period: raw.scaledown_period.unwrap_or(Duration::from_secs(300)),
        stop_signal,
        stop_timeout: raw.stop_timeout.map_or(Duration::from_secs(30), |d| d.0),
        // The group's policy is filled in from the file's `groups` once every route is read.
        group: raw.group.map(|name| ProcessGroup {
            name,
            policy: GroupPolicy::SideBySide,
            drain_timeout: Duration::ZERO,
            memory: raw.memory.map_or(0, |m| m.0),
        }),
        expose_output: raw.expose_output,
    })
}

fn default_namespace() -> String {
    "default".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProbe {
    #[serde(default)]
    http_get: Option<String>,
    #[serde(default)]
    tcp: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawColdStart {
    #[serde(default)]
    placeholder: Option<PlaceholderSpec>,
    #[serde(default)]
    fallback: Option<RawFallback>,
    #[serde(default)]
    max_pending_requests: Option<i32>,
    #[serde(default)]
    max_concurrent_per_pod: Option<i32>,
    #[serde(default)]
    overflow: Option<Overflow>,
    #[serde(default)]
    stream_keep_alive: Option<StreamKeepAlive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    upstream: String,
}

/// Checks an upstream address: `host:port` (plain HTTP) or `https://host:port` (TLS, verified against the
/// system roots and `KEDA_HTTP_TLS_CA_DIRS`).
pub fn parse_upstream(field: &str, value: &str) -> Result<String, RouteError> {
    let bad =
        || route_err(field, format!("{value:?} is not host:port or https://host:port (no path), e.g. 127.0.0.1:8000"));
    let (address, _) = Target::address(value);
    if address.contains("://") || address.contains('/') || address.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
        return Err(bad());
    }
    Ok(value.to_owned())
}

impl TryFrom<RawRoute> for CheckedRoute {
    type Error = RouteError;

    fn try_from(mut raw: RawRoute) -> Result<Self, RouteError> {
        check_name("name", &raw.name)?;
        check_name("namespace", &raw.namespace)?;
        let rules = rules_of(&mut raw)?;
        let h2c = h2c_of(raw.app_protocol.as_deref())?;
        let process_readiness = raw.process.as_mut().and_then(|p| p.readiness.take());
        let probe = probe_of(raw.readiness.take(), process_readiness)?;
        let parts = cold_start_of(raw.cold_start.as_ref(), &raw.static_routes)?;
        let fallback = raw
            .cold_start
            .as_ref()
            .and_then(|cs| cs.fallback.as_ref())
            .map(|f| parse_upstream("coldStart.fallback.upstream", &f.upstream).map(Target::Address))
            .transpose()?;
        let scaling: Scaling = match raw.scaling_metric.as_ref() {
            // Like an HTTPScaledObject without scalingMetric: concurrency with target 100.
            None => route::scaling("scalingMetric", None, true, None)?,
            Some(m) => route::scaling("scalingMetric", Some(m), false, None)?,
        };
        let upstream = parse_upstream("upstream", &raw.upstream)?;
        if h2c && Target::address(&upstream).1 {
            return Err(route_err(
                "appProtocol",
                "h2c is HTTP/2 in cleartext; an https:// upstream negotiates HTTP/2 by ALPN (leave appProtocol out)",
            ));
        }
        let route = Route {
            target: Target::Address(upstream),
            timeouts: route::route_timeouts(raw.timeouts.as_ref()),
            statics: route::static_entries("staticRoutes", &raw.static_routes)?,
            key: RouteKey::new(raw.namespace, raw.name),
            rules,
            h2c,
            fallback,
            placeholder: parts.placeholder,
            max_pending: parts.max_pending,
            max_concurrent_per_pod: parts.max_concurrent_per_pod,
            overflow: parts.overflow,
            scaling,
            order: 0,
            stream_keep_alive: parts.stream_keep_alive,
        };
        let process = raw.process.map(process_spec).transpose()?;
        Ok(CheckedRoute(StandaloneRoute { route, probe, process }))
    }
}

fn check_name(field: &str, value: &str) -> Result<(), RouteError> {
    if value.is_empty() || value.contains('/') {
        return Err(route_err(field, format!("{value:?} must be non-empty and contain no '/'")));
    }
    Ok(())
}

/// `rules`, or the flat `hosts` / `pathPrefixes` / `headers` / `models` as one rule (never both).
fn rules_of(raw: &mut RawRoute) -> Result<Vec<Rule>, RouteError> {
    let (hosts, paths, headers, models) = (
        std::mem::take(&mut raw.hosts),
        std::mem::take(&mut raw.path_prefixes),
        std::mem::take(&mut raw.headers),
        std::mem::take(&mut raw.models),
    );
    match raw.rules.take() {
        Some(rules) => {
            if !(hosts.is_empty() && paths.is_empty() && headers.is_empty() && models.is_empty()) {
                return Err(route_err("rules", "use either rules or hosts/pathPrefixes/headers/models, not both"));
            }
            route::rules("rules", &rules)
        }
        None => route::rules(
            "",
            &[RoutingRule {
                hosts,
                paths: paths.into_iter().map(|value| crate::spec::PathMatch { value }).collect(),
                headers,
                models,
            }],
        )
        .map_err(|e| route_err(strip_rule_prefix(&e.field), e.message)),
    }
}

fn h2c_of(app_protocol: Option<&str>) -> Result<bool, RouteError> {
    match app_protocol {
        None | Some("http") | Some("kubernetes.io/http") => Ok(false),
        Some("h2c") | Some("kubernetes.io/h2c") => Ok(true),
        Some(other) => Err(route_err("appProtocol", format!("{other:?} is not one of http, h2c, kubernetes.io/h2c"))),
    }
}

/// The readiness probe, set on the route or in its `process` section (not both).
fn probe_of(route: Option<RawProbe>, process: Option<RawProbe>) -> Result<Probe, RouteError> {
    let readiness = match (route, process) {
        (Some(_), Some(_)) => {
            return Err(route_err("process.readiness", "set readiness on the route or in process, not both"));
        }
        (a, b) => a.or(b),
    };
    match readiness {
        None | Some(RawProbe { http_get: None, .. }) => Ok(Probe::Tcp),
        Some(RawProbe { http_get: Some(path), tcp: None | Some(false) }) => {
            if !path.starts_with('/') {
                return Err(route_err("readiness.httpGet", format!("{path:?} must start with /")));
            }
            Ok(Probe::HttpGet(path))
        }
        Some(_) => Err(route_err("readiness", "set either httpGet or tcp, not both")),
    }
}

/// `coldStart` as an InterceptorRoute has it, minus what needs Kubernetes (ConfigMap bodies).
fn cold_start_of(cs: Option<&RawColdStart>, statics: &[StaticRoute]) -> Result<route::ColdStartParts, RouteError> {
    let spec = cs.map(|cs| ColdStartSpec {
        fallback: None,
        placeholder: cs.placeholder.clone(),
        max_pending_requests: cs.max_pending_requests,
        max_concurrent_per_pod: cs.max_concurrent_per_pod,
        overflow: cs.overflow,
        stream_keep_alive: cs.stream_keep_alive,
    });
    let parts = route::cold_start_parts("coldStart", spec.as_ref())?;
    let needs_kubernetes = "needs Kubernetes; use body in standalone mode";
    if let Some(p) = &parts.placeholder
        && matches!(p.body, route::PlaceholderBody::ConfigMap { .. })
    {
        return Err(route_err("coldStart.placeholder.response.bodyFromConfigMap", needs_kubernetes));
    }
    if let Some(i) = statics.iter().position(|s| s.response.body_from_config_map.is_some()) {
        return Err(route_err(format!("staticRoutes[{i}].response.bodyFromConfigMap"), needs_kubernetes));
    }
    Ok(parts)
}

/// `[0].hosts[1]` → `hosts[1]`: flat standalone fields have no rule index.
fn strip_rule_prefix(field: &str) -> String {
    field.strip_prefix("[0].").unwrap_or(field).to_owned()
}

/// Why a routes file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("{0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("routes[{second}]: route {key} is already defined by routes[{first}]")]
    Duplicate { key: String, first: usize, second: usize },
    #[error(
        "routes[{second}].process: upstream {upstream} already has a process in routes[{first}]; one program per upstream"
    )]
    SharedProcess { upstream: String, first: usize, second: usize },
    #[error("groups.{name}: {message}")]
    Group { name: String, message: String },
    #[error("routes[{index}].process.{field}: {message}")]
    Member { index: usize, field: &'static str, message: String },
}

/// The file's `groups`, checked.
fn groups_of(raw: BTreeMap<String, RawGroup>) -> Result<BTreeMap<String, ProcessGroup>, RoutesError> {
    let mut out = BTreeMap::new();
    for (name, g) in raw {
        let err = |message: &str| RoutesError::Group { name: name.clone(), message: message.to_owned() };
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
            return Err(err("a group name must be non-empty, without whitespace or '/'"));
        }
        let policy = match (g.exclusive, g.memory_budget) {
            (Some(true), Some(_)) => return Err(err("set exclusive or memoryBudget, not both")),
            (_, Some(Size(0))) => return Err(err("memoryBudget must be above 0")),
            (_, Some(Size(budget))) => GroupPolicy::MemoryBudget(budget),
            (Some(false), None) => GroupPolicy::SideBySide,
            (Some(true) | None, None) => GroupPolicy::Exclusive,
        };
        let drain_timeout = g.drain_timeout.map_or(Duration::from_secs(60), |d| d.0);
        out.insert(name.clone(), ProcessGroup { name, policy, drain_timeout, memory: 0 });
    }
    Ok(out)
}

/// Fills in a member's group from the file's `groups`, checking its `memory` against the budget.
fn join_group(index: usize, p: &mut ProcessSpec, groups: &BTreeMap<String, ProcessGroup>) -> Result<(), RoutesError> {
    let Some(member) = p.group.as_mut() else { return Ok(()) };
    let err = |field, message: String| RoutesError::Member { index, field, message };
    let Some(group) = groups.get(&member.name) else {
        return Err(err("group", format!("{:?} is not defined under groups", member.name)));
    };
    match group.policy {
        GroupPolicy::MemoryBudget(budget) if member.memory == 0 => {
            return Err(err("memory", format!("needed: group {} has a memoryBudget ({budget} bytes)", group.name)));
        }
        GroupPolicy::MemoryBudget(budget) if member.memory > budget => {
            return Err(err(
                "memory",
                format!("{} bytes is more than group {}'s memoryBudget", member.memory, group.name),
            ));
        }
        _ => {}
    }
    *member = ProcessGroup { memory: member.memory, ..group.clone() };
    Ok(())
}

/// Parses a routes file's text.
pub fn parse(text: &str) -> Result<StandaloneConfig, RoutesError> {
    let raw: RawFile = serde_yaml::from_str(text)?;
    let groups = groups_of(raw.groups)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut processes: HashMap<String, usize> = HashMap::new();
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, CheckedRoute(mut r)) in raw.routes.into_iter().enumerate() {
        let key = r.route.key.to_string();
        if let Some(first) = seen.insert(key.clone(), i) {
            return Err(RoutesError::Duplicate { key, first, second: i });
        }
        if let Some(p) = r.process.as_mut() {
            let upstream = r.route.target.to_string();
            if let Some(first) = processes.insert(upstream.clone(), i) {
                return Err(RoutesError::SharedProcess { upstream, first, second: i });
            }
            join_group(i, p, &groups)?;
        }
        // Earlier in the file = older: wins among otherwise equal matches.
        r.route.order = i as i64;
        routes.push(r);
    }
    Ok(StandaloneConfig { proxy_port: raw.proxy_port, admin_port: raw.admin_port, routes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn minimal_file() {
        let c = parse("routes:\n  - name: demo\n    hosts: [demo.local]\n    upstream: 127.0.0.1:8000\n").unwrap();
        let r = &c.routes[0];
        assert_eq!(r.route.key.to_string(), "default/demo");
        assert_eq!(r.route.target, Target::Address("127.0.0.1:8000".into()));
        assert_eq!(r.probe, Probe::Tcp);
        assert_eq!(r.route.scaling.fallback_target, 100.0);
    }

    #[test]
    fn every_field() {
        let c = parse(
            r#"
proxyPort: 18080
adminPort: 19090
routes:
  - name: api
    namespace: team
    hosts: [api.local, "*.api.local"]
    pathPrefixes: [/v1]
    headers: [{name: X-Tenant, value: blue}]
    upstream: localhost:9000
    appProtocol: kubernetes.io/h2c
    readiness: {httpGet: /healthz}
    timeouts: {readiness: 30s, request: 5m, responseHeader: 120s}
    scalingMetric: {requestRate: {targetValue: 10}}
    coldStart:
      placeholder: {response: {statusCode: 202, body: warming up}}
      fallback: {upstream: 127.0.0.1:9001}
      maxPendingRequests: 50
  - name: rules
    rules: [{hosts: [r.local], paths: [{value: /a}]}]
    upstream: 127.0.0.1:9002
"#,
        )
        .unwrap();
        assert_eq!((c.proxy_port, c.admin_port), (Some(18080), Some(19090)));
        let r = &c.routes[0];
        assert!(r.route.h2c);
        assert_eq!(r.probe, Probe::HttpGet("/healthz".into()));
        assert_eq!(r.route.timeouts.readiness, Some(Duration::from_secs(30)));
        assert_eq!(r.route.max_pending, Some(50));
        assert_eq!(r.route.fallback, Some(Target::Address("127.0.0.1:9001".into())));
        assert_eq!(r.route.placeholder.as_ref().unwrap().status.as_u16(), 202);
        assert_eq!(r.route.rules[0].hosts.len(), 2);
        assert_eq!(c.routes[1].route.rules[0].paths, vec!["/a"]);
        assert_eq!(c.routes[1].route.order, 1);
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn process_section_with_defaults_and_both_scaledown_spellings() {
        let c = parse(
            "routes:\n  - name: ollama\n    upstream: 127.0.0.1:11434\n    process:\n      command: [ollama, serve]\n      env: {OLLAMA_HOST: 127.0.0.1:11434}\n      workingDir: /srv\n      readiness: {httpGet: /api/version}\n      scaledownPeriod: 5m\n      stopSignal: SIGINT\n",
        )
        .unwrap();
        let r = &c.routes[0];
        let p = r.process.as_ref().unwrap();
        assert_eq!(p.command, vec!["ollama", "serve"]);
        assert_eq!(p.env["OLLAMA_HOST"], "127.0.0.1:11434");
        assert_eq!(p.scaledown_period, Duration::from_secs(300));
        assert_eq!((p.start_timeout, p.stop_timeout), (Duration::from_secs(120), Duration::from_secs(30)));
        assert_eq!(p.stop_signal, StopSignal::Int);
        assert_eq!(r.probe, Probe::HttpGet("/api/version".into()), "process.readiness is the route's probe");
        let c =
            parse("routes:\n  - {name: a, upstream: 'h:1', process: {command: [x], scaledownPeriod: 90}}\n").unwrap();
        assert_eq!(c.routes[0].process.as_ref().unwrap().scaledown_period, Duration::from_secs(90));
    }

    #[test]
    fn process_errors_name_the_field() {
        let e = err("routes:\n  - {name: a, upstream: 'h:1', process: {command: []}}\n");
        assert!(e.contains("process.command"), "{e}");
        let e = err("routes:\n  - {name: a, upstream: 'h:1', process: {command: [x], stopSignal: SIGSTOP}}\n");
        assert!(e.contains("process.stopSignal") && e.contains("SIGSTOP"), "{e}");
        let e = err(
            "routes:\n  - {name: a, upstream: 'h:1', process: {command: [x]}}\n  - {name: b, upstream: 'h:1', process: {command: [y]}}\n",
        );
        assert!(e.contains("routes[1].process") && e.contains("routes[0]"), "{e}");
    }

    #[test]
    fn models_flat_or_in_rules_and_stream_keep_alive() {
        let c = parse(
            "routes:\n  - {name: a, hosts: [m.local], models: [llama3*, 'qwen2.5:7b'], upstream: 'h:1', coldStart: {streamKeepAlive: {interval: 2s}}}\n  - {name: b, rules: [{hosts: [m.local], models: [phi]}], upstream: 'h:2', coldStart: {streamKeepAlive: {}}}\n",
        )
        .unwrap();
        let models = |i: usize| c.routes[i].route.rules[0].models.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        assert_eq!(models(0), vec!["llama3*", "qwen2.5:7b"]);
        assert_eq!(models(1), vec!["phi"]);
        assert_eq!(c.routes[0].route.stream_keep_alive, Some(Duration::from_secs(2)));
        assert_eq!(c.routes[1].route.stream_keep_alive, Some(Duration::from_secs(5)), "the default interval");
        let e = err("routes:\n  - {name: a, models: ['l*a'], upstream: 'h:1'}\n");
        assert!(e.contains("models[0]") && e.contains("trailing"), "{e}");
        let e = err("routes:\n  - {name: a, models: [x], rules: [{hosts: [h]}], upstream: 'h:1'}\n");
        assert!(e.contains("not both"), "{e}");
        let e = err("routes:\n  - {name: a, upstream: 'h:1', coldStart: {streamKeepAlive: {interval: 10ms}}}\n");
        assert!(e.contains("streamKeepAlive.interval") && e.contains("100ms"), "{e}");
    }

    #[test]
    fn groups_exclusive_by_default_side_by_side_or_by_memory() {
        let c = parse(
            r#"
groups:
  gpu: {drainTimeout: 20s}
  cpu: {exclusive: false}
  big: {memoryBudget: 24Gi}
routes:
  - {name: a, upstream: 'h:1', process: {command: [x], group: gpu}}
  - {name: b, upstream: 'h:2', process: {command: [x], group: cpu}}
  - {name: c, upstream: 'h:3', process: {command: [x], group: big, memory: 16Gi}}
  - {name: d, upstream: 'h:4', process: {command: [x]}}
"#,
        )
        .unwrap();
        let group = |i: usize| c.routes[i].process.as_ref().unwrap().group.clone();
        let gpu = group(0).unwrap();
        assert_eq!(
            (gpu.name.as_str(), gpu.policy, gpu.drain_timeout),
            ("gpu", GroupPolicy::Exclusive, Duration::from_secs(20))
        );
        assert_eq!(gpu.weight_and_capacity(), (1, Some(1)));
        assert_eq!(group(1).unwrap().policy, GroupPolicy::SideBySide);
        assert_eq!(group(1).unwrap().drain_timeout, Duration::from_secs(60), "the default drain bound");
        let big = group(2).unwrap();
        assert_eq!(big.weight_and_capacity(), (16 << 30, Some(24 << 30)));
        assert_eq!(group(3), None);
    }

    #[test]
    fn group_errors_name_the_group_or_the_member() {
        let e = err("groups: {g: {exclusive: true, memoryBudget: 1Gi}}\nroutes: []\n");
        assert_eq!(e, "groups.g: set exclusive or memoryBudget, not both");
        let e = err("routes:\n  - {name: a, upstream: 'h:1', process: {command: [x], group: nope}}\n");
        assert_eq!(e, "routes[0].process.group: \"nope\" is not defined under groups");
        let e = err(
            "groups: {g: {memoryBudget: 1Gi}}\nroutes:\n  - {name: a, upstream: 'h:1', process: {command: [x], group: g}}\n",
        );
        assert!(e.starts_with("routes[0].process.memory: needed"), "{e}");
        let e = err(
            "groups: {g: {memoryBudget: 1Gi}}\nroutes:\n  - {name: a, upstream: 'h:1', process: {command: [x], group: g, memory: 2Gi}}\n",
        );
        assert!(e.contains("more than group g's memoryBudget"), "{e}");
        let e = err("routes:\n  - {name: a, upstream: 'h:1', process: {command: [x], memory: 2Gi}}\n");
        assert!(e.contains("process.memory") && e.contains("process.group"), "{e}");
        let e = err("groups: {g: {memoryBudget: lots}}\nroutes: []\n");
        assert!(e.contains("not a size"), "{e}");
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = err("routes:\n  - name: a\n    upstream: 127.0.0.1:1\n    hostz: [x]\n");
        assert!(e.contains("routes[0]: unknown field `hostz`") && e.contains("line 4 column 5"), "{e}");
        let e = err("routes:\n  - name: a\n    upstream: http://127.0.0.1:1\n");
        assert!(e.contains("upstream") && e.contains("not host:port") && e.contains("line 2"), "{e}");
        let e = err("routes:\n  - name: a\n    upstream: 127.0.0.1:1\n    timeouts: {readiness: soon}\n");
        assert!(e.contains("routes[0].timeouts: invalid duration \"soon\"") && e.contains("line 4 column 15"), "{e}");
        let e = err("routes:\n  - name: a\n    upstream: 127.0.0.1:1\n    hosts: ['a b']\n");
        assert!(e.contains("hosts[0]: \"a b\" is not a host") && e.contains("line 2"), "{e}");
        let e = err("routes:\n  - name: a\n    upstream: https://127.0.0.1:1/x\n");
        assert!(e.contains("upstream") && e.contains("not host:port or https://host:port"), "{e}");
        let e = err("routes:\n  - {name: a, upstream: 'https://h:1', appProtocol: h2c}\n");
        assert!(e.contains("appProtocol") && e.contains("ALPN"), "{e}");
        let ok = parse(
            "routes:\n  - {name: a, upstream: 'https://h:1', coldStart: {fallback: {upstream: 'https://f:2'}}}\n",
        );
        let r = &ok.unwrap().routes[0].route;
        assert_eq!(r.target, Target::Address("https://h:1".into()));
        assert_eq!(Target::address("https://h:1"), ("h:1", true));
        assert_eq!(Target::address("h:1"), ("h:1", false));
        let e = err("routes:\n  - {name: a, upstream: 'h:1'}\n  - {name: a, upstream: 'h:2'}\n");
        assert_eq!(e, "routes[1]: route default/a is already defined by routes[0]");
        let e = err("routes:\n  - {name: a, upstream: 'h:1', scalingMetric: {requestRate: {granularity: 10ms}}}\n");
        assert!(e.contains("granularity") && e.contains("1s minimum"), "{e}");
    }
}
