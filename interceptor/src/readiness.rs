//! Readiness sources: what opens and closes the gates held requests wait on. The data path only sees gates;
//! a source is told which targets are in use and drives their gates. The implementations live with what
//! they know: [`crate::standalone`] (a probe loop per upstream, or a supervisor for a program started on
//! demand) and [`crate::cluster`] (EndpointSlices).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use httpscale_core::gate::Gate;
use httpscale_core::queue::RouteCounters;
use httpscale_core::route::{RouteKey, Target};
use httpscale_core::standalone::{Probe, ProcessSpec};

/// A target in use and the gate its readiness drives.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub target: Target,
    pub gate: Arc<Gate>,
    pub probe: Probe,
    pub process: Option<TrackedProcess>,
}

/// The program behind a target, and the counters of every route that forwards there.
#[derive(Debug, Clone)]
pub struct TrackedProcess {
    pub key: RouteKey,
    pub spec: ProcessSpec,
    pub counters: Vec<Arc<RouteCounters>>,
}

pub trait ReadinessSource: Send + Sync + 'static {
    /// The set of targets in use changed: drive these gates, forget every other target.
    fn track(&self, targets: Vec<Tracked>);

    /// Stops driving every gate (stopping any program) and resolves when that is done.
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Whether what the source knows is current enough to serve from (`/readyz`).
    fn current(&self) -> bool {
        true
    }
}
