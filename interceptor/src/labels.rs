//! The label sets of the interceptor's metrics (upstream's names, reference §3.7). A leaf: what measures
//! something imports these, and [`crate::metrics`] registers the families.

use std::sync::Arc;

use http::Method;
use httpscale_core::route::RouteKey;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A label value shared by every series of a route (cloning it is a reference-count increment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelValue(Arc<str>);

impl LabelValue {
    /// Where the shared text lives: the same for every clone, different for a value that lives alongside.
    pub fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

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

impl MethodLabel {
    pub fn as_str(self) -> &'static str {
        self.0
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

    /// The same labels, plus `cold_start`.
    pub fn with_cold_start(&self, cold_start: bool) -> DurationLabels {
        DurationLabels {
            code: self.code,
            method: self.method,
            route_name: self.route_name.clone(),
            route_namespace: self.route_namespace.clone(),
            cold_start: BoolLabel(cold_start),
        }
    }
}

/// `true` or `false`, as upstream writes a boolean label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoolLabel(pub bool);

impl EncodeLabelValue for BoolLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, if self.0 { "true" } else { "false" })
    }
}

/// `interceptor_request_duration_seconds`' labels: the request's, plus whether it waited for its backend's
/// readiness (`cold_start`, upstream 0.16).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DurationLabels {
    pub code: u16,
    pub method: MethodLabel,
    pub route_name: LabelValue,
    pub route_namespace: LabelValue,
    pub cold_start: BoolLabel,
}

/// How a cold start ended for one request (`interceptor_cold_start_duration_seconds`' `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The backend became ready; the request went on.
    Ready,
    /// The readiness timeout passed (the answer is 504, or the route's fallback serves it).
    Timeout,
    /// The readiness source gave up: a program that crashed or did not start in time (502 or 504).
    Error,
    /// The client left while its request was held.
    Canceled,
    /// The interceptor stopped while the request was held (503).
    Shutdown,
    /// The route's hold queue was full: refused at once (503 or the placeholder), observed as a 0 s wait.
    Overflow,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ready => "ready",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Canceled => "canceled",
            Outcome::Shutdown => "shutdown",
            Outcome::Overflow => "overflow",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ColdStartLabels {
    pub route_name: LabelValue,
    pub route_namespace: LabelValue,
    pub outcome: Outcome,
}

impl ColdStartLabels {
    pub fn new(route: &RouteLabels, outcome: Outcome) -> Self {
        Self { route_name: route.route_name.clone(), route_namespace: route.route_namespace.clone(), outcome }
    }
}
