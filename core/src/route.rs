//! The normalised route: what the interceptor and scaler act on, whichever source it came from
//! (an `HTTPScaledObject`, an `InterceptorRoute`, or a standalone routes file). Conversions follow
//! upstream's `pkg/routing/table.go`; validation applies the CRDs' CEL rules plus the bounds upstream
//! lacks (a granularity under 1s would divide by zero in the rate window).

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::host::{HostPattern, normalize_host, prefix_matches};
use crate::model::ModelPattern;
use crate::spec::{
    ColdStartSpec, HeaderMatch, HttpScaledObjectSpec, InterceptorRouteSpec, Overflow, ResponseMode, RoutingRule,
    ScalingMetric, StaticResponse, StaticRoute,
};

/// `<namespace>/<name>`: the key of a route in `/queue` and in the scaler.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub namespace: String,
    pub name: String,
}

impl RouteKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A `host:port` address (standalone mode), or `https://host:port` for a backend reached over TLS.
    Address(String),
    /// A Kubernetes Service port, reached as `<name>.<namespace>:<port>`.
    Service { namespace: String, name: String, port: ServicePort },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServicePort {
    Number(u16),
    Name(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address(a) => f.write_str(a),
            Target::Service { namespace, name, port: ServicePort::Number(p) } => write!(f, "{name}.{namespace}:{p}"),
            Target::Service { namespace, name, port: ServicePort::Name(p) } => write!(f, "{name}.{namespace}:{p}"),
        }
    }
}

impl Target {
    /// The `host:port` a TCP connection goes to, and whether it speaks TLS (an `https://` address).
    pub fn address(address: &str) -> (&str, bool) {
        match address.strip_prefix("https://") {
            Some(rest) => (rest, true),
            None => (address, false),
        }
    }
}

/// A header matcher, pre-parsed so matching allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    pub name: HeaderName,
    pub value: Option<HeaderValue>,
}

impl HeaderMatcher {
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        match &self.value {
            None => headers.contains_key(&self.name),
            Some(want) => headers.get_all(&self.name).iter().any(|v| v == want),
        }
    }
}

/// One way of matching a request: hosts OR'ed, paths OR'ed, headers AND'ed, and (when set) one of the models.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Host patterns as written (`example.com`, `*.example.com`, `*`); empty means catch-all.
    pub hosts: Vec<String>,
    /// Path prefixes as written; empty means `/`.
    pub paths: Vec<String>,
    pub headers: Vec<HeaderMatcher>,
    /// The models named in the request body (httpscale extension); empty means any request, body unread.
    pub models: Vec<ModelPattern>,
}

impl Rule {
    /// Whether a request matches this rule on its own (static routes): any host pattern (exact, `*.suffix` at
    /// any depth, `*`; none = any), any path prefix per segment (none = any), and every header matcher.
    pub fn matches(&self, host: &str, path: &str, headers: &http::HeaderMap) -> bool {
        let host = normalize_host(host);
        let host_ok = self.hosts.is_empty() || self.hosts.iter().any(|p| HostPattern::parse(p).matches(&host));
        let path_ok = self.paths.is_empty() || self.paths.iter().any(|p| prefix_matches(p, path));
        host_ok && path_ok && self.headers.iter().all(|h| h.matches(headers))
    }
}

/// A fixed answer for requests matching any of its rules (first matching entry wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticEntry {
    pub rules: Vec<Rule>,
    pub response: Placeholder,
    pub mode: ResponseMode,
}

/// A fixed response served while the target has no ready endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub status: StatusCode,
    pub body: PlaceholderBody,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceholderBody {
    Inline(String),
    /// Read from a labelled ConfigMap in the route's namespace (Kubernetes mode only).
    ConfigMap {
        name: String,
        key: Option<String>,
    },
}

/// Per-route timeouts. `None` = use the interceptor-wide setting; `Some(ZERO)` = no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    pub readiness: Option<Duration>,
    pub request: Option<Duration>,
    pub response_header: Option<Duration>,
}

/// What the scaler reports for this route (reference §4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub concurrency_target: Option<f64>,
    pub rate: Option<RateSpec>,
    /// An HTTPScaledObject reports one metric; an InterceptorRoute may report both.
    pub from_http_scaled_object: bool,
    /// The HTTPScaledObject target when neither metric is set (`targetPendingRequests`, default 100).
    pub fallback_target: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub target: f64,
    pub window: Duration,
    pub granularity: Duration,
}

