//! HTTP client helpers, and the interceptor's `/queue` read the way the scaler reads it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// `GET http://{addr}{path}` with `Host: host`.
pub fn request(addr: SocketAddr, host: &str, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}")).header(http::header::HOST, host)
}

/// Sends `req` and reads the whole answer (bounded by 20 s).
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

/// Writes raw bytes on a fresh connection and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    exchange_raw(addr, bytes, wait).await.0
}

/// [`raw`], when the server closed the connection within `wait`; `None` when it kept it open.
pub async fn raw_until_closed(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<String> {
    let (text, closed) = exchange_raw(addr, bytes, wait).await;
    closed.then_some(text)
}

async fn exchange_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out)).await.is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// `GET /queue` on an interceptor's admin port.
pub async fn queue(admin: SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(admin, "admin", "/queue").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

/// A route's concurrency in `/queue` (-1 if the route is unknown).
pub async fn concurrency(admin: SocketAddr, key: &str) -> i64 {
    queue(admin).await[key]["Concurrency"].as_i64().unwrap_or(-1)
}
