//! The interceptor's Prometheus registry and the families the data path records into: upstream 0.16's request
//! count, request duration (with `cold_start`), cold-start duration (with `outcome`) and cold-start rejections. What else is exposed registers itself here
//! from the composition root (the per-route concurrency collector of [`crate::routes`], the programs'
//! metrics of [`crate::standalone`]); this module never imports what it measures.

use std::fmt::Write as _;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::labels::{ColdStartLabels, DurationLabels, Outcome, RequestLabels, RouteLabels};

/// OTel's HTTP buckets up to 10 s, then on to 300 s (upstream 0.16 extended the top from 10 s to 300 s, the
/// default response-header timeout, so that a held request no longer lands in `+Inf`; its exact list is not
/// published, so this one is ours: docs/compatibility.md).
pub const DURATION_BUCKETS: [f64; 19] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0];
/// Cold starts range from milliseconds (a warm process) to many minutes (a GPU node and a model load).
pub const COLD_START_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// `interceptor_request_count_total` and `interceptor_request_duration_seconds`.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<DurationLabels, Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
        }
    }
}

impl RequestMetrics {
    /// One finished request; `cold_start` when it waited for its backend's readiness.
    pub fn record(&self, labels: &RequestLabels, cold_start: bool, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(&labels.with_cold_start(cold_start)).observe(seconds);
    }
}

/// `interceptor_cold_start_duration_seconds` and `interceptor_cold_start_rejections_total`.
#[derive(Debug, Clone)]
pub struct ColdStartMetrics {
    pub duration: Family<ColdStartLabels, Histogram>,
    pub rejections: Family<RouteLabels, Counter>,
}

impl ColdStartMetrics {
    /// One request's readiness wait of `seconds`, ended by `outcome`.
    pub fn observe(&self, route: &RouteLabels, outcome: Outcome, seconds: f64) {
        self.duration.get_or_create(&ColdStartLabels::new(route, outcome)).observe(seconds);
    }
}

impl Default for ColdStartMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(|| Histogram::new(COLD_START_BUCKETS)),
            rejections: Family::default(),
        }
    }
}

/// The registry, with the data path's families registered.
pub struct Metrics {
    registry: Registry,
    pub requests: RequestMetrics,
    pub cold_start: ColdStartMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let (requests, cold_start) = (RequestMetrics::default(), ColdStartMetrics::default());
        let mut registry = Registry::default();
        registry.register(
            "interceptor_request_count",
            "Requests handled, by status code, method and route",
            requests.requests.clone(),
        );
        registry.register(
            "interceptor_request_duration_seconds",
            "Time from request arrival to the end of the response body",
            requests.duration.clone(),
        );
        registry.register(
            "interceptor_cold_start_duration_seconds",
            "How long requests waited for a ready backend, by how the wait ended",
            cold_start.duration.clone(),
        );
        registry.register(
            "interceptor_cold_start_rejections",
            "Requests refused because the route's hold queue was full",
            cold_start.rejections.clone(),
        );
        Self { registry, requests, cold_start }
    }

    /// For what registers itself (collectors, other components' families).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}
