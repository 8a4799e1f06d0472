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
//!
//! Model routing (httpscale extension): when the lookup reaches a rule with `models` for an inference request
//! (see [`model`](super::model)), the request is *reading* its body (at most the configured bound, else 413;
//! only then, so other requests never wait for their body here), and is looked up again with the model the
//! body names; the body is then forwarded as received. `GET /v1/models` and `GET /api/tags` on a host that
//! model rules reach are answered here ([`catalog`](super::catalog)).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Uri};
use httpscale_core::model::ModelQuery;
use httpscale_core::table::Lookup;
use httpscale_core::target::{self, TargetError};
use tower::{Layer, Service};

use super::body::ProxyBody;
use super::catalog;
use super::error::{Failure, ProxyError};
use super::model::{Api, RequestFields, inference_api};
use super::peek::{Peek, ReadAhead, read_ahead};
use super::types::{BoxFuture, Parked, ProxyResponse, RouteSlot, Routed};
use crate::routes::{RouteState, Routes};

#[derive(Clone)]
pub struct RouteLayer {
    routes: Arc<Routes>,
    normalize_path: bool,
    read_ahead: ReadAhead,
}

impl RouteLayer {
    /// Routes on `routes`; with `normalize_path`, dot segments are removed before matching and forwarding;
    /// a body is read ahead as `read_ahead` says to find its model.
    pub fn new(routes: Arc<Routes>, normalize_path: bool, read_ahead: ReadAhead) -> Self {
        Self { routes, normalize_path, read_ahead }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteService {
            inner,
            routes: self.routes.clone(),
            normalize_path: self.normalize_path,
            read_ahead: self.read_ahead,
        }
    }
}

#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    routes: Arc<Routes>,
    normalize_path: bool,
    read_ahead: ReadAhead,
}

/// Where the first lookup leaves a request.
enum Routing {
    Routed(Routed),
    /// A model list or `OPTIONS *`, answered here.
    Answered(ProxyResponse),
    /// A rule with models is next in line: read the body, then look up again.
    NeedsModel {
        host: HeaderValue,
        api: Api,
    },
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

/// `OPTIONS *`: the server's own options (none to tell), never forwarded.
fn server_options() -> ProxyResponse {
    ProxyResponse::new(ProxyBody::full(""))
}

/// The route of a checked request, or what it needs first.
fn route_request<B>(
    routes: &Routes,
    req: &Request<B>,
    host: HeaderValue,
    normalize: bool,
) -> Result<Routing, ProxyError> {
    let host_str = host.to_str().map_err(|_| TargetError::MissingHost)?;
    let (path, headers) = (req.uri().path(), req.headers());
    if let Some(list) = catalog::catalog_request(req.method(), path)
        && let Some(answer) = catalog::answer(routes, list, host_str, path, headers)
    {
        return Ok(Routing::Answered(answer));
    }
    let table = routes.table();
    // Without model rules anywhere, no request is asked its model (nothing more on the hot path).
    let api = if table.has_models() { inference_api(req.method(), path) } else { None };
    let query = if api.is_some() { ModelQuery::Unknown } else { ModelQuery::NotAsked };
    match table.lookup_model(host_str, &matching_path(path, normalize), headers, query) {
        Lookup::Found(route) => Ok(Routing::Routed(Routed { route: route.clone(), host })),
        Lookup::NeedsModel => match api {
            Some(api) => Ok(Routing::NeedsModel { host, api }),
            None => Err(ProxyError::Internal("a lookup asked for the model of a request that names none")),
        },
        Lookup::NotFound => Err(no_route(host_str, path)),
    }
}

fn no_route(host: &str, path: &str) -> ProxyError {
    ProxyError::NoRoute { host: target::quote(host), path: target::quote(path) }
}

/// Checks the target, normalises the path and finds the route (or what the request needs first).
fn check_and_route<B>(routes: &Routes, req: &mut Request<B>, normalize: bool) -> Result<Routing, ProxyError> {
    let Some(host) = checked_host(req)? else { return Ok(Routing::Answered(server_options())) };
    if normalize {
        normalize_path(req)?;
    }
    route_request(routes, req, host, normalize)
}

/// The route a request's head alone leads to: `None` when it leads elsewhere (an answer of this layer's own, a
/// body to read for its model, a failed check, no route). For the server, which parks a connection whose first
/// request is for a backend that is not ready before reading it.
pub fn head_route<B>(routes: &Routes, mut req: Request<B>, normalize: bool) -> Option<Arc<RouteState>> {
    match check_and_route(routes, &mut req, normalize) {
        Ok(Routing::Routed(routed)) => Some(routed.route),
        _ => None,
    }
}

/// The path routes are matched on: escaped unreserved characters as themselves when paths are normalised.
fn matching_path(path: &str, normalize: bool) -> std::borrow::Cow<'_, str> {
    if normalize { target::matching_path(path) } else { path.into() }
}

