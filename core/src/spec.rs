//! The upstream CRD spec types, field for field: `HTTPScaledObject` (`http.keda.sh/v1alpha1`) and
//! `InterceptorRoute` (`http.keda.sh/v1beta1`). Unknown fields are rejected with the field's name, so a
//! typo in a manifest or a routes file is an error rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;

/// A header matcher: AND semantics across the list; no `value` means "present with any value".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `spec.scalingMetric` (both CRDs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<RequestRateMetric>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConcurrencyMetric {
    #[serde(default = "default_target_value")]
    pub target_value: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestRateMetric {
    #[serde(default = "default_target_value")]
    pub target_value: i32,
    #[serde(default = "default_window")]
    pub window: GoDuration,
    #[serde(default = "default_granularity")]
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

/// A fixed response: an InterceptorRoute placeholder (and, upstream, a static route).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_from_config_map: Option<ConfigMapBodyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapBodyRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// HTTPScaledObject v1alpha1

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpScaledObjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaStruct {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpScaledObjectTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_wait: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<GoDuration>,
}

// ---------------------------------------------------------------------------------------------
// InterceptorRoute v1beta1

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterceptorRouteSpec {
    pub target: TargetRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RoutingRule>,
    pub scaling_metric: ScalingMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStartSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RouteTimeoutsSpec>,
}

/// `spec.target` of an InterceptorRoute: a Service port by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetRef {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ColdStartSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<PlaceholderSpec>,
    /// Cap on requests held for this route on one interceptor (upstream PR #1733).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<i32>,
    /// What an over-cap request gets: `Reject` (503) or `Placeholder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overflow {
    Reject,
    Placeholder,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    pub service: ServiceRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderSpec {
    pub response: StaticResponse,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTimeoutsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<GoDuration>,
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
