//! The static-routes layer (InterceptorRoute `staticRoutes`). The first entry with a rule matching the request
//! decides: `Always` answers with its response; `WhenUnavailable` answers while the backend has no ready
//! endpoint and otherwise sends the request straight to the forwarder, skipping counting, holding and the
//! cold-start header, as upstream does (static traffic does not scale the backend). Requests matching no
//! entry go on down the pipeline.

use std::future::Ready;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Request;
use httpscale_core::spec::ResponseMode;
use tower::{Layer, Service};

use super::error::ProxyError;
use super::fixed::fixed_response;
use super::types::{ProxyResponse, Routed};
use crate::placeholder::Bodies;

#[derive(Clone)]
pub struct StaticLayer<F> {
    bodies: Bodies,
    forward: F,
}

impl<F> StaticLayer<F> {
    /// Answers from `bodies` (ConfigMap bodies), or sends ready traffic to `forward`.
    pub fn new(bodies: Bodies, forward: F) -> Self {
        Self { bodies, forward }
    }
}

impl<S, F: Clone> Layer<S> for StaticLayer<F> {
    type Service = StaticService<S, F>;
    fn layer(&self, inner: S) -> Self::Service {
        StaticService { inner, bodies: self.bodies.clone(), forward: self.forward.clone() }
    }
}

#[derive(Clone)]
pub struct StaticService<S, F> {
    inner: S,
    bodies: Bodies,
    forward: F,
}

type Answer = Result<ProxyResponse, ProxyError>;

impl<S, F, B> Service<Request<B>> for StaticService<S, F>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
    F: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Either<S::Future, Either<F::Future, Ready<Answer>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either may take the request.
        std::task::ready!(self.forward.poll_ready(cx))?;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(routed) = req.extensions().get::<Routed>() else { return Either::Left(self.inner.call(req)) };
        if routed.route.statics.is_empty() {
            return Either::Left(self.inner.call(req));
        }
        let route = routed.route.clone();
        let host = routed.host.to_str().unwrap_or("");
        let hit =
            route.statics.iter().find(|s| s.rules.iter().any(|r| r.matches(host, req.uri().path(), req.headers())));
        match hit {
            None => Either::Left(self.inner.call(req)),
            Some(s) if s.mode == ResponseMode::WhenUnavailable && route.gate.is_open() => {
                Either::Right(Either::Left(self.forward.call(req)))
            }
            Some(s) => Either::Right(Either::Right(std::future::ready(fixed_response(
                &s.response,
                req.uri().path(),
                &self.bodies,
            )))),
        }
    }
}

#[cfg(test)]
mod tests;
