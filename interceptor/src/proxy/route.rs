//! Layer 2: routing, the request deadline, and errors to answers.
//!
//! The host is the request target's authority when it has one (absolute-form HTTP/1.1 targets and HTTP/2's
//! `:authority`, as RFC 9112 §3.2.2 requires), else the `Host` header. A request no route names gets 404 and
//! is never forwarded. CONNECT is refused. With a request deadline the inner pipeline must produce headers in
//! time (else 504) and the body is cut at the deadline.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::metrics::RouteSlot;
use super::{BoxFuture, ProxyError, ProxyResponse, Routed};
use crate::Shared;
use crate::server::close_if_draining;

#[derive(Clone)]
pub struct RouteLayer {
    shared: Arc<Shared>,
}

impl RouteLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteService { inner, shared: self.shared.clone() }
    }
}

#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn route_request(shared: &Shared, req: &Request<Incoming>) -> Result<Routed, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::MissingHost)?,
        None => req.headers().get(http::header::HOST).cloned().ok_or(ProxyError::MissingHost)?,
    };
    let host_str = host.to_str().map_err(|_| ProxyError::MissingHost)?;
    let table = shared.routes.table();
    match table.lookup(host_str, req.uri().path(), req.headers()) {
        Some(route) => Ok(Routed { route: route.clone(), host }),
        None => Err(ProxyError::NoRoute { host: host_str.to_owned(), path: req.uri().path().to_owned() }),
    }
}

impl<S> Service<Request<Incoming>> for RouteService<S>
where
    S: Service<Request<Incoming>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<ProxyResponse, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner layers are always ready; they fail per request instead.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let version = req.version();
        let shared = self.shared.clone();
        let routed = match route_request(&self.shared, &req) {
            Ok(r) => r,
            Err(e) => {
                let mut resp = e.into_response(None);
                close_if_draining(&shared, version, &mut resp);
                return Box::pin(async move { Ok(resp) });
            }
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
            let key = route.route.key.to_string();
            let mut resp = result.unwrap_or_else(|e| e.into_response(Some(&key)));
            if let Some((_, at)) = deadline {
                resp.body_mut().set_deadline(at);
            }
            close_if_draining(&shared, version, &mut resp);
            Ok(resp)
        })
    }
}