/// A validated, normalised route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub key: RouteKey,
    pub rules: Vec<Rule>,
    pub target: Target,
    pub fallback: Option<Target>,
    pub placeholder: Option<Placeholder>,
    pub timeouts: RouteTimeouts,
    /// Cap on held requests for this route on one interceptor; `None` = the interceptor-wide default.
    pub max_pending: Option<usize>,
    /// At most this many in-flight requests per ready endpoint (`coldStart.maxConcurrentPerPod`).
    pub max_concurrent_per_pod: Option<usize>,
    pub overflow: Overflow,
    pub scaling: Scaling,
    /// Speak HTTP/2 cleartext to the target (Service port `appProtocol: kubernetes.io/h2c`).
    pub h2c: bool,
    /// Static routes (InterceptorRoute `staticRoutes`), checked before counting.
    pub statics: Vec<StaticEntry>,
    /// Precedence among otherwise equal routes: lower is older and wins (creationTimestamp upstream,
    /// position in the file in standalone mode).
    pub order: i64,
    /// Held SSE requests get their head at once and a comment this often (`coldStart.streamKeepAlive`).
    pub stream_keep_alive: Option<Duration>,
}

/// Why a route spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RouteError {
    pub field: String,
    pub message: String,
}

pub(crate) fn route_err(field: impl Into<String>, message: impl Into<String>) -> RouteError {
    RouteError { field: field.into(), message: message.into() }
}

fn service_port(field: &str, port: Option<i32>, port_name: Option<&String>) -> Result<ServicePort, RouteError> {
    match (port, port_name) {
        (Some(p), None) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .map(ServicePort::Number)
            .ok_or_else(|| route_err(format!("{field}.port"), format!("{p} is not a port number (1-65535)"))),
        (None, Some(name)) if !name.is_empty() => Ok(ServicePort::Name(name.clone())),
        // Upstream's CEL message, so users see the same words.
        _ => Err(route_err(field, "must define either the 'portName' or the 'port'")),
    }
}

fn header_matchers(field: &str, headers: &[HeaderMatch]) -> Result<Vec<HeaderMatcher>, RouteError> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let name = HeaderName::try_from(h.name.as_str()).map_err(|_| {
                route_err(format!("{field}[{i}].name"), format!("{:?} is not a valid header name", h.name))
            })?;
            let value = h
                .value
                .as_deref()
                .map(HeaderValue::try_from)
                .transpose()
                .map_err(|_| route_err(format!("{field}[{i}].value"), "not a valid header value"))?;
            Ok(HeaderMatcher { name, value })
        })
        .collect()
}

fn validate_hosts(field: &str, hosts: &[String]) -> Result<(), RouteError> {
    for (i, h) in hosts.iter().enumerate() {
        let rest = h.strip_prefix("*.").unwrap_or(h);
        if h != "*" && (rest.contains('*') || rest.contains('/') || rest.contains(char::is_whitespace)) {
            return Err(route_err(format!("{field}[{i}]"), format!("{h:?} is not a host, a *.suffix wildcard or *")));
        }
    }
    Ok(())
}

fn validate_paths(field: &str, paths: &[String]) -> Result<(), RouteError> {
    for (i, p) in paths.iter().enumerate() {
        if p.is_empty() || p.contains(char::is_whitespace) || p.contains('?') {
            return Err(route_err(format!("{field}[{i}]"), format!("{p:?} is not a path prefix")));
        }
    }
    Ok(())
}

