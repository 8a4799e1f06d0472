//! What the layers hand each other in request extensions, and the pipeline's response type. A leaf of the
//! proxy: every layer imports it, it imports no layer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use http::{HeaderValue, Response};

use super::body::ProxyBody;
use crate::routes::RouteState;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type ProxyResponse = Response<ProxyBody>;

/// The client's address, set per connection by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Set per connection by the server on requests that arrived on the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ArrivedOverTls;

/// Set by the route layer: the matched route and the host the request was routed on.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Arc<RouteState>,
    pub host: HeaderValue,
}

/// Set by the cold-start layer when the readiness wait ran out and the route has a fallback.
#[derive(Debug, Clone, Copy)]
pub struct UseFallback;

/// Where the route layer leaves the matched route for the metrics layer, which records after the response
/// (and also when the client leaves before there is one, so it cannot wait for response extensions).
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(pub Arc<OnceLock<Arc<RouteState>>>);
