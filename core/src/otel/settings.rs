//! The OpenTelemetry settings: upstream's switches (`OTEL_EXPORTER_OTLP_TRACES_ENABLED`,
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_METRICS_ENABLED`) and the standard SDK variables
//! the Go SDK reads for them, each parsed and checked before anything starts.

use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;

use crate::settings::go_bool;
use crate::startup::ConfigError;

/// The default bound of one OTLP export (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where traces go (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, upstream's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceProtocol {
    /// One JSON line per span on standard output.
    #[value(name = "console")]
    Console,
    /// OTLP over gRPC (the endpoint's port is usually 4317).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (usually port 4318, path `/v1/traces`).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl TraceProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceProtocol::Console => "console",
            TraceProtocol::Grpc => "grpc",
            TraceProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// `OTEL_TRACES_SAMPLER`'s standard values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerName {
    #[value(name = "always_on")]
    AlwaysOn,
    #[value(name = "always_off")]
    AlwaysOff,
    #[value(name = "traceidratio")]
    TraceIdRatio,
    #[value(name = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    #[value(name = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[value(name = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// Milliseconds, as the OTel variables give durations.
fn millis(s: &str) -> Result<Duration, String> {
    s.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{s:?} is not a number of milliseconds"))
}

/// Every OpenTelemetry setting (flattened into the interceptor's and the scaler's configuration).
#[derive(Debug, Clone, clap::Args)]
pub struct OtelArgs {
    /// Export traces (upstream's switch).
    #[arg(long = "otel-traces-enabled", env = "OTEL_EXPORTER_OTLP_TRACES_ENABLED", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENABLED", default_value = "false", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub traces_enabled: bool,

    /// Trace exporter: console, grpc or http/protobuf (upstream's values and default).
    #[arg(
        long = "otel-traces-protocol",
        env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        value_enum,
        default_value = "console"
    )]
    pub traces_protocol: TraceProtocol,

    /// Base OTLP endpoint (`http://host:4317` for grpc, `http://host:4318` for HTTP, where `/v1/traces` and
    /// `/v1/metrics` are added). Default: localhost on the protocol's port.
    #[arg(long = "otel-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Trace endpoint, used as it is (wins over OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(
        long = "otel-traces-endpoint",
        env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )]
    pub traces_endpoint: Option<String>,

    /// Metrics endpoint, used as it is (wins over OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(
        long = "otel-metrics-endpoint",
        env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    )]
    pub metrics_endpoint: Option<String>,

    /// Headers sent with every export, `key=value` pairs separated by commas (values URL-encoded).
    #[arg(long = "otel-headers", env = "OTEL_EXPORTER_OTLP_HEADERS", value_name = "OTEL_EXPORTER_OTLP_HEADERS")]
    pub headers: Option<String>,

    /// Headers for trace exports only, added to OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(
        long = "otel-traces-headers",
        env = "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
    )]
    pub traces_headers: Option<String>,

    /// Headers for metric exports only, added to OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(
        long = "otel-metrics-headers",
        env = "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        value_name = "OTEL_EXPORTER_OTLP_METRICS_HEADERS"
    )]
    pub metrics_headers: Option<String>,

    /// Bound of one export, in milliseconds (default 10000).
    #[arg(long = "otel-timeout", env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", value_parser = millis)]
    pub timeout: Option<Duration>,

    /// Bound of one trace export, in milliseconds (wins over OTEL_EXPORTER_OTLP_TIMEOUT).
    #[arg(long = "otel-traces-timeout", env = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value_parser = millis)]
    pub traces_timeout: Option<Duration>,

    /// Bound of one metrics export, in milliseconds (wins over OTEL_EXPORTER_OTLP_TIMEOUT).
    #[arg(long = "otel-metrics-timeout", env = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", value_parser = millis)]
    pub metrics_timeout: Option<Duration>,

    /// Which traces are recorded: always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off, parentbased_traceidratio.
    #[arg(
        long = "otel-traces-sampler",
        env = "OTEL_TRACES_SAMPLER",
        value_name = "OTEL_TRACES_SAMPLER",
        value_enum,
        default_value = "parentbased_always_on"
    )]
    pub sampler: SamplerName,

    /// The ratio of the traceidratio samplers, 0 to 1 (default 1).
    #[arg(long = "otel-traces-sampler-arg", env = "OTEL_TRACES_SAMPLER_ARG", value_name = "OTEL_TRACES_SAMPLER_ARG")]
    pub sampler_arg: Option<String>,

    /// Export the Prometheus metrics over OTLP/HTTP too (upstream's switch).
    #[arg(long = "otel-metrics-enabled", env = "OTEL_EXPORTER_OTLP_METRICS_ENABLED", value_name = "OTEL_EXPORTER_OTLP_METRICS_ENABLED", default_value = "false", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    /// Time between two metrics exports, in milliseconds.
    #[arg(long = "otel-metric-export-interval", env = "OTEL_METRIC_EXPORT_INTERVAL", value_name = "OTEL_METRIC_EXPORT_INTERVAL", default_value = "60000", value_parser = millis)]
    pub metric_interval: Duration,

    /// The OTel `service.name` (default: upstream's, keda-http-interceptor or keda-http-external-scaler).
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// More resource attributes, `key=value` pairs separated by commas.
    #[arg(
        long = "otel-resource-attributes",
        env = "OTEL_RESOURCE_ATTRIBUTES",
        value_name = "OTEL_RESOURCE_ATTRIBUTES"
    )]
    pub resource_attributes: Option<String>,
}

