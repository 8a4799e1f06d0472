//! Reconcile metrics, named as controller-runtime names them so existing dashboards keep working.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let leader = Gauge::default();
        registry.register("controller_runtime_reconcile", "Reconciles by controller and result", reconciles.clone());
        registry.register(
            "controller_runtime_reconcile_errors",
            "Failed reconciles by controller and error kind",
            errors.clone(),
        );
        registry.register("controller_runtime_reconcile_time_seconds", "Time per reconcile", duration.clone());
        registry.register("leader_election_master_status", "1 while this replica is the leader", leader.clone());
        Self { registry, reconciles, errors, duration, leader }
    }

    /// Records one reconcile.
    pub fn observe(&self, controller: &'static str, took: Duration, error: Option<&'static str>) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles.get_or_create(&ResultLabels { controller, result }).inc();
        if let Some(kind) = error {
            self.errors.get_or_create(&ErrorLabels { controller, kind }).inc();
        }
        self.duration.get_or_create(&ControllerLabels { controller }).observe(took.as_secs_f64());
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
