//! The route layer: finds the route and applies the request deadline.
//!
//! The host is the request target's authority when it has one (absolute-form HTTP/1.1 targets and HTTP/2's
//! `:authority`, as RFC 9112 §3.2.2 requires), else the `Host` header. A request no route names fails with
//! `NoRoute` (404) and is never forwarded; CONNECT is refused. States of a routed request: *in flight* (the
//! inner pipeline works on it; with a request deadline it must produce headers in time, else 504) and
//! *streaming* (the answer's body is cut at the deadline). Failures leave here tagged with their route, for
//! the rescue layer to answer.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::error::{Failure, ProxyError};
use super::types::{BoxFuture, ProxyResponse, RouteSlot, Routed};
use crate::routes::Routes;

#[derive(Clone)]
pub struct RouteLayer {
    routes: Arc<Routes>,
}

impl RouteLayer {
    pub fn new(routes: Arc<Routes>) -> Self {
        Self { routes }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteService { inner, routes: self.routes.clone() }
    }
}

#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    routes: Arc<Routes>,
}

fn route_request<B>(routes: &Routes, req: &Request<B>) -> Result<Routed, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::MissingHost)?,
        None => req.headers().get(http::header::HOST).cloned().ok_or(ProxyError::MissingHost)?,
    };
    let host_str = host.to_str().map_err(|_| ProxyError::MissingHost)?;
    let table = routes.table();
    match table.lookup(host_str, req.uri().path(), req.headers()) {
        Some(route) => Ok(Routed { route: route.clone(), host }),
        None => Err(ProxyError::NoRoute { host: host_str.to_owned(), path: req.uri().path().to_owned() }),
    }
}

impl<S, B> Service<Request<B>> for RouteService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = Failure;
    type Future = BoxFuture<Result<ProxyResponse, Failure>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        self.inner.poll_ready(cx).map_err(Failure::from)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let routed = match route_request(&self.routes, &req) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(Failure::from(e)))),
        };
        let route = routed.route.clone();
        if let Some(slot) = req.extensions().get::<RouteSlot>() {
            let _ = slot.0.set(route.clone());
        }
        req.extensions_mut().insert(routed);
        let deadline = route.request_timeout.map(|t| (t, Instant::now() + t));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = match deadline {
                None => fut.await,
                Some((t, at)) => tokio::time::timeout_at(at, fut).await.unwrap_or(Err(ProxyError::RequestTimeout(t))),
            };
            let mut resp = result.map_err(|error| Failure { error, route: Some(route.route.key.clone()) })?;
            if let Some((_, at)) = deadline {
                resp.body_mut().set_deadline(at);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests;
