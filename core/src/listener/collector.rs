//! Every listener's limit counts and open connections, for a binary's registry:
//! `httpscale_connection_limits_total{listener, limit}`, `httpscale_open_connections{listener}` and
//! `httpscale_parked_connections{listener}`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::gate::Gatekeeper;
use super::stats::Limit;

/// The limit counts and open connections of every listener of a binary, for its registry.
pub struct LimitsCollector(pub Vec<Arc<Gatekeeper>>);

impl std::fmt::Debug for LimitsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LimitsCollector")
    }
}

impl Collector for LimitsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut hits = encoder.encode_descriptor(
            "httpscale_connection_limits",
            "Connections and requests refused or cut by a listener's limits",
            None,
            MetricType::Counter,
        )?;
        for g in &self.0 {
            for limit in Limit::ALL {
                let labels = [("listener", g.name), ("limit", limit.label())];
                ConstCounter::new(g.stats.hits(limit)).encode(hits.encode_family(&labels)?)?;
            }
        }
        let mut open = encoder.encode_descriptor(
            "httpscale_open_connections",
            "Client connections open on each listener",
            None,
            MetricType::Gauge,
        )?;
        for g in &self.0 {
            ConstGauge::new(g.open() as i64).encode(open.encode_family(&[("listener", g.name)])?)?;
        }
        let mut parked = encoder.encode_descriptor(
            "httpscale_parked_connections",
            "Connections whose first request waits for its backend before it is read",
            None,
            MetricType::Gauge,
        )?;
        for g in &self.0 {
            ConstGauge::new(g.parked() as i64).encode(parked.encode_family(&[("listener", g.name)])?)?;
        }
        Ok(())
    }
}
