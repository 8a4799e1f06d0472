//! The route layer: checks the request target, finds the route and applies the request deadline.
//!
//! Before any lookup the target is checked ([`target`]): exactly one valid `Host`, agreeing with HTTP/2's
//! `:authority`, no userinfo, `*` only for `OPTIONS` (answered here with `200`, as Go's server does), and
//! dot segments removed from the path (unless `HTTPSCALE_NORMALIZE_PATH` is off; a path above the root is
//! refused; escaped unreserved characters match as themselves): a failed check is `400` and nothing is forwarded, whatever the routes. The host is the request
//! target's authority when it has one (absolute-form HTTP/1.1 targets and HTTP/2's `:authority`, as RFC 9112
//! §3.2.2 requires), else the `Host` header; the backend gets that host in `Host`. A request no route names
//! fails with `NoRoute` (404) and is never forwarded; CONNECT is refused. States of a routed request:
//! *in flight* (the inner pipeline works on it; with a request deadline it must produce headers in time, else
//! 504) and *streaming* (the answer's body is cut at the deadline). Failures leave here tagged with their
//! route, for the rescue layer to answer.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Uri};
use httpscale_core::target::{self, TargetError};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::body::ProxyBody;
use super::error::{Failure, ProxyError};
use super::types::{BoxFuture, ProxyResponse, RouteSlot, Routed};
use crate::routes::Routes;

#[derive(Clone)]
pub struct RouteLayer {
    routes: Arc<Routes>,
    normalize_path: bool,
}

impl RouteLayer {
    /// Routes on `routes`; with `normalize_path`, dot segments are removed before matching and forwarding.
    pub fn new(routes: Arc<Routes>, normalize_path: bool) -> Self {
        Self { routes, normalize_path }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteService { inner, routes: self.routes.clone(), normalize_path: self.normalize_path }
    }
}

#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    routes: Arc<Routes>,
    normalize_path: bool,
}

/// The host a request is routed on, checked (see the module docs); `None` for `OPTIONS *`.
fn checked_host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let host = target::request_host(req.version(), req.uri(), req.headers())?.ok_or(TargetError::MissingHost)?;
    if target::asterisk(req.method(), req.uri())? {
        return Ok(None);
    }
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    let value = match req.uri().authority() {
        None => req.headers().get(HOST).cloned(),
        Some(_) => HeaderValue::from_str(host).ok(),
    };
    value.map(Some).ok_or_else(|| TargetError::InvalidHost(target::quote(host)).into())
}

/// Replaces the request's path with its dot-free form, keeping the query.
fn normalize_path<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let Some(path) = target::normalize_path(req.uri().path())? else { return Ok(()) };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    let pq = match parts.path_and_query.as_ref().and_then(|pq| pq.query()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let rebuilt = PathAndQuery::try_from(pq).ok().and_then(|pq| {
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).ok()
    });
    *req.uri_mut() = rebuilt.ok_or(ProxyError::Internal("cannot rebuild the normalised path"))?;
    Ok(())
}

/// The route of a checked request.
fn route_request<B>(
    routes: &Routes,
    req: &Request<B>,
    host: HeaderValue,
    normalize: bool,
) -> Result<Routed, ProxyError> {
    let host_str = host.to_str().map_err(|_| TargetError::MissingHost)?;
    let table = routes.table();
    let path = if normalize { target::matching_path(req.uri().path()) } else { req.uri().path().into() };
    match table.lookup(host_str, &path, req.headers()) {
        Some(route) => Ok(Routed { route: route.clone(), host }),
        None => Err(ProxyError::NoRoute { host: target::quote(host_str), path: target::quote(req.uri().path()) }),
    }
}

/// `OPTIONS *`: the server's own options (none to tell), never forwarded.
fn server_options() -> ProxyResponse {
    ProxyResponse::new(ProxyBody::full(""))
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
        let checked = checked_host(&req).and_then(|host| {
            let Some(host) = host else { return Ok(None) };
            if self.normalize_path {
                normalize_path(&mut req)?;
            }
            route_request(&self.routes, &req, host, self.normalize_path).map(Some)
        });
        let routed = match checked {
            Ok(Some(r)) => r,
            Ok(None) => return Box::pin(std::future::ready(Ok(server_options()))),
            Err(e) => return Box::pin(std::future::ready(Err(Failure::from(e)))),
        };
        let route = routed.route.clone();
        if let Some(slot) = req.extensions().get::<RouteSlot>() {
            slot.set_route(route.clone());
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
