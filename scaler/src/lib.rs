//! The httpscale scaler: KEDA's external-push scaler. It gathers counts from every interceptor (pulled every
//! tick and pushed the moment they change), turns them into per-route concurrency and request rate, and
//! answers KEDA's `externalscaler.ExternalScaler` gRPC calls, telling every open `StreamIsActive` stream within
//! milliseconds when an idle route gets its first request.
//!
//! Layout along the data flow: [`discovery`] (which interceptors: a static list, or in Kubernetes mode the
//! interceptor admin Service's EndpointSlices, [`kubernetes`]) → [`collect`] (pull and push) → [`aggregate`] and
//! [`window`] (pure counting) → [`state`] (route specs from the routes file or, in Kubernetes mode, from the
//! cluster's HTTPScaledObjects and InterceptorRoutes) and [`triggers`] (what a trigger means) → [`grpc`] (the
//! wire, served within the listener limits of [`listen`], beside the health service and [`reflection`]).

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod discovery;
pub mod grpc;
pub mod kubernetes;
pub mod listen;
pub mod metrics;
pub mod proto;
pub mod reflection;
pub mod state;
pub mod trace;
pub mod triggers;
pub mod window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::StatusCode;
use httpscale_core::Shutdown;
use httpscale_core::admin;
use httpscale_core::listener::{Gatekeeper, LimitsCollector};
use httpscale_core::otel::{Service, Telemetry};
use httpscale_core::route::Scaling;
use httpscale_core::standalone::StandaloneConfig;
use httpscale_core::startup::{ConfigError, StartError, bind, read_routes, watch_routes_file};
use tokio::net::TcpListener;

pub use config::Config;

use crate::collect::CollectSettings;
use crate::config::{InterceptorSource, RouteSource};
use crate::discovery::{Discovery, StaticList};
use crate::grpc::ScalerService;
use crate::kubernetes::{AdminService, EndpointSlices};
use crate::listen::CountStreams;
use crate::proto::externalscaler::external_scaler_server::ExternalScalerServer;
use crate::state::State;
use crate::trace::TraceCalls;

/// HTTP/2 pings on every gRPC connection, so a KEDA that vanished without closing is noticed.
const GRPC_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const GRPC_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Who the scaler is in OpenTelemetry: upstream's `service.name`.
pub const OTEL_SERVICE: Service = Service { name: "keda-http-external-scaler", scope: "httpscale-scaler" };

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

/// Loads the routes, binds every listener and starts collecting and serving. In Kubernetes mode the client is
/// configured from the in-cluster service account or `KUBECONFIG`; standalone mode never builds one.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    start_with_client(config, None, shutdown).await
}

/// Where route specs come from, resolved.
enum Specs {
    File { path: PathBuf, text: String },
    Cluster(kube::Client),
}

/// Where the interceptors are, resolved.
enum Fleet {
    Static(Vec<String>),
    Slices(kube::Client, AdminService),
}

/// Resolves the sources (reading the routes file) and builds the Kubernetes client if one is needed.
async fn sources(
    config: &Config,
    client: Option<kube::Client>,
) -> Result<(Fleet, Specs, HashMap<String, Scaling>), StartError> {
    let (Some(interceptors), Some(routes)) = (config.interceptor_source(), config.route_source()) else {
        return Err(ConfigError::new("HTTPSCALE_INTERCEPTORS", "no interceptor or route source").into());
    };
    let fleet = match interceptors {
        InterceptorSource::Static(list) => Fleet::Static(list),
        InterceptorSource::Kubernetes(svc) => match client {
            Some(c) => Fleet::Slices(c, svc),
            None => Fleet::Slices(kube::Client::try_default().await?, svc),
        },
    };
    let (specs, initial) = match (routes, &fleet) {
        (RouteSource::File(path), _) => {
            let (text, file) = read_routes(&path).await?;
            (Specs::File { path, text }, specs_of(&file))
        }
        (RouteSource::Cluster, Fleet::Slices(client, _)) => (Specs::Cluster(client.clone()), HashMap::new()),
        (RouteSource::Cluster, Fleet::Static(_)) => {
            let only = "route specs come from the cluster only in Kubernetes mode";
            return Err(ConfigError::new("HTTPSCALE_CONFIG", only).into());
        }
    };
    Ok((fleet, specs, initial))
}

