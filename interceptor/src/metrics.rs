//! The interceptor's Prometheus registry and the families the data path records into: upstream 0.16's request
//! count, request duration (with `cold_start`), cold-start duration (with `outcome`) and cold-start rejections. What else is exposed registers itself here
//! from the composition root (the per-route concurrency collector of [`crate::routes`], the programs'
//! metrics of [`crate::standalone`]); this module never imports what it measures.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::fasthash::FastBuild;
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
    /// Tells these families apart from another registry's in each thread's [`SERIES`] (tests build several).
    id: Arc<()>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            id: Arc::default(),
        }
    }
}

/// A label set of [`RequestMetrics`], by the addresses of its shared parts (see [`Series`]).
#[derive(PartialEq, Eq, Hash)]
struct SeriesKey {
    registry: usize,
    code: u16,
    method: usize,
    route_name: usize,
    route_namespace: usize,
    cold_start: bool,
}

/// One label set's two series, as its families hold them; it also holds what its key's addresses point to,
/// so that no other value can take one of those addresses while it is cached.
struct Series {
    count: Counter,
    duration: Histogram,
    _pinned: (Arc<()>, RequestLabels),
}

/// The most label sets a thread keeps at hand (past it, the cache starts over).
const MAX_CACHED_SERIES: usize = 4096;

thread_local! {
    /// Each thread's series by label set: a request's metrics found without the families' lock and SipHash
    /// of their label strings. The families never drop a series, so a cached one is always the exposed one.
    static SERIES: RefCell<HashMap<SeriesKey, Series, FastBuild>> = RefCell::default();
}

impl RequestMetrics {
    /// One finished request; `cold_start` when it waited for its backend's readiness.
    pub fn record(&self, labels: &RequestLabels, cold_start: bool, seconds: f64) {
        let key = SeriesKey {
            registry: Arc::as_ptr(&self.id) as usize,
            code: labels.code,
            method: labels.method.as_str().as_ptr() as usize,
            route_name: labels.route_name.addr(),
            route_namespace: labels.route_namespace.addr(),
            cold_start,
        };
        SERIES.with_borrow_mut(|cache| {
            if cache.len() >= MAX_CACHED_SERIES && !cache.contains_key(&key) {
                cache.clear();
            }
            let series = cache.entry(key).or_insert_with(|| Series {
                count: self.requests.get_or_create(labels).clone(),
                duration: self.duration.get_or_create(&labels.with_cold_start(cold_start)).clone(),
                _pinned: (self.id.clone(), labels.clone()),
            });
            series.count.inc();
            series.duration.observe(seconds);
        });
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

#[cfg(test)]
mod tests {
    use httpscale_core::route::RouteKey;

    use super::*;
    use crate::labels::MethodLabel;

    fn labels(code: u16, name: &str) -> RequestLabels {
        RequestLabels::new(code, MethodLabel::from(&http::Method::GET), RouteLabels::new(&RouteKey::new("ns", name)))
    }

    fn count_line(metrics: &Metrics, code: u16, name: &str) -> Option<String> {
        let series = format!("interceptor_request_count_total{{code=\"{code}\",method=\"GET\",route_name=\"{name}\",");
        metrics.encode().lines().find(|l| l.starts_with(&series)).map(str::to_owned)
    }

    #[test]
    fn a_label_set_is_one_series_whichever_copy_of_its_labels_records_it() {
        let metrics = Metrics::new();
        // Equal labels built apart (as after a routes reload): other addresses, the same series.
        metrics.requests.record(&labels(200, "a"), false, 0.1);
        metrics.requests.record(&labels(200, "a"), true, 0.2);
        let kept = labels(200, "a");
        metrics.requests.record(&kept, false, 0.3);
        metrics.requests.record(&kept, false, 0.4);
        metrics.requests.record(&labels(404, "a"), false, 0.1);
        assert!(count_line(&metrics, 200, "a").is_some_and(|l| l.ends_with(" 4")), "{}", metrics.encode());
        assert!(count_line(&metrics, 404, "a").is_some_and(|l| l.ends_with(" 1")));
        let cold =
            metrics.encode().lines().filter(|l| l.contains("cold_start=\"true\"") && l.contains("_count")).count();
        assert_eq!(cold, 1, "{}", metrics.encode());
    }

    #[test]
    fn two_registries_on_one_thread_keep_their_own_series() {
        let (one, two) = (Metrics::new(), Metrics::new());
        let same = labels(200, "b");
        one.requests.record(&same, false, 0.1);
        two.requests.record(&same, false, 0.1);
        two.requests.record(&same, false, 0.1);
        assert!(count_line(&one, 200, "b").is_some_and(|l| l.ends_with(" 1")));
        assert!(count_line(&two, 200, "b").is_some_and(|l| l.ends_with(" 2")));
    }
}
