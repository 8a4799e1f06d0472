//! The operator's one typed configuration: upstream's environment variables and controller-runtime-style
//! flags (reference §5.1–5.2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use httpscale_core::listener::ListenerArgs;
use httpscale_core::settings::{duration, go_bool};
use httpscale_core::startup::ConfigError;
use httpscale_core::telemetry::LogArgs;
use rustls::ServerConfig;

use crate::desired::ScalerAddress;

#[derive(Debug, Clone, Parser)]
#[command(name = "operator", version, about = "httpscale operator: HTTPScaledObjects in, KEDA ScaledObjects out")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Service name of the scaler, for the ScaledObjects' `scalerAddress`.
    #[arg(
        long,
        env = "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE",
        value_name = "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE"
    )]
    pub external_scaler_service: Option<String>,

    /// Port of the scaler, for the ScaledObjects' `scalerAddress`.
    #[arg(
        long,
        env = "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT",
        value_name = "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT"
    )]
    pub external_scaler_port: Option<u16>,

    /// Namespace of the scaler Service (and of the leader-election Lease). Defaults to the pod's namespace.
    #[arg(long, env = "KEDA_HTTP_OPERATOR_NAMESPACE", value_name = "KEDA_HTTP_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Only watch this namespace (empty: all).
    #[arg(
        long,
        env = "KEDA_HTTP_OPERATOR_WATCH_NAMESPACE",
        value_name = "KEDA_HTTP_OPERATOR_WATCH_NAMESPACE",
        default_value = ""
    )]
    pub watch_namespace: String,

    /// Where `/metrics` is served (`:8080`, `127.0.0.1:8080`; `0` disables).
    #[arg(long, default_value = ":8080")]
    pub metrics_bind_address: String,

    /// Where `/healthz` and `/readyz` are served (`0` disables).
    #[arg(long, default_value = ":8081")]
    pub health_probe_bind_address: String,

    /// Elect one active replica through a `coordination.k8s.io` Lease.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    #[arg(long, env = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_LEASE_DURATION", value_name = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,

    #[arg(long, env = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE", value_name = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub renew_deadline: Duration,

    #[arg(long, env = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RETRY_PERIOD", value_name = "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = duration)]
    pub retry_period: Duration,

    /// Serve `/metrics` over HTTPS (the certificate from `--metrics-cert-dir`, else a self-signed one).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub metrics_secure: bool,

    /// Answer `/metrics` only to a bearer token the API server accepts (TokenReview) whose user may `get` the
    /// path (SubjectAccessReview).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub metrics_auth: bool,

    /// Directory with `tls.crt` and `tls.key` for `--metrics-secure` (empty: a self-signed certificate).
    #[arg(long)]
    pub metrics_cert_dir: Option<PathBuf>,

    #[arg(long, hide = true)]
    pub profiling_bind_address: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub listen: ListenerArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (YAML) and exit.
    Crds,
}

const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Go-style listen address: `:8080` (all interfaces), `host:port`, or `0` (off).
pub fn listen_address(setting: &'static str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value == "0" || value.is_empty() {
        return Ok(None);
    }
    let full = if value.starts_with(':') { format!("0.0.0.0{value}") } else { value.to_owned() };
    full.parse().map(Some).map_err(|_| ConfigError { setting, message: format!("{value:?} is not host:port or :port") })
}

/// What a validated configuration resolves to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub scaler: ScalerAddress,
    pub namespace: String,
    pub watch_namespace: Option<String>,
    pub metrics: Option<SocketAddr>,
    pub health: Option<SocketAddr>,
    /// `--metrics-secure`: the metrics listener's TLS configuration.
    pub metrics_tls: Option<Arc<ServerConfig>>,
    /// `--metrics-auth`.
    pub metrics_auth: bool,
}