/// Serves `/metrics` until `shutdown`.
fn serve_metrics(listener: TcpListener, gate: Arc<Gatekeeper>, state: Arc<State>, shutdown: &Shutdown) {
    tokio::spawn(admin::serve(
        listener,
        gate,
        move |req| match req.uri().path() {
            "/metrics" => admin::metrics(req.headers(), state.metrics.encode()),
            _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
        },
        shutdown.clone(),
    ));
}

/// Keeps `state.specs` current from the routes file or the cluster until `shutdown`.
fn follow_specs(specs: Specs, state: Arc<State>, shutdown: &Shutdown) {
    match specs {
        Specs::File { path, text } => {
            tokio::spawn(watch_routes_file(path, text, shutdown.clone(), move |file| {
                state.specs.store(Arc::new(specs_of(&file)));
                state.bump();
            }));
        }
        Specs::Cluster(client) => {
            tracing::info!("route specs from the cluster's HTTPScaledObjects and InterceptorRoutes");
            tokio::spawn(kubernetes::watch_routes(client, state, shutdown.clone()));
        }
    }
}

/// [`start`], with a Kubernetes client to use in Kubernetes mode (tests point one at a fake API server). When
/// `client` is `None` and the configuration needs one, it is built with `kube::Client::try_default()`.
pub async fn start_with_client(
    config: Config,
    client: Option<kube::Client>,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let (fleet, specs, initial) = sources(&config, client).await?;
    let grpc_gate = Gatekeeper::new("grpc", config.listen.limits(config.grpc_max_connections));
    let metrics_gate = Gatekeeper::new("metrics", config.listen.admin());
    let mut state = State::new(initial, config.stream_interval(), shutdown.clone());
    let gates = vec![grpc_gate.clone(), metrics_gate.clone()];
    state.metrics.registry_mut().register_collector(Box::new(LimitsCollector(gates)));
    let state = Arc::new(state);
    let (mut telemetry, tracer) = Telemetry::start(&config.otel, OTEL_SERVICE)?;
    let exposed = state.clone();
    telemetry.export_metrics(&config.otel, Arc::new(move || exposed.metrics.encode()))?;
    let (grpc_listener, grpc_addr) = bind("gRPC", SocketAddr::new(config.bind_address, config.port)).await?;
    let metrics_addr = match config.prometheus_enabled {
        true => {
            let (l, addr) = bind("metrics", SocketAddr::new(config.bind_address, config.prometheus_port)).await?;
            serve_metrics(l, metrics_gate, state.clone(), &shutdown);
            Some(addr)
        }
        false => None,
    };
    follow_specs(specs, state.clone(), &shutdown);
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

    let message_bytes = config.grpc_max_message_bytes;
    let (reflection_v1, reflection_v1alpha) = reflection::services().unzip();
    let streams = config.grpc_max_concurrent_streams;
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(streams))
        .http2_max_header_list_size(config.grpc_max_metadata_bytes)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .layer(tower::layer::layer_fn(move |s| CountStreams(s, streams)))
        .layer(TraceCalls::layer(tracer))
        .add_service(health_service.max_decoding_message_size(message_bytes))
        .add_service(ExternalScalerServer::new(ScalerService(state.clone())).max_decoding_message_size(message_bytes))
        .add_optional_service(reflection_v1.map(|s| s.max_decoding_message_size(message_bytes)))
        .add_optional_service(reflection_v1alpha.map(|s| s.max_decoding_message_size(message_bytes)))
        .serve_with_incoming_shutdown(
            listen::incoming(grpc_listener, grpc_gate, shutdown.clone()),
            shutdown.clone().triggered_owned(),
        );
    let done = tokio::spawn(async move {
        let _keep = discovery;
        if let Err(e) = server.await {
            tracing::error!(cause = %e, "gRPC server failed");
        }
        let _ = collector.await;
        // The last spans and one last round of OTLP metrics.
        telemetry.shutdown().await;
        tracing::info!("scaler stopped");
    });
    Ok(Running { grpc_addr, metrics_addr, state, done })
}
