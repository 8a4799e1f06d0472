//! The live routing table and the per-route state behind it. Each rebuild produces a new immutable
//! [`RoutingTable`] published by pointer swap (readers never wait); counters, hold-queue sizes and readiness
//! gates are carried over by key, so a reload neither resets counts nor drops held requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderName, HeaderValue, StatusCode};
use httpscale_core::gate::Gate;
use httpscale_core::queue::{Activity, QueueCounts, RouteCounters};
use httpscale_core::route::{Placeholder, PlaceholderBody, Route, RouteKey, Rule, Target};
use httpscale_core::spec::{Overflow, ResponseMode};
use httpscale_core::standalone::StandaloneRoute;
use httpscale_core::table::RoutingTable;

use crate::metrics::RouteLabels;
use crate::readiness::{ReadinessSource, Tracked, TrackedProcess};

/// Interceptor-wide settings that routes fall back on.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub readiness_timeout: Duration,
    pub request_timeout: Duration,
    pub response_header_timeout: Duration,
    pub max_pending: usize,
}

/// Where a request is sent.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub authority: Authority,
    pub h2c: bool,
}

/// A ready-to-send placeholder response.
#[derive(Debug, Clone)]
pub struct PreparedPlaceholder {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A static route ready to answer.
#[derive(Debug, Clone)]
pub struct PreparedStatic {
    pub rules: Vec<Rule>,
    pub response: PreparedPlaceholder,
    pub mode: ResponseMode,
}

fn prepare(p: &Placeholder, key: &RouteKey) -> Result<PreparedPlaceholder, BuildError> {
    let body = match &p.body {
        PlaceholderBody::Inline(b) => Bytes::from(b.clone()),
        PlaceholderBody::ConfigMap { .. } => {
            return Err(BuildError { key: key.clone(), message: "bodyFromConfigMap needs Kubernetes mode".into() });
        }
    };
    Ok(PreparedPlaceholder { status: p.status, headers: p.headers.clone(), body })
}

/// A route with everything the data path needs, resolved once per table build.
#[derive(Debug)]
pub struct RouteState {
    pub route: Route,
    pub labels: RouteLabels,
    pub counters: Arc<RouteCounters>,
    pub gate: Arc<Gate>,
    pub pending: Arc<AtomicUsize>,
    pub upstream: Upstream,
    pub fallback: Option<Upstream>,
    /// `None` = wait as long as the request may.
    pub readiness_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub response_header_timeout: Option<Duration>,
    /// 0 = unlimited.
    pub max_pending: usize,
    pub placeholder: Option<PreparedPlaceholder>,
    pub statics: Vec<PreparedStatic>,
}

impl AsRef<Route> for RouteState {
    fn as_ref(&self) -> &Route {
        &self.route
    }
}

/// Why a route cannot be served by this interceptor.
#[derive(Debug, thiserror::Error)]
#[error("route {key}: {message}")]
pub struct BuildError {
    key: RouteKey,
    message: String,
}

fn upstream_of(target: &Target, h2c: bool, key: &RouteKey) -> Result<Upstream, BuildError> {
    let text = match target {
        Target::Address(a) => a.clone(),
        Target::Service { .. } => {
            return Err(BuildError {
                key: key.clone(),
                message: format!("service target {target} needs Kubernetes mode"),
            });
        }
    };
    let authority = text
        .parse::<Authority>()
        .map_err(|e| BuildError { key: key.clone(), message: format!("upstream {text:?}: {e}") })?;
    Ok(Upstream { authority, h2c })
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[derive(Default)]
struct Carried {
    counters: HashMap<RouteKey, Arc<RouteCounters>>,
    pending: HashMap<RouteKey, Arc<AtomicUsize>>,
    gates: HashMap<Target, Arc<Gate>>,
}

/// The published table plus what survives its rebuilds.
pub struct Routes {
    table: ArcSwap<RoutingTable<RouteState>>,
    loaded: AtomicBool,
    carried: Mutex<Carried>,
    defaults: Defaults,
    readiness: Arc<dyn ReadinessSource>,
    /// Poked when a route's concurrency leaves or reaches zero (drives `/queue/stream`).
    pub activity: Arc<Activity>,
}

impl Routes {
    pub fn new(defaults: Defaults, readiness: Arc<dyn ReadinessSource>) -> Self {
        Self {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            loaded: AtomicBool::new(false),
            carried: Mutex::new(Carried::default()),
            defaults,
            readiness,
            activity: Arc::new(Activity::default()),
        }
    }

    /// The current table. Lock-free; the snapshot stays valid while held.
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable<RouteState>>> {
        self.table.load()
    }

    /// True once a table has been published (drives `/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Builds and publishes a new table. Nothing changes if any route cannot be built.
    pub fn apply(&self, routes: Vec<StandaloneRoute>) -> Result<(), BuildError> {
        let mut carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Carried::default();
        let mut states = Vec::with_capacity(routes.len());
        let mut tracked: HashMap<Target, Tracked> = HashMap::new();
        let mut counters_by_target: HashMap<Target, Vec<Arc<RouteCounters>>> = HashMap::new();
        for StandaloneRoute { route, probe, process } in routes {
            let key = route.key.clone();
            let upstream = upstream_of(&route.target, route.h2c, &key)?;
            let fallback = route.fallback.as_ref().map(|f| upstream_of(f, route.h2c, &key)).transpose()?;
            let counters = carried
                .counters
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Arc::new(RouteCounters::with_activity(self.activity.clone())));
            let pending = carried.pending.get(&key).cloned().unwrap_or_default();
            let gate = next
                .gates
                .get(&route.target)
                .or_else(|| carried.gates.get(&route.target))
                .cloned()
                .unwrap_or_else(|| Arc::new(Gate::new(false)));
            next.counters.insert(key.clone(), counters.clone());
            next.pending.insert(key.clone(), pending.clone());
            next.gates.insert(route.target.clone(), gate.clone());
            let t = tracked.entry(route.target.clone()).or_insert_with(|| Tracked {
                target: route.target.clone(),
                gate: gate.clone(),
                probe: probe.clone(),
                process: None,
            });
            if let Some(spec) = process {
                // The route that owns the program decides how it is probed.
                t.probe = probe;
                t.process = Some(TrackedProcess { key: key.clone(), spec, counters: Vec::new() });
            }
            counters_by_target.entry(route.target.clone()).or_default().push(counters.clone());
            let d = &self.defaults;
            let readiness = route.timeouts.readiness.unwrap_or(d.readiness_timeout);
            // Upstream: with a fallback, "no readiness deadline" becomes 30s so the fallback is ever used.
            let readiness_timeout = match (non_zero(readiness), &fallback) {
                (None, Some(_)) => Some(Duration::from_secs(30)),
                (r, _) => r,
            };
            let placeholder = route.placeholder.as_ref().map(|p| prepare(p, &key)).transpose()?;
            let statics = route
                .statics
                .iter()
                .map(|s| {
                    Ok(PreparedStatic { rules: s.rules.clone(), response: prepare(&s.response, &key)?, mode: s.mode })
                })
                .collect::<Result<Vec<_>, BuildError>>()?;
            states.push(Arc::new(RouteState {
                labels: RouteLabels::new(&key),
                counters,
                gate,
                pending,
                upstream,
                fallback,
                readiness_timeout,
                request_timeout: non_zero(route.timeouts.request.unwrap_or(d.request_timeout)),
                response_header_timeout: non_zero(route.timeouts.response_header.unwrap_or(d.response_header_timeout)),
                max_pending: route.max_pending.unwrap_or(d.max_pending),
                placeholder,
                statics,
                route,
            }));
        }
        let table = RoutingTable::new(states);
        *carried = next;
        self.table.store(Arc::new(table));
        self.loaded.store(true, Ordering::Release);
        drop(carried);
        for (target, t) in tracked.iter_mut() {
            if let Some(p) = t.process.as_mut() {
                p.counters = counters_by_target.remove(target).unwrap_or_default();
            }
        }
        self.readiness.track(tracked.into_values().collect());
        Ok(())
    }

    /// Stops the readiness source (and any program it started); resolves when done.
    pub async fn stop_readiness(&self) {
        self.readiness.stop().await;
    }

    /// The `/queue` body: every known route, in key order.
    pub fn queue_counts(&self) -> QueueCounts {
        self.table().routes().iter().map(|r| (r.route.key.to_string(), r.counters.snapshot())).collect()
    }
}

impl RouteState {
    /// What an over-cap request gets.
    pub fn overflow_placeholder(&self) -> Option<&PreparedPlaceholder> {
        match self.route.overflow {
            Overflow::Placeholder => self.placeholder.as_ref(),
            Overflow::Reject => None,
        }
    }
}
