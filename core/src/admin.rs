//! The small plain-HTTP listeners every binary has (admin endpoints, Prometheus `/metrics`): a handler from
//! request to response, served until the shutdown signal fires.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Shutdown;

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

/// An OpenMetrics exposition answer.
pub fn metrics(exposition: String) -> Response<AdminBody> {
    let mut r = Response::new(full(exposition));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    r
}

/// Serves `handler` on `listener` until `stop` fires; open connections end then too.
pub async fn serve<F>(listener: TcpListener, handler: F, stop: Shutdown)
where
    F: Fn(&Request<Incoming>) -> Response<AdminBody> + Clone + Send + Sync + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.triggered() => return,
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let resp = handler(&req);
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = stop.triggered() => {}
            }
        });
    }
}
