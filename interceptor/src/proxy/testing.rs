//! What the layer tests share: routes built the way the table builds them, requests routed to them as the
//! route layer would, a mock inner service that fails with [`ProxyError`]s, and answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::ServiceExt;
use tower::util::MapErr;
use tower_test::mock;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::types::{ProxyResponse, Routed};
use crate::gates::Gates;
use crate::readiness::{ReadinessSource, Tracked};
use crate::routes::{Addresses, Defaults, RouteState, Routes};

/// A readiness source that drives nothing: the tests open and close gates themselves.
pub struct NoReadiness;

impl ReadinessSource for NoReadiness {
    fn track(&self, _: Vec<Tracked>) {}

    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

/// The table of a standalone routes file.
pub fn routes(yaml: &str) -> Arc<Routes> {
    let file = httpscale_core::standalone::parse(yaml).unwrap();
    let defaults = Defaults {
        readiness_timeout: Duration::ZERO,
        request_timeout: Duration::ZERO,
        response_header_timeout: Duration::ZERO,
        max_pending: 10_000,
    };
    let routes = Routes::new(defaults, Arc::new(NoReadiness), Arc::new(Addresses), Arc::new(Gates::default()));
    routes.apply(file.routes);
    Arc::new(routes)
}

/// The route `default/app` (host `app.local`, upstream `upstream`), with `extra` lines of its YAML.
pub fn route(upstream: &str, extra: &str) -> Arc<RouteState> {
    let routes =
        routes(&format!("routes:\n  - name: app\n    hosts: [app.local]\n    upstream: '{upstream}'\n{extra}"));
    let table = routes.table();
    table.routes().next().unwrap().clone()
}

/// A request for `path` on `app.local`, routed to `route`.
pub fn routed<B>(route: &Arc<RouteState>, path: &str, body: B) -> Request<B> {
    let mut req = Request::get(format!("http://app.local{path}")).body(body).unwrap();
    req.extensions_mut().insert(Routed { route: route.clone(), host: HeaderValue::from_static("app.local") });
    req
}

pub fn ok(body: &'static str) -> ProxyResponse {
    ProxyResponse::new(ProxyBody::full(body))
}

pub async fn text(resp: ProxyResponse) -> String {
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

pub type HandleOf<B> = mock::Handle<Request<B>, ProxyResponse>;
pub type MockOf<B> = MapErr<mock::Mock<Request<B>, ProxyResponse>, fn(tower::BoxError) -> ProxyError>;
pub type Handle = HandleOf<()>;
pub type Mock = MockOf<()>;

fn as_proxy_error(e: tower::BoxError) -> ProxyError {
    match e.downcast::<ProxyError>() {
        Ok(p) => *p,
        Err(_) => ProxyError::Internal("the mock failed"),
    }
}

/// An inner service the test answers through the handle; `send_error(ProxyError)` fails a request.
pub fn mock() -> (Mock, Handle) {
    mock_of()
}

/// [`mock`], for requests with bodies of type `B`.
pub fn mock_of<B>() -> (MockOf<B>, HandleOf<B>) {
    let (svc, handle) = mock::pair::<Request<B>, ProxyResponse>();
    (svc.map_err(as_proxy_error as fn(tower::BoxError) -> ProxyError), handle)
}

/// A streamed request body: `parts` as separate data frames, then `trailers` (no declared length).
pub fn chunks(parts: &[&[u8]], trailers: Option<http::HeaderMap>) -> Chunks {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
        parts.iter().map(|p| Ok(Frame::data(Bytes::copy_from_slice(p)))).collect();
    frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
    StreamBody::new(futures_util::stream::iter(frames))
}

pub type Chunks = StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;
