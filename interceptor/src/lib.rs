//! The httpscale interceptor: a reverse proxy that routes by host, path and headers, counts requests for the
//! scaler, and holds requests while a backend scales up from zero.
//!
//! This file is the composition root: it builds the routing table from the routes file ([`standalone`]) or
//! the cluster ([`cluster`]), hands each part of the proxy ([`proxy`], served by [`server`]) and the admin
//! listener ([`admin`]) only what it uses, and sequences the shutdown. [`start`] binds every listener and
//! returns a [`Running`] handle (so tests know the ports); the process's one [`Shutdown`] signal then drives
//! the drain: `/readyz` turns 503, serving goes on for the shutdown delay, the listener closes, held requests
//! get 503, in-flight ones get the drain timeout, programs started for routes are stopped, and the admin and
//! metrics listeners stop last.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod fasthash;
pub mod gates;
pub mod labels;
pub mod metrics;
pub mod placeholder;
pub mod proxy;
pub mod readiness;
pub mod routes;
pub mod server;
pub mod sniff;
pub mod standalone;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::admin as core_admin;
use httpscale_core::listener::{self, Gatekeeper, LimitsCollector};
use httpscale_core::otel::{Service, Telemetry};
use httpscale_core::startup::{self, StartError, bind, read_routes, watch_routes_file};
use tokio::net::TcpListener;

pub use config::Config;

use crate::admin::{AdminState, StreamSlots};
use crate::cluster::Cluster;
use crate::cluster::watch::{Follower, watches};
use crate::gates::Gates;
use crate::metrics::Metrics;
use crate::placeholder::Bodies;
use crate::proxy::cold_start::ColdStartParams;
use crate::proxy::peek::ReadAhead;
use crate::proxy::rescue::Draining;
use crate::proxy::stack::StackParams;
use crate::routes::{Addresses, ConcurrencyCollector, Defaults, Routes};
use crate::standalone::Standalone;
use crate::standalone::probe::ProbeTiming;
use crate::standalone::program::{EXEC_ARG, Launcher, default_launcher, exec_child};
use crate::standalone::supervisor::ProcessMetrics;
use crate::tls::Tls;

/// A started interceptor.
pub struct Running {
    pub proxy_addr: SocketAddr,
    /// The TLS proxy listener, when enabled.
    pub proxy_tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub routes: Arc<Routes>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Resolves once shutdown has completed.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Where the routes come from.
enum Source {
    /// A routes file, reloaded when it changes; it may set the ports. `programs` supervises its programs.
    File { path: PathBuf, text: String, proxy_port: Option<u16>, admin_port: Option<u16>, programs: Arc<Standalone> },
    /// The cluster's objects, followed by watches.
    Cluster { cluster: Arc<Cluster>, client: kube::Client },
}

impl Source {
    fn bodies(&self) -> Bodies {
        match self {
            Source::File { .. } => None,
            Source::Cluster { cluster, .. } => Some(cluster.clone()),
        }
    }

    /// The programs of standalone routes, which the admin port shows and unloads.
    fn programs(&self) -> Option<Arc<Standalone>> {
        match self {
            Source::File { programs, .. } => Some(programs.clone()),
            Source::Cluster { .. } => None,
        }
    }
}

/// The routing table and its source, for either mode.
async fn routes_for(
    config: &Config,
    client: Option<kube::Client>,
    process: &ProcessMetrics,
) -> Result<(Arc<Routes>, Source), StartError> {
    let defaults = Defaults {
        readiness_timeout: config.readiness_timeout,
        request_timeout: config.request_timeout,
        response_header_timeout: config.response_header_timeout,
        max_pending: config.cold_start_max_pending_requests,
    };
    let gates = Arc::new(Gates::default());
    match &config.config {
        Some(path) => {
            let (text, file) = read_routes(path).await?;
            let timing =
                ProbeTiming { timeout: config.connect_timeout.max(Duration::from_millis(100)), ..Default::default() };
            let launcher = Launcher(default_launcher(config.process_launcher.as_deref()));
            let readiness = Arc::new(Standalone::new(timing, process.clone(), launcher));
            let routes = Arc::new(Routes::new(defaults, readiness.clone(), Arc::new(Addresses), gates));
            routes.apply(file.routes);
            let (proxy_port, admin_port) = (file.proxy_port, file.admin_port);
            Ok((routes, Source::File { path: path.clone(), text, proxy_port, admin_port, programs: readiness }))
        }
        None => {
            let client = match client {
                Some(c) => c,
                None => kube::Client::try_default().await?,
            };
            let cluster = Arc::new(Cluster::new(gates.clone(), config.max_staleness, config.direct_pod_routing));
            let routes = Arc::new(Routes::new(defaults, cluster.clone(), cluster.clone(), gates));
            Ok((routes, Source::Cluster { cluster, client }))
        }
    }
}

/// The admin and metrics listeners, bound before anything serves, and every listener's budget and limits
/// (each its own, so a flood on one cannot starve another).
struct Listeners {
    admin: (TcpListener, SocketAddr),
    metrics: Option<(TcpListener, SocketAddr)>,
    proxy_gate: Arc<Gatekeeper>,
    proxy_tls_gate: Arc<Gatekeeper>,
    admin_gate: Arc<Gatekeeper>,
    metrics_gate: Arc<Gatekeeper>,
}

impl Listeners {
    async fn bind(config: &Config, file_admin_port: Option<u16>) -> Result<Self, StartError> {
        let port = config.admin_port.or(file_admin_port).unwrap_or(9090);
        let admin = bind("admin", SocketAddr::new(config.admin_bind(), port)).await?;
        let metrics = match config.prometheus_enabled {
            true => Some(bind("metrics", SocketAddr::new(config.bind_address, config.prometheus_port)).await?),
            false => None,
        };
        let files = listener::open_file_limit();
        Ok(Self {
            admin,
            metrics,
            proxy_gate: Gatekeeper::new("proxy", config.proxy_limits(files)),
            proxy_tls_gate: Gatekeeper::new("proxy-tls", config.proxy_limits(files)),
            admin_gate: Gatekeeper::new("admin", config.listen.admin()),
            metrics_gate: Gatekeeper::new("metrics", config.listen.admin()),
        })
    }

