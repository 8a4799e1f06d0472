//! The live routing table and the per-route state behind it. Each rebuild produces a new immutable
//! [`RoutingTable`] published by pointer swap (readers never wait); counters, hold-queue sizes and readiness
//! gates are carried over by key, so a reload neither resets counts nor drops held requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use httpscale_core::gate::Gate;
use httpscale_core::index::{ResolveError, ServiceKey};
use httpscale_core::queue::{Activity, QueueCounts, RouteCounters};
use httpscale_core::route::{Route, RouteKey, Target};
use httpscale_core::spec::Overflow;
use httpscale_core::standalone::{Probe, ProcessSpec, StandaloneRoute};
use httpscale_core::table::RoutingTable;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::gates::Gates;
use crate::labels::RouteLabels;
use crate::placeholder::{PreparedPlaceholder, PreparedStatic, prepare};
use crate::readiness::{ReadinessSource, Tracked, TrackedProcess};

/// Interceptor-wide settings that routes fall back on.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub readiness_timeout: Duration,
    pub request_timeout: Duration,
    pub response_header_timeout: Duration,
    pub max_pending: usize,
}

/// Whether a request goes to its upstream over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// An `https://` standalone upstream.
    Https,
    /// A Kubernetes Service: https when the request arrived on the TLS listener, http otherwise (as upstream).
    AsListener,
}

/// Where a request is sent.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port`; over TLS the host is also the name the certificate is checked for (SNI), with direct pod
    /// routing too.
    pub authority: Authority,
    /// HTTP/2 cleartext (plain connections only; over TLS, ALPN decides).
    pub h2c: bool,
    pub scheme: Scheme,
    /// For Service targets: the Service and the port's name, so requests can go straight to ready pods.
    pub service: Option<(ServiceKey, String)>,
}

/// Turns a route's target into an upstream: `host:port` addresses in standalone mode, Service ports on
/// Kubernetes. An error is answered as 500 when a request needs that upstream (upstream's behaviour for an
/// unresolvable `portName`).
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, target: &Target, h2c: bool) -> Result<Upstream, Unresolvable>;
}

/// Why a route's target has no upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolvable {
    #[error("upstream {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("service target {0} needs Kubernetes mode")]
    NeedsKubernetes(String),
    #[error(transparent)]
    Service(#[from] ResolveError),
}

/// An authority, or why it is not one.
pub fn authority(address: &str) -> Result<Authority, Unresolvable> {
    address
        .parse::<Authority>()
        .map_err(|e| Unresolvable::BadAddress { address: address.to_owned(), reason: e.to_string() })
}

/// Standalone resolution: the target is a `host:port` address.
pub struct Addresses;

impl Resolve for Addresses {
    fn resolve(&self, target: &Target, h2c: bool) -> Result<Upstream, Unresolvable> {
        match target {
            Target::Address(a) => {
                let (address, tls) = Target::address(a);
                let scheme = if tls { Scheme::Https } else { Scheme::Http };
                Ok(Upstream { authority: authority(address)?, h2c, scheme, service: None })
            }
            Target::Service { .. } => Err(Unresolvable::NeedsKubernetes(target.to_string())),
        }
    }
}

/// A route with everything the data path needs, resolved once per table build.
#[derive(Debug)]
pub struct RouteState {
    pub route: Route,
    pub labels: RouteLabels,
    pub counters: Arc<RouteCounters>,
    pub gate: Arc<Gate>,
    pub pending: Arc<AtomicUsize>,
    pub upstream: Result<Upstream, Unresolvable>,
    pub fallback: Option<Result<Upstream, Unresolvable>>,
    /// How standalone mode learns the target is ready, and the program behind it (if any).
    pub probe: Probe,
    pub process: Option<ProcessSpec>,
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

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// What a route keeps across table rebuilds, by key (its gate is kept by [`Gates`], by target).
#[derive(Default)]
struct Carried {
    counters: HashMap<RouteKey, Arc<RouteCounters>>,
    pending: HashMap<RouteKey, Arc<AtomicUsize>>,
}

/// The published table plus what survives its rebuilds.
pub struct Routes {
    table: ArcSwap<RoutingTable<RouteState>>,
    loaded: AtomicBool,
    carried: Mutex<Carried>,
    defaults: Defaults,
    readiness: Arc<dyn ReadinessSource>,
    resolver: Arc<dyn Resolve>,
    gates: Arc<Gates>,
    /// Poked when a route's concurrency leaves or reaches zero (drives `/queue/stream`).
    pub activity: Arc<Activity>,
}

impl Routes {
    pub fn new(
        defaults: Defaults,
        readiness: Arc<dyn ReadinessSource>,
        resolver: Arc<dyn Resolve>,
        gates: Arc<Gates>,
    ) -> Self {
        Self {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            loaded: AtomicBool::new(false),
            carried: Mutex::new(Carried::default()),
            defaults,
            readiness,
            resolver,
            gates,
            activity: Arc::new(Activity::default()),
        }
    }

    /// The current table. Lock-free; the snapshot stays valid while held.
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable<RouteState>>> {
        self.table.load()
    }

