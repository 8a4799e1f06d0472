//! OpenTelemetry for the interceptor and the scaler, set up from upstream's variables and the standard
//! `OTEL_*` ones: traces exported over OTLP (gRPC or HTTP/protobuf) or printed (`console`), W3C trace context
//! read from and written to HTTP headers ([`Tracer`]), and the Prometheus registry's families sent as OTLP
//! metrics ([`metrics`]). Everything here is off unless asked for; when it is off the data path holds no
//! [`Tracer`] and does no tracing work at all.

mod console;
pub mod metrics;
mod settings;
mod tracer;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

pub use metrics::Exposition;
pub use opentelemetry::KeyValue;
pub use settings::{DEFAULT_TIMEOUT, OtelArgs, SamplerName, TraceProtocol};
pub use tracer::{ServerSpan, Tracer};

use crate::Shutdown;
use crate::startup::ConfigError;

/// Who is exporting: the OTel `service.name` (upstream's, unless `OTEL_SERVICE_NAME` says otherwise) and the
/// instrumentation scope of its spans and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub scope: &'static str,
}

/// The running exporters; [`Telemetry::shutdown`] flushes them.
#[derive(Default)]
pub struct Telemetry {
    resource: Option<Resource>,
    scope: &'static str,
    provider: Option<SdkTracerProvider>,
    metrics: Option<tokio::task::JoinHandle<()>>,
    metrics_stop: Option<Shutdown>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("traces", &self.provider.is_some()).finish()
    }
}

impl Telemetry {
    /// Starts the trace exporter if `args` enables it, and returns the tracer for the data path (`None` when
    /// traces are off). Call inside the runtime that stays up until [`Telemetry::shutdown`].
    pub fn start(args: &OtelArgs, service: Service) -> Result<(Self, Option<Tracer>), ConfigError> {
        let resource = resource(args, service);
        let mut telemetry = Telemetry { resource: Some(resource.clone()), scope: service.scope, ..Default::default() };
        let mut tracer = None;
        if args.traces_enabled {
            let provider = provider(args, resource)?;
            tracer = Some(Tracer::new(&provider, service.scope));
            tracing::info!(protocol = args.traces_protocol.as_str(), sampler = ?args.sampler, "exporting traces");
            telemetry.provider = Some(provider);
        }
        Ok((telemetry, tracer))
    }

    /// Starts the OTLP metrics export of `exposition` if `args` enables it.
    pub fn export_metrics(&mut self, args: &OtelArgs, exposition: Exposition) -> Result<(), ConfigError> {
        if !args.metrics_enabled {
            return Ok(());
        }
        let resource = self.resource.clone().unwrap_or_else(|| Resource::builder_empty().build());
        let export = metrics::MetricsExport::new(args, &resource, self.scope)?;
        tracing::info!(endpoint = %export.endpoint(), interval = ?args.metric_interval, "exporting metrics over OTLP");
        let stop = Shutdown::new();
        self.metrics = Some(tokio::spawn(export.run(exposition, stop.clone())));
        self.metrics_stop = Some(stop);
        Ok(())
    }

    /// Exports what is left: the spans not yet sent and one last round of metrics.
    pub async fn shutdown(self) {
        if let Some(stop) = self.metrics_stop {
            stop.trigger();
        }
        if let Some(task) = self.metrics {
            let _ = task.await;
        }
        if let Some(provider) = self.provider {
            // The batch processor runs on this runtime; its shutdown blocks until it has flushed.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(cause = %e, "spans could not all be exported at shutdown");
            }
        }
    }
}

/// `service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(args: &OtelArgs, service: Service) -> Resource {
    let name = args.service_name.clone().unwrap_or_else(|| service.name.to_owned());
    let mut attributes: Vec<KeyValue> = args
        .resource_attributes()
        .into_iter()
        .filter(|(k, _)| k != "service.name")
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    attributes.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    Resource::builder_empty().with_service_name(name).with_attributes(attributes).build()
}

/// The tracer provider: the sampler of `OTEL_TRACES_SAMPLER`, a batch processor on the Tokio runtime, and
/// the exporter of `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`.
fn provider(args: &OtelArgs, resource: Resource) -> Result<SdkTracerProvider, ConfigError> {
    let builder = SdkTracerProvider::builder().with_resource(resource).with_sampler(args.sampler());
    let timeout = args.traces_timeout();
    let headers = args.headers_for(args.traces_headers.as_deref());
    let failed = |e: opentelemetry_otlp::ExporterBuildError| {
        ConfigError::new("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("cannot build the exporter: {e}"))
    };
    let provider = match args.traces_protocol {
        TraceProtocol::Console => builder.with_span_processor(batch(console::ConsoleExporter)),
        TraceProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::MetadataKey<_>>(), v.parse()) {
                    metadata.insert(k, v);
                }
            }
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(args.traces_endpoint_for(TraceProtocol::Grpc))
                .with_timeout(timeout)
                .with_metadata(metadata)
                .build()
                .map_err(failed)?;
            builder.with_span_processor(batch(exporter))
        }
        TraceProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(args.traces_endpoint_for(TraceProtocol::HttpProtobuf))
                .with_timeout(timeout)
                .with_headers(headers.into_iter().collect())
                .build()
                .map_err(failed)?;
            builder.with_span_processor(batch(exporter))
        }
    };
    Ok(provider.build())
}

fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(exporter: E) -> BatchSpanProcessor<Tokio> {
    BatchSpanProcessor::builder(exporter, Tokio).build()
}
