//! Real HTTP backends on loopback (HTTP/1.1 and h2c, upgrades allowed) that record every request they get.
//! Dropping one closes its listener and every open connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// A response header the backend turns into a delay before answering (and removes).
pub const DELAY: &str = "x-test-delay-ms";

/// A response delayed by `ms` before its headers are sent.
pub fn delayed(ms: u64, body: &'static str) -> Response<Body> {
    Response::builder().header(DELAY, ms.to_string()).body(full(body)).unwrap()
}

/// A body that yields `chunks` with `gap` between them (like an LLM streaming tokens).
pub fn streaming_body(chunks: Vec<&'static str>, gap: Duration) -> Body {
    let stream = futures_util::stream::unfold((chunks.into_iter(), true), move |(mut it, first)| async move {
        let next = it.next()?;
        if !first {
            tokio::time::sleep(gap).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(next.as_bytes()))), (it, false)))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// A body whose chunks the test sends one by one; it ends when the sender is dropped.
pub fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<&'static str>, Body) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk.as_bytes()))), rx))
    });
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

/// What a backend received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
        self.closed.send_replace(true);
    }
}

impl Backend {
    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

/// Serves on `listener`: records each request (its body read whole) and answers with `handler`.
pub fn backend_on(listener: TcpListener, handler: impl Fn(Seen) -> Response<Body> + Send + Sync + 'static) -> Backend {
    let handler = Arc::new(handler);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = listener.local_addr().unwrap();
    let closed = tokio::sync::watch::Sender::new(false);
    let task = tokio::spawn(accept(listener, handler, seen.clone(), closed.subscribe()));
    Backend { addr, seen, task, closed }
}

async fn accept(
    listener: TcpListener,
    handler: Arc<dyn Fn(Seen) -> Response<Body> + Send + Sync>,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: tokio::sync::watch::Receiver<bool>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (handler, seen, mut closed) = (handler.clone(), seen.clone(), closed.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, seen) = (handler.clone(), seen.clone());
                async move { Ok::<_, Infallible>(answer(req, &*handler, &seen).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = closed.wait_for(|c| *c) => {}
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    handler: &(dyn Fn(Seen) -> Response<Body> + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let s = Seen { method: parts.method, uri: parts.uri, version: parts.version, headers: parts.headers, body };
    seen.lock().unwrap().push(s.clone());
    let mut resp = handler(s);
    if let Some(ms) = resp.headers_mut().remove(DELAY).and_then(|v| v.to_str().ok()?.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}

/// A backend on any free loopback port.
pub async fn backend(handler: impl Fn(Seen) -> Response<Body> + Send + Sync + 'static) -> Backend {
    backend_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler)
}

/// A backend answering `200 <name>` to everything.
pub async fn named_backend(name: &'static str) -> Backend {
    backend(move |_| Response::new(full(name))).await
}
