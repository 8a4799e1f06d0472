//! Per-route request counts: the in-flight concurrency and the monotonic request counter that the scaler
//! reads, and upstream's `/queue` wire format for them (`{"<ns>/<name>": {"Concurrency": n, "RequestCount": n}}`),
//! kept so a Go scaler can read a Rust interceptor and the other way round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// One route's counts on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    #[serde(rename = "Concurrency")]
    pub concurrency: i64,
    #[serde(rename = "RequestCount")]
    pub request_count: i64,
}

/// The body of `GET /queue`.
pub type QueueCounts = BTreeMap<String, QueueCount>;

/// Live counters for one route. Shared across table rebuilds so a reload never resets them.
#[derive(Debug, Default)]
pub struct RouteCounters {
    concurrency: AtomicI64,
    requests: AtomicI64,
}

impl RouteCounters {
    /// Counts a request as arrived and in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.concurrency.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Holds one unit of concurrency without counting a new request (a tunnel outliving its response).
    pub fn hold(self: &Arc<Self>) -> InFlight {
        self.concurrency.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub fn snapshot(&self) -> QueueCount {
        QueueCount {
            // Clamped at 0 as upstream does; it cannot go negative here, but the wire promises it.
            concurrency: self.concurrency.load(Ordering::Acquire).max(0),
            request_count: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// Holds one unit of a route's concurrency; every exit path gives it back by dropping this.
#[derive(Debug)]
pub struct InFlight(Arc<RouteCounters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.concurrency.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_matches_upstream() {
        let mut counts = QueueCounts::new();
        counts.insert("ollama/ollama".into(), QueueCount { concurrency: 2, request_count: 7 });
        assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"ollama/ollama":{"Concurrency":2,"RequestCount":7}}"#);
    }

    #[test]
    fn guard_returns_concurrency_but_keeps_the_count() {
        let c = Arc::new(RouteCounters::default());
        let a = c.begin();
        let b = c.begin();
        assert_eq!(c.snapshot(), QueueCount { concurrency: 2, request_count: 2 });
        drop(a);
        drop(b);
        assert_eq!(c.snapshot(), QueueCount { concurrency: 0, request_count: 2 });
    }
}
