//! The small plain-HTTP listeners every binary has (admin endpoints, Prometheus `/metrics`): a handler from
//! request to response, served until the shutdown signal fires, within the listener's limits
//! ([`crate::listener`]).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Shutdown;
use crate::exposition::Format;
use crate::listener::{ConnState, Gatekeeper, Guarded, GuardedBody};
use crate::target;

pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> AdminBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A `text/plain; charset=utf-8` answer.
pub fn text(status: StatusCode, body: &'static str) -> Response<AdminBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A `/metrics` answer: `openmetrics` (a registry's encoding) in the format the request's `Accept` header
/// asks for ([`Format::negotiate`]: the Prometheus text format 0.0.4 unless OpenMetrics is preferred).
pub fn metrics(request: &http::HeaderMap, openmetrics: String) -> Response<AdminBody> {
    let format = Format::negotiate(request.get(http::header::ACCEPT));
    let mut r = Response::new(full(format.render(openmetrics)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    r
}

/// Serves `handler` on `listener` until `stop` fires; open connections end then too. Connections are
/// bounded by `gate` (its budget and time limits), and a request whose host is invalid gets `400`.
pub async fn serve<F>(listener: TcpListener, gate: Arc<Gatekeeper>, handler: F, stop: Shutdown)
where
    F: Fn(&Request<Incoming>) -> Response<AdminBody> + Clone + Send + Sync + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    loop {
        let (stream, _, permit) = tokio::select! {
            accepted = gate.accept(&listener) => accepted,
            _ = stop.triggered() => return,
        };
        let (handler, stop, builder, gate) = (handler.clone(), stop.clone(), builder.clone(), gate.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let Some(protocol) = gate.protocol(&stream).await else { return };
            let state = ConnState::new(permit, protocol, start);
            let io = TokioIo::new(Guarded::new(stream, state.clone()));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let guard = state.begin();
                let resp = answer(&handler, &req);
                async move { Ok::<_, Infallible>(resp.map(|b| GuardedBody::new(b, Some(guard)))) }
            });
            tokio::select! {
                _ = builder.serve_connection(io, service) => {}
                _ = stop.triggered() => {}
            }
        });
    }
}

/// `handler`'s answer, or `400` for a request whose host is invalid.
fn answer<F: Fn(&Request<Incoming>) -> Response<AdminBody>>(
    handler: &F,
    req: &Request<Incoming>,
) -> Response<AdminBody> {
    match target::request_host(req.version(), req.uri(), req.headers()) {
        Ok(_) => handler(req),
        Err(e) => {
            tracing::info!(cause = %e, "admin request refused");
            text(StatusCode::BAD_REQUEST, "Bad Request: invalid Host\n")
        }
    }
}