    fn gates(&self) -> Vec<Arc<Gatekeeper>> {
        vec![self.proxy_gate.clone(), self.proxy_tls_gate.clone(), self.admin_gate.clone(), self.metrics_gate.clone()]
    }

    /// Serves both until `stop` fires.
    fn serve(self, state: Arc<AdminState>, stop: &Shutdown) {
        let for_admin = state.clone();
        let answer = move |req: &_| admin::admin(&for_admin, req);
        tokio::spawn(core_admin::serve(self.admin.0, self.admin_gate, answer, stop.clone()));
        if let Some((l, _)) = self.metrics {
            let answer = move |req: &_| admin::metrics(&state, req);
            tokio::spawn(core_admin::serve(l, self.metrics_gate, answer, stop.clone()));
        }
    }
}

/// The registry, with the families of the data path, the per-route concurrency, the programs' metrics and
/// the listeners' limits.
fn metrics_for(routes: &Arc<Routes>, process: &ProcessMetrics, gates: Vec<Arc<Gatekeeper>>) -> Metrics {
    let mut metrics = Metrics::new();
    metrics.registry_mut().register_collector(Box::new(ConcurrencyCollector(routes.clone())));
    metrics.registry_mut().register_collector(Box::new(LimitsCollector(gates)));
    process.register(metrics.registry_mut());
    metrics
}

/// Who the interceptor is in OpenTelemetry: upstream's `service.name`.
pub const OTEL_SERVICE: Service = Service { name: "keda-http-interceptor", scope: "httpscale-interceptor" };

/// What the shutdown sequence acts on.
struct Drain {
    draining: Draining,
    delay: Duration,
    stopping: Shutdown,
    proxy: server::ProxyThreads,
    proxy_tls: Option<server::ProxyThreads>,
    routes: Arc<Routes>,
    followers: Shutdown,
    listeners: Shutdown,
    telemetry: Telemetry,
}

impl Drain {
    async fn run(self, shutdown: Shutdown) {
        shutdown.triggered().await;
        self.draining.start();
        tracing::info!(delay = ?self.delay, "draining: /readyz answers 503; still serving until the shutdown delay ends");
        tokio::time::sleep(self.delay).await;
        self.stopping.trigger();
        self.proxy.join().await;
        if let Some(tls) = self.proxy_tls {
            tls.join().await;
        }
        // Programs started for routes stop only once nothing can reach them any more.
        self.routes.stop_readiness().await;
        self.followers.trigger();
        self.listeners.trigger();
        // The last spans and one last round of OTLP metrics.
        self.telemetry.shutdown().await;
        tracing::info!("interceptor stopped");
    }
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
    let tls = Tls::setup(&config.tls)?;
    let process = ProcessMetrics::default();
    let (routes, source) = routes_for(&config, client, &process).await?;
    let (file_proxy_port, file_admin_port) = match &source {
        Source::File { proxy_port, admin_port, .. } => (*proxy_port, *admin_port),
        Source::Cluster { .. } => (None, None),
    };
    let listeners = Listeners::bind(&config, file_admin_port).await?;
    let metrics = Arc::new(metrics_for(&routes, &process, listeners.gates()));
    let (mut telemetry, tracer) = Telemetry::start(&config.otel, OTEL_SERVICE)?;
    let exposed = metrics.clone();
    telemetry.export_metrics(&config.otel, Arc::new(move || exposed.encode()))?;
    let (draining, stopping) = (Draining::default(), Shutdown::new());
    let params = StackParams {
        routes: routes.clone(),
        requests: Arc::new(metrics.requests.clone()),
        log_requests: config.log_requests,
        draining: draining.clone(),
        cold_start: Arc::new(ColdStartParams {
            header: config.enable_cold_start_header,
            stopping: stopping.clone(),
            metrics: metrics.cold_start.clone(),
            bodies: source.bodies(),
        }),
        bodies: source.bodies(),
        read_ahead: ReadAhead { limit: config.model_body_limit, pace: config.body_limits() },
        normalize_path: config.normalize_path,
        tracer,
    };
    let pods = match &source {
        Source::Cluster { cluster, .. } => cluster.pods.clone(),
        Source::File { .. } => None,
    };
    let proxy_addr = SocketAddr::new(config.bind_address, config.proxy_port.or(file_proxy_port).unwrap_or(8080));
    let listeners_stop = Shutdown::new();
    let settings = config.server_settings(tls.client.clone());
    let plain = server::Listener { addr: proxy_addr, gate: listeners.proxy_gate.clone(), tls: None };
    let proxy = server::spawn(plain, settings.clone(), params.clone(), pods.clone(), stopping.clone())
        .map_err(|source| StartError::Bind { what: "proxy", addr: proxy_addr, source })?;
    let proxy_tls = match tls.listener {
        Some(l) => {
            let addr = SocketAddr::new(config.bind_address, l.port);
            let listener = server::Listener { addr, gate: listeners.proxy_tls_gate.clone(), tls: Some(l.acceptor) };
            let threads = server::spawn(listener, settings, params, pods, stopping.clone())
                .map_err(|source| StartError::Bind { what: "proxy-tls", addr, source })?;
            // The certificates are followed until the listeners have stopped.
            tokio::spawn(l.certs.watch(l.reload_interval, listeners_stop.clone()));
            Some(threads)
        }
        None => None,
    };

