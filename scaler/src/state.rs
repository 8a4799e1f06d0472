//! What the gRPC service answers from: the aggregated counts, the route specs, and a change signal that wakes
//! every open `StreamIsActive` stream.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use httpscale_core::Shutdown;
use httpscale_core::queue::{QueueCounts, unix_micros};
use httpscale_core::route::Scaling;
use httpscale_core::target::quote;
use tokio::sync::watch;
use tonic::Status;

use crate::aggregate::Aggregator;
use crate::metrics::Metrics;
use crate::triggers::{self, Metric, Trigger, TriggerError};

/// Route specs by `<namespace>/<name>`.
pub type Specs = ArcSwap<HashMap<String, Scaling>>;

pub struct State {
    agg: Mutex<Aggregator>,
    pub specs: Specs,
    changed: watch::Sender<u64>,
    pub metrics: Metrics,
    pub stream_interval: Duration,
    pub stop: Shutdown,
}

/// A trigger's current answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub metrics: Vec<Metric>,
    pub active: bool,
    /// The route key, for route triggers.
    pub route: Option<String>,
}

impl State {
    pub fn new(specs: HashMap<String, Scaling>, stream_interval: Duration, stop: Shutdown) -> Self {
        Self {
            agg: Mutex::new(Aggregator::new(Instant::now())),
            specs: ArcSwap::from_pointee(specs),
            changed: watch::Sender::new(0),
            metrics: Metrics::new(),
            stream_interval,
            stop,
        }
    }

    pub fn agg(&self) -> MutexGuard<'_, Aggregator> {
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every open stream to re-evaluate.
    pub fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Counts pushed by an interceptor.
    pub fn pushed(&self, addr: &str, counts: QueueCounts, changed_us: u64) {
        self.metrics.push_updates.inc();
        if self.agg().observe(addr, counts, Instant::now(), changed_us) {
            self.bump();
        }
    }

    /// Evaluates a ScaledObject's trigger now.
    pub fn evaluate(
        &self,
        name: &str,
        namespace: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Evaluation, Status> {
        let trigger = triggers::parse(name, namespace, metadata).map_err(|e| match e {
            TriggerError::MissingReference | TriggerError::BadTarget(_) => Status::invalid_argument(e.to_string()),
        })?;
        let now = Instant::now();
        match trigger {
            Trigger::Fleet { scaled_object, target } => {
                let total = self.agg().total_concurrency();
                let metric = triggers::fleet_metric(&scaled_object, target, total);
                Ok(Evaluation {
                    active: triggers::is_active(std::slice::from_ref(&metric), total),
                    metrics: vec![metric],
                    route: None,
                })
            }
            Trigger::Route { kind, key } => {
                let k = key.to_string();
                let specs = self.specs.load();
                let scaling =
                    specs.get(&k).ok_or_else(|| Status::not_found(format!("{kind} {} not found", quote(&k))))?;
                let (concurrency, rate) = {
                    let agg = self.agg();
                    (agg.concurrency(&k), agg.rate(&k, now))
                };
                let metrics = triggers::route_metrics(&kind, &key, scaling, concurrency, rate);
                Ok(Evaluation { active: triggers::is_active(&metrics, concurrency), metrics, route: Some(k) })
            }
        }
    }

    /// Records the activation latency of `route` once, when a stream sends `true` for it.
    pub fn record_activation(&self, route: &str) {
        if let Some(a) = self.agg().take_activation(route) {
            let latency = unix_micros().saturating_sub(a.changed_us);
            self.metrics.activation_latency.observe(latency as f64 / 1e6);
        }
    }
}
