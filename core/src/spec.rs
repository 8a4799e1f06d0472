//! The upstream CRD types, field for field: `HTTPScaledObject` (`http.keda.sh/v1alpha1`), `InterceptorRoute`
//! (`http.keda.sh/v1beta1`), and the part of KEDA's `ScaledObject` (`keda.sh/v1alpha1`) the operator writes.
//!
//! The CRD YAML is generated from these types (names, short name, printer columns, status subresource,
//! defaults, list types, bounds and CEL rules with upstream's messages) and committed into the chart; a test
//! fails when the two drift. Unknown fields are rejected with the field's name, so a typo in a manifest or a
//! routes file is an error rather than a silently ignored setting.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;

/// A header matcher: AND semantics across the list; no `value` means "present with any value".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `spec.scalingMetric` (both CRDs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<RequestRateMetric>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConcurrencyMetric {
    #[serde(default = "default_target_value")]
    #[schemars(range(min = 1))]
    pub target_value: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestRateMetric {
    #[serde(default = "default_target_value")]
    #[schemars(range(min = 1))]
    pub target_value: i32,
    #[serde(default = "default_window")]
    #[schemars(extend("default" = "1m"))]
    pub window: GoDuration,
    #[serde(default = "default_granularity")]
    #[schemars(extend("default" = "1s"))]
    pub granularity: GoDuration,
}

pub(crate) fn default_target_value() -> i32 {
    100
}
pub(crate) fn default_window() -> GoDuration {
    GoDuration::from_secs(60)
}
pub(crate) fn default_granularity() -> GoDuration {
    GoDuration::from_secs(1)
}

/// A fixed response: an InterceptorRoute placeholder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.body) && has(self.bodyFromConfigMap))").message("at most one of 'body' or 'bodyFromConfigMap' may be set"))]
pub struct StaticResponse {
    /// Omitted: 503 for a placeholder, 200 for a static route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_from_config_map: Option<ConfigMapBodyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapBodyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A CRD condition list (`listType: map`, keyed by `type`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Conditions(
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))] pub Vec<Condition>,
);

// ---------------------------------------------------------------------------------------------
// HTTPScaledObject v1alpha1

/// `HTTPScaledObject.spec` (deprecated upstream in favour of InterceptorRoute, and still supported).
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "http.keda.sh",
    version = "v1alpha1",
    kind = "HTTPScaledObject",
    plural = "httpscaledobjects",
    shortname = "httpso",
    namespaced,
    status = "HttpScaledObjectStatus",
    printcolumn = r#"{"name":"TargetWorkload","type":"string","jsonPath":".status.targetWorkload"}"#,
    printcolumn = r#"{"name":"TargetService","type":"string","jsonPath":".status.targetService"}"#,
    printcolumn = r#"{"name":"MinReplicas","type":"integer","jsonPath":".spec.replicas.min"}"#,
    printcolumn = r#"{"name":"MaxReplicas","type":"integer","jsonPath":".spec.replicas.max"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpScaledObjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub headers: Option<Vec<HeaderMatch>>,
    pub scale_target_ref: ScaleTargetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_timeout_failover_ref: Option<ColdStartTimeoutFailoverRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStruct>,
    /// Deprecated since 0.8: the target when `scalingMetric` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pending_requests: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaledown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_metric: Option<ScalingMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpScaledObjectTimeouts>,
}

/// `HTTPScaledObject.status`, as upstream writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpScaledObjectStatus {
    /// `<apiVersion>/<kind>/<name>`, e.g. `apps/v1/Deployment/ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_workload: Option<String>,
    /// `<service>:<port>` (a port given by name shows as 0, as upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.portName) != has(self.port)").message("must define either the 'portName' or the 'port'"))]
pub struct ScaleTargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.portName) != has(self.port)").message("must define either the 'portName' or the 'port'"))]
pub struct ColdStartTimeoutFailoverRef {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default = "default_failover_timeout")]
    pub timeout_seconds: i32,
}

