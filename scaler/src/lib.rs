//! The httpscale scaler: KEDA's external-push scaler. It gathers counts from every interceptor (pulled every
//! tick and pushed the moment they change), turns them into per-route concurrency and request rate, and
//! answers KEDA's `externalscaler.ExternalScaler` gRPC calls, telling every open `StreamIsActive` stream within
//! milliseconds when an idle route gets its first request.
//!
//! Layout along the data flow: [`discovery`] (which interceptors: a static list, or in Kubernetes mode the
//! interceptor admin Service's EndpointSlices, [`kubernetes`]) → [`collect`] (pull and push) → [`aggregate`] and
//! [`window`] (pure counting) → [`state`] (route specs from the routes file or, in Kubernetes mode, from the
//! cluster's HTTPScaledObjects and InterceptorRoutes) and [`triggers`] (what a trigger means) → [`grpc`] (the
//! wire).

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod discovery;
pub mod grpc;
pub mod kubernetes;
pub mod metrics;
pub mod proto;
pub mod state;
pub mod triggers;
pub mod window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use httpscale_core::Shutdown;
use httpscale_core::admin;
use httpscale_core::route::Scaling;
use httpscale_core::standalone::{self, StandaloneConfig};
use tokio::net::TcpListener;

pub use config::Config;

use crate::collect::CollectSettings;
use crate::config::{InterceptorSource, RouteSource};
use crate::discovery::{Discovery, StaticList};
use crate::grpc::ScalerService;
use crate::kubernetes::EndpointSlices;
use crate::proto::externalscaler::external_scaler_server::ExternalScalerServer;
use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read routes file {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("invalid routes file {path}: {source}")]
    Config { path: PathBuf, source: standalone::ConfigError },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot configure the Kubernetes client: {0}")]
    Kubernetes(#[source] kube::Error),
    #[error("no interceptor source and no route source (Config::validate refuses this configuration)")]
    NoSource,
}

impl StartError {
    pub fn is_config(&self) -> bool {
        !matches!(self, StartError::Bind { .. } | StartError::Kubernetes(_))
    }
}

/// A started scaler.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Route specs by key, from a routes file.
pub fn specs_of(file: &StandaloneConfig) -> HashMap<String, Scaling> {
    file.routes.iter().map(|r| (r.route.key.to_string(), r.route.scaling.clone())).collect()
}

async fn read_routes(path: &Path) -> Result<(String, StandaloneConfig), StartError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartError::ReadConfig { path: path.to_owned(), source })?;
    let parsed = standalone::parse(&text).map_err(|source| StartError::Config { path: path.to_owned(), source })?;
    Ok((text, parsed))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
}

/// Loads the routes, binds every listener and starts collecting and serving. In Kubernetes mode the client is
/// configured from the in-cluster service account or `KUBECONFIG`; standalone mode never builds one.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    start_with_client(config, None, shutdown).await
}

/// Where route specs come from, resolved.
enum Routes {
    File { path: PathBuf, text: String },
    Cluster(kube::Client),
}

/// Where the interceptors are, resolved.
enum Fleet {
    Static(Vec<String>),
    Slices(kube::Client, kubernetes::AdminService),
}

/// [`start`], with a Kubernetes client to use in Kubernetes mode (tests point one at a fake API server). When
/// `client` is `None` and the configuration needs one, it is built with `kube::Client::try_default()`.
pub async fn start_with_client(
    config: Config,
    client: Option<kube::Client>,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let (Some(interceptors), Some(routes)) = (config.interceptor_source(), config.route_source()) else {
        return Err(StartError::NoSource);
    };
    let client = match (config.needs_cluster(), client) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => Some(kube::Client::try_default().await.map_err(StartError::Kubernetes)?),
    };
    let mut specs = HashMap::new();
    let routes = match (routes, &client) {
        (RouteSource::File(path), _) => {
            let (text, file) = read_routes(&path).await?;
            specs = specs_of(&file);
            Routes::File { path, text }
        }
        (RouteSource::Cluster, Some(c)) => Routes::Cluster(c.clone()),
        (RouteSource::Cluster, None) => return Err(StartError::NoSource),
    };
    let fleet = match (interceptors, client) {
        (InterceptorSource::Static(list), _) => Fleet::Static(list),
        (InterceptorSource::Kubernetes(svc), Some(c)) => Fleet::Slices(c, svc),
        (InterceptorSource::Kubernetes(_), None) => return Err(StartError::NoSource),
    };
    let state = Arc::new(State::new(specs, config.stream_interval(), shutdown.clone()));

    let grpc_listener = bind("gRPC", SocketAddr::new(config.bind_address, config.port)).await?;
    let grpc_addr = grpc_listener.local_addr().map_err(|source| StartError::Bind {
        what: "gRPC",
        addr: SocketAddr::new(config.bind_address, config.port),
        source,
    })?;
    let metrics_listener = match config.prometheus_enabled {
        true => Some(bind("metrics", SocketAddr::new(config.bind_address, config.prometheus_port)).await?),
        false => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(l) = metrics_listener {
        let s = state.clone();
        tokio::spawn(admin::serve(
            l,
            move |req| match req.uri().path() {
                "/metrics" => admin::metrics(s.metrics.encode()),
                _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
            },
            shutdown.clone(),
        ));
    }

    match routes {
        Routes::File { path, text } => {
            let reload = state.clone();
            tokio::spawn(standalone::watch_file(path, text, Duration::from_secs(1), shutdown.clone(), move |file| {
                reload.specs.store(Arc::new(specs_of(&file)));
                reload.bump();
                Ok(())
            }));
        }
        Routes::Cluster(client) => {
            tracing::info!("route specs from the cluster's HTTPScaledObjects and InterceptorRoutes");
            tokio::spawn(kubernetes::watch_routes(client, state.clone(), shutdown.clone()));
        }
    }
    let discovery: Box<dyn Discovery> = match fleet {
        Fleet::Static(list) => Box::new(StaticList::new(list)),
        Fleet::Slices(client, svc) => Box::new(EndpointSlices::start(client, svc, shutdown.clone())),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    let settings = CollectSettings {
        tick: config.tick,
        fetch_timeout: config.fetch_timeout(),
        stale_after: config.stale_after,
        unreachable_grace: config.unreachable_grace,
        push: config.push,
    };
    let collector = tokio::spawn(collect::run(state.clone(), discovery.interceptors(), settings, health));

    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(ExternalScalerServer::new(ScalerService(state.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            shutdown.clone().triggered_owned(),
        );
    let done = tokio::spawn(async move {
        let _keep = discovery;
        if let Err(e) = server.await {
            tracing::error!(cause = %e, "gRPC server failed");
        }
        let _ = collector.await;
        tracing::info!("scaler stopped");
    });
    Ok(Running { grpc_addr, metrics_addr, state, done })
}
