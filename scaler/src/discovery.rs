//! Where the interceptors are. The collector follows a set of admin addresses that may change at any time;
//! a source keeps it current. Standalone mode and tests use a static list; the Kubernetes source (the
//! EndpointSlices of the interceptor admin Service) implements the same trait.

use std::collections::BTreeSet;

use tokio::sync::watch;

pub trait Discovery: Send + Sync + 'static {
    /// The current interceptor admin addresses (`host:port`), updated as they change.
    fn interceptors(&self) -> watch::Receiver<BTreeSet<String>>;
}

/// A fixed list (`--interceptors`).
pub struct StaticList(watch::Sender<BTreeSet<String>>);

impl StaticList {
    pub fn new(addrs: impl IntoIterator<Item = String>) -> Self {
        Self(watch::Sender::new(addrs.into_iter().collect()))
    }
}

impl Discovery for StaticList {
    fn interceptors(&self) -> watch::Receiver<BTreeSet<String>> {
        self.0.subscribe()
    }
}
