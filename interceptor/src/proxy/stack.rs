//! The pipeline, assembled. Each layer gets only the handles it uses.

use std::convert::Infallible;
use std::sync::Arc;

use http::Request;
use httpscale_core::otel::Tracer;
use tower::{Service, ServiceBuilder};

use super::cold_start::{ColdStartLayer, ColdStartParams};
use super::count::CountLayer;
use super::forward::{Forward, RequestBody};
use super::keepalive::KeepAliveLayer;
use super::metrics::MetricsLayer;
use super::peek::{Peek, ReadAhead};
use super::rescue::{Draining, RescueLayer};
use super::route::RouteLayer;
use super::statics::StaticLayer;
use super::types::{BoxFuture, ProxyResponse};
use crate::metrics::RequestMetrics;
use crate::placeholder::Bodies;
use crate::routes::Routes;

/// What the layers use, shared by every proxy thread.
#[derive(Clone)]
pub struct StackParams {
    pub routes: Arc<Routes>,
    pub requests: Arc<RequestMetrics>,
    pub log_requests: bool,
    pub draining: Draining,
    pub cold_start: Arc<ColdStartParams>,
    pub bodies: Bodies,
    /// Remove dot segments from paths before matching (`HTTPSCALE_NORMALIZE_PATH`).
    pub normalize_path: bool,
    /// How a request body is read to find the model it names (`HTTPSCALE_MODEL_BODY_LIMIT`,
    /// `HTTPSCALE_BODY_TIMEOUT`).
    pub read_ahead: ReadAhead,
    /// A server span per request when traces are on (`OTEL_EXPORTER_OTLP_TRACES_ENABLED`).
    pub tracer: Option<Tracer>,
}

/// The assembled pipeline for request bodies `B`: every failure answered, so it never errs.
pub trait Pipeline<B>:
    Service<
        Request<B>,
        Response = ProxyResponse,
        Error = Infallible,
        Future = BoxFuture<Result<ProxyResponse, Infallible>>,
    > + Clone
    + Send
    + 'static
{
}

impl<B, T> Pipeline<B> for T where
    T: Service<
            Request<B>,
            Response = ProxyResponse,
            Error = Infallible,
            Future = BoxFuture<Result<ProxyResponse, Infallible>>,
        > + Clone
        + Send
        + 'static
{
}

/// metrics → rescue → route → statics → count → keep-alive → cold start → `forward`.
pub fn stack<B: RequestBody + Peek>(p: &StackParams, forward: Forward<B>) -> impl Pipeline<B> {
    ServiceBuilder::new()
        .layer(MetricsLayer::new(p.requests.clone(), p.log_requests, p.tracer.clone()))
        .layer(RescueLayer::new(p.draining.clone()))
        .layer(RouteLayer::new(p.routes.clone(), p.normalize_path, p.read_ahead))
        .layer(StaticLayer::new(p.bodies.clone(), forward.clone()))
        .layer(CountLayer)
        .layer(KeepAliveLayer::new(p.read_ahead))
        .layer(ColdStartLayer::new(p.cold_start.clone()))
        .service(forward)
}
