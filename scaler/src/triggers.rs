//! What KEDA asks about, and what the scaler answers: the trigger metadata keys of reference §4.2, upstream's
//! metric names, targets and value semantics. Pure.
//!
//! - `httpScaledObject: NAME` (what the operator writes): one metric named `http-<ns>_002F<name>`; the value is
//!   `ceil(rate)` when the route scales on request rate, else its concurrency; the target is the metric's
//!   `targetValue`, else `targetPendingRequests`, else 100.
//! - `interceptorRoute: NAME`: `http_<name>_concurrency` and/or `http_<name>_rate`, float values.
//! - `interceptorTargetPendingRequests: N` (the interceptor fleet's own ScaledObject): the sum of concurrency
//!   over every route, target N, named from the ScaledObject.
//!
//! Both the float fields and the deprecated int fields are filled. A route is active when any value is above 0
//! **or** it has a request in flight: a held request always wakes its service, even when the route scales on
//! rate alone (upstream #1692).

use std::collections::HashMap;
use std::fmt::Write as _;

use httpscale_core::route::{RouteKey, Scaling};
use httpscale_core::target::quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    HttpScaledObject,
    InterceptorRoute,
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RouteKind::HttpScaledObject => "HTTPScaledObject",
            RouteKind::InterceptorRoute => "InterceptorRoute",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Route {
        kind: RouteKind,
        key: RouteKey,
    },
    /// The interceptor fleet's own ScaledObject.
    Fleet {
        scaled_object: String,
        target: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "unable to get HTTPScaledObject reference: trigger metadata needs httpScaledObject, interceptorRoute or interceptorTargetPendingRequests"
    )]
    MissingReference,
    #[error("interceptorTargetPendingRequests: {0:?} is not a positive integer")]
    BadTarget(String),
}

/// Reads a trigger from a ScaledObject's name, namespace and trigger metadata.
pub fn parse(name: &str, namespace: &str, metadata: &HashMap<String, String>) -> Result<Trigger, TriggerError> {
    // Upstream's order (scaler/handlers.go): interceptorRoute, then httpScaledObject, then the fleet's target.
    if let Some(n) = metadata.get("interceptorRoute").filter(|n| !n.is_empty()) {
        return Ok(Trigger::Route { kind: RouteKind::InterceptorRoute, key: RouteKey::new(namespace, n.as_str()) });
    }
    if let Some(n) = metadata.get("httpScaledObject").filter(|n| !n.is_empty()) {
        return Ok(Trigger::Route { kind: RouteKind::HttpScaledObject, key: RouteKey::new(namespace, n.as_str()) });
    }
    if let Some(t) = metadata.get("interceptorTargetPendingRequests") {
        let target =
            t.trim().parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| TriggerError::BadTarget(quote(t)))?;
        return Ok(Trigger::Fleet { scaled_object: format!("{namespace}/{name}"), target });
    }
    Err(TriggerError::MissingReference)
}

/// Upstream's `MetricNameHTTPSO`: `http-` + the key with every character outside `[-.0-9A-Za-z]` replaced by
/// `_` and its code point as four upper-case hex digits (`ollama/ollama` → `http-ollama_002Follama`).
pub fn metric_name_httpso(key: &str) -> String {
    let mut out = String::from("http-");
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c);
        } else {
            let _ = write!(out, "_{:04X}", c as u32);
        }
    }
    out
}

/// One metric: its name, target and current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub target: f64,
    pub value: f64,
}

impl Metric {
    /// The deprecated int64 target.
    pub fn target_int(&self) -> i64 {
        self.target.round() as i64
    }
    /// The deprecated int64 value; rounded up so a small positive rate never reads as 0.
    pub fn value_int(&self) -> i64 {
        self.value.ceil() as i64
    }
}

/// The metrics of a route trigger, given the route's live concurrency and rate.
pub fn route_metrics(kind: &RouteKind, key: &RouteKey, scaling: &Scaling, concurrency: i64, rate: f64) -> Vec<Metric> {
    let concurrency = concurrency as f64;
    match kind {
        RouteKind::HttpScaledObject => {
            let name = metric_name_httpso(&key.to_string());
            let metric = match (&scaling.rate, scaling.concurrency_target) {
                (Some(r), _) => Metric { name, target: r.target, value: rate.ceil() },
                (None, target) => {
                    Metric { name, target: target.unwrap_or(scaling.fallback_target), value: concurrency }
                }
            };
            vec![metric]
        }
        RouteKind::InterceptorRoute => {
            let mut out = Vec::with_capacity(2);
            if scaling.concurrency_target.is_some() || scaling.rate.is_none() {
                out.push(Metric {
                    name: format!("http_{}_concurrency", key.name),
                    target: scaling.concurrency_target.unwrap_or(scaling.fallback_target),
                    value: concurrency,
                });
            }
            if let Some(r) = &scaling.rate {
                out.push(Metric { name: format!("http_{}_rate", key.name), target: r.target, value: rate });
            }
            out
        }
    }
}