impl Config {
    /// Cross-field checks, upstream's legacy spellings, and the pod namespace fallback.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let legacy = |new: &str, old: &str| {
            std::env::var(old).ok().inspect(|_| tracing::warn!("{old} is deprecated; use {new}"))
        };
        let service = self
            .external_scaler_service
            .clone()
            .or_else(|| {
                legacy("KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE", "KEDAHTTP_OPERATOR_EXTERNAL_SCALER_SERVICE")
            })
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError {
                setting: "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE",
                message: "is required".into(),
            })?;
        let port = match self.external_scaler_port {
            Some(p) => p,
            None => match legacy("KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT", "KEDAHTTP_OPERATOR_EXTERNAL_SCALER_PORT") {
                Some(p) => p.parse().map_err(|_| ConfigError {
                    setting: "KEDAHTTP_OPERATOR_EXTERNAL_SCALER_PORT",
                    message: format!("{p:?} is not a port"),
                })?,
                None => 8091,
            },
        };
        // Upstream builds the broken `svc.:port` when the namespace is empty; fall back to the pod's own.
        let namespace = self
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::fs::read_to_string(POD_NAMESPACE_FILE).ok().map(|n| n.trim().to_owned()))
            .filter(|n| !n.is_empty())
            .ok_or(ConfigError {
                setting: "KEDA_HTTP_OPERATOR_NAMESPACE",
                message: "is required outside a pod (the scaler's namespace)".into(),
            })?;
        let cert_dir = self.metrics_cert_dir.as_deref().filter(|d| !d.as_os_str().is_empty());
        let metrics_tls = if self.metrics_secure { Some(crate::metrics_tls::server_config(cert_dir)?) } else { None };
        if self.leader_elect && (self.renew_deadline >= self.lease_duration || self.retry_period >= self.renew_deadline)
        {
            return Err(ConfigError {
                setting: "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE",
                message: "leader election needs retry period < renew deadline < lease duration".into(),
            });
        }
        Ok(Resolved {
            scaler: ScalerAddress { service, namespace: namespace.clone(), port },
            namespace,
            watch_namespace: Some(self.watch_namespace.clone()).filter(|n| !n.is_empty()),
            metrics: listen_address("--metrics-bind-address", &self.metrics_bind_address)?,
            health: listen_address("--health-probe-bind-address", &self.health_probe_bind_address)?,
            metrics_tls,
            metrics_auth: self.metrics_auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn the_chart_flags_resolve_to_upstream_values() {
        let c = Config::try_parse_from([
            "operator",
            "--external-scaler-service",
            "keda-add-ons-http-external-scaler",
            "--external-scaler-port",
            "9090",
            "--namespace",
            "keda",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--leader-elect",
            "--zap-log-level=info",
        ])
        .unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.scaler.to_string(), "keda-add-ons-http-external-scaler.keda:9090");
        assert!(c.leader_elect);
        assert_eq!(r.metrics, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(r.watch_namespace, None);
        assert_eq!(listen_address("x", "0").unwrap(), None);
    }

    #[test]
    fn bad_or_unsupported_settings_are_named() {
        let c = Config::try_parse_from(["operator", "--namespace", "keda"]).unwrap();
        assert_eq!(c.resolve().unwrap_err().setting, "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE");
        let c = Config::try_parse_from([
            "operator",
            "--external-scaler-service",
            "s",
            "--namespace",
            "k",
            "--metrics-secure=true",
            "--metrics-auth",
            "--metrics-cert-dir=/nonexistent",
        ])
        .unwrap();
        let e = c.resolve().unwrap_err();
        assert_eq!(e.setting, "--metrics-cert-dir");
        assert!(e.message.contains("/nonexistent/tls.crt"), "{}", e.message);
        // The chart's upstream defaults: HTTPS with a self-signed certificate, and authentication.
        let c = Config::try_parse_from([
            "operator",
            "--external-scaler-service=s",
            "--namespace=k",
            "--metrics-bind-address=:8443",
            "--metrics-secure=true",
            "--metrics-auth=true",
        ])
        .unwrap();
        let r = c.resolve().unwrap();
        assert!(r.metrics_tls.is_some() && r.metrics_auth);
        let e = Config::try_parse_from(["operator", "--lease-duration", "long"]).unwrap_err().to_string();
        assert!(e.contains("long"), "{e}");
    }
}
