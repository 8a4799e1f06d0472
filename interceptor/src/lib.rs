//! The httpscale interceptor: a reverse proxy that routes by host, path and headers, counts requests for the
//! scaler, and holds requests while a backend scales up from zero.
//!
//! [`start`] binds every listener, loads the routes and returns a [`Running`] handle (so tests know the
//! ports); the process's one [`Shutdown`] signal then drives the drain: `/readyz` turns 503, serving goes on
//! for the shutdown delay, the listener closes, held requests get 503, in-flight ones get the drain timeout,
//! programs started for routes are stopped, and the admin and metrics listeners stop last.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod pods;
pub mod process;
pub mod proxy;
pub mod readiness;
pub mod routes;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::admin as core_admin;
use httpscale_core::cli;
use httpscale_core::standalone;
use tokio::net::TcpListener;

pub use config::Config;

use crate::metrics::Metrics;
use crate::process::ProcessMetrics;
use crate::readiness::{ProbeTiming, Standalone};
use crate::routes::{Addresses, Defaults, Routes};

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
    /// Direct pod routing (Kubernetes mode with `KEDA_HTTP_DIRECT_POD_ROUTING=true`).
    pub pods: Option<Arc<pods::PodRouter>>,
    /// Kubernetes mode: what the watches know.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

impl Shared {
    /// Labelled ConfigMaps' data for placeholder bodies (Kubernetes mode).
    pub fn bodies(&self) -> Option<arc_swap::Guard<Arc<cluster::Bodies>>> {
        self.cluster.as_ref().map(|c| c.bodies.load())
    }

    /// `/readyz`: routes loaded (Kubernetes: every watch listed once and none stale) and not draining.
    pub fn ready(&self) -> bool {
        let loaded = self.cluster.as_ref().map_or_else(|| self.routes.is_loaded(), |c| c.ready());
        loaded && !self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read routes file {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("invalid routes file {path}: {source}")]
    Config { path: PathBuf, source: standalone::ConfigError },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot configure the Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

impl StartError {
    /// Whether this is the operator's configuration at fault (exit 64) rather than the environment.
    pub fn is_config(&self) -> bool {
        !matches!(self, StartError::Bind { .. } | StartError::Kube(_))
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
    start_with(config, None, shutdown).await
}

/// [`start`], with the Kubernetes client to use in Kubernetes mode (tests pass one; `None` infers it).
pub async fn start_with(
    config: Config,
    client: Option<kube::Client>,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let defaults = Defaults {
        readiness_timeout: config.readiness_timeout,
        request_timeout: config.request_timeout,
        response_header_timeout: config.response_header_timeout,
        max_pending: config.cold_start_max_pending_requests,
    };
    let process_metrics = ProcessMetrics::new();
    // Standalone: a routes file; Kubernetes: watches. Either way the same table and data path.
    let (routes, file, source) = match &config.config {
        Some(path) => {
            let (text, file) = read_routes(path).await?;
            let timing =
                ProbeTiming { timeout: config.connect_timeout.max(Duration::from_millis(100)), ..Default::default() };
            let launcher = process::default_launcher(config.process_launcher.as_deref());
            let readiness = Arc::new(Standalone::new(timing, process_metrics.clone(), launcher));
            let routes = Arc::new(Routes::new(defaults, readiness, Arc::new(Addresses)));
            routes.apply(file.routes.clone());
            (routes, Some((path.clone(), text, file)), None)
        }
        None => {
            let client = match client {
                Some(c) => c,
                None => kube::Client::try_default().await?,
            };
            let c = Arc::new(cluster::Cluster::new(config.max_staleness, config.direct_pod_routing));
            let routes = Arc::new(Routes::new(defaults, c.clone(), c.clone()));
            (routes, None, Some((c, client)))
        }
    };
    let shared = Arc::new(Shared {
        metrics: Arc::new(Metrics::new(routes.clone(), &process_metrics)),
        routes,
        cold_start_header: config.enable_cold_start_header,
        log_requests: config.log_requests,
        draining: AtomicBool::new(false),
        stopping: Shutdown::new(),
        pods: source.as_ref().and_then(|(c, _)| c.pods.clone()),
        cluster: source.as_ref().map(|(c, _)| c.clone()),
    });
    let file_ports = file.as_ref().map_or((None, None), |(_, _, f)| (f.proxy_port, f.admin_port));

    let ip = config.bind_address;
    let admin_listener = bind("admin", SocketAddr::new(ip, config.admin_port.or(file_ports.1).unwrap_or(9090))).await?;
    let metrics_listener = match config.prometheus_enabled {
        true => Some(bind("metrics", SocketAddr::new(ip, config.prometheus_port)).await?),
        false => None,
    };
    let proxy_addr = SocketAddr::new(ip, config.proxy_port.or(file_ports.0).unwrap_or(8080));
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
    if let Some((path, text, _)) = file {
        let reload = shared.routes.clone();
        tokio::spawn(standalone::watch_file(path, text, RELOAD_INTERVAL, shutdown.clone(), move |file| {
            reload.apply(file.routes);
            Ok(())
        }));
    }
    // The watches run until the proxy has drained, like the programs of standalone routes.
    let cluster_stop = Shutdown::new();
    if let Some((c, client)) = source {
        let ns = Some(config.watch_namespace.clone()).filter(|n| !n.is_empty());
        tokio::spawn(cluster::run(c, client, ns, shared.routes.clone(), cluster_stop.clone()));
    }

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
        cluster_stop.trigger();
        listeners_stop.trigger();
        tracing::info!("interceptor stopped");
    });
    Ok(Running { proxy_addr, admin_addr, metrics_addr, shared, done })
}

/// How often the routes file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The `interceptor` program: parses `args` (the first is the program name), sets up logging and runs
/// until SIGTERM/SIGINT. Exit codes: 0 after a clean shutdown, 64 for configuration errors, 1 otherwise.
/// Also the launcher of route programs when the first argument is [`process::EXEC_ARG`].
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == process::EXEC_ARG) {
        return process::exec_child(&args[2..]);
    }
    let config = match cli::parse("interceptor", args, Config::validate) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.log.init();
    cli::run("interceptor", None, |shutdown| async move {
        match start(config, shutdown).await {
            Ok(running) => {
                tracing::info!(
                    proxy = %running.proxy_addr,
                    admin = %running.admin_addr,
                    metrics = %running.metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                    routes = running.shared.routes.table().len(),
                    "interceptor listening"
                );
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("interceptor: {e}");
                ExitCode::from(if e.is_config() { cli::EX_CONFIG } else { 1 })
            }
        }
    })
}