fn default_failover_timeout() -> i32 {
    30
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaStruct {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpScaledObjectTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_wait: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<GoDuration>,
}

// ---------------------------------------------------------------------------------------------
// InterceptorRoute v1beta1

/// `InterceptorRoute.spec`: routing and interceptor behaviour; the user writes the ScaledObject.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "http.keda.sh",
    version = "v1beta1",
    kind = "InterceptorRoute",
    plural = "interceptorroutes",
    namespaced,
    status = "InterceptorRouteStatus",
    printcolumn = r#"{"name":"TargetService","type":"string","jsonPath":".spec.target.service"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterceptorRouteSpec {
    pub target: TargetRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub rules: Vec<RoutingRule>,
    #[x_kube(validation = Rule::new("has(self.concurrency) || has(self.requestRate)").message("at least one of 'concurrency' or 'requestRate' must be set"))]
    pub scaling_metric: ScalingMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStartSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RouteTimeoutsSpec>,
    /// Fixed answers for some requests (upstream main); the first matching entry wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub static_routes: Vec<StaticRoute>,
}

/// A fixed answer for requests matching any of `rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticRoute {
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "atomic"))]
    pub rules: Vec<RoutingRule>,
    pub response: StaticResponse,
    #[serde(default)]
    pub response_mode: ResponseMode,
}

/// `Always`: answer with the static response. `WhenUnavailable`: only while the target has no ready
/// endpoint; otherwise forward (without counting, as upstream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ResponseMode {
    Always,
    #[default]
    WhenUnavailable,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterceptorRouteStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

/// `spec.target` of an InterceptorRoute: a Service port by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.port) != has(self.portName)").message("exactly one of 'port' or 'portName' must be set"))]
pub struct TargetRef {
    #[schemars(length(min = 1))]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub headers: Vec<HeaderMatch>,
    /// httpscale extension: match only requests whose JSON body names one of these models (`model` of
    /// OpenAI, Ollama and Anthropic inference requests); a trailing `*` matches a prefix. Requests without a
    /// body or a `model` fall through to the other rules. Not in upstream's CRD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    #[schemars(length(min = 1))]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.fallback) || has(self.placeholder) || has(self.maxPendingRequests) || has(self.maxConcurrentPerPod) || has(self.streamKeepAlive)").message("at least one of 'fallback', 'placeholder' or 'maxPendingRequests' must be set"))]
#[x_kube(validation = Rule::new("self.overflow != 'Placeholder' || has(self.placeholder)").message("'placeholder' must be set when 'overflow' is 'Placeholder'"))]
pub struct ColdStartSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<PlaceholderSpec>,
    /// Cap on requests held for this route on one interceptor (upstream PR #1733).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_pending_requests: Option<i32>,
    /// At most this many requests in flight per ready pod; the rest stay held (httpscale; upstream #1038).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_per_pod: Option<i32>,
    /// What an over-cap request gets: `Reject` (503, the default) or `Placeholder`. With `Placeholder` and
    /// this route's own `maxPendingRequests`, requests are held up to that limit and only the overflow gets
    /// the placeholder (upstream 0.16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Reject"))]
    pub overflow: Option<Overflow>,
    /// httpscale extension: a held request that asks for an SSE stream gets its response head at once and
    /// an SSE comment every `interval` until the backend answers. Not in upstream's CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_keep_alive: Option<StreamKeepAlive>,
}

/// `coldStart.streamKeepAlive` (httpscale extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamKeepAlive {
    /// Time between two `: waiting for model` comments (at least 100ms).
    #[serde(default = "default_keep_alive_interval")]
    pub interval: GoDuration,
}

