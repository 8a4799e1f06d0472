//! The scaler's one typed configuration, with upstream's environment variable names (reference §4.5).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use httpscale_core::listener::ListenerArgs;
use httpscale_core::otel::OtelArgs;
use httpscale_core::settings::{duration, go_bool};
use httpscale_core::startup::ConfigError;
use httpscale_core::telemetry::LogArgs;

use crate::kubernetes::AdminService;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "scaler",
    version,
    about = "httpscale scaler: KEDA's external-push scaler over every interceptor's counts"
)]
pub struct Config {
    /// gRPC port KEDA dials (`externalscaler.ExternalScaler` and `grpc.health.v1.Health`).
    #[arg(long, env = "KEDA_HTTP_SCALER_PORT", value_name = "KEDA_HTTP_SCALER_PORT", default_value = "8080")]
    pub port: u16,

    /// Address the listeners bind to.
    #[arg(long, env = "HTTPSCALE_BIND_ADDRESS", value_name = "HTTPSCALE_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Standalone routes file (the interceptor's): route specs for trigger metadata to name.
    #[arg(long, env = "HTTPSCALE_CONFIG", value_name = "HTTPSCALE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Interceptor admin addresses (`host:port`, comma-separated) to read counts from.
    #[arg(long, env = "HTTPSCALE_INTERCEPTORS", value_name = "HTTPSCALE_INTERCEPTORS", value_delimiter = ',')]
    pub interceptors: Vec<String>,

    /// How often every interceptor's `/queue` is read and rate samples are taken.
    #[arg(long, env = "KEDA_HTTP_QUEUE_TICK_DURATION", value_name = "KEDA_HTTP_QUEUE_TICK_DURATION", default_value = "500ms", value_parser = duration)]
    pub tick: Duration,

