//! The httpscale interceptor: a reverse proxy that routes by host, path and headers, counts requests for the
//! scaler, and holds requests while a backend scales up from zero.
//!
//! [`start`] binds every listener, loads the routes and returns a [`Running`] handle (so tests know the
//! ports); the process's one [`Shutdown`] signal then drives the drain: `/readyz` turns 503, serving goes on
//! for the shutdown delay, the listener closes, held requests get 503, in-flight ones get the drain timeout,
//! programs started for routes are stopped, and the admin and metrics listeners stop last.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod readiness;
pub mod routes;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::admin as core_admin;
use httpscale_core::standalone;
use tokio::net::TcpListener;

pub use config::Config;

use crate::metrics::Metrics;
use crate::process::ProcessMetrics;
use crate::readiness::{ProbeTiming, Standalone};
use crate::routes::{Defaults, Routes};

/// State shared by every layer and listener.
pub struct Shared {
    pub routes: Arc<Routes>,
    pub metrics: Arc<Metrics>,
    pub cold_start_header: bool,
    pub log_requests: bool,
    /// Set on SIGTERM: `/readyz` answers 503 and HTTP/1 responses carry `Connection: close`.
    pub draining: AtomicBool,
    /// Fires when the listener closes: held requests answer 503 instead of waiting on.
    pub stopping: Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read routes file {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("invalid routes file {path}: {source}")]
    Config { path: PathBuf, source: standalone::ConfigError },
    #[error("invalid routes file {path}: {source}")]
    Route { path: PathBuf, source: routes::BuildError },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

impl StartError {
    /// Whether this is the operator's configuration at fault (exit 64) rather than the environment.
    pub fn is_config(&self) -> bool {
        !matches!(self, StartError::Bind { .. })
    }
}

/// A started interceptor.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Resolves once shutdown has completed.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

async fn read_routes(path: &Path) -> Result<(String, standalone::StandaloneConfig), StartError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartError::ReadConfig { path: path.to_owned(), source })?;
    let parsed = standalone::parse(&text).map_err(|source| StartError::Config { path: path.to_owned(), source })?;
    Ok((text, parsed))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
}

/// Loads the routes, binds every listener and starts serving.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    let path = config.config.clone().unwrap_or_default();
    let (text, file) = read_routes(&path).await?;
    let timing = ProbeTiming { timeout: config.connect_timeout.max(Duration::from_millis(100)), ..Default::default() };
    let defaults = Defaults {
        readiness_timeout: config.readiness_timeout,
        request_timeout: config.request_timeout,
        response_header_timeout: config.response_header_timeout,
        max_pending: config.cold_start_max_pending_requests,
    };
    let process_metrics = ProcessMetrics::new();
    let launcher = process::default_launcher(config.process_launcher.as_deref());
    let readiness = Arc::new(Standalone::new(timing, process_metrics.clone(), launcher));
    let routes = Arc::new(Routes::new(defaults, readiness));
    routes.apply(file.routes).map_err(|source| StartError::Route { path: path.clone(), source })?;
    let shared = Arc::new(Shared {
        metrics: Arc::new(Metrics::new(routes.clone(), &process_metrics)),
        routes,
        cold_start_header: config.enable_cold_start_header,
        log_requests: config.log_requests,
        draining: AtomicBool::new(false),
        stopping: Shutdown::new(),
    });

    let ip = config.bind_address;
    let admin_listener =
        bind("admin", SocketAddr::new(ip, config.admin_port.or(file.admin_port).unwrap_or(9090))).await?;
    let metrics_listener = match config.prometheus_enabled {
        true => Some(bind("metrics", SocketAddr::new(ip, config.prometheus_port)).await?),
        false => None,
    };
    let proxy_addr = SocketAddr::new(ip, config.proxy_port.or(file.proxy_port).unwrap_or(8080));
    let settings = server::ServerSettings {
        threads: config.proxy_threads(),
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes,
        drain_timeout: config.drain_timeout,
        connect_timeout: config.connect_timeout,
        max_idle_per_host: config.max_idle_conns_per_host,
    };
    let proxy = server::spawn(proxy_addr, settings, shared.clone(), shared.stopping.clone())
        .map_err(|source| StartError::Bind { what: "proxy", addr: proxy_addr, source })?;

    let admin_addr =
        admin_listener.local_addr().map_err(|source| StartError::Bind { what: "admin", addr: proxy_addr, source })?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let listeners_stop = Shutdown::new();
    let for_admin = shared.clone();
    tokio::spawn(core_admin::serve(admin_listener, move |req| admin::admin(&for_admin, req), listeners_stop.clone()));
    if let Some(l) = metrics_listener {
        let for_metrics = shared.clone();
        tokio::spawn(core_admin::serve(l, move |req| admin::metrics(&for_metrics, req), listeners_stop.clone()));
    }
    let reload = shared.routes.clone();
    tokio::spawn(standalone::watch_file(path, text, RELOAD_INTERVAL, shutdown.clone(), move |file| {
        reload.apply(file.routes).map_err(|e| e.to_string())
    }));

    let proxy_addr = proxy.addr;
    let lifecycle = shared.clone();
    let delay = config.shutdown_delay;
    let done = tokio::spawn(async move {
        shutdown.triggered().await;
        lifecycle.draining.store(true, Ordering::Relaxed);
        tracing::info!(delay = ?delay, "draining: /readyz answers 503; still serving until the shutdown delay ends");
        tokio::time::sleep(delay).await;
        lifecycle.stopping.trigger();
        proxy.join().await;
        // Programs started for routes stop only once nothing can reach them any more.
        lifecycle.routes.stop_readiness().await;
        listeners_stop.trigger();
        tracing::info!("interceptor stopped");
    });
    Ok(Running { proxy_addr, admin_addr, metrics_addr, shared, done })
}

/// How often the routes file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
