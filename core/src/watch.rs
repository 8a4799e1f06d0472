//! The one way a Kubernetes watch becomes state, shared by the interceptor and the scaler.
//!
//! A kube-runtime watcher yields `Apply`/`Delete` events and, on every (re-)list, `Init`, `InitApply`… and
//! `InitDone`. A [`Follow`] turns that stream into [`Step`]s (a re-list becomes one [`Step::Relist`] of
//! everything that exists, so objects deleted while the watch was down disappear) and keeps the watch's
//! [`Health`]: whether it has listed once, and since when it has been failing. A failing watch keeps the last
//! known state (kube's default back-off retries it); the failure is logged once per streak, naming the watch.
//!
//! Pure apart from the log line: tests feed events and a clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;

use crate::route::RouteKey;

/// One watcher event, with a re-list's objects gathered into one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<K> {
    Apply(K),
    Delete(K),
    /// Everything that exists now (objects missing from it were deleted while the watch was down).
    Relist(Vec<K>),
}

/// Buffers a watcher's `Init` / `InitApply` / `InitDone` into one [`Step::Relist`]; passes the rest on.
#[derive(Debug)]
pub struct InitBuffer<K>(Option<Vec<K>>);

impl<K> Default for InitBuffer<K> {
    fn default() -> Self {
        Self(None)
    }
}

impl<K> InitBuffer<K> {
    /// The step an event completes, if any. An `InitDone` without an `Init` is ignored rather than taken for an
    /// empty cluster.
    pub fn step(&mut self, event: Event<K>) -> Option<Step<K>> {
        match event {
            Event::Apply(o) => Some(Step::Apply(o)),
            Event::Delete(o) => Some(Step::Delete(o)),
            Event::Init => {
                self.0 = Some(Vec::new());
                None
            }
            Event::InitApply(o) => {
                self.0.get_or_insert_with(Vec::new).push(o);
                None
            }
            Event::InitDone => self.0.take().map(Step::Relist),
        }
    }
}

/// How a watch is doing, readable from other tasks (`/readyz`).
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    failing_since: Mutex<Option<Instant>>,
}

impl Health {
    /// Whether the watch has completed a full list.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Synced, and not failing for longer than `max_staleness` at `now` (`0`: no bound, as upstream's `0`
    /// turns its staleness check off).
    pub fn fresh(&self, now: Instant, max_staleness: Duration) -> bool {
        let failing = *self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        let within = |since: Instant| max_staleness.is_zero() || now.saturating_duration_since(since) <= max_staleness;
        self.synced() && failing.is_none_or(within)
    }

    /// Records a failure; returns whether this one starts a streak.
    fn failed(&self, now: Instant) -> bool {
        let mut since = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        since.is_none() && since.replace(now).is_none()
    }

    fn recovered(&self) {
        *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// One named watch: its re-list buffer and its health.
#[derive(Debug)]
pub struct Follow<K> {
    name: &'static str,
    init: InitBuffer<K>,
    health: Arc<Health>,
}

impl<K> Follow<K> {
    /// A watch called `name` in logs ("HTTPScaledObjects"), reporting to `health`.
    pub fn new(name: &'static str, health: Arc<Health>) -> Self {
        Self { name, init: InitBuffer::default(), health }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Feeds one item of the watch stream (seen at `now`); returns the step it completes, if any.
    pub fn feed(&mut self, item: Result<Event<K>, watcher::Error>, now: Instant) -> Option<Step<K>> {
        match item {
            Ok(event) => {
                self.health.recovered();
                let step = self.init.step(event);
                if matches!(step, Some(Step::Relist(_))) {
                    self.health.synced.store(true, Ordering::Release);
                }
                step
            }
            Err(e) => {
                if self.health.failed(now) {
                    tracing::warn!(watch = self.name, cause = %e, "watch failed; keeping the last known state while it retries with back-off");
                }
                None
            }
        }
    }
}

/// `<namespace>/<name>` of an object, as a route key.
pub fn key_of<K: ResourceExt>(obj: &K) -> RouteKey {
    RouteKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The API of a namespaced kind, in `namespace` or in all namespaces.
pub fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relist_is_one_step_and_marks_the_watch_synced() {
        let mut f: Follow<u8> = Follow::new("things", Arc::default());
        let now = Instant::now();
        assert_eq!(f.feed(Ok(Event::Apply(1)), now), Some(Step::Apply(1)));
        assert_eq!(f.feed(Ok(Event::InitDone), now), None, "no Init: not taken for an empty list");
        assert!(!f.health.synced());
        assert_eq!(f.feed(Ok(Event::Init), now), None);
        assert_eq!(f.feed(Ok(Event::InitApply(2)), now), None, "buffered until InitDone");
        assert_eq!(f.feed(Ok(Event::InitDone), now), Some(Step::Relist(vec![2])));
        assert!(f.health.synced());
        f.feed(Ok(Event::Init), now);
        assert_eq!(f.feed(Ok(Event::InitDone), now), Some(Step::Relist(vec![])), "an empty re-list is a real answer");
        assert_eq!(f.feed(Ok(Event::Delete(2)), now), Some(Step::Delete(2)));
    }

    #[test]
    fn a_failing_watch_turns_stale_after_the_bound_and_fresh_when_it_recovers() {
        let health = Arc::new(Health::default());
        let mut f: Follow<u8> = Follow::new("things", health.clone());
        let t0 = Instant::now();
        let bound = Duration::from_secs(300);
        assert!(!health.fresh(t0, bound), "never listed");
        f.feed(Ok(Event::Init), t0);
        f.feed(Ok(Event::InitDone), t0);
        assert!(health.fresh(t0, bound));
        let err = || Err(watcher::Error::NoResourceVersion);
        assert_eq!(f.feed(err(), t0), None);
        assert_eq!(f.feed(err(), t0 + Duration::from_secs(200)), None, "the streak keeps its start");
        assert!(health.fresh(t0 + bound, bound), "failing, but within the bound");
        assert!(!health.fresh(t0 + bound + Duration::from_secs(1), bound), "stale");
        assert!(health.fresh(t0 + bound * 10, Duration::ZERO), "0 turns the check off, as upstream");
        f.feed(Ok(Event::Apply(1)), t0 + bound);
        assert!(health.fresh(t0 + bound * 2, bound), "an event ends the streak");
    }
}
