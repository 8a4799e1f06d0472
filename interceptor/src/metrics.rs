//! Prometheus metrics with upstream's names and labels (reference §3.7), plus the cold-start ones upstream
//! lacks. `interceptor_request_concurrency` is read from the live route counters at scrape time, so the data
//! path pays nothing for it.

use std::fmt::Write as _;
use std::sync::Arc;

use http::Method;
use httpscale_core::route::RouteKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::process::ProcessMetrics;
use crate::routes::Routes;

/// A label value shared by every series of a route (cloning it is a reference-count increment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, EncodeLabelSet)]
pub struct RouteLabels {
    pub route_name: Name,
    pub route_namespace: Name,
}

impl RouteLabels {
    pub fn new(key: &RouteKey) -> Self {
        Self { route_name: Name(key.name.as_str().into()), route_namespace: Name(key.namespace.as_str().into()) }
    }
}

/// The HTTP method as upstream labels it: standard methods by name, anything else `_OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodLabel(&'static str);

impl From<&Method> for MethodLabel {
    fn from(m: &Method) -> Self {
        const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
        Self(STANDARD.iter().find(|s| **s == m.as_str()).copied().unwrap_or("_OTHER"))
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: u16,
    pub method: MethodLabel,
    pub route_name: Name,
    pub route_namespace: Name,
}

const DURATION_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Cold starts range from milliseconds (a warm process) to many minutes (a GPU node and a model load).
const COLD_START_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RequestLabels, Histogram>,
    pub cold_start_wait: Family<RouteLabels, Histogram>,
    pub cold_start_rejections: Family<RouteLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// `interceptor_request_concurrency`, read from the route counters on each scrape.
#[derive(Clone)]
struct Concurrency(Arc<Routes>);

impl std::fmt::Debug for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Concurrency")
    }
}

impl Collector for Concurrency {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let table = self.0.table();
        let mut metric = encoder.encode_descriptor(
            "interceptor_request_concurrency",
            "Requests in flight per route, held ones included",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in table.routes() {
            let gauge = ConstGauge::new(r.counters.snapshot().concurrency);
            gauge.encode(metric.encode_family(&r.labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(routes: Arc<Routes>, process: &ProcessMetrics) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let cold_start_wait =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(COLD_START_BUCKETS));
        let cold_start_rejections = Family::<RouteLabels, Counter>::default();
        registry.register(
            "interceptor_request_count",
            "Requests handled, by status code, method and route",
            requests.clone(),
        );
        registry.register(
            "interceptor_request_duration_seconds",
            "Time from request arrival to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "interceptor_cold_start_wait_seconds",
            "How long held requests waited for a ready backend",
            cold_start_wait.clone(),
        );
        registry.register(
            "interceptor_cold_start_rejections",
            "Requests refused because the route's hold queue was full",
            cold_start_rejections.clone(),
        );
        registry.register_collector(Box::new(Concurrency(routes)));
        process.register(&mut registry);
        Self { registry, requests, duration, cold_start_wait, cold_start_rejections }
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