    let (admin_addr, metrics_addr) = (listeners.admin.1, listeners.metrics.as_ref().map(|(_, a)| *a));
    let state = AdminState {
        routes: routes.clone(),
        draining: draining.clone(),
        metrics,
        streams: StreamSlots::new(config.max_queue_streams, listeners.admin_gate.clone()),
        programs: source.programs(),
    };
    listeners.serve(Arc::new(state), &listeners_stop);
    // The watches run until the proxy has drained, like the programs of standalone routes.
    let followers = Shutdown::new();
    match source {
        Source::File { path, text, .. } => {
            let reload = routes.clone();
            tokio::spawn(watch_routes_file(path, text, shutdown.clone(), move |file| reload.apply(file.routes)));
        }
        Source::Cluster { cluster, client } => {
            let ns = Some(config.watch_namespace.as_str()).filter(|n| !n.is_empty());
            let events = watches(&client, ns);
            tokio::spawn(cluster::watch::run(Follower::new(cluster, routes.clone()), events, followers.clone()));
        }
    }
    let (proxy_addr, proxy_tls_addr) = (proxy.addr, proxy_tls.as_ref().map(|t| t.addr));
    let drain = Drain {
        draining,
        delay: config.shutdown_delay,
        stopping,
        proxy,
        proxy_tls,
        routes: routes.clone(),
        followers,
        listeners: listeners_stop,
        telemetry,
    };
    let done = tokio::spawn(drain.run(shutdown));
    Ok(Running { proxy_addr, proxy_tls_addr, admin_addr, metrics_addr, routes, done })
}

/// The `interceptor` program: parses `args` (the first is the program name), sets up logging and runs
/// until SIGTERM/SIGINT. Exit codes: 0 after a clean shutdown, 64 for configuration errors, 1 otherwise.
/// Also the launcher of route programs when the first argument is [`EXEC_ARG`].
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == EXEC_ARG) {
        return exec_child(&args[2..]);
    }
    let config = match startup::parse("interceptor", args, Config::validate) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.log.init();
    startup::run("interceptor", None, |shutdown| async move {
        match start(config, shutdown).await {
            Ok(running) => {
                tracing::info!(
                    proxy = %running.proxy_addr,
                    proxy_tls = %running.proxy_tls_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                    admin = %running.admin_addr,
                    metrics = %running.metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                    routes = running.routes.table().len(),
                    "interceptor listening"
                );
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => e.report(),
        }
    })
}
