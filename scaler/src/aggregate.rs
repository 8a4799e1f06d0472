//! Counts from every interceptor, combined: concurrency summed per route, request counters turned into
//! windowed rates. Pure: fed observations and ticks with explicit times, tested without I/O.
//!
//! Per interceptor it keeps the latest counts (from the pull or the push path, whichever came last) and the
//! counter values already turned into rate samples. At each tick the difference becomes the sample; a counter
//! that went down (interceptor restart) counts from zero. An interceptor seen for the first time contributes no
//! sample on its first tick (its history is unknown), but a new route on a known interceptor counts from zero,
//! so a request that came and went between two ticks is not lost (upstream #1692). An interceptor that stops
//! answering keeps its last counts for `stale_after`, then they are dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use httpscale_core::queue::QueueCounts;

use crate::window::RateWindow;

#[derive(Debug, Default)]
struct Interceptor {
    counts: QueueCounts,
    /// Request counters already turned into rate samples; `None` until the first tick after first contact.
    accounted: Option<HashMap<String, i64>>,
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

/// When a route went from no request in flight to some, by the interceptor's clock, and whether that
/// activation has been reported on a stream yet (for the activation-latency metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    pub changed_us: u64,
    pub reported: bool,
}

#[derive(Debug)]
pub struct Aggregator {
    origin: Instant,
    interceptors: BTreeMap<String, Interceptor>,
    windows: HashMap<String, RateWindow>,
    activations: HashMap<String, Activation>,
}

impl Aggregator {
    pub fn new(origin: Instant) -> Self {
        Self { origin, interceptors: BTreeMap::new(), windows: HashMap::new(), activations: HashMap::new() }
    }

    /// The interceptors to follow changed: forget the ones that left (their pods are gone).
    pub fn set_interceptors(&mut self, addrs: &BTreeSet<String>) {
        self.interceptors.retain(|a, _| addrs.contains(a));
        for a in addrs {
            self.interceptors.entry(a.clone()).or_default();
        }
    }

    /// Latest counts from one interceptor. Returns true if some route's concurrency changed.
    pub fn observe(&mut self, addr: &str, counts: QueueCounts, now: Instant, changed_us: u64) -> bool {
        let before: BTreeMap<String, i64> = counts.keys().map(|k| (k.clone(), self.concurrency(k))).collect();
        let old_keys: Vec<String> = self
            .interceptors
            .get(addr)
            .map(|i| i.counts.keys().filter(|k| !counts.contains_key(*k)).cloned().collect())
            .unwrap_or_default();
        let before_old: Vec<(String, i64)> = old_keys.iter().map(|k| (k.clone(), self.concurrency(k))).collect();
        let entry = self.interceptors.entry(addr.to_owned()).or_default();
        entry.counts = counts;
        entry.last_ok = Some(now);
        entry.last_error = None;
        let mut changed = false;
        for (key, was) in before.into_iter().chain(before_old) {
            let is = self.concurrency(&key);
            changed |= is != was;
            if was == 0 && is > 0 {
                self.activations.insert(key, Activation { changed_us, reported: false });
            } else if is == 0 {
                self.activations.remove(&key);
            }
        }
        changed
    }

    /// A fetch from `addr` failed; its last counts stay until they are stale.
    pub fn failed(&mut self, addr: &str, error: String) {
        if let Some(i) = self.interceptors.get_mut(addr) {
            i.last_error = Some(error);
        }
    }

    /// Turns counter movements since the last tick into rate samples, and drops stale counts.
    /// `rate_spec` gives a route's (window, granularity) if it reports a rate.
    pub fn tick(
        &mut self,
        now: Instant,
        rate_spec: impl Fn(&str) -> Option<(Duration, Duration)>,
        stale_after: Duration,
    ) {
        let mut samples: HashMap<String, f64> = HashMap::new();
        for i in self.interceptors.values_mut() {
            if i.last_ok.is_some_and(|t| now.duration_since(t) > stale_after) {
                i.counts.clear();
                i.accounted = None;
                continue;
            }
            if let Some(accounted) = &i.accounted {
                for (key, c) in &i.counts {
                    let prev = accounted.get(key).copied().unwrap_or(0);
                    let delta = if c.request_count >= prev { c.request_count - prev } else { c.request_count };
                    *samples.entry(key.clone()).or_default() += delta as f64;
                }
            }
            if i.last_ok.is_some() {
                i.accounted = Some(i.counts.iter().map(|(k, c)| (k.clone(), c.request_count)).collect());
            }
        }
        let at = now.duration_since(self.origin);
        let keys: BTreeSet<String> = self
            .interceptors
            .values()
            .flat_map(|i| i.counts.keys().cloned())
            .chain(self.windows.keys().cloned())
            .collect();
        for key in keys {
            let Some((window, granularity)) = rate_spec(&key) else {
                self.windows.remove(&key);
                continue;
            };
            let w = self.windows.entry(key.clone()).or_insert_with(|| RateWindow::new(window, granularity));
            if w.spec() != (window, granularity) {
                *w = RateWindow::new(window, granularity);
            }
            w.record(at, samples.get(&key).copied().unwrap_or(0.0));
        }
        // Stale counts may have ended activations.
        let stale: Vec<String> = self.activations.keys().filter(|k| self.concurrency(k) == 0).cloned().collect();
        for k in stale {
            self.activations.remove(&k);
        }
    }

    /// Requests in flight for `key`, summed over interceptors.
    pub fn concurrency(&self, key: &str) -> i64 {
        self.interceptors.values().filter_map(|i| i.counts.get(key)).map(|c| c.concurrency).sum()
    }

