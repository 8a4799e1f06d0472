//! Shared test harness: real backends on loopback, the interceptor started in-process on ports the OS
//! picks, and small HTTP helpers. Nothing here binds a fixed port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use httpscale_core::Shutdown;
use httpscale_interceptor::{Config, Running};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Body = BoxBody<Bytes, Infallible>;
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

pub fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// A response header the test backend turns into a delay before answering (then removes).
pub const DELAY: &str = "x-test-delay-ms";

/// A response delayed by `ms` before its headers are sent.
pub fn delayed(ms: u64, body: &'static str) -> Response<Body> {
    Response::builder().header(DELAY, ms.to_string()).body(full(body)).unwrap()
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

/// A real HTTP/1.1 server on loopback.
/// Dropping it closes the listener and every open connection.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
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
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

/// Starts a backend on `addr` (use port 0 for any) that records each request and answers with `handler`
/// (which receives the request with its body already read).
pub async fn backend_on(addr: SocketAddr, handler: impl Fn(Seen) -> Response<Body> + Send + Sync + 'static) -> Backend {
    let handler = Arc::new(handler);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen2 = seen.clone();
    let closed = tokio::sync::watch::Sender::new(false);
    let closed_rx = closed.subscribe();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (handler, seen) = (handler.clone(), seen2.clone());
            let mut closed = closed_rx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (handler, seen) = (handler.clone(), seen.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let s = Seen {
                            method: parts.method,
                            uri: parts.uri,
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        };
                        seen.lock().unwrap().push(s.clone());
                        let mut resp = handler(s);
                        if let Some(ms) = resp.headers_mut().remove(DELAY).and_then(|v| v.to_str().ok()?.parse().ok()) {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = closed.wait_for(|c| *c) => {}
                }
            });
        }
    });
    Backend { addr, seen, task, closed }
}

pub async fn backend(handler: impl Fn(Seen) -> Response<Body> + Send + Sync + 'static) -> Backend {
    backend_on("127.0.0.1:0".parse().unwrap(), handler).await
}

/// A backend answering `200 <name>` to everything.
pub async fn named_backend(name: &'static str) -> Backend {
    backend(move |_| Response::new(full(name))).await
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

/// A loopback port with nothing listening on it (for backends that start later).
pub async fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A running interceptor plus what it needs to stay alive.
pub struct Harness {
    pub running: Running,
    pub shutdown: Shutdown,
    pub routes_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn proxy(&self) -> SocketAddr {
        self.running.proxy_addr
    }
    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr
    }
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.running.wait()).await.expect("interceptor stops");
    }
}

pub async fn interceptor(routes: &str) -> Harness {
    interceptor_with(routes, |_| {}).await
}

pub async fn interceptor_with(routes: &str, tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let routes_file = dir.path().join("routes.yaml");
    std::fs::write(&routes_file, routes).unwrap();
    let mut config = Config::for_file(&routes_file);
    config.shutdown_delay = Duration::ZERO;
    config.proxy_threads = 2;
    tweak(&mut config);
    let config = config.validate().unwrap();
    let shutdown = Shutdown::new();
    let running = httpscale_interceptor::start(config, shutdown.clone()).await.unwrap();
    Harness { running, shutdown, routes_file, _dir: dir }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

pub fn request(addr: SocketAddr, host: &str, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}")).header(http::header::HOST, host)
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    let resp =
        tokio::time::timeout(Duration::from_secs(20), client().request(req)).await.expect("answer in time").unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, HeaderMap, String) {
    send(request(addr, host, path).body(Full::default()).unwrap()).await
}

/// `GET /queue` on the admin port.
pub async fn queue(admin: SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(admin, "admin", "/queue").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

pub async fn concurrency(admin: SocketAddr, key: &str) -> i64 {
    queue(admin).await[key]["Concurrency"].as_i64().unwrap_or(-1)
}

/// Polls `check` every 10 ms until it holds, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes raw bytes on a fresh connection and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The Prometheus exposition.
pub async fn metrics(h: &Harness) -> String {
    get(h.running.metrics_addr.unwrap(), "metrics", "/metrics").await.2
}
