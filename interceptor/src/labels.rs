//! The label sets of the interceptor's metrics (upstream's names, reference §3.7). A leaf: what measures
//! something imports these, and [`crate::metrics`] registers the families.

use std::sync::Arc;

use http::Method;
use httpscale_core::route::RouteKey;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A label value shared by every series of a route (cloning it is a reference-count increment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelValue(Arc<str>);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, EncodeLabelSet)]
pub struct RouteLabels {
    pub route_name: LabelValue,
    pub route_namespace: LabelValue,
}

impl RouteLabels {
    pub fn new(key: &RouteKey) -> Self {
        Self {
            route_name: LabelValue(key.name.as_str().into()),
            route_namespace: LabelValue(key.namespace.as_str().into()),
        }
    }
}

/// The HTTP method as upstream labels it: standard methods by name, anything else `_OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodLabel(&'static str);

impl From<&Method> for MethodLabel {
    fn from(m: &Method) -> Self {
        const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
        Self(STANDARD.iter().find(|s| **s == m.as_str()).copied().unwrap_or("_OTHER"))
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: u16,
    pub method: MethodLabel,
    pub route_name: LabelValue,
    pub route_namespace: LabelValue,
}

impl RequestLabels {
    pub fn new(code: u16, method: MethodLabel, route: RouteLabels) -> Self {
        Self { code, method, route_name: route.route_name, route_namespace: route.route_namespace }
    }
}