/// Builds the scaler's view of `scalingMetric`, rejecting what cannot work.
pub fn scaling(
    field: &str,
    metric: Option<&ScalingMetric>,
    from_http_scaled_object: bool,
    target_pending_requests: Option<i32>,
) -> Result<Scaling, RouteError> {
    let concurrency_target = metric.and_then(|m| m.concurrency.as_ref()).map(|c| c.target_value);
    if let Some(t) = concurrency_target.filter(|t| *t < 1) {
        return Err(route_err(format!("{field}.concurrency.targetValue"), format!("{t} must be at least 1")));
    }
    let rate = match metric.and_then(|m| m.request_rate.as_ref()) {
        None => None,
        Some(r) => {
            if r.target_value < 1 {
                return Err(route_err(
                    format!("{field}.requestRate.targetValue"),
                    format!("{} must be at least 1", r.target_value),
                ));
            }
            if r.granularity.0 < Duration::from_secs(1) {
                return Err(route_err(
                    format!("{field}.requestRate.granularity"),
                    format!("{} is below the 1s minimum", r.granularity),
                ));
            }
            if r.window.0 < r.granularity.0 {
                return Err(route_err(
                    format!("{field}.requestRate.window"),
                    format!("{} is shorter than the granularity {}", r.window, r.granularity),
                ));
            }
            Some(RateSpec { target: f64::from(r.target_value), window: r.window.0, granularity: r.granularity.0 })
        }
    };
    if from_http_scaled_object && concurrency_target.is_some() && rate.is_some() {
        return Err(route_err(field, "concurrency and requestRate are mutually exclusive on an HTTPScaledObject"));
    }
    if !from_http_scaled_object && concurrency_target.is_none() && rate.is_none() {
        return Err(route_err(field, "at least one of 'concurrency' or 'requestRate' must be set"));
    }
    Ok(Scaling {
        concurrency_target: concurrency_target.map(f64::from),
        rate,
        from_http_scaled_object,
        fallback_target: f64::from(target_pending_requests.unwrap_or(100)),
    })
}

/// Resolves a `StaticResponse` into a placeholder (status 0 or absent means 503, as upstream).
pub fn placeholder(field: &str, r: &StaticResponse) -> Result<Placeholder, RouteError> {
    fixed_response(field, r, StatusCode::SERVICE_UNAVAILABLE)
}

/// Resolves static routes (status 0 or absent means 200, as upstream).
pub(crate) fn static_entries(field: &str, routes: &[StaticRoute]) -> Result<Vec<StaticEntry>, RouteError> {
    routes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let f = format!("{field}[{i}]");
            if s.rules.is_empty() {
                return Err(route_err(format!("{f}.rules"), "needs at least one rule"));
            }
            if let Some(j) = s.rules.iter().position(|r| !r.models.is_empty()) {
                return Err(route_err(format!("{f}.rules[{j}].models"), "static routes cannot match on models"));
            }
            Ok(StaticEntry {
                rules: rules(&format!("{f}.rules"), &s.rules)?,
                response: fixed_response(&format!("{f}.response"), &s.response, StatusCode::OK)?,
                mode: s.response_mode,
            })
        })
        .collect()
}

fn fixed_response(field: &str, r: &StaticResponse, default_status: StatusCode) -> Result<Placeholder, RouteError> {
    let code = r.status_code.unwrap_or(0);
    let status = if code == 0 {
        default_status
    } else {
        u16::try_from(code)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| route_err(format!("{field}.statusCode"), format!("{code} is not between 100 and 599")))?
    };
    let body = match (&r.body, &r.body_from_config_map) {
        (Some(_), Some(_)) => {
            return Err(route_err(field, "body and bodyFromConfigMap are mutually exclusive"));
        }
        (Some(b), None) if b.len() > 32_768 => {
            return Err(route_err(format!("{field}.body"), "longer than 32768 bytes"));
        }
        (Some(b), None) => PlaceholderBody::Inline(b.clone()),
        (None, Some(cm)) => PlaceholderBody::ConfigMap { name: cm.name.clone(), key: cm.key.clone() },
        (None, None) => PlaceholderBody::Inline(String::new()),
    };
    let mut headers = Vec::new();
    for (k, v) in r.headers.iter().flatten() {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| route_err(format!("{field}.headers"), format!("{k:?} is not a valid header name")))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| route_err(format!("{field}.headers.{k}"), "not a valid header value"))?;
        headers.push((name, value));
    }
    Ok(Placeholder { status, body, headers })
}

fn max_pending(field: &str, cold_start: Option<&ColdStartSpec>) -> Result<Option<usize>, RouteError> {
    match cold_start.and_then(|c| c.max_pending_requests) {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as usize)),
        Some(n) => Err(route_err(format!("{field}.maxPendingRequests"), format!("{n} must be at least 1"))),
    }
}