    /// Requests in flight for every route on every interceptor.
    pub fn total_concurrency(&self) -> i64 {
        self.interceptors.values().flat_map(|i| i.counts.values()).map(|c| c.concurrency).sum()
    }

    pub fn rate(&self, key: &str, now: Instant) -> f64 {
        self.windows.get(key).map_or(0.0, |w| w.average(now.duration_since(self.origin)))
    }

    /// Takes an unreported activation of `key` (to observe its latency once).
    pub fn take_activation(&mut self, key: &str) -> Option<Activation> {
        let a = self.activations.get_mut(key)?;
        if a.reported {
            return None;
        }
        a.reported = true;
        Some(*a)
    }

    /// (interceptors answering within `within`, interceptors known, last errors of the others).
    pub fn reachability(&self, now: Instant, within: Duration) -> (usize, usize, Vec<String>) {
        let mut ok = 0;
        let mut errors = Vec::new();
        for (addr, i) in &self.interceptors {
            if i.last_ok.is_some_and(|t| now.duration_since(t) <= within) {
                ok += 1;
            } else {
                errors.push(format!("{addr}: {}", i.last_error.as_deref().unwrap_or("no answer yet")));
            }
        }
        (ok, self.interceptors.len(), errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httpscale_core::queue::QueueCount;

    fn counts(pairs: &[(&str, i64, i64)]) -> QueueCounts {
        pairs.iter().map(|(k, c, r)| (k.to_string(), QueueCount { concurrency: *c, request_count: *r })).collect()
    }

    const RATE: Option<(Duration, Duration)> = Some((Duration::from_secs(10), Duration::from_secs(1)));

    fn agg(t0: Instant, addrs: &[&str]) -> Aggregator {
        let mut a = Aggregator::new(t0);
        a.set_interceptors(&addrs.iter().map(|s| s.to_string()).collect());
        a
    }

    #[test]
    fn concurrency_sums_over_interceptors_and_activation_is_detected() {
        let t0 = Instant::now();
        let mut a = agg(t0, &["a", "b"]);
        assert!(!a.observe("a", counts(&[("ns/r", 0, 0)]), t0, 1));
        assert!(a.observe("b", counts(&[("ns/r", 2, 2)]), t0, 7));
        assert!(a.observe("a", counts(&[("ns/r", 1, 1)]), t0, 9));
        assert_eq!(a.concurrency("ns/r"), 3);
        assert_eq!(a.total_concurrency(), 3);
        assert_eq!(a.take_activation("ns/r").map(|a| a.changed_us), Some(7), "stamped by the interceptor that saw it");
        assert_eq!(a.take_activation("ns/r"), None, "reported once");
    }

    #[test]
    fn counter_deltas_become_rates_and_a_new_route_on_a_known_interceptor_counts_from_zero() {
        let t0 = Instant::now();
        let mut a = agg(t0, &["a"]);
        a.observe("a", counts(&[("ns/old", 0, 100)]), t0, 0);
        a.tick(t0, |_| RATE, Duration::from_secs(30)); // first contact: no sample
        assert_eq!(a.rate("ns/old", t0), 0.0);
        let t1 = t0 + Duration::from_secs(1);
        a.observe("a", counts(&[("ns/old", 0, 104), ("ns/new", 0, 1)]), t1, 0);
        a.tick(t1, |_| RATE, Duration::from_secs(30));
        assert_eq!(a.rate("ns/old", t1), 2.0, "4 requests averaged over the two buckets so far");
        assert_eq!(a.rate("ns/new", t1), 1.0, "the request that came and went is not lost (upstream #1692)");
    }

    #[test]
    fn a_restarted_interceptor_counts_from_zero() {
        let t0 = Instant::now();
        let mut a = agg(t0, &["a"]);
        a.observe("a", counts(&[("ns/r", 0, 50)]), t0, 0);
        a.tick(t0, |_| RATE, Duration::from_secs(30));
        let t1 = t0 + Duration::from_secs(1);
        a.observe("a", counts(&[("ns/r", 0, 3)]), t1, 0);
        a.tick(t1, |_| RATE, Duration::from_secs(30));
        assert_eq!(a.rate("ns/r", t1), 1.5, "3 requests since the restart, over the two buckets so far");
    }

    #[test]
    fn a_silent_interceptor_keeps_its_counts_until_stale_then_drops_them() {
        let t0 = Instant::now();
        let mut a = agg(t0, &["a", "b"]);
        a.observe("a", counts(&[("ns/r", 2, 2)]), t0, 0);
        a.observe("b", counts(&[("ns/r", 1, 1)]), t0, 0);
        let t1 = t0 + Duration::from_secs(5);
        a.observe("b", counts(&[("ns/r", 1, 1)]), t1, 0);
        a.failed("a", "timed out".into());
        a.tick(t1, |_| None, Duration::from_secs(10));
        assert_eq!(a.concurrency("ns/r"), 3, "kept while not stale");
        let (ok, known, errors) = a.reachability(t1, Duration::from_secs(1));
        assert_eq!((ok, known), (1, 2));
        assert_eq!(errors, vec!["a: timed out".to_string()]);
        let t2 = t0 + Duration::from_secs(11);
        a.observe("b", counts(&[("ns/r", 1, 1)]), t2, 0);
        a.tick(t2, |_| None, Duration::from_secs(10));
        assert_eq!(a.concurrency("ns/r"), 1, "dropped once stale");
    }

    #[test]
    fn interceptors_that_leave_are_forgotten_at_once() {
        let t0 = Instant::now();
        let mut a = agg(t0, &["a", "b"]);
        a.observe("a", counts(&[("ns/r", 2, 2)]), t0, 0);
        a.set_interceptors(&["b".to_string()].into_iter().collect());
        assert_eq!(a.concurrency("ns/r"), 0);
    }
}
