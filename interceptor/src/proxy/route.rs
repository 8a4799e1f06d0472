//! The route layer: finds the route and applies the request deadline.
//!
//! The host is the request target's authority when it has one (absolute-form HTTP/1.1 targets and HTTP/2's
//! `:authority`, as RFC 9112 §3.2.2 requires), else the `Host` header. A request no route names fails with
//! `NoRoute` (404) and is never forwarded; CONNECT is refused.
//!
//! Model routing (httpscale extension): when the lookup reaches a rule with `models` for an inference request
//! (see [`model`](super::model)), the request is *reading* its body (at most the configured bound, else 413;
//! only then, so other requests never wait for their body here), and is looked up again with the model the
//! body names; the body is then forwarded as received. `GET /v1/models` and `GET /api/tags` on a host that
//! model rules reach are answered here ([`catalog`](super::catalog)).
//!
//! States of a routed request: *in flight* (the
//! inner pipeline works on it; with a request deadline it must produce headers in time, else 504) and
//! *streaming* (the answer's body is cut at the deadline). Failures leave here tagged with their route, for
//! the rescue layer to answer.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request};
use httpscale_core::model::ModelQuery;
use httpscale_core::table::Lookup;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::catalog;
use super::error::{Failure, ProxyError};
use super::model::{Api, RequestFields, inference_api};
use super::peek::{Peek, PeekError};
use super::types::{BoxFuture, ProxyResponse, RouteSlot, Routed};
use crate::routes::Routes;

#[derive(Clone)]
pub struct RouteLayer {
    routes: Arc<Routes>,
    body_limit: usize,
}

impl RouteLayer {
    /// Routes on `routes`, reading at most `body_limit` bytes of a body to find its model.
    pub fn new(routes: Arc<Routes>, body_limit: usize) -> Self {
        Self { routes, body_limit }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteService { inner, routes: self.routes.clone(), body_limit: self.body_limit }
    }
}

#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    routes: Arc<Routes>,
    body_limit: usize,
}

/// Where the first lookup leaves a request.
enum Routing {
    Routed(Routed),
    /// A model list, answered here.
    Answered(ProxyResponse),
    /// A rule with models is next in line: read the body, then look up again.
    NeedsModel { host: HeaderValue, api: Api },
}

fn request_host<B>(req: &Request<B>) -> Result<HeaderValue, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::MissingHost),
        None => req.headers().get(http::header::HOST).cloned().ok_or(ProxyError::MissingHost),
    }
}

fn route_request<B>(routes: &Routes, req: &Request<B>) -> Result<Routing, ProxyError> {
    let host = request_host(req)?;
    let host_str = host.to_str().map_err(|_| ProxyError::MissingHost)?;
    let (path, headers) = (req.uri().path(), req.headers());
    if let Some(list) = catalog::catalog_request(req.method(), path)
        && let Some(answer) = catalog::answer(routes, list, host_str, path, headers)
    {
        return Ok(Routing::Answered(answer));
    }
    let api = inference_api(req.method(), path);
    let query = if api.is_some() { ModelQuery::Unknown } else { ModelQuery::NotAsked };
    match routes.table().lookup_model(host_str, path, headers, query) {
        Lookup::Found(route) => Ok(Routing::Routed(Routed { route: route.clone(), host })),
        Lookup::NeedsModel => match api {
            Some(api) => Ok(Routing::NeedsModel { host, api }),
            None => Err(ProxyError::Internal("a lookup asked for the model of a request that names none")),
        },
        Lookup::NotFound => Err(no_route(host_str, path)),
    }
}

fn no_route(host: &str, path: &str) -> ProxyError {
    ProxyError::NoRoute { host: host.to_owned(), path: path.to_owned() }
}

/// Reads an inference request's body (see the module docs) and routes it on the model it names.
async fn route_on_model<B: Peek>(
    routes: &Routes,
    req: &mut Request<B>,
    host: HeaderValue,
    api: Api,
    limit: usize,
) -> Result<Routed, ProxyError> {
    let body = req.body_mut().peek(limit).await.map_err(|e| match e {
        PeekError::TooLarge { limit } => ProxyError::BodyTooLarge { limit },
        PeekError::Read(e) => ProxyError::BodyUnreadable(e.to_string()),
    })?;
    let fields = RequestFields::parse(api, &body);
    let host_str = host.to_str().map_err(|_| ProxyError::MissingHost)?;
    let query = ModelQuery::Known(fields.model.as_deref());
    let found = match (routes.table().lookup_model(host_str, req.uri().path(), req.headers(), query), &fields.model) {
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
        let _ = slot.0.set(route.clone());
    }
    req.extensions_mut().insert(routed);
    let deadline = route.request_timeout.map(|t| (t, Instant::now() + t));
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
        match route_request(&self.routes, &req) {
            Ok(Routing::Routed(routed)) => dispatch(&mut self.inner, req, routed),
            Ok(Routing::Answered(resp)) => Box::pin(std::future::ready(Ok(resp))),
            Err(e) => Box::pin(std::future::ready(Err(Failure::from(e)))),
            Ok(Routing::NeedsModel { host, api }) => {
                // The polled-ready service goes with the request; a fresh clone waits for the next `poll_ready`.
                let fresh = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, fresh);
                let (routes, limit) = (self.routes.clone(), self.body_limit);
                Box::pin(async move {
                    let routed = route_on_model(&routes, &mut req, host, api, limit).await.map_err(Failure::from)?;
                    dispatch(&mut ready, req, routed).await
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