/// Converts an HTTPScaledObject into its route, as upstream's interceptor does.
pub fn from_http_scaled_object(key: RouteKey, spec: &HttpScaledObjectSpec, order: i64) -> Result<Route, RouteError> {
    let hosts = spec.hosts.clone().unwrap_or_default();
    let paths = spec.path_prefixes.clone().unwrap_or_default();
    validate_hosts("spec.hosts", &hosts)?;
    validate_paths("spec.pathPrefixes", &paths)?;
    let headers = header_matchers("spec.headers", spec.headers.as_deref().unwrap_or_default())?;
    let st = &spec.scale_target_ref;
    let target = Target::Service {
        namespace: key.namespace.clone(),
        name: st.service.clone(),
        port: service_port("spec.scaleTargetRef", st.port, st.port_name.as_ref())?,
    };
    let mut timeouts = RouteTimeouts::default();
    if let Some(t) = &spec.timeouts {
        timeouts.readiness = t.condition_wait.and_then(|d| d.non_zero());
        timeouts.response_header = t.response_header.and_then(|d| d.non_zero());
    }
    let fallback = match &spec.cold_start_timeout_failover_ref {
        None => None,
        Some(f) => {
            if f.timeout_seconds > 0 {
                timeouts.readiness = Some(Duration::from_secs(f.timeout_seconds as u64));
            }
            Some(Target::Service {
                namespace: key.namespace.clone(),
                name: f.service.clone(),
                port: service_port("spec.coldStartTimeoutFailoverRef", f.port, f.port_name.as_ref())?,
            })
        }
    };
    Ok(Route {
        scaling: scaling("spec.scalingMetric", spec.scaling_metric.as_ref(), true, spec.target_pending_requests)?,
        key,
        rules: vec![Rule { hosts, paths, headers, models: Vec::new() }],
        target,
        fallback,
        placeholder: None,
        timeouts,
        max_pending: None,
        max_concurrent_per_pod: None,
        overflow: Overflow::Reject,
        h2c: false,
        statics: Vec::new(),
        order,
        stream_keep_alive: None,
    })
}

pub(crate) fn rules(field: &str, rules: &[RoutingRule]) -> Result<Vec<Rule>, RouteError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}[{i}]");
            validate_hosts(&format!("{f}.hosts"), &r.hosts)?;
            let paths: Vec<String> = r.paths.iter().map(|p| p.value.clone()).collect();
            validate_paths(&format!("{f}.paths"), &paths)?;
            Ok(Rule {
                hosts: r.hosts.clone(),
                paths,
                headers: header_matchers(&format!("{f}.headers"), &r.headers)?,
                models: model_patterns(&format!("{f}.models"), &r.models)?,
            })
        })
        .collect()
}

fn model_patterns(field: &str, models: &[String]) -> Result<Vec<ModelPattern>, RouteError> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelPattern::parse(m).map_err(|e| route_err(format!("{field}[{i}]"), e.to_string())))
        .collect()
}

/// The cold-start and timeout parts shared by InterceptorRoutes and standalone routes.
pub(crate) struct ColdStartParts {
    pub placeholder: Option<Placeholder>,
    pub max_pending: Option<usize>,
    pub max_concurrent_per_pod: Option<usize>,
    pub overflow: Overflow,
    pub stream_keep_alive: Option<Duration>,
}

pub(crate) fn cold_start_parts(field: &str, cs: Option<&ColdStartSpec>) -> Result<ColdStartParts, RouteError> {
    let placeholder = cs
        .and_then(|c| c.placeholder.as_ref())
        .map(|p| placeholder(&format!("{field}.placeholder.response"), &p.response))
        .transpose()?;
    let overflow = cs.and_then(|c| c.overflow).unwrap_or(Overflow::Reject);
    if overflow == Overflow::Placeholder && placeholder.is_none() {
        return Err(route_err(format!("{field}.overflow"), "Placeholder needs coldStart.placeholder"));
    }
    let max_concurrent_per_pod = match cs.and_then(|c| c.max_concurrent_per_pod) {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => return Err(route_err(format!("{field}.maxConcurrentPerPod"), format!("{n} must be at least 1"))),
    };
    let stream_keep_alive = match cs.and_then(|c| c.stream_keep_alive) {
        None => None,
        Some(k) if k.interval.0 >= Duration::from_millis(100) => Some(k.interval.0),
        Some(k) => {
            return Err(route_err(
                format!("{field}.streamKeepAlive.interval"),
                format!("{} is below the 100ms minimum", k.interval),
            ));
        }
    };
    Ok(ColdStartParts {
        placeholder,
        max_pending: max_pending(field, cs)?,
        max_concurrent_per_pod,
        overflow,
        stream_keep_alive,
    })
}

pub(crate) fn route_timeouts(t: Option<&crate::spec::RouteTimeoutsSpec>) -> RouteTimeouts {
    RouteTimeouts {
        readiness: t.and_then(|t| t.readiness).map(|d| d.0),
        request: t.and_then(|t| t.request).map(|d| d.0),
        response_header: t.and_then(|t| t.response_header).map(|d| d.0),
    }
}