    /// True once a table has been published.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// `/readyz` (draining aside): routes loaded and the readiness source current (Kubernetes: every watch
    /// listed once and none stale).
    pub fn ready(&self) -> bool {
        self.is_loaded() && self.readiness.current()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Carried> {
        self.carried.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves and prepares one route, reusing its counters, hold count and its target's gate.
    fn build(&self, carried: &mut Carried, r: StandaloneRoute) -> Arc<RouteState> {
        let StandaloneRoute { route, probe, process } = r;
        let key = route.key.clone();
        let upstream = self.resolver.resolve(&route.target, route.h2c);
        let fallback = route.fallback.as_ref().map(|f| self.resolver.resolve(f, route.h2c));
        let counters = carried
            .counters
            .entry(key.clone())
            .or_insert_with(|| Arc::new(RouteCounters::with_activity(self.activity.clone())))
            .clone();
        let pending = carried.pending.entry(key.clone()).or_default().clone();
        let gate = self.gates.get(&route.target);
        let d = &self.defaults;
        let readiness = route.timeouts.readiness.unwrap_or(d.readiness_timeout);
        // Upstream: with a fallback, "no readiness deadline" becomes 30s so the fallback is ever used.
        let readiness_timeout = match (non_zero(readiness), &fallback) {
            (None, Some(_)) => Some(Duration::from_secs(30)),
            (r, _) => r,
        };
        let placeholder = route.placeholder.as_ref().map(|p| prepare(p, &key));
        let statics = route
            .statics
            .iter()
            .map(|s| PreparedStatic { rules: s.rules.clone(), response: prepare(&s.response, &key), mode: s.mode })
            .collect();
        Arc::new(RouteState {
            labels: RouteLabels::new(&key),
            counters,
            gate,
            pending,
            upstream,
            fallback,
            probe,
            process,
            readiness_timeout,
            request_timeout: non_zero(route.timeouts.request.unwrap_or(d.request_timeout)),
            response_header_timeout: non_zero(route.timeouts.response_header.unwrap_or(d.response_header_timeout)),
            max_pending: route.max_pending.unwrap_or(d.max_pending),
            placeholder,
            statics,
            route,
        })
    }

    /// Replaces every route (standalone mode: the routes file).
    pub fn apply(&self, routes: Vec<StandaloneRoute>) {
        let mut carried = self.lock();
        let mut next = Carried::default();
        let mut states = Vec::with_capacity(routes.len());
        for r in routes {
            let key = r.route.key.clone();
            // Carry what the previous table had for this key and target.
            if let Some(c) = carried.counters.get(&key) {
                next.counters.insert(key.clone(), c.clone());
            }
            if let Some(p) = carried.pending.get(&key) {
                next.pending.insert(key.clone(), p.clone());
            }
            states.push(self.build(&mut next, r));
        }
        *carried = next;
        // `publish` takes the lock again.
        drop(carried);
        self.publish(RoutingTable::new(states));
    }

    /// Adds or replaces one route (Kubernetes mode: a watch event). Only that route's buckets change.
    pub fn upsert(&self, route: Route) {
        let state = {
            let mut carried = self.lock();
            self.build(&mut carried, StandaloneRoute { route, probe: Probe::Tcp, process: None })
        };
        self.publish(self.table().apply(state));
    }

    /// Removes one route (Kubernetes mode).
    pub fn remove(&self, key: &RouteKey) {
        {
            let mut carried = self.lock();
            carried.counters.remove(key);
            carried.pending.remove(key);
        }
        self.publish(self.table().delete(key));
    }

    /// Marks the table loaded without routes (an empty cluster is a valid first sync).
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Publishes a table and tells the readiness source which targets it now uses.
    fn publish(&self, table: RoutingTable<RouteState>) {
        let mut tracked: HashMap<Target, Tracked> = HashMap::new();
        for r in table.routes() {
            let t = tracked.entry(r.route.target.clone()).or_insert_with(|| Tracked {
                target: r.route.target.clone(),
                gate: r.gate.clone(),
                probe: r.probe.clone(),
                process: None,
            });
            if let Some(spec) = &r.process {
                // The route that owns the program decides how it is probed.
                t.probe = r.probe.clone();
                t.process = Some(TrackedProcess { key: r.route.key.clone(), spec: spec.clone(), counters: Vec::new() });
            }
        }
        for r in table.routes() {
            if let Some(p) = tracked.get_mut(&r.route.target).and_then(|t| t.process.as_mut()) {
                p.counters.push(r.counters.clone());
            }
        }
        self.gates.retain(|target| tracked.contains_key(target));
        self.table.store(Arc::new(table));
        self.loaded.store(true, Ordering::Release);
        self.readiness.track(tracked.into_values().collect());
    }

    /// Stops the readiness source (and any program it started); resolves when done.
    pub async fn stop_readiness(&self) {
        self.readiness.stop().await;
    }

    /// The `/queue` body: every known route, in key order.
    pub fn queue_counts(&self) -> QueueCounts {
        self.table().routes().map(|r| (r.route.key.to_string(), r.counters.snapshot())).collect()
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

    /// The placeholder a cold request gets at once, if any. As upstream 0.16 (PR #1733), a route with a
    /// placeholder, its own `coldStart.maxPendingRequests` and `overflow: Placeholder` holds requests up to
    /// that limit instead, and only the overflow gets the placeholder; every other route with a placeholder
    /// answers with it at once.
    pub fn immediate_placeholder(&self) -> Option<&PreparedPlaceholder> {
        let holds = self.route.max_pending.is_some() && self.route.overflow == Overflow::Placeholder;
        if holds { None } else { self.placeholder.as_ref() }
    }
}

/// `interceptor_request_concurrency`, read from the live route counters at scrape time, so the data path
/// pays nothing for it.
pub struct ConcurrencyCollector(pub Arc<Routes>);

impl std::fmt::Debug for ConcurrencyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConcurrencyCollector")
    }
}

impl Collector for ConcurrencyCollector {
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
