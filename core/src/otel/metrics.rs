//! OTLP metrics (`OTEL_EXPORTER_OTLP_METRICS_ENABLED`): every `OTEL_METRIC_EXPORT_INTERVAL`, and once more at
//! shutdown, the registry's families ([`crate::exposition::families`]) are sent over OTLP/HTTP with protobuf
//! bodies, as upstream's `otlpmetrichttp` exporter sends them: cumulative sums for counters, gauges, and
//! explicit-bucket histograms with the registry's own bounds.
//!
//! Names: a metric upstream has is sent under upstream's OTel name (`interceptor.request.count`,
//! `interceptor.request.duration` in `s`, …); any other keeps its Prometheus family name (a counter's without
//! `_total`), so a collector's Prometheus exporter gives back the series `/metrics` shows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::settings::OtelArgs;
use crate::Shutdown;
use crate::exposition::{Family, Kind, families};
use crate::startup::ConfigError;

/// Why one export failed (logged; the next interval exports again).
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error(transparent)]
    Request(#[from] http::Error),
    #[error(transparent)]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("the collector answered {status}: {body}")]
    Refused { status: http::StatusCode, body: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What a binary's registry exposes, as OpenMetrics text (called once per metrics export).
pub type Exposition = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Upstream's OTel names of the metrics it has: (Prometheus family, OTel name, unit).
const UPSTREAM_NAMES: [(&str, &str, &str); 9] = [
    ("interceptor_request_count", "interceptor.request.count", ""),
    ("interceptor_request_duration_seconds", "interceptor.request.duration", "s"),
    ("interceptor_request_concurrency", "interceptor.request.concurrency", ""),
    ("interceptor_cold_start_rejections", "interceptor.cold_start.rejections", ""),
    ("interceptor_cold_start_duration_seconds", "interceptor.cold_start.duration", "s"),
    ("scaler_pinger_fetch_duration_seconds", "scaler.pinger.fetch.duration", "s"),
    ("scaler_pinger_fetch_errors", "scaler.pinger.fetch.errors", ""),
    ("scaler_pinger_endpoints", "scaler.pinger.endpoints", ""),
    ("scaler_pinger_unreachable_pods", "scaler.pinger.unreachable_pods", ""),
];

/// The OTel name and unit a family is sent under.
pub fn otel_name(family: &str, unit: &str) -> (String, String) {
    if let Some((_, name, unit)) = UPSTREAM_NAMES.iter().find(|(f, _, _)| *f == family) {
        return ((*name).to_owned(), (*unit).to_owned());
    }
    let unit = match unit {
        "seconds" => "s",
        "bytes" => "By",
        u => u,
    };
    (family.to_owned(), unit.to_owned())
}

/// The periodic export.
pub struct MetricsExport {
    endpoint: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    interval: Duration,
    resource: Resource,
    scope: &'static str,
    started: u64,
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

impl MetricsExport {
    pub fn new(
        args: &OtelArgs,
        resource: &opentelemetry_sdk::Resource,
        scope: &'static str,
    ) -> Result<Self, ConfigError> {
        let endpoint = args.metrics_endpoint();
        let endpoint = endpoint.parse::<Uri>().map_err(|_| {
            ConfigError::new("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("{endpoint:?} is not a URL"))
        })?;
        let mut headers = Vec::new();
        for (k, v) in args.headers_for(args.metrics_headers.as_deref()) {
            let bad = || ConfigError::new("OTEL_EXPORTER_OTLP_HEADERS", format!("{k:?} is not a valid header"));
            headers.push((k.parse::<HeaderName>().map_err(|_| bad())?, v.parse::<HeaderValue>().map_err(|_| bad())?));
        }
        let attributes = resource.iter().map(|(k, v)| string(k.as_str(), &v.to_string())).collect();
        Ok(Self {
            endpoint,
            headers,
            timeout: args.metrics_timeout(),
            interval: args.metric_interval.max(Duration::from_millis(100)),
            resource: Resource { attributes, ..Default::default() },
            scope,
            started: now_nanos(),
        })
    }

    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// Exports every interval until `stop`, then once more.
    pub async fn run(self, exposition: Exposition, stop: Shutdown) {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        loop {
            let last = tokio::select! {
                _ = tokio::time::sleep(self.interval) => false,
                _ = stop.triggered() => true,
            };
            let body = self.request(&families(&exposition())).encode_to_vec();
            if let Err(e) = self.send(&client, body).await {
                tracing::warn!(endpoint = %self.endpoint, cause = %e, "OTLP metrics export failed");
            }
            if last {
                return;
            }
        }
    }

    async fn send(&self, client: &Client<HttpConnector, Full<Bytes>>, body: Vec<u8>) -> Result<(), ExportError> {
        let mut req = Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let answered = tokio::time::timeout(self.timeout, async {
            let resp = client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            match status.is_success() {
                true => Ok(()),
                false => Err(ExportError::Refused { status, body: String::from_utf8_lossy(&body).into_owned() }),
            }
        });
        answered.await.map_err(|_| ExportError::Timeout(self.timeout))?
    }

    /// The export request for `families`, stamped now.
    pub fn request(&self, families: &[Family]) -> ExportMetricsServiceRequest {
        let now = now_nanos();
        let metrics = families.iter().filter_map(|f| self.metric(f, now)).collect();
        let scope = InstrumentationScope {
            name: self.scope.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics { scope: Some(scope), metrics, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    /// `f` as an OTLP metric; `None` for a family with no series yet (OTLP has no empty metric).
    fn metric(&self, f: &Family, now: u64) -> Option<Metric> {
        if f.series.is_empty() {
            return None;
        }
        let (name, unit) = otel_name(&f.name, &f.unit);
        let attributes = |labels: &Vec<(String, String)>| labels.iter().map(|(k, v)| string(k, v)).collect();
        let number = |labels: &Vec<(String, String)>, value: f64| NumberDataPoint {
            attributes: attributes(labels),
            start_time_unix_nano: self.started,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match f.kind {
            Kind::Counter => metric::Data::Sum(Sum {
                data_points: f.series.iter().map(|(l, s)| number(l, s.value)).collect(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Kind::Gauge => {
                metric::Data::Gauge(Gauge { data_points: f.series.iter().map(|(l, s)| number(l, s.value)).collect() })
            }
            Kind::Histogram => metric::Data::Histogram(Histogram {
                data_points: f
                    .series
                    .iter()
                    .map(|(l, s)| {
                        let mut previous = 0.0;
                        let bucket_counts = s
                            .buckets
                            .iter()
                            .map(|(_, cumulative)| {
                                let n = (cumulative - previous).max(0.0) as u64;
                                previous = *cumulative;
                                n
                            })
                            .collect();
                        HistogramDataPoint {
                            attributes: attributes(l),
                            start_time_unix_nano: self.started,
                            time_unix_nano: now,
                            count: s.count as u64,
                            sum: Some(s.sum),
                            bucket_counts,
                            explicit_bounds: s.buckets.iter().map(|(b, _)| *b).filter(|b| b.is_finite()).collect(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: cumulative,
            }),
            Kind::Other => return None,
        };
        Some(Metric { name, description: f.help.clone(), unit, data: Some(data), ..Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP interceptor_request_count Requests.\n# TYPE interceptor_request_count counter\n\
        interceptor_request_count_total{code=\"200\",route_name=\"app\"} 3\n\
        # HELP interceptor_request_duration_seconds Durations.\n# TYPE interceptor_request_duration_seconds histogram\n\
        # UNIT interceptor_request_duration_seconds seconds\n\
        interceptor_request_duration_seconds_sum{code=\"200\"} 1.5\n\
        interceptor_request_duration_seconds_count{code=\"200\"} 3\n\
        interceptor_request_duration_seconds_bucket{le=\"0.5\",code=\"200\"} 2\n\
        interceptor_request_duration_seconds_bucket{le=\"1.0\",code=\"200\"} 2\n\
        interceptor_request_duration_seconds_bucket{le=\"+Inf\",code=\"200\"} 3\n\
        # HELP httpscale_things Things.\n# TYPE httpscale_things gauge\nhttpscale_things 4\n# EOF\n";

    #[test]
    fn families_become_otlp_metrics_under_upstreams_names() {
        let args = crate::otel::settings::parse(&[
            "--otel-metrics-endpoint",
            "http://c:4318/v1/metrics",
            "--otel-headers",
            "x-team=a",
        ]);
        let resource = opentelemetry_sdk::Resource::builder_empty().with_service_name("keda-http-interceptor").build();
        let export = MetricsExport::new(&args, &resource, "keda-interceptor-proxy").unwrap();
        assert_eq!(export.headers[0].0, "x-team");
        let req = export.request(&families(EXPOSITION));
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource.as_ref().unwrap().attributes[0].key, "service.name");
        let metrics = &rm.scope_metrics[0].metrics;
        let names: Vec<_> = metrics.iter().map(|m| (m.name.as_str(), m.unit.as_str())).collect();
        assert_eq!(
            names,
            [("interceptor.request.count", ""), ("interceptor.request.duration", "s"), ("httpscale_things", "")]
        );
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else { panic!("a sum") };
        assert!(sum.is_monotonic && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32);
        assert_eq!(sum.data_points[0].value, Some(number_data_point::Value::AsDouble(3.0)));
        assert_eq!(sum.data_points[0].attributes.len(), 2);
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else { panic!("a histogram") };
        let p = &h.data_points[0];
        assert_eq!(
            (p.count, p.sum, &p.explicit_bounds, &p.bucket_counts),
            (3, Some(1.5), &vec![0.5, 1.0], &vec![2, 0, 1])
        );
        assert!(matches!(&metrics[2].data, Some(metric::Data::Gauge(_))));
    }
}
