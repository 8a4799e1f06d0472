//! Readiness gates: one per target, shared by every route that forwards there. A readiness source (the
//! standalone prober, or EndpointSlices on Kubernetes) opens and closes the gate; the data path asks it
//! whether the target is ready (one atomic load on the warm path) or waits in line until it is.
//!
//! States: *closed* (no ready endpoint; requests queue in arrival order) and *open* (requests pass). Opening
//! releases the queue front to back. A waiter that gives up (client gone, timeout) just drops its ticket;
//! dead tickets are pruned as the queue grows, so the queue never holds more than a few per live waiter.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, oneshot};

#[derive(Debug, Default)]
pub struct Gate {
    open: AtomicBool,
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
    waiting: AtomicUsize,
    /// Wakes the readiness source when a request starts waiting, so it can look sooner.
    demand: Notify,
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

    /// Opens or closes the gate. Opening releases every waiter, oldest first. Returns whether it changed.
    pub fn set_open(&self, open: bool) -> bool {
        let was = self.open.swap(open, Ordering::AcqRel);
        if open {
            // Take the queue under the lock, release outside it: a waiter that enqueues after the swap
            // above sees the gate open and never enqueues.
            let released = std::mem::take(&mut *self.lock());
            for ticket in released {
                let _ = ticket.send(());
            }
        }
        was != open
    }

    /// Resolves once the gate is open. Cancel-safe: dropping the future gives the place up.
    pub async fn wait_open(&self) {
        if self.is_open() {
            return;
        }
        let ticket = {
            let mut queue = self.lock();
            if self.is_open() {
                return;
            }
            let waiting = self.waiting();
            if queue.len() >= 64 && queue.len() > 2 * waiting {
                queue.retain(|t| !t.is_closed());
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            rx
        };
        let _waiting = WaitingGuard::new(&self.waiting);
        self.demand.notify_one();
        // The sender only disappears when the gate is opened (or dropped with its table).
        let _ = ticket.await;
    }

    /// Asks the readiness source to look again now (the data path saw a connect failure).
    pub fn nudge(&self) {
        self.demand.notify_one();
    }

    /// Resolves when a request starts waiting or [`Gate::nudge`] is called.
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<()>>> {
        // A panic while holding this lock cannot leave the queue inconsistent; keep using it.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn open_gate_passes_at_once() {
        let g = Gate::new(true);
        tokio::time::timeout(Duration::from_millis(10), g.wait_open()).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn opening_releases_all_waiters_in_arrival_order() {
        let g = Arc::new(Gate::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (g, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                g.wait_open().await;
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

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let g = Arc::new(Gate::new(false));
        for _ in 0..200 {
            let r = tokio::time::timeout(Duration::from_millis(1), g.wait_open()).await;
            assert!(r.is_err());
        }
        assert_eq!(g.waiting(), 0);
        assert!(g.lock().len() <= 64, "dead tickets are pruned");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_wakes_the_readiness_source() {
        let g = Arc::new(Gate::new(false));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait_open().await });
        tokio::time::timeout(Duration::from_secs(1), g.demanded()).await.unwrap();
        g.set_open(true);
        waiter.await.unwrap();
    }
}
