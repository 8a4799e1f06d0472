//! Readiness gates: one per target, shared by every route that forwards there. A readiness source (the
//! standalone prober or process supervisor, or EndpointSlices on Kubernetes) opens and closes the gate; the
//! data path asks it whether the target is ready (one atomic load on the warm path) or waits in line.
//!
//! States: *open* (requests pass), *closed* (requests queue in arrival order) and *refusing* (closed, and the
//! source knows why waiting is pointless, e.g. a program that crashed at start and is backing off: waiters and
//! newcomers get the reason at once). Opening releases the queue front to back. A waiter that gives up (client
//! gone, timeout) drops its ticket; dead tickets are pruned as the queue grows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};

/// Why a closed gate turns requests away instead of holding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// One line a client can read.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The backend failed (answered as 502).
    Failed,
    /// The backend did not become ready in time (answered as 504).
    TimedOut,
}

type Ticket = oneshot::Sender<Result<(), Arc<Refusal>>>;

#[derive(Debug, Default)]
struct Waiting {
    queue: VecDeque<Ticket>,
    refusal: Option<Arc<Refusal>>,
}

#[derive(Debug, Default)]
pub struct Gate {
    open: AtomicBool,
    state: Mutex<Waiting>,
    waiting: AtomicUsize,
    /// Wakes the readiness source when a request starts waiting or asks for the target.
    demand: Notify,
    /// Ready endpoints behind the target (0 = unknown; counts as one while open).
    endpoints: AtomicUsize,
    /// Requests admitted under a per-endpoint limit, and the signal that a place freed up.
    admitted: AtomicUsize,
    freed: Notify,
}