/// Reads an inference request's body (see the module docs) and routes it on the model it names.
async fn route_on_model<B: Peek>(
    routes: &Routes,
    req: &mut Request<B>,
    host: HeaderValue,
    api: Api,
    how: ReadAhead,
    normalize: bool,
) -> Result<Routed, ProxyError> {
    let body = read_ahead(req.body_mut(), how).await?;
    let fields = RequestFields::parse(api, &body);
    let host_str = host.to_str().map_err(|_| TargetError::MissingHost)?;
    let query = ModelQuery::Known(fields.model.as_deref());
    let found = match (
        routes.table().lookup_model(host_str, &matching_path(req.uri().path(), normalize), req.headers(), query),
        &fields.model,
    ) {
        (Lookup::Found(route), _) => Routed { route: route.clone(), host },
        (Lookup::NeedsModel | Lookup::NotFound, Some(model)) => {
            return Err(ProxyError::NoModelRoute { host: host_str.to_owned(), model: model.clone() });
        }
        (Lookup::NeedsModel | Lookup::NotFound, None) => return Err(no_route(host_str, req.uri().path())),
    };
    req.extensions_mut().insert(fields);
    Ok(found)
}

/// Passes a routed request on, under its route's request deadline.
fn dispatch<S, B>(inner: &mut S, mut req: Request<B>, routed: Routed) -> BoxFuture<Result<ProxyResponse, Failure>>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
    S::Future: Send + 'static,
{
    let route = routed.route.clone();
    if let Some(slot) = req.extensions().get::<RouteSlot>() {
        slot.set_route(route.clone());
    }
    req.extensions_mut().insert(routed);
    let deadline = route.request_timeout.map(|t| (t, Parked::arrival(&req) + t));
    let fut = inner.call(req);
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

impl<S, B> Service<Request<B>> for RouteService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Peek + 'static,
{
    type Response = ProxyResponse;
    type Error = Failure;
    type Future = BoxFuture<Result<ProxyResponse, Failure>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        self.inner.poll_ready(cx).map_err(Failure::from)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match check_and_route(&self.routes, &mut req, self.normalize_path) {
            Ok(Routing::Routed(routed)) => dispatch(&mut self.inner, req, routed),
            Ok(Routing::Answered(resp)) => Box::pin(std::future::ready(Ok(resp))),
            Err(e) => Box::pin(std::future::ready(Err(Failure::from(e)))),
            Ok(Routing::NeedsModel { host, api }) => {
                // The polled-ready service goes with the request; a fresh clone waits for the next `poll_ready`.
                let fresh = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, fresh);
                let (routes, how, normalize) = (self.routes.clone(), self.read_ahead, self.normalize_path);
                Box::pin(async move {
                    let routed =
                        route_on_model(&routes, &mut req, host, api, how, normalize).await.map_err(Failure::from)?;
                    dispatch(&mut ready, req, routed).await
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
