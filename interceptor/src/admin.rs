//! The admin listener (`/queue`, `/livez`, `/readyz`) and the Prometheus listener (`/metrics`), both plain
//! HTTP/1.1, both answering as upstream does.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use httpscale_core::Shutdown;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Shared;

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Answers one admin request.
pub fn admin(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    match req.uri().path() {
        "/queue" => match serde_json::to_vec(&shared.routes.queue_counts()) {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
        },
        "/livez" => text(StatusCode::OK, "OK"),
        "/readyz" if shared.routes.is_loaded() && !shared.draining.load(Ordering::Relaxed) => {
            text(StatusCode::OK, "OK")
        }
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

/// Answers one metrics request.
pub fn metrics(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    let mut r = Response::new(Full::new(Bytes::from(shared.metrics.encode())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    r
}

/// Serves a small request/response handler until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    handler: fn(&Shared, &Request<Incoming>) -> Response<Full<Bytes>>,
    stop: Shutdown,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(cause = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.triggered() => return,
        };
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let resp = handler(&shared, &req);
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