/// One admitted request's place under a per-endpoint limit; given back on drop.
#[derive(Debug)]
pub struct Admission(Arc<Gate>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

impl Gate {
    pub fn new(open: bool) -> Self {
        Self { open: AtomicBool::new(open), ..Default::default() }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Number of requests waiting for this gate right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Opens or closes the gate. Opening clears any refusal and releases every waiter, oldest first.
    /// Returns whether the open/closed state changed.
    pub fn set_open(&self, open: bool) -> bool {
        let was = self.open.swap(open, Ordering::AcqRel);
        if open {
            // Take the queue under the lock, release outside it: a waiter that locks after the swap above
            // sees the gate open and never enqueues.
            let released = {
                let mut st = self.lock();
                st.refusal = None;
                std::mem::take(&mut st.queue)
            };
            for ticket in released {
                let _ = ticket.send(Ok(()));
            }
        }
        was != open
    }

    /// Closes the gate and turns away every waiter, and every newcomer until [`Gate::clear_refusal`] or
    /// [`Gate::set_open`], with `refusal`.
    pub fn refuse(&self, refusal: Refusal) {
        self.open.store(false, Ordering::Release);
        let refusal = Arc::new(refusal);
        let refused = {
            let mut st = self.lock();
            st.refusal = Some(refusal.clone());
            std::mem::take(&mut st.queue)
        };
        for ticket in refused {
            let _ = ticket.send(Err(refusal.clone()));
        }
    }

    /// Lets requests wait again (e.g. a back-off ended).
    pub fn clear_refusal(&self) {
        self.lock().refusal = None;
    }

    /// Resolves once the gate is open, or with the refusal. Cancel-safe: dropping it gives the place up.
    pub async fn wait_open(&self) -> Result<(), Arc<Refusal>> {
        if self.is_open() {
            return Ok(());
        }
        let ticket = {
            let mut st = self.lock();
            if self.is_open() {
                return Ok(());
            }
            if let Some(r) = &st.refusal {
                return Err(r.clone());
            }
            let waiting = self.waiting();
            if st.queue.len() >= 64 && st.queue.len() > 2 * waiting {
                st.queue.retain(|t| !t.is_closed());
            }
            let (tx, rx) = oneshot::channel();
            st.queue.push_back(tx);
            rx
        };
        let _waiting = WaitingGuard::new(&self.waiting);
        self.demand.notify_one();
        // The sender only disappears with the gate itself; treat that like an open gate.
        ticket.await.unwrap_or(Ok(()))
    }

    /// How many ready endpoints stand behind the target (readiness sources that know it set it). More room
    /// wakes requests waiting for admission.
    pub fn set_endpoints(&self, n: usize) {
        if self.endpoints.swap(n, Ordering::AcqRel) < n {
            self.freed.notify_waiters();
        }
    }

    /// Waits for a place among at most `per_endpoint` requests per ready endpoint (`coldStart.maxConcurrentPerPod`),
    /// so a fresh pod is not flooded with every held request at once. Cancel-safe.
    pub async fn admit(self: &Arc<Self>, per_endpoint: usize) -> Admission {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let capacity = self.endpoints.load(Ordering::Acquire).max(1) * per_endpoint.max(1);
            let current = self.admitted.load(Ordering::Acquire);
            if current < capacity
                && self.admitted.compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                return Admission(self.clone());
            }
            if current < capacity {
                continue; // lost a race; look again
            }
            freed.await;
        }
    }

    /// Asks the readiness source to act now: a connect failed, or a request wants the target without
    /// waiting for it (a placeholder answer).
    pub fn nudge(&self) {
        self.demand.notify_one();
    }

    /// Resolves when a request starts waiting or [`Gate::nudge`] is called.
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding this lock cannot leave the queue inconsistent; keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn open_gate_passes_at_once() {
        let g = Gate::new(true);
        tokio::time::timeout(Duration::from_millis(10), g.wait_open()).await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn opening_releases_all_waiters_in_arrival_order() {
        let g = Arc::new(Gate::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (g, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                g.wait_open().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await; // let task i enqueue before task i+1 is spawned
        }
        assert_eq!(g.waiting(), 100);
        assert!(order.lock().unwrap().is_empty());
        assert!(g.set_open(true));
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
        assert_eq!(g.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let g = Arc::new(Gate::new(false));
        for _ in 0..200 {
            let r = tokio::time::timeout(Duration::from_millis(1), g.wait_open()).await;
            assert!(r.is_err());
        }
        assert_eq!(g.waiting(), 0);
        assert!(g.lock().queue.len() <= 64, "dead tickets are pruned");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_wakes_the_readiness_source() {
        let g = Arc::new(Gate::new(false));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait_open().await });
        tokio::time::timeout(Duration::from_secs(1), g.demanded()).await.unwrap();
        g.set_open(true);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn admission_limits_in_flight_per_endpoint_and_grows_with_endpoints() {
        let g = Arc::new(Gate::new(true));
        let a = g.admit(1).await;
        let g2 = g.clone();
        let mut second = tokio::spawn(async move { g2.admit(1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished(), "one pod, one place");
        g.set_endpoints(2);
        let b = tokio::time::timeout(Duration::from_secs(1), &mut second).await.unwrap().unwrap();
        let g3 = g.clone();
        let mut third = tokio::spawn(async move { g3.admit(1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished(), "two pods, two places");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), &mut third).await.unwrap().unwrap();
        drop(b);
        assert_eq!(g.admitted.load(Ordering::Acquire), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_answers_waiters_and_newcomers_until_cleared() {
        let g = Arc::new(Gate::new(false));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait_open().await });
        tokio::task::yield_now().await;
        g.refuse(Refusal { kind: RefusalKind::Failed, reason: "exited with status 3".into() });
        assert_eq!(waiter.await.unwrap().unwrap_err().reason, "exited with status 3");
        assert_eq!(g.wait_open().await.unwrap_err().kind, RefusalKind::Failed);
        g.clear_refusal();
        assert!(tokio::time::timeout(Duration::from_millis(20), g.wait_open()).await.is_err(), "waits again");
        g.refuse(Refusal { kind: RefusalKind::TimedOut, reason: "x".into() });
        g.set_open(true);
        g.wait_open().await.unwrap();
    }
}
