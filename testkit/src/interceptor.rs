//! The interceptor, started in-process on ports the OS picks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_interceptor::{Config, Running};

use crate::client::get;

/// A running interceptor plus what it needs to stay alive.
pub struct Harness {
    pub running: Running,
    pub shutdown: Shutdown,
    /// The routes file (standalone mode; rewrite it to reload).
    pub routes_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn proxy(&self) -> SocketAddr {
        self.running.proxy_addr
    }

    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> String {
        get(self.running.metrics_addr.expect("metrics enabled"), "metrics", "/metrics").await.2
    }

    /// Triggers shutdown and waits (up to 10 s) until it completes.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.running.wait()).await.expect("interceptor stops");
    }
}

/// An interceptor serving the routes file `routes` (standalone mode) with two proxy threads.
pub async fn interceptor(routes: &str) -> Harness {
    interceptor_with(routes, |_| {}).await
}

/// [`interceptor`], with `tweak` applied to the configuration.
pub async fn interceptor_with(routes: &str, tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let routes_file = dir.path().join("routes.yaml");
    std::fs::write(&routes_file, routes).unwrap();
    let mut config = Config::for_file(&routes_file);
    config.shutdown_delay = Duration::ZERO;
    config.proxy_threads = 2;
    tweak(&mut config);
    start(config, None, routes_file, dir).await
}

/// An interceptor in Kubernetes mode, following the cluster `client` talks to.
pub async fn in_cluster(client: kube::Client, tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_file("unused");
    config.config = None;
    config.shutdown_delay = Duration::ZERO;
    config.proxy_threads = 1;
    tweak(&mut config);
    start(config, Some(client), PathBuf::new(), dir).await
}

async fn start(config: Config, client: Option<kube::Client>, routes_file: PathBuf, dir: tempfile::TempDir) -> Harness {
    let config = config.validate().unwrap();
    let shutdown = Shutdown::new();
    let running = httpscale_interceptor::start_with(config, client, shutdown.clone()).await.unwrap();
    Harness { running, shutdown, routes_file, _dir: dir }
}