fn default_keep_alive_interval() -> GoDuration {
    GoDuration::from_secs(5)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Overflow {
    Reject,
    Placeholder,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    pub service: ServiceRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.port) != has(self.portName)").message("exactly one of 'port' or 'portName' must be set"))]
pub struct ServiceRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderSpec {
    pub response: StaticResponse,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTimeoutsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<GoDuration>,
}

// ---------------------------------------------------------------------------------------------
// KEDA ScaledObject (keda.sh/v1alpha1): the subset the operator writes. KEDA owns this CRD.

#[derive(CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    plural = "scaledobjects",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    pub scale_target_ref: ScaledObjectTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<ScaledObjectAdvanced>,
    pub triggers: Vec<ScaleTrigger>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectAdvanced {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleTrigger {
    #[serde(rename = "type")]
    pub type_: String,
    pub metadata: BTreeMap<String, String>,
}

/// The two CRDs as YAML documents, as committed in the chart (`charts/keda-add-ons-http/files/crds.yaml`).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out =
        String::from("# GENERATED by `cargo run -p httpscale-operator -- crds` from core/src/spec.rs: do not edit.\n");
    for crd in [HTTPScaledObject::crd(), InterceptorRoute::crd()] {
        let mut value = serde_json::to_value(&crd).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
        structural(&mut value);
        with_object_fields(&mut value);
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value)?);
    }
    Ok(out)
}

/// The root fields every object has, declared as controller-gen declares them.
fn with_object_fields(crd: &mut serde_json::Value) {
    let Some(versions) = crd.pointer_mut("/spec/versions").and_then(|v| v.as_array_mut()) else { return };
    for v in versions {
        if let Some(props) = v.pointer_mut("/schema/openAPIV3Schema/properties").and_then(|p| p.as_object_mut()) {
            props.insert("apiVersion".into(), serde_json::json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), serde_json::json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert("metadata".into(), serde_json::json!({"type": "object"}));
        }
    }
}

/// Kubernetes structural schemas forbid `additionalProperties: false` next to `properties` (the API server
/// prunes unknown fields instead), and `deny_unknown_fields` makes schemars emit it.
fn structural(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties")
                && map.get("additionalProperties") == Some(&serde_json::Value::Bool(false))
            {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(structural);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(structural),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_httpscaledobject_parses_with_defaults() {
        let yaml = r#"
hosts: [ollama.ollama]
scaleTargetRef: {name: ollama, kind: Deployment, apiVersion: apps/v1, service: ollama, port: 11434}
replicas: {min: 0, max: 2}
scaledownPeriod: 3600
scalingMetric:
  requestRate: {targetValue: 20}
"#;
        let spec: HttpScaledObjectSpec = serde_yaml::from_str(yaml).unwrap();
        let rate = spec.scaling_metric.unwrap().request_rate.unwrap();
        assert_eq!(rate.target_value, 20);
        assert_eq!(rate.window.to_string(), "1m0s");
        assert_eq!(rate.granularity.to_string(), "1s");
        assert_eq!(spec.scale_target_ref.port, Some(11434));
    }

    #[test]
    fn unknown_field_is_named() {
        let yaml = "scaleTargetRef: {service: s, port: 1}\nhostz: [a]\n";
        let err = serde_yaml::from_str::<HttpScaledObjectSpec>(yaml).unwrap_err().to_string();
        assert!(err.contains("unknown field `hostz`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn malformed_duration_is_named() {
        let yaml = "target: {service: s, port: 1}\nscalingMetric: {concurrency: {targetValue: 1}}\ntimeouts: {readiness: 5x}\n";
        let err = serde_yaml::from_str::<InterceptorRouteSpec>(yaml).unwrap_err().to_string();
        assert!(err.contains("timeouts: invalid duration \"5x\"") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn reference_interceptor_route_parses() {
        let yaml = r#"
target: {service: my-app-svc, port: 8080}
rules:
  - hosts: [app.example.com, "*.apps.example.com"]
    paths: [{value: /api}]
    headers: [{name: X-Env, value: prod}]
scalingMetric:
  concurrency: {targetValue: 100}
  requestRate: {targetValue: 50, window: 1m, granularity: 1s}
coldStart:
  placeholder:
    response:
      statusCode: 503
      body: "<h1>Loading...</h1>"
      headers: {Content-Type: text/html, Refresh: "5"}
  fallback:
    service: {name: my-app-fallback, port: 8080}
timeouts: {readiness: 30s, request: 5m, responseHeader: 120s}
"#;
        let spec: InterceptorRouteSpec = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(spec.rules[0].paths[0].value, "/api");
        assert_eq!(spec.timeouts.unwrap().request.unwrap().to_string(), "5m0s");
    }
}
