//! The interceptor's one typed configuration: every flag also reads the upstream environment variable of
//! the same meaning (reference §3.1). Parsed and validated before any port is bound; durations parse like
//! Go's `time.ParseDuration` and booleans like Go's `strconv.ParseBool`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use httpscale_core::listener::{Limits, ListenerArgs, default_max_connections};
use httpscale_core::otel::OtelArgs;
use httpscale_core::settings::{bytes, duration, go_bool};
use httpscale_core::startup::ConfigError;
use httpscale_core::telemetry::LogArgs;

use crate::proxy::forward::ForwardSettings;
use crate::proxy::forwarded::{Cidr, TrustedProxies};
use crate::proxy::pace::BodyLimits;
use crate::server::ServerSettings;
use crate::tls::TlsArgs;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "interceptor",
    version,
    about = "httpscale interceptor: routes, counts and holds HTTP requests across scale-from-zero"
)]
pub struct Config {
    /// Standalone routes file (YAML). Reloaded when it changes. Without it, routes come from the cluster.
    #[arg(long, env = "HTTPSCALE_CONFIG", value_name = "HTTPSCALE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Plain proxy listener port (HTTP/1.1 and h2c). Default 8080, or `proxyPort` from the routes file.
    #[arg(long, env = "KEDA_HTTP_PROXY_PORT", value_name = "KEDA_HTTP_PROXY_PORT")]
    pub proxy_port: Option<u16>,

    /// Admin listener port (`/queue`, `/livez`, `/readyz`). Default 9090, or `adminPort` from the routes file.
    #[arg(long, env = "KEDA_HTTP_ADMIN_PORT", value_name = "KEDA_HTTP_ADMIN_PORT")]
    pub admin_port: Option<u16>,

    /// Kubernetes mode: watch only this namespace (empty: all).
    #[arg(long, env = "KEDA_HTTP_WATCH_NAMESPACE", value_name = "KEDA_HTTP_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,

    /// Kubernetes mode: send requests straight to ready pod addresses instead of the Service (to the Service
    /// when no pod address is ready). On by default, as upstream 0.16.
    #[arg(long, env = "KEDA_HTTP_DIRECT_POD_ROUTING", value_name = "KEDA_HTTP_DIRECT_POD_ROUTING", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub direct_pod_routing: bool,

    /// Kubernetes mode: `/readyz` turns 503 when a watch has been failing for longer than this; 0 = never.
    #[arg(long, env = "KEDA_HTTP_ROUTING_TABLE_MAX_STALENESS", value_name = "KEDA_HTTP_ROUTING_TABLE_MAX_STALENESS", default_value = "5m", value_parser = duration)]
    pub max_staleness: Duration,

