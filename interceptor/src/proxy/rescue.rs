//! The rescue layer, the one place where a failed request becomes an HTTP answer ([`ProxyError`]'s
//! status and body), and where answers get `Connection: close` while the interceptor drains (HTTP/1 only,
//! so clients move to another replica). Everything inside it fails with a [`Failure`]; nothing outside it
//! sees an error.
//!
//! States of a request here: *in flight* (the inner future runs), then *answered* (its response, or the
//! failure's answer, marked if draining).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http::{Request, Version};
use tower::{Layer, Service};

use super::error::Failure;
use super::types::{COLD_START_HEADER, ProxyResponse, RouteSlot};

/// Set when the interceptor starts draining (SIGTERM): `/readyz` answers 503 and HTTP/1 answers carry
/// `Connection: close`.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Adds `Connection: close` to HTTP/1 answers while draining.
pub fn close_if_draining(draining: &Draining, version: Version, resp: &mut ProxyResponse) {
    if version < Version::HTTP_2 && draining.is_draining() {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
}

#[derive(Clone)]
pub struct RescueLayer {
    draining: Draining,
}

impl RescueLayer {
    pub fn new(draining: Draining) -> Self {
        Self { draining }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner, draining: self.draining.clone() }
    }
}

#[derive(Clone)]
pub struct Rescue<S> {
    inner: S,
    draining: Draining,
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = Failure>,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Rescued<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner layers are always ready; they fail per request instead.
        self.inner.poll_ready(cx).map(|_| Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let version = req.version();
        let slot = req.extensions().get::<RouteSlot>().cloned();
        Rescued { inner: self.inner.call(req), version, draining: self.draining.clone(), slot }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, answered.
    pub struct Rescued<F> {
        #[pin]
        inner: F,
        version: Version,
        draining: Draining,
        slot: Option<RouteSlot>,
    }
}

impl<F> Future for Rescued<F>
where
    F: Future<Output = Result<ProxyResponse, Failure>>,
{
    type Output = Result<ProxyResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = match ready!(this.inner.poll(cx)) {
            Ok(resp) => resp,
            Err(Failure { error, route }) => {
                let mut resp = error.into_response(route.as_ref());
                // A request that reached its backend keeps its cold-start header, as upstream's 502/504 do.
                if let Some(v) = this.slot.as_ref().and_then(RouteSlot::sent_header) {
                    resp.headers_mut().insert(COLD_START_HEADER, v);
                }
                resp
            }
        };
        close_if_draining(this.draining, *this.version, &mut resp);
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body::ProxyBody;
    use crate::proxy::error::ProxyError;
    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_test::mock;

    type Handle = mock::Handle<Request<()>, ProxyResponse>;

    /// The rescue layer over a mock whose errors are the [`ProxyError`]s a layer would fail with.
    fn rescue() -> (impl Service<Request<()>, Response = ProxyResponse, Error = Infallible>, Handle, Draining) {
        let (svc, handle) = mock::pair::<Request<()>, ProxyResponse>();
        let svc = svc.map_err(|e: tower::BoxError| match e.downcast::<ProxyError>() {
            Ok(p) => Failure { error: *p, route: Some(httpscale_core::RouteKey::new("default", "app")) },
            Err(_) => Failure::from(ProxyError::Internal("the mock failed")),
        });
        let draining = Draining::default();
        (RescueLayer::new(draining.clone()).layer(svc), handle, draining)
    }

    fn request(version: Version) -> Request<()> {
        let mut r = Request::new(());
        *r.version_mut() = version;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_becomes_its_answer() {
        let (mut svc, mut handle, _) = rescue();
        let answer = svc.ready().await.unwrap().call(request(Version::HTTP_11));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(ProxyError::NoRoute { host: "x".into(), path: "/".into() });
        let resp = answer.await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert!(!resp.headers().contains_key("connection"), "not draining");
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "Not Found\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_reached_its_backend_keeps_its_cold_start_header_on_failure() {
        let (mut svc, mut handle, _) = rescue();
        let (sent, held) = (RouteSlot::default(), RouteSlot::default());
        sent.set_sent(false);
        let mut req = request(Version::HTTP_11);
        req.extensions_mut().insert(sent);
        let failed = svc.ready().await.unwrap().call(req);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(ProxyError::ResponseHeaderTimeout { upstream: "app:80".into(), timeout: Default::default() });
        let resp = failed.await.unwrap();
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers()[COLD_START_HEADER], "false");
        // Not sent on (the readiness wait ran out): no header, as upstream.
        let mut req = request(Version::HTTP_11);
        req.extensions_mut().insert(held);
        let timed_out = svc.ready().await.unwrap().call(req);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(ProxyError::ReadinessTimeout { upstream: "app:80".into(), timeout: Default::default() });
        assert!(!timed_out.await.unwrap().headers().contains_key(COLD_START_HEADER));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_given_while_draining_close_http1_connections_only() {
        let (mut svc, mut handle, draining) = rescue();
        let http1 = svc.ready().await.unwrap().call(request(Version::HTTP_11));
        let (_, send1) = handle.next_request().await.unwrap();
        let http2 = svc.ready().await.unwrap().call(request(Version::HTTP_2));
        let (_, send2) = handle.next_request().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        // Draining starts while both are in flight: what counts is when the answer is given.
        draining.start();
        send1.send_response(ProxyResponse::new(ProxyBody::full("ok")));
        send2.send_response(ProxyResponse::new(ProxyBody::full("ok")));
        assert_eq!(http1.await.unwrap().headers()["connection"], "close");
        assert!(!http2.await.unwrap().headers().contains_key("connection"), "HTTP/2 has no Connection header");
        let failed = svc.ready().await.unwrap().call(request(Version::HTTP_10));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(ProxyError::ShuttingDown);
        let resp = failed.await.unwrap();
        assert_eq!(
            (resp.status(), &resp.headers()["connection"]),
            (StatusCode::SERVICE_UNAVAILABLE, &"close".parse::<http::HeaderValue>().unwrap())
        );
    }
}
