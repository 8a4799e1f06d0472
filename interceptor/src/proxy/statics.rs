//! Layer 3: static routes (InterceptorRoute `staticRoutes`). The first entry with a rule matching the request
//! decides: `Always` answers with its response; `WhenUnavailable` answers while the backend has no ready
//! endpoint and otherwise forwards the request directly, skipping counting, holding and the cold-start header,
//! as upstream does (static traffic does not scale the backend). Requests matching no entry go on.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use httpscale_core::spec::ResponseMode;
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::forward::Forward;
use super::{BoxFuture, ProxyError, ProxyResponse, Routed, fixed_response};
use crate::Shared;

#[derive(Clone)]
pub struct StaticLayer {
    shared: Arc<Shared>,
    forward: Forward,
}

impl StaticLayer {
    pub fn new(shared: Arc<Shared>, forward: Forward) -> Self {
        Self { shared, forward }
    }
}

impl<S> Layer<S> for StaticLayer {
    type Service = StaticService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StaticService { inner, shared: self.shared.clone(), forward: self.forward.clone() }
    }
}

#[derive(Clone)]
pub struct StaticService<S> {
    inner: S,
    shared: Arc<Shared>,
    forward: Forward,
}

impl<S> Service<Request<Incoming>> for StaticService<S>
where
    S: Service<
            Request<Incoming>,
            Response = ProxyResponse,
            Error = ProxyError,
            Future = BoxFuture<Result<ProxyResponse, ProxyError>>,
        >,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<Result<ProxyResponse, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let Some(routed) = req.extensions().get::<Routed>() else { return self.inner.call(req) };
        let route = routed.route.clone();
        if route.statics.is_empty() {
            return self.inner.call(req);
        }
        let host = routed.host.to_str().unwrap_or("");
        let hit =
            route.statics.iter().find(|s| s.rules.iter().any(|r| r.matches(host, req.uri().path(), req.headers())));
        match hit {
            None => self.inner.call(req),
            Some(s) if s.mode == ResponseMode::WhenUnavailable && route.gate.is_open() => self.forward.call(req),
            Some(s) => {
                let resp = fixed_response(&s.response, req.uri().path(), &self.shared);
                Box::pin(async move { resp })
            }
        }
    }
}