    /// Accepted for compatibility (watches are incremental; there is no periodic resync).
    #[arg(
        long,
        env = "KEDA_HTTP_SCALER_CONFIG_MAP_INFORMER_RSYNC_PERIOD",
        value_name = "KEDA_HTTP_SCALER_CONFIG_MAP_INFORMER_RSYNC_PERIOD",
        hide = true
    )]
    pub informer_resync_period: Option<String>,

    /// Accepted for compatibility and checked as a duration: the routing table is rebuilt on every watch
    /// event, so there is no periodic rebuild to schedule.
    #[arg(
        long,
        env = "KEDA_HTTP_ROUTING_TABLE_REFRESH_INTERVAL",
        value_name = "KEDA_HTTP_ROUTING_TABLE_REFRESH_INTERVAL",
        value_parser = duration,
        hide = true
    )]
    pub routing_table_refresh_interval: Option<Duration>,

    /// Address the listeners bind to.
    #[arg(long, env = "HTTPSCALE_BIND_ADDRESS", value_name = "HTTPSCALE_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Longest a request is held waiting for a ready backend; 0 = bounded only by the request timeout
    /// (30s when the route has a fallback).
    #[arg(long, env = "KEDA_HTTP_READINESS_TIMEOUT", value_name = "KEDA_HTTP_READINESS_TIMEOUT", default_value = "0s", value_parser = duration)]
    pub readiness_timeout: Duration,

    /// Deprecated upstream name; when above 0 it overrides KEDA_HTTP_READINESS_TIMEOUT.
    #[arg(long, env = "KEDA_CONDITION_WAIT_TIMEOUT", value_name = "KEDA_CONDITION_WAIT_TIMEOUT", value_parser = duration, hide = true)]
    pub condition_wait_timeout: Option<Duration>,

    /// Whole-request deadline (hold, headers and body); 0 = none.
    #[arg(long, env = "KEDA_HTTP_REQUEST_TIMEOUT", value_name = "KEDA_HTTP_REQUEST_TIMEOUT", default_value = "0s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Longest wait for the backend's response headers once the request is sent; 0 = none.
    #[arg(long, env = "KEDA_HTTP_RESPONSE_HEADER_TIMEOUT", value_name = "KEDA_HTTP_RESPONSE_HEADER_TIMEOUT", default_value = "300s", value_parser = duration)]
    pub response_header_timeout: Duration,

    /// Deprecated upstream name; when above 0 it overrides KEDA_HTTP_RESPONSE_HEADER_TIMEOUT.
    #[arg(long, env = "KEDA_RESPONSE_HEADER_TIMEOUT", value_name = "KEDA_RESPONSE_HEADER_TIMEOUT", value_parser = duration, hide = true)]
    pub deprecated_response_header_timeout: Option<Duration>,

    /// Bound of one connect attempt to a backend; failed connects are retried every 50ms.
    #[arg(long, env = "KEDA_HTTP_CONNECT_TIMEOUT", value_name = "KEDA_HTTP_CONNECT_TIMEOUT", default_value = "500ms", value_parser = duration)]
    pub connect_timeout: Duration,

    /// Longest the graceful drain waits for in-flight requests after the listener closes; 0 = unbounded.
    #[arg(long, env = "KEDA_HTTP_DRAIN_TIMEOUT", value_name = "KEDA_HTTP_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// After SIGTERM, keep serving (with /readyz at 503) this long before closing the listener.
    #[arg(long, env = "KEDA_HTTP_SHUTDOWN_DELAY", value_name = "KEDA_HTTP_SHUTDOWN_DELAY", default_value = "5s", value_parser = duration)]
    pub shutdown_delay: Duration,

    /// Add `X-KEDA-HTTP-Cold-Start: true|false` to proxied responses.
    #[arg(long, env = "KEDA_HTTP_ENABLE_COLD_START_HEADER", value_name = "KEDA_HTTP_ENABLE_COLD_START_HEADER", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub enable_cold_start_header: bool,

    /// Log one line per request.
    #[arg(long, env = "KEDA_HTTP_LOG_REQUESTS", value_name = "KEDA_HTTP_LOG_REQUESTS", default_value = "false", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub log_requests: bool,

    /// Cap on requests held per route on this interceptor while its backend is not ready; over it the
    /// answer is 503 with Retry-After. 0 = unlimited (upstream's default; not recommended).
    #[arg(
        long,
        env = "KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS",
        value_name = "KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS",
        default_value = "10000"
    )]
    pub cold_start_max_pending_requests: usize,

    /// Upper bound of idle upstream connections kept per backend, per proxy thread.
    #[arg(
        long,
        env = "KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST",
        value_name = "KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST",
        default_value = "200"
    )]
    pub max_idle_conns_per_host: usize,

    /// Accepted for compatibility; the per-host bound above is what limits the pool.
    #[arg(
        long,
        env = "KEDA_HTTP_MAX_IDLE_CONNS",
        value_name = "KEDA_HTTP_MAX_IDLE_CONNS",
        default_value = "1000",
        hide = true
    )]
    pub max_idle_conns: usize,

    /// Serve Prometheus metrics on OTEL_PROM_EXPORTER_PORT.
    #[arg(long, env = "OTEL_PROM_EXPORTER_ENABLED", value_name = "OTEL_PROM_EXPORTER_ENABLED", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub prometheus_enabled: bool,

    /// Port of the Prometheus `/metrics` listener.
    #[arg(long, env = "OTEL_PROM_EXPORTER_PORT", value_name = "OTEL_PROM_EXPORTER_PORT", default_value = "2223")]
    pub prometheus_port: u16,

    /// Proxy threads, each with its own listener (SO_REUSEPORT) and upstream connection pool; 0 = one per CPU.
    #[arg(long, env = "HTTPSCALE_PROXY_THREADS", value_name = "HTTPSCALE_PROXY_THREADS", default_value = "0")]
    pub proxy_threads: usize,

    #[command(flatten)]
    pub listen: ListenerArgs,

    /// Open client connections on the proxy port; past it a new one gets 503 and is closed. Default: the lower
    /// of 30000 and the open-file limit less a reserve (10000 upstream connections for held requests + 1024).
    #[arg(long, env = "HTTPSCALE_MAX_CONNECTIONS", value_name = "HTTPSCALE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// A request body the client stops sending for this long (once it is being forwarded) gets 408 and
    /// the connection is closed. 0 = no limit.
    #[arg(long, env = "HTTPSCALE_BODY_TIMEOUT", value_name = "HTTPSCALE_BODY_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub body_timeout: Duration,

    /// Least average rate of a request body, in bytes a second (as Apache's mod_reqtimeout `MinRate`): the
    /// client may spend in all no more than the body timeout plus one second per this many bytes received
    /// waiting for its body; past it 408. 0 = no rate (the body timeout alone).
    #[arg(long, env = "HTTPSCALE_BODY_MIN_RATE", value_name = "HTTPSCALE_BODY_MIN_RATE", default_value = "500")]
    pub body_min_rate: u64,

    /// Largest request head (HTTP/1) or header list (HTTP/2) accepted; larger gets 431 (Go's default: 1 MiB).
    #[arg(
        long,
        env = "HTTPSCALE_MAX_HEADER_BYTES",
        value_name = "HTTPSCALE_MAX_HEADER_BYTES",
        default_value = "1048576"
    )]
    pub max_header_bytes: usize,

    /// Most header lines in an HTTP/1 request; more gets 431.
    #[arg(long, env = "HTTPSCALE_MAX_HEADERS", value_name = "HTTPSCALE_MAX_HEADERS", default_value = "1000")]
    pub max_headers: usize,

    /// Who serves plain HTTP/1.1 requests without a body: `own` (our own server half, handing a connection to
    /// hyper at its first request with a body or anything unusual) or `hyper` (hyper's server for everything).
    #[arg(long, env = "HTTPSCALE_HTTP1_SERVER", value_name = "HTTPSCALE_HTTP1_SERVER", default_value = "own")]
    pub http1_server: Http1Server,

    /// Peers (addresses or CIDR blocks, comma-separated) whose X-Forwarded-Host/-Proto/-Port, X-Real-IP and
    /// Forwarded headers are kept; from anyone else they are replaced with the interceptor's own values.
    #[arg(long, env = "HTTPSCALE_TRUSTED_PROXIES", value_name = "HTTPSCALE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Remove `.` and `..` path segments (also `%2e`) before matching and forwarding; a path above the root
    /// gets 400. `false` forwards paths as received.
    #[arg(long, env = "HTTPSCALE_NORMALIZE_PATH", value_name = "HTTPSCALE_NORMALIZE_PATH", default_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub normalize_path: bool,

    /// Subscribers of the admin port's `/queue/stream` at once; past it 503.
    #[arg(long, env = "HTTPSCALE_MAX_QUEUE_STREAMS", value_name = "HTTPSCALE_MAX_QUEUE_STREAMS", default_value = "64")]
    pub max_queue_streams: usize,

    /// Address the admin listener binds. Default: 127.0.0.1 in standalone mode (a routes file), the bind
    /// address in Kubernetes mode (the scaler reads it from other pods).
    #[arg(long, env = "HTTPSCALE_ADMIN_BIND_ADDRESS", value_name = "HTTPSCALE_ADMIN_BIND_ADDRESS")]
    pub admin_bind_address: Option<IpAddr>,

    /// Most bytes of a request body read to find the model it names (routes with `models`, and held SSE
    /// requests on routes with `coldStart.streamKeepAlive`); a larger body there gets 413. Bytes, or `4Mi`.
    #[arg(long, env = "HTTPSCALE_MODEL_BODY_LIMIT", value_name = "HTTPSCALE_MODEL_BODY_LIMIT", default_value = "4Mi", value_parser = body_limit)]
    pub model_body_limit: usize,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Program that launches route processes (default: this executable, which sets the parent-death signal
    /// and execs the command).
    #[arg(long, env = "HTTPSCALE_PROCESS_LAUNCHER", value_name = "HTTPSCALE_PROCESS_LAUNCHER", hide = true)]
    pub process_launcher: Option<PathBuf>,

    #[command(flatten)]
    pub otel: OtelArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// A body bound: a size of at least 1 KiB that fits in memory.
fn body_limit(s: &str) -> Result<usize, String> {
    let n = bytes(s).map_err(|e| e.to_string())?;
    if n < 1024 {
        return Err(format!("{s:?} is below the 1Ki minimum"));
    }
    usize::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

impl Config {
    /// Cross-field checks and upstream's deprecated overrides. Runs before anything is bound.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        if let Some(d) = self.condition_wait_timeout.filter(|d| !d.is_zero()) {
            self.readiness_timeout = d;
        }
        if let Some(d) = self.deprecated_response_header_timeout.filter(|d| !d.is_zero()) {
            self.response_header_timeout = d;
        }
        if self.tls.proxy_tls_enabled
            && self.tls.proxy_tls_port != 0
            && self.proxy_port == Some(self.tls.proxy_tls_port)
        {
            return Err(ConfigError::new("KEDA_HTTP_PROXY_TLS_PORT", "must differ from KEDA_HTTP_PROXY_PORT"));
        }
        self.tls.policy()?;
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new("KEDA_HTTP_CONNECT_TIMEOUT", "must be above 0"));
        }
        if self.max_header_bytes < 8192 {
            return Err(ConfigError::new("HTTPSCALE_MAX_HEADER_BYTES", "must be at least 8192"));
        }
        if self.max_headers < 100 {
            return Err(ConfigError::new("HTTPSCALE_MAX_HEADERS", "must be at least 100"));
        }
        self.otel.validate()?;
        Ok(self)
    }

    pub fn proxy_threads(&self) -> usize {
        if self.proxy_threads > 0 {
            self.proxy_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The proxy listeners' settings, with `tls` toward https backends.
    pub fn server_settings(&self, tls: Arc<rustls::ClientConfig>) -> ServerSettings {
        ServerSettings {
            threads: self.proxy_threads(),
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            own_http1: self.http1_server == Http1Server::Own,
            drain_timeout: self.drain_timeout,
            forward: ForwardSettings {
                connect_timeout: self.connect_timeout,
                max_idle_per_host: self.max_idle_conns_per_host,
                body: self.body_limits(),
                trusted: TrustedProxies::new(self.trusted_proxies.clone()),
                tls,
            },
        }
    }

    /// How long a client may take over its request body.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            stall: (!self.body_timeout.is_zero()).then_some(self.body_timeout),
            min_rate: (self.body_min_rate > 0).then_some(self.body_min_rate),
        }
    }

    /// The proxy listener's limits, for a process allowed `files` open files.
    pub fn proxy_limits(&self, files: usize) -> Limits {
        self.listen.limits(self.max_connections.unwrap_or_else(|| default_max_connections(files)))
    }

    /// Where the admin listener binds (see `HTTPSCALE_ADMIN_BIND_ADDRESS`).
    pub fn admin_bind(&self) -> IpAddr {
        let standalone = IpAddr::from([127, 0, 0, 1]);
        self.admin_bind_address.unwrap_or(if self.config.is_some() { standalone } else { self.bind_address })
    }

    /// A config for tests and embedding: every default, the given routes file, ports chosen by the OS.
    pub fn for_file(path: impl Into<PathBuf>) -> Self {
        let mut c = Config::parse_from(["interceptor", "--proxy-port", "0", "--admin-port", "0"]);
        c.config = Some(path.into());
        c.prometheus_port = 0;
        c.tls.proxy_tls_port = 0;
        c.bind_address = IpAddr::from([127, 0, 0, 1]);
        c
    }
}

