//! The scaler's Prometheus metrics: upstream's `scaler_pinger_*` names, plus push updates and the activation
//! latency.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub fetch_duration: Histogram,
    pub fetch_errors: Counter,
    pub unreachable: Gauge,
    pub endpoints: Gauge,
    pub push_updates: Counter,
    pub activation_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let fetch_duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let fetch_errors = Counter::default();
        let unreachable = Gauge::default();
        let endpoints = Gauge::default();
        let push_updates = Counter::default();
        let activation_latency =
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        registry.register(
            "scaler_pinger_fetch_duration_seconds",
            "Duration of one /queue fetch",
            fetch_duration.clone(),
        );
        registry.register("scaler_pinger_fetch_errors", "Failed or timed-out /queue fetches", fetch_errors.clone());
        registry.register(
            "scaler_pinger_unreachable_pods",
            "Interceptors whose last fetch failed",
            unreachable.clone(),
        );
        registry.register("scaler_pinger_endpoints", "Interceptors followed", endpoints.clone());
        registry.register(
            "scaler_push_updates",
            "Count updates received on interceptors' /queue/stream",
            push_updates.clone(),
        );
        registry.register(
            "scaler_activation_latency_seconds",
            "From an interceptor's first in-flight request for an idle route to `true` sent on StreamIsActive",
            activation_latency.clone(),
        );
        Self { registry, fetch_duration, fetch_errors, unreachable, endpoints, push_updates, activation_latency }
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