/// `key=value,key2=value2` with URL-encoded values (the OTel list format); malformed entries are skipped.
fn pairs(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OtelArgs {
    /// Checks what clap cannot: endpoints are plain `http://` URLs and the sampler ratio is a number in 0..=1.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let endpoints = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &self.traces_endpoint),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &self.metrics_endpoint),
        ];
        for (setting, endpoint) in endpoints {
            let Some(e) = endpoint else { continue };
            match e.parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {}
                Ok(u) if u.scheme_str() == Some("https") => {
                    return Err(ConfigError::new(
                        setting,
                        "https endpoints are not supported (no TLS to the collector); use http:// to a collector or agent",
                    ));
                }
                _ => return Err(ConfigError::new(setting, format!("{e:?} is not an http://host:port URL"))),
            }
        }
        if let Some(arg) = &self.sampler_arg {
            match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => {}
                _ => {
                    return Err(ConfigError::new(
                        "OTEL_TRACES_SAMPLER_ARG",
                        format!("{arg:?} is not a ratio from 0 to 1"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The sampler of `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn sampler(&self) -> Sampler {
        let ratio = self.sampler_arg.as_deref().and_then(|a| a.trim().parse().ok()).unwrap_or(1.0);
        match self.sampler {
            SamplerName::AlwaysOn => Sampler::AlwaysOn,
            SamplerName::AlwaysOff => Sampler::AlwaysOff,
            SamplerName::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
            SamplerName::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerName::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            SamplerName::ParentBasedTraceIdRatio => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
        }
    }

    /// The trace endpoint for `protocol`: the signal's own as it is, else the base one (HTTP adds
    /// `/v1/traces`), else localhost on the protocol's port.
    pub fn traces_endpoint_for(&self, protocol: TraceProtocol) -> String {
        match (&self.traces_endpoint, &self.endpoint, protocol) {
            (Some(e), _, _) => e.clone(),
            (None, Some(base), TraceProtocol::Grpc) => base.clone(),
            (None, Some(base), _) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None, TraceProtocol::Grpc) => "http://localhost:4317".into(),
            (None, None, _) => "http://localhost:4318/v1/traces".into(),
        }
    }

    /// The metrics endpoint (OTLP/HTTP, as upstream): the signal's own, else the base one plus `/v1/metrics`.
    pub fn metrics_endpoint(&self) -> String {
        match (&self.metrics_endpoint, &self.endpoint) {
            (Some(e), _) => e.clone(),
            (None, Some(base)) => format!("{}/v1/metrics", base.trim_end_matches('/')),
            (None, None) => "http://localhost:4318/v1/metrics".into(),
        }
    }

    /// OTEL_EXPORTER_OTLP_HEADERS plus a signal's own headers (which win).
    pub fn headers_for(&self, signal: Option<&str>) -> Vec<(String, String)> {
        let mut all = self.headers.as_deref().map(pairs).unwrap_or_default();
        for (k, v) in signal.map(pairs).unwrap_or_default() {
            all.retain(|(key, _)| !key.eq_ignore_ascii_case(&k));
            all.push((k, v));
        }
        all
    }

    pub fn traces_timeout(&self) -> Duration {
        self.traces_timeout.or(self.timeout).unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn metrics_timeout(&self) -> Duration {
        self.metrics_timeout.or(self.timeout).unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn resource_attributes(&self) -> Vec<(String, String)> {
        self.resource_attributes.as_deref().map(pairs).unwrap_or_default()
    }
}

/// The settings `args` (flags) give, for tests.
#[cfg(test)]
pub(super) fn try_parse(args: &[&str]) -> Result<OtelArgs, clap::Error> {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        otel: OtelArgs,
    }
    Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|c| c.otel)
}

#[cfg(test)]
pub(super) fn parse(args: &[&str]) -> OtelArgs {
    try_parse(args).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let a = parse(&[]);
        assert!(!a.traces_enabled && !a.metrics_enabled);
        assert_eq!(a.traces_protocol, TraceProtocol::Console);
        assert_eq!(a.sampler, SamplerName::ParentBasedAlwaysOn);
        assert_eq!(a.metric_interval, Duration::from_secs(60));
        assert_eq!((a.traces_timeout(), a.metrics_timeout()), (DEFAULT_TIMEOUT, DEFAULT_TIMEOUT));
        assert_eq!(a.traces_endpoint_for(TraceProtocol::Grpc), "http://localhost:4317");
        assert_eq!(a.metrics_endpoint(), "http://localhost:4318/v1/metrics");
    }

    #[test]
    fn endpoints_headers_and_timeouts_follow_the_otlp_exporter_spec() {
        let a = parse(&["--otel-endpoint", "http://collector:4318/", "--otel-traces-timeout", "2500"]);
        assert_eq!(a.traces_endpoint_for(TraceProtocol::HttpProtobuf), "http://collector:4318/v1/traces");
        assert_eq!(a.traces_endpoint_for(TraceProtocol::Grpc), "http://collector:4318/");
        assert_eq!(a.metrics_endpoint(), "http://collector:4318/v1/metrics");
        assert_eq!(a.traces_timeout(), Duration::from_millis(2500));
        let a = parse(&[
            "--otel-traces-endpoint",
            "http://t:1/x",
            "--otel-headers",
            "a=1,b=x%20y",
            "--otel-traces-headers",
            "A=2",
        ]);
        assert_eq!(a.traces_endpoint_for(TraceProtocol::HttpProtobuf), "http://t:1/x");
        assert_eq!(a.headers_for(a.traces_headers.as_deref()), [("b".into(), "x y".into()), ("A".into(), "2".into())]);
        assert!(try_parse(&["--otel-traces-protocol", "zipkin"]).is_err());
        assert_eq!(parse(&["--otel-traces-protocol", "http/protobuf"]).traces_protocol, TraceProtocol::HttpProtobuf);
    }

    #[test]
    fn bad_endpoints_and_ratios_name_their_setting() {
        let e = parse(&["--otel-endpoint", "https://c:4317"]).validate().unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let e = parse(&["--otel-metrics-endpoint", "collector:4318"]).validate().unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let e = parse(&["--otel-traces-sampler-arg", "1.5"]).validate().unwrap_err();
        assert_eq!(e.setting, "OTEL_TRACES_SAMPLER_ARG");
        let a = parse(&["--otel-traces-sampler", "parentbased_traceidratio", "--otel-traces-sampler-arg", "0.25"]);
        assert!(a.validate().is_ok());
        assert!(format!("{:?}", a.sampler()).contains("0.25"));
    }
}