/// The fleet trigger's one metric.
pub fn fleet_metric(scaled_object: &str, target: i64, total_concurrency: i64) -> Metric {
    Metric { name: metric_name_httpso(scaled_object), target: target as f64, value: total_concurrency as f64 }
}

/// Active: any value above zero, or a request in flight.
pub fn is_active(metrics: &[Metric], concurrency: i64) -> bool {
    concurrency > 0 || metrics.iter().any(|m| m.value > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use httpscale_core::route::RateSpec;
    use std::time::Duration;

    fn md(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn scaling(concurrency: Option<f64>, rate: Option<f64>, httpso: bool) -> Scaling {
        Scaling {
            concurrency_target: concurrency,
            rate: rate.map(|target| RateSpec {
                target,
                window: Duration::from_secs(60),
                granularity: Duration::from_secs(1),
            }),
            from_http_scaled_object: httpso,
            fallback_target: 100.0,
        }
    }

    #[test]
    fn metadata_keys_as_upstream() {
        assert_eq!(
            parse("ollama", "ollama", &md(&[("httpScaledObject", "ollama"), ("scalerAddress", "x:9090")])),
            Ok(Trigger::Route { kind: RouteKind::HttpScaledObject, key: RouteKey::new("ollama", "ollama") })
        );
        assert_eq!(
            parse("so", "default", &md(&[("interceptorRoute", "my-app")])),
            Ok(Trigger::Route { kind: RouteKind::InterceptorRoute, key: RouteKey::new("default", "my-app") })
        );
        assert_eq!(
            parse("keda-add-ons-http-interceptor", "keda", &md(&[("interceptorTargetPendingRequests", "200")])),
            Ok(Trigger::Fleet { scaled_object: "keda/keda-add-ons-http-interceptor".into(), target: 200 })
        );
        assert_eq!(parse("a", "b", &md(&[("hosts", "x")])), Err(TriggerError::MissingReference));
        // With several keys, interceptorRoute wins as upstream (httpscale used to read httpScaledObject first).
        assert_eq!(
            parse("so", "default", &md(&[("httpScaledObject", "old"), ("interceptorRoute", "new")])),
            Ok(Trigger::Route { kind: RouteKind::InterceptorRoute, key: RouteKey::new("default", "new") })
        );
        assert!(matches!(
            parse("a", "b", &md(&[("interceptorTargetPendingRequests", "lots")])),
            Err(TriggerError::BadTarget(_))
        ));
    }

    #[test]
    fn httpso_metric_name_escapes_like_upstream() {
        assert_eq!(metric_name_httpso("ollama/ollama"), "http-ollama_002Follama");
        assert_eq!(metric_name_httpso("my-ns/app.v2"), "http-my-ns_002Fapp.v2");
        assert_eq!(metric_name_httpso("a_b/c"), "http-a_005Fb_002Fc");
    }

    #[test]
    fn httpso_reports_one_metric_rate_ceiled_or_concurrency() {
        let key = RouteKey::new("ollama", "ollama");
        let m = route_metrics(&RouteKind::HttpScaledObject, &key, &scaling(None, Some(20.0), true), 3, 0.2);
        assert_eq!(m, vec![Metric { name: "http-ollama_002Follama".into(), target: 20.0, value: 1.0 }]);
        let m = route_metrics(&RouteKind::HttpScaledObject, &key, &scaling(None, None, true), 3, 7.0);
        assert_eq!(
            (m[0].target, m[0].value),
            (100.0, 3.0),
            "no scalingMetric: concurrency against targetPendingRequests"
        );
        assert_eq!((m[0].target_int(), m[0].value_int()), (100, 3));
    }

    #[test]
    fn interceptor_route_reports_both_metrics_as_floats() {
        let key = RouteKey::new("default", "my-app");
        let m = route_metrics(&RouteKind::InterceptorRoute, &key, &scaling(Some(100.0), Some(50.0), false), 4, 12.5);
        assert_eq!(m[0], Metric { name: "http_my-app_concurrency".into(), target: 100.0, value: 4.0 });
        assert_eq!(m[1], Metric { name: "http_my-app_rate".into(), target: 50.0, value: 12.5 });
        assert_eq!(m[1].value_int(), 13);
    }

    #[test]
    fn a_held_request_makes_a_rate_only_route_active() {
        let key = RouteKey::new("default", "r");
        let m = route_metrics(&RouteKind::HttpScaledObject, &key, &scaling(None, Some(10.0), true), 1, 0.0);
        assert_eq!(m[0].value, 0.0, "the rate is still zero");
        assert!(is_active(&m, 1), "but the held request activates (upstream #1692)");
        assert!(!is_active(&m, 0));
    }
}