/// Who serves plain HTTP/1.1 requests without a body (`HTTPSCALE_HTTP1_SERVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Http1Server {
    Own,
    Hyper,
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
    fn defaults_match_upstream() {
        let c = Config::parse_from(["interceptor"]);
        assert_eq!(c.response_header_timeout, Duration::from_secs(300));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        assert_eq!(c.readiness_timeout, Duration::ZERO);
        assert!(c.enable_cold_start_header && !c.log_requests && c.prometheus_enabled);
        assert_eq!(c.prometheus_port, 2223);
        assert_eq!(c.model_body_limit, 4 << 20);
    }

    #[test]
    fn the_model_body_limit_reads_sizes_and_names_itself_when_bad() {
        let c = Config::try_parse_from(["interceptor", "--model-body-limit", "16Mi"]).unwrap();
        assert_eq!(c.model_body_limit, 16 << 20);
        for bad in ["12", "lots"] {
            let e = Config::try_parse_from(["interceptor", "--model-body-limit", bad]).unwrap_err().to_string();
            assert!(e.contains("HTTPSCALE_MODEL_BODY_LIMIT"), "{e}");
        }
    }

    #[test]
    fn limits_are_no_stricter_than_gos_server_and_admin_binds_loopback_in_standalone_mode() {
        let c = Config::parse_from(["interceptor"]);
        assert_eq!((c.max_header_bytes, c.max_headers), (1 << 20, 1000));
        assert_eq!(c.listen.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.listen.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.body_timeout, Duration::from_secs(60));
        assert_eq!(c.body_min_rate, 500);
        assert_eq!(c.proxy_limits(1 << 20).max_connections, 30_000);
        assert_eq!(c.proxy_limits(20_000).max_connections, 10_000, "10 000 held requests fit beside their upstreams");
        assert_eq!(c.admin_bind(), IpAddr::from([0, 0, 0, 0]), "Kubernetes mode: reachable by the scaler");
        let c = Config::parse_from(["interceptor", "--config", "r.yaml", "--trusted-proxies", "10.0.0.0/8,::1"]);
        assert_eq!(c.admin_bind(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(Config::try_parse_from(["interceptor", "--trusted-proxies", "10.0.0.0/40"]).is_err());
    }

    #[test]
    fn go_style_values_parse_and_bad_ones_name_the_setting() {
        let c =
            Config::try_parse_from(["interceptor", "--response-header-timeout", "2m", "--log-requests", "T"]).unwrap();
        assert_eq!(c.response_header_timeout, Duration::from_secs(120));
        assert!(c.log_requests);
        let e = Config::try_parse_from(["interceptor", "--drain-timeout", "5x"]).unwrap_err().to_string();
        assert!(e.contains("KEDA_HTTP_DRAIN_TIMEOUT") && e.contains("5x"), "{e}");
    }

    #[test]
    fn deprecated_names_override_when_positive() {
        let mut c = Config::for_file("r.yaml");
        c.condition_wait_timeout = Some(Duration::from_secs(7));
        c.deprecated_response_header_timeout = Some(Duration::ZERO);
        let c = c.validate().unwrap();
        assert_eq!(c.readiness_timeout, Duration::from_secs(7));
        assert_eq!(c.response_header_timeout, Duration::from_secs(300));
    }

    #[test]
    fn kubernetes_settings_parse_as_upstream() {
        let c = Config::try_parse_from(["interceptor"]).unwrap();
        assert!(c.config.is_none() && c.direct_pod_routing && c.watch_namespace.is_empty(), "upstream 0.16 default");
        assert_eq!(c.max_staleness, Duration::from_secs(300));
        let c = Config::try_parse_from(["interceptor", "--direct-pod-routing", "false", "--watch-namespace", "team"])
            .unwrap();
        assert!(!c.direct_pod_routing);
        let help = Config::command().render_long_help().to_string();
        let line = help.lines().skip_while(|l| !l.contains("--direct-pod-routing")).take(6).collect::<String>();
        assert!(line.contains("[default: true]"), "{line}");
    }

    #[test]
    fn tls_settings_read_upstreams_names_and_a_bad_policy_names_its_setting() {
        let c = Config::parse_from(["interceptor"]);
        assert!(!c.tls.proxy_tls_enabled);
        assert_eq!(c.tls.proxy_tls_port, 8443);
        let mut c = Config::for_file("r.yaml");
        c.tls.tls_min_version = Some("1.1".into());
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "KEDA_HTTP_TLS_MIN_VERSION");
        assert!(e.message.contains("\"1.1\""), "{e}");
        let mut c = Config::for_file("r.yaml");
        c.tls.proxy_tls_enabled = true;
        (c.proxy_port, c.tls.proxy_tls_port) = (Some(8443), 8443);
        assert_eq!(c.validate().unwrap_err().setting, "KEDA_HTTP_PROXY_TLS_PORT");
    }
}