    /// `StreamIsActive` sends at least this often (milliseconds), and at once on every change.
    #[arg(
        long,
        env = "KEDA_HTTP_SCALER_STREAM_INTERVAL_MS",
        value_name = "KEDA_HTTP_SCALER_STREAM_INTERVAL_MS",
        default_value = "200"
    )]
    pub stream_interval_ms: u64,

    /// Bound of one `/queue` fetch, so a hung interceptor cannot stall the others. Default: the tick, at least 250ms.
    #[arg(long, env = "HTTPSCALE_FETCH_TIMEOUT", value_name = "HTTPSCALE_FETCH_TIMEOUT", value_parser = duration)]
    pub fetch_timeout: Option<Duration>,

    /// Subscribe to each interceptor's `/queue/stream` for instant activation (falls back to polling alone
    /// for interceptors without it, such as upstream's).
    #[arg(long, env = "HTTPSCALE_PUSH", value_name = "HTTPSCALE_PUSH", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub push: bool,

    /// An unreachable interceptor's last counts are kept this long, then dropped.
    #[arg(long, env = "HTTPSCALE_STALE_COUNTS_AFTER", value_name = "HTTPSCALE_STALE_COUNTS_AFTER", default_value = "30s", value_parser = duration)]
    pub stale_after: Duration,

    /// gRPC health `readiness` turns NOT_SERVING when no interceptor has answered for this long.
    #[arg(long, env = "HTTPSCALE_UNREACHABLE_GRACE", value_name = "HTTPSCALE_UNREACHABLE_GRACE", default_value = "30s", value_parser = duration)]
    pub unreachable_grace: Duration,

    /// Serve Prometheus metrics on OTEL_PROM_EXPORTER_PORT.
    #[arg(long, env = "OTEL_PROM_EXPORTER_ENABLED", value_name = "OTEL_PROM_EXPORTER_ENABLED", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub prometheus_enabled: bool,

    #[arg(long, env = "OTEL_PROM_EXPORTER_PORT", value_name = "OTEL_PROM_EXPORTER_PORT", default_value = "2223")]
    pub prometheus_port: u16,

    /// Namespace of the interceptor admin Service (Kubernetes discovery).
    #[arg(
        long,
        env = "KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE",
        value_name = "KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE"
    )]
    pub target_admin_namespace: Option<String>,

    /// Name of the interceptor admin Service (Kubernetes discovery).
    #[arg(long, env = "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE", value_name = "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE")]
    pub target_admin_service: Option<String>,

    /// Admin port on each interceptor pod (Kubernetes discovery).
    #[arg(
        long,
        env = "KEDA_HTTP_SCALER_TARGET_ADMIN_PORT",
        value_name = "KEDA_HTTP_SCALER_TARGET_ADMIN_PORT",
        default_value = "9090"
    )]
    pub target_admin_port: u16,

    /// Accepted for compatibility (upstream requires it and never uses it).
    #[arg(
        long,
        env = "KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT",
        value_name = "KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT",
        hide = true
    )]
    pub target_admin_deployment: Option<String>,

    #[command(flatten)]
    pub listen: ListenerArgs,

    /// Open connections on the gRPC port; past it a new one gets 503 and is closed.
    #[arg(
        long,
        env = "HTTPSCALE_GRPC_MAX_CONNECTIONS",
        value_name = "HTTPSCALE_GRPC_MAX_CONNECTIONS",
        default_value = "1024"
    )]
    pub grpc_max_connections: usize,

    /// Concurrent calls per gRPC connection. KEDA puts every ScaledObject's calls (two or more each) on one
    /// connection: the default allows 16 000 routes.
    #[arg(
        long,
        env = "HTTPSCALE_GRPC_MAX_CONCURRENT_STREAMS",
        value_name = "HTTPSCALE_GRPC_MAX_CONCURRENT_STREAMS",
        default_value = "32768"
    )]
    pub grpc_max_concurrent_streams: u32,

    /// Largest gRPC request message; larger is refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "HTTPSCALE_GRPC_MAX_MESSAGE_BYTES",
        value_name = "HTTPSCALE_GRPC_MAX_MESSAGE_BYTES",
        default_value = "65536"
    )]
    pub grpc_max_message_bytes: usize,

    /// Largest metadata (HTTP/2 header list) of a gRPC call.
    #[arg(
        long,
        env = "HTTPSCALE_GRPC_MAX_METADATA_BYTES",
        value_name = "HTTPSCALE_GRPC_MAX_METADATA_BYTES",
        default_value = "65536"
    )]
    pub grpc_max_metadata_bytes: u32,

    #[command(flatten)]
    pub otel: OtelArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Where the scaler learns which interceptors exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterceptorSource {
    /// `--interceptors` (standalone mode).
    Static(Vec<String>),
    /// The EndpointSlices of the interceptor admin Service (Kubernetes mode).
    Kubernetes(AdminService),
}

/// Where the route specs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSource {
    /// `--config`: the interceptors' routes file, reloaded when it changes.
    File(PathBuf),
    /// Every HTTPScaledObject and InterceptorRoute in the cluster (Kubernetes mode without `--config`).
    Cluster,
}

