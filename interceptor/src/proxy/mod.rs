//! The proxy as a pipeline of named `tower` layers, outermost first:
//!
//! 1. [`metrics`]: records `interceptor_request_count_total` and `_duration_seconds` when the response
//!    ends (or 499 if the client leaves first), and logs the request when asked to.
//! 2. [`route`]: finds the route (404 if none, never forwarded), applies the request deadline, and is the one
//!    place where a [`ProxyError`] becomes an HTTP answer.
//! 3. [`statics`]: answers requests that match a route's `staticRoutes` (always, or while the backend is not
//!    ready; a ready backend gets them forwarded without counting, as upstream).
//! 4. [`count`]: counts the request for the scaler before anything waits, and keeps it counted until the
//!    response body ends.
//! 5. [`cold_start`]: passes requests for a ready backend straight on; otherwise serves the placeholder,
//!    refuses over the hold cap, or holds the request unsent until the backend is ready (or the fallback).
//! 6. [`forward`]: sends the request upstream over a pooled connection and streams the answer back.

pub mod body;
pub mod cold_start;
pub mod count;
pub mod error;
pub mod forward;
pub mod headers;
pub mod metrics;
pub mod route;
pub mod statics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

pub use body::ProxyBody;
pub use error::ProxyError;

use crate::cluster;
use crate::routes::{PreparedBody, PreparedPlaceholder, RouteState};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type ProxyResponse = Response<ProxyBody>;

/// The client's address, set per connection by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Set by the route layer: the matched route and the host the request was routed on.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Arc<RouteState>,
    pub host: HeaderValue,
}

/// Set by the cold-start layer when the readiness wait ran out and the route has a fallback.
#[derive(Debug, Clone, Copy)]
pub struct UseFallback;

/// The `Content-Type` of a ConfigMap body, from its key's extension.
fn content_type_of(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("xml") => "application/xml",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A fixed answer (placeholder or static route). A ConfigMap body is read now, as upstream: the key is
/// the explicit one, or the request path without its leading `/` (`index.html` for `/`); a missing
/// ConfigMap or explicit key is a 500, a missing path-derived key an empty body.
pub fn fixed_response(
    p: &PreparedPlaceholder,
    path: &str,
    shared: &crate::Shared,
) -> Result<ProxyResponse, ProxyError> {
    let (body, inferred) = match &p.body {
        PreparedBody::Inline(b) => (b.clone(), None),
        PreparedBody::ConfigMap { namespace, name, key } => {
            let bodies = shared.bodies();
            let data = bodies.as_deref().and_then(|b| b.get(&(namespace.clone(), name.clone()))).ok_or_else(|| {
                ProxyError::PlaceholderBody(format!(
                    "ConfigMap {namespace}/{name} labelled {}=true not found",
                    cluster::BODY_LABEL
                ))
            })?;
            let (k, explicit) = match key {
                Some(k) => (k.clone(), true),
                None => match path.trim_start_matches('/') {
                    "" => ("index.html".to_owned(), false),
                    p => (p.to_owned(), false),
                },
            };
            match data.get(&k) {
                Some(v) => (bytes::Bytes::from(v.clone()), Some(content_type_of(&k))),
                None if explicit => {
                    return Err(ProxyError::PlaceholderBody(format!("ConfigMap {namespace}/{name} has no key {k:?}")));
                }
                None => (bytes::Bytes::new(), None),
            }
        }
    };
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = p.status;
    for (k, v) in &p.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    if let Some(ct) = inferred
        && !resp.headers().contains_key(http::header::CONTENT_TYPE)
    {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    Ok(resp)
}

/// Builds the whole pipeline around a forwarder.
pub fn stack(
    shared: Arc<crate::Shared>,
    forward: forward::Forward,
) -> impl Service<
    Request<Incoming>,
    Response = ProxyResponse,
    Error = Infallible,
    Future = BoxFuture<Result<ProxyResponse, Infallible>>,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(metrics::MetricsLayer::new(shared.clone()))
        .layer(route::RouteLayer::new(shared.clone()))
        .layer(statics::StaticLayer::new(shared.clone(), forward.clone()))
        .layer(count::CountLayer)
        .layer(cold_start::ColdStartLayer::new(shared))
        .service(forward)
}