/// Converts an InterceptorRoute into its route.
pub fn from_interceptor_route(key: RouteKey, spec: &InterceptorRouteSpec, order: i64) -> Result<Route, RouteError> {
    if spec.target.service.is_empty() {
        return Err(route_err("spec.target.service", "must not be empty"));
    }
    let port = service_port("spec.target", spec.target.port, spec.target.port_name.as_ref())
        .map_err(|e| route_err(e.field, "exactly one of 'port' or 'portName' must be set"))?;
    let target = Target::Service { namespace: key.namespace.clone(), name: spec.target.service.clone(), port };
    let cs = spec.cold_start.as_ref();
    let parts = cold_start_parts("spec.coldStart", cs)?;
    let fallback = cs
        .and_then(|c| c.fallback.as_ref())
        .map(|f| {
            let port = service_port("spec.coldStart.fallback.service", f.service.port, f.service.port_name.as_ref())?;
            Ok::<_, RouteError>(Target::Service {
                namespace: key.namespace.clone(),
                name: f.service.name.clone(),
                port,
            })
        })
        .transpose()?;
    Ok(Route {
        scaling: scaling("spec.scalingMetric", Some(&spec.scaling_metric), false, None)?,
        rules: rules("spec.rules", &spec.rules)?,
        key,
        target,
        fallback,
        placeholder: parts.placeholder,
        timeouts: route_timeouts(spec.timeouts.as_ref()),
        max_pending: parts.max_pending,
        max_concurrent_per_pod: parts.max_concurrent_per_pod,
        overflow: parts.overflow,
        h2c: false,
        statics: static_entries("spec.staticRoutes", &spec.static_routes)?,
        order,
        stream_keep_alive: parts.stream_keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn httpso(yaml: &str) -> Result<Route, RouteError> {
        let spec: HttpScaledObjectSpec = serde_yaml::from_str(yaml).unwrap();
        from_http_scaled_object(RouteKey::new("ollama", "ollama"), &spec, 0)
    }

    #[test]
    fn httpso_becomes_one_rule_with_upstream_timeout_mapping() {
        let r = httpso(
            "hosts: [a.com]\npathPrefixes: [/api]\nheaders: [{name: X-T}]\nscaleTargetRef: {service: svc, port: 8080}\n\
             timeouts: {conditionWait: 20s, responseHeader: 0s}\ncoldStartTimeoutFailoverRef: {service: fb, port: 80}\n",
        )
        .unwrap();
        assert_eq!(r.rules.len(), 1);
        assert_eq!(r.rules[0].paths, vec!["/api"]);
        assert_eq!(r.target.to_string(), "svc.ollama:8080");
        // timeoutSeconds (default 30) of the failover ref wins over conditionWait, as upstream.
        assert_eq!(r.timeouts.readiness, Some(Duration::from_secs(30)));
        // responseHeader 0s is "not set" on an HTTPSO.
        assert_eq!(r.timeouts.response_header, None);
        assert_eq!(r.fallback.unwrap().to_string(), "fb.ollama:80");
        assert!(r.scaling.from_http_scaled_object && r.scaling.concurrency_target.is_none());
        assert_eq!(r.scaling.fallback_target, 100.0);
    }

    #[test]
    fn httpso_rejects_port_and_port_name_together_and_both_metrics() {
        let e = httpso("scaleTargetRef: {service: s, port: 1, portName: http}\n").unwrap_err();
        assert_eq!(e.to_string(), "spec.scaleTargetRef: must define either the 'portName' or the 'port'");
        let e = httpso(
            "scaleTargetRef: {service: s, port: 1}\nscalingMetric: {concurrency: {targetValue: 1}, requestRate: {targetValue: 1}}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mutually exclusive"), "{e}");
    }

    #[test]
    fn granularity_below_one_second_is_rejected() {
        let e = httpso("scaleTargetRef: {service: s, port: 1}\nscalingMetric: {requestRate: {granularity: 500ms}}\n")
            .unwrap_err();
        assert_eq!(e.field, "spec.scalingMetric.requestRate.granularity");
    }

    #[test]
    fn interceptor_route_needs_a_metric_and_one_port() {
        let ir = |yaml: &str| {
            let spec: InterceptorRouteSpec = serde_yaml::from_str(yaml).unwrap();
            from_interceptor_route(RouteKey::new("default", "app"), &spec, 0)
        };
        let e = ir("target: {service: s, port: 1}\nscalingMetric: {}\n").unwrap_err();
        assert!(e.message.contains("at least one of"), "{e}");
        let e = ir("target: {service: s}\nscalingMetric: {concurrency: {targetValue: 1}}\n").unwrap_err();
        assert!(e.message.contains("exactly one of"), "{e}");
        let r = ir("target: {service: s, portName: http}\nscalingMetric: {concurrency: {targetValue: 5}}\n\
             coldStart: {placeholder: {response: {body: wait}}}\ntimeouts: {request: 0s}\n")
        .unwrap();
        assert!(r.rules.is_empty(), "an IR without rules never matches");
        let p = r.placeholder.unwrap();
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.timeouts.request, Some(Duration::ZERO));
    }

    #[test]
    fn static_routes_default_to_200_and_when_unavailable_and_match_on_their_own_rules() {
        let spec: InterceptorRouteSpec = serde_yaml::from_str(
            r#"
target: {service: s, port: 1}
scalingMetric: {concurrency: {targetValue: 1}}
staticRoutes:
  - rules: [{paths: [{value: /healthz}]}]
    response: {body: OK}
  - rules: [{hosts: ['*.x.io'], headers: [{name: X-Probe}]}]
    responseMode: Always
    response: {statusCode: 204}
"#,
        )
        .unwrap();
        let r = from_interceptor_route(RouteKey::new("default", "app"), &spec, 0).unwrap();
        assert_eq!(r.statics[0].response.status, StatusCode::OK);
        assert_eq!(r.statics[0].mode, ResponseMode::WhenUnavailable);
        assert_eq!(r.statics[1].mode, ResponseMode::Always);
        let none = http::HeaderMap::new();
        let probe: http::HeaderMap =
            [(HeaderName::from_static("x-probe"), HeaderValue::from_static("1"))].into_iter().collect();
        let health = &r.statics[0].rules[0];
        assert!(health.matches("any.host", "/healthz", &none));
        assert!(health.matches("any.host", "/healthz/live", &none));
        assert!(!health.matches("any.host", "/healthzx", &none));
        let wild = &r.statics[1].rules[0];
        assert!(wild.matches("A.b.X.io:80", "/", &probe));
        assert!(!wild.matches("x.io", "/", &probe), "*.x.io needs a subdomain");
        assert!(!wild.matches("a.x.io", "/", &none), "headers are AND'ed");
    }

    #[test]
    fn interceptor_route_rules_may_match_on_models_but_static_routes_may_not() {
        let ir = |yaml: &str| {
            let spec: InterceptorRouteSpec = serde_yaml::from_str(yaml).unwrap();
            from_interceptor_route(RouteKey::new("default", "llama"), &spec, 0)
        };
        let r = ir("target: {service: s, port: 1}\nscalingMetric: {concurrency: {targetValue: 1}}\n\
             rules: [{hosts: [m.io], models: ['llama3:8b', 'llama3.1*']}]\ncoldStart: {streamKeepAlive: {interval: 3s}}\n")
        .unwrap();
        let models: Vec<String> = r.rules[0].models.iter().map(ToString::to_string).collect();
        assert_eq!(models, vec!["llama3:8b", "llama3.1*"]);
        assert_eq!(r.stream_keep_alive, Some(Duration::from_secs(3)));
        let e = ir("target: {service: s, port: 1}\nscalingMetric: {concurrency: {targetValue: 1}}\n\
             rules: [{models: ['*x']}]\n")
        .unwrap_err();
        assert_eq!(e.field, "spec.rules[0].models[0]");
        let e = ir("target: {service: s, port: 1}\nscalingMetric: {concurrency: {targetValue: 1}}\n\
             staticRoutes: [{rules: [{models: [a]}], response: {body: x}}]\n")
        .unwrap_err();
        assert_eq!(e.field, "spec.staticRoutes[0].rules[0].models");
    }

    #[test]
    fn bad_placeholder_status_and_header_names_are_named() {
        let e = placeholder("p", &StaticResponse { status_code: Some(99), ..Default::default() }).unwrap_err();
        assert_eq!(e.field, "p.statusCode");
        let e = header_matchers("h", &[HeaderMatch { name: "bad header".into(), value: None }]).unwrap_err();
        assert_eq!(e.field, "h[0].name");
    }
}