impl Config {
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        // `HTTPSCALE_INTERCEPTORS=""` (or a trailing comma) lists nothing, as in Kubernetes mode.
        self.interceptors.retain(|a| !a.trim().is_empty());
        if self.tick.is_zero() {
            return Err(ConfigError { setting: "KEDA_HTTP_QUEUE_TICK_DURATION", message: "must be above 0".into() });
        }
        if self.stream_interval_ms == 0 {
            return Err(ConfigError {
                setting: "KEDA_HTTP_SCALER_STREAM_INTERVAL_MS",
                message: "must be above 0".into(),
            });
        }
        if let Some(bad) = self
            .interceptors
            .iter()
            .find(|a| a.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()))
        {
            return Err(ConfigError {
                setting: "HTTPSCALE_INTERCEPTORS",
                message: format!("{bad:?} is not host:port"),
            });
        }
        if self.interceptors.is_empty() {
            let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
            match (present(&self.target_admin_service), present(&self.target_admin_namespace)) {
                (false, false) => {
                    return Err(ConfigError {
                        setting: "HTTPSCALE_INTERCEPTORS",
                        message: "no interceptors to read: pass --interceptors HOST:PORT[,HOST:PORT...], or set \
                                  KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE and KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE \
                                  to discover them in Kubernetes"
                            .into(),
                    });
                }
                (false, true) => {
                    return Err(ConfigError {
                        setting: "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE",
                        message: "not set: Kubernetes mode needs the interceptor admin Service's name \
                                  (or pass --interceptors HOST:PORT[,HOST:PORT...])"
                            .into(),
                    });
                }
                (true, false) => {
                    return Err(ConfigError {
                        setting: "KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE",
                        message: "not set: Kubernetes mode needs the interceptor admin Service's namespace \
                                  (or pass --interceptors HOST:PORT[,HOST:PORT...])"
                            .into(),
                    });
                }
                (true, true) if self.target_admin_port == 0 => {
                    return Err(ConfigError {
                        setting: "KEDA_HTTP_SCALER_TARGET_ADMIN_PORT",
                        message: "must be above 0".into(),
                    });
                }
                (true, true) => {}
            }
        }
        if self.route_source().is_none() {
            return Err(ConfigError {
                setting: "HTTPSCALE_CONFIG",
                message: "no route source: pass --config FILE (route specs come from the cluster only in \
                          Kubernetes mode, without --interceptors)"
                    .into(),
            });
        }
        self.otel.validate()?;
        Ok(self)
    }

    /// The interceptor admin Service, in Kubernetes mode: no `--interceptors`, and the admin Service's name and
    /// namespace set.
    pub fn admin_service(&self) -> Option<AdminService> {
        if self.interceptors.iter().any(|a| !a.trim().is_empty()) {
            return None;
        }
        let name = self.target_admin_service.clone().filter(|s| !s.is_empty())?;
        let namespace = self.target_admin_namespace.clone().filter(|s| !s.is_empty())?;
        Some(AdminService { namespace, name, port: self.target_admin_port })
    }

    /// Where the interceptors are: the static list, else (Kubernetes mode) the admin Service's EndpointSlices.
    pub fn interceptor_source(&self) -> Option<InterceptorSource> {
        match self.admin_service() {
            Some(svc) => Some(InterceptorSource::Kubernetes(svc)),
            None if self.interceptors.iter().any(|a| !a.trim().is_empty()) => Some(InterceptorSource::Static(
                self.interceptors.iter().filter(|a| !a.trim().is_empty()).cloned().collect(),
            )),
            None => None,
        }
    }

    /// Where the route specs come from: the routes file when one is given, else (Kubernetes mode only) the
    /// cluster's HTTPScaledObjects and InterceptorRoutes.
    pub fn route_source(&self) -> Option<RouteSource> {
        match (&self.config, self.admin_service()) {
            (Some(path), _) => Some(RouteSource::File(path.clone())),
            (None, Some(_)) => Some(RouteSource::Cluster),
            (None, None) => None,
        }
    }

    /// Whether a Kubernetes client is needed.
    pub fn needs_cluster(&self) -> bool {
        self.admin_service().is_some()
    }

    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout.unwrap_or(self.tick.max(Duration::from_millis(250)))
    }

    pub fn stream_interval(&self) -> Duration {
        Duration::from_millis(self.stream_interval_ms)
    }

    /// A config for tests: the given routes file and interceptors, ports chosen by the OS.
    pub fn for_tests(routes: impl Into<PathBuf>, interceptors: Vec<String>) -> Self {
        let mut c = Config::parse_from(["scaler", "--port", "0", "--prometheus-port", "0"]);
        c.config = Some(routes.into());
        c.interceptors = interceptors;
        c.bind_address = IpAddr::from([127, 0, 0, 1]);
        c
    }

    /// A config for tests in Kubernetes mode: interceptors from `svc`'s EndpointSlices, route specs from the
    /// cluster, ports chosen by the OS.
    pub fn for_kubernetes_tests(svc: &AdminService) -> Self {
        let mut c = Config::parse_from(["scaler", "--port", "0", "--prometheus-port", "0"]);
        c.config = None;
        c.interceptors = Vec::new();
        c.target_admin_namespace = Some(svc.namespace.clone());
        c.target_admin_service = Some(svc.name.clone());
        c.target_admin_port = svc.port;
        c.bind_address = IpAddr::from([127, 0, 0, 1]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_well_formed_and_defaults_match_upstream() {
        Config::command().debug_assert();
        let c = Config::parse_from(["scaler"]);
        assert_eq!(
            (c.port, c.tick, c.stream_interval_ms, c.prometheus_port),
            (8080, Duration::from_millis(500), 200, 2223)
        );
        assert_eq!(c.fetch_timeout(), Duration::from_millis(500));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Config::try_parse_from(["scaler", "--tick", "soon"]).unwrap_err().to_string();
        assert!(e.contains("KEDA_HTTP_QUEUE_TICK_DURATION"), "{e}");
        let mut c = Config::for_tests("r.yaml", vec!["nope".into()]);
        assert_eq!(c.clone().validate().unwrap_err().setting, "HTTPSCALE_INTERCEPTORS");
        c.interceptors = vec!["127.0.0.1:9090".into()];
        c.validate().unwrap();
    }

    fn bare() -> Config {
        let mut c = Config::for_tests("r.yaml", Vec::new());
        c.config = None;
        c.target_admin_namespace = None;
        c.target_admin_service = None;
        c
    }

    #[test]
    fn neither_source_is_refused_naming_the_settings() {
        let e = bare().validate().unwrap_err();
        assert_eq!(e.setting, "HTTPSCALE_INTERCEPTORS");
        for named in
            ["--interceptors", "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE", "KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE"]
        {
            assert!(e.message.contains(named), "{e}");
        }
        let mut c = bare();
        c.target_admin_namespace = Some("keda".into());
        assert_eq!(c.clone().validate().unwrap_err().setting, "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE");
        c.target_admin_service = Some(String::new());
        assert_eq!(c.validate().unwrap_err().setting, "KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE", "empty is unset");
        let mut c = bare();
        c.target_admin_service = Some("admin".into());
        assert_eq!(c.validate().unwrap_err().setting, "KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE");
        let mut c = bare();
        c.interceptors = vec!["127.0.0.1:9090".into()];
        assert_eq!(c.validate().unwrap_err().setting, "HTTPSCALE_CONFIG", "a static list needs a routes file");
    }

    #[test]
    fn kubernetes_mode_needs_no_routes_file_and_the_static_list_wins() {
        let svc = AdminService { namespace: "keda".into(), name: "admin".into(), port: 9090 };
        let mut c = Config::for_kubernetes_tests(&svc);
        c.interceptors = vec![String::new()]; // HTTPSCALE_INTERCEPTORS=""
        assert_eq!(c.interceptor_source(), Some(InterceptorSource::Kubernetes(svc.clone())));
        let c = c.validate().unwrap();
        assert_eq!(c.interceptor_source(), Some(InterceptorSource::Kubernetes(svc.clone())));
        assert_eq!(c.route_source(), Some(RouteSource::Cluster));
        assert!(c.needs_cluster());
        let mut c = Config::for_kubernetes_tests(&svc);
        c.config = Some("r.yaml".into());
        let c = c.validate().unwrap();
        assert_eq!(c.route_source(), Some(RouteSource::File("r.yaml".into())), "a routes file wins over the cluster");
        assert!(c.needs_cluster(), "interceptors still come from the EndpointSlices");
        let mut c = Config::for_kubernetes_tests(&svc);
        c.target_admin_port = 0;
        assert_eq!(c.validate().unwrap_err().setting, "KEDA_HTTP_SCALER_TARGET_ADMIN_PORT");

        let mut c = Config::for_tests("r.yaml", vec!["127.0.0.1:9090".into()]);
        c.target_admin_namespace = Some("keda".into());
        c.target_admin_service = Some("admin".into());
        let c = c.validate().unwrap();
        assert_eq!(c.interceptor_source(), Some(InterceptorSource::Static(vec!["127.0.0.1:9090".into()])));
        assert!(!c.needs_cluster(), "standalone mode never needs a cluster");
    }
}
