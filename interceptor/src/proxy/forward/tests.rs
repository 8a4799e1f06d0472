use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use httpscale_testkit::Reserved;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::*;
use crate::proxy::testing::{route, routed};

type TestForward = Forward<Full<Bytes>>;

fn settings() -> ForwardSettings {
    ForwardSettings {
        connect_timeout: Duration::from_millis(500),
        max_idle_per_host: 8,
        body: BodyLimits { stall: Some(Duration::from_secs(60)), min_rate: Some(500) },
        trusted: TrustedProxies::default(),
        tls: test_tls(),
    }
}

/// A client configuration that trusts anything (these tests' backends are plain).
fn test_tls() -> Arc<rustls::ClientConfig> {
    use httpscale_core::tls::{Policy, backend};
    Arc::new(backend::client_config(&Policy::default_policy(), backend::Verify::Skip, None).unwrap())
}

fn forwarder() -> TestForward {
    Forward::new(settings(), None)
}

/// Serves HTTP/1.1 on `listener`, answering `ok` after `delay`.
fn serve(listener: TcpListener, delay: Duration) {
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
}

/// Regression: an internal failure (a request that reached the forwarder without a route) was answered
/// as the client's fault, 400 `MissingHost`. It is a 500 now.
#[tokio::test(start_paused = true)]
async fn a_request_without_a_route_is_an_internal_error_not_the_clients_fault() {
    let req = Request::get("http://app.local/").body(Full::new(Bytes::new())).unwrap();
    let e = forwarder().oneshot(req).await.unwrap_err();
    assert!(matches!(e, ProxyError::Internal(_)), "{e:?}");
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(start_paused = true)]
async fn the_response_header_timeout_runs_on_the_clock_not_the_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, Duration::from_secs(3600));
    let route = route(&addr.to_string(), "    timeouts: {responseHeader: 30s}\n");
    let started = Instant::now();
    let e = forwarder().oneshot(routed(&route, "/", Full::new(Bytes::new()))).await.unwrap_err();
    assert!(matches!(e, ProxyError::ResponseHeaderTimeout { timeout, .. } if timeout == Duration::from_secs(30)));
    assert_eq!(started.elapsed().as_secs(), 30);
}

/// The timer of a kept-alive connection starts anew with each request: from its own start, whenever the
/// request before it was sent, and whether or not that one's deadline passed while the connection was idle.
#[tokio::test(start_paused = true)]
async fn the_response_header_timeout_counts_from_each_requests_start_on_a_reused_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // One connection: answers at once, except the third request, after an hour.
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let svc = hyper::service::service_fn(move |_req| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 2 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
    });
    let route = route(&addr.to_string(), "    timeouts: {responseHeader: 30s}\n");
    let forward = forwarder();
    for idle in [Duration::from_secs(20), Duration::from_secs(45)] {
        let resp = forward.clone().oneshot(routed(&route, "/", Full::new(Bytes::new()))).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        tokio::time::sleep(idle).await;
    }
    let started = Instant::now();
    let e = forward.clone().oneshot(routed(&route, "/", Full::new(Bytes::new()))).await.unwrap_err();
    assert!(matches!(e, ProxyError::ResponseHeaderTimeout { timeout, .. } if timeout == Duration::from_secs(30)));
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_is_retried_until_the_backend_listens_and_the_body_is_sent_whole() {
    let reserved = Reserved::new();
    let route = route(&reserved.addr().to_string(), "");
    let body = Full::new(Bytes::from_static(b"{\"prompt\":\"hi\"}"));
    let sent = tokio::spawn(forwarder().oneshot(routed(&route, "/api", body)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!sent.is_finished(), "still retrying after 10 s");
    serve(reserved.listen(), Duration::ZERO);
    let resp = sent.await.unwrap().unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test(start_paused = true)]
async fn connects_give_up_after_the_retry_budget() {
    let reserved = Reserved::new();
    let route = route(&reserved.addr().to_string(), "");
    let started = Instant::now();
    let e = forwarder().oneshot(routed(&route, "/", Full::new(Bytes::new()))).await.unwrap_err();
    assert!(matches!(e, ProxyError::ConnectFailed { .. }), "{e:?}");
    assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= RETRY_BUDGET - RETRY_INTERVAL && started.elapsed() <= RETRY_BUDGET);
}

/// Serves HTTP/1.1 on `listener`, answering `ok` once it has read the whole request body.
fn serve_reading(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
}

type Chunks = tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, std::io::Error>>;
type ChannelBody =
    http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Result<http_body::Frame<Bytes>, std::io::Error>>>;

/// A request body the test feeds, through a forwarder to a backend that reads bodies whole.
async fn sending_body() -> (BoxFuture<Result<ProxyResponse, ProxyError>>, Chunks) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let route = route(&listener.local_addr().unwrap().to_string(), "");
    serve_reading(listener);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let forward: Forward<ChannelBody> = Forward::new(settings(), None);
    let mut req = routed(&route, "/upload", body);
    *req.method_mut() = http::Method::POST;
    (Box::pin(forward.oneshot(req)), tx)
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_is_the_clients_408_after_the_body_timeout() {
    let (sent, tx) = sending_body().await;
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part")))).await.unwrap();
    let started = Instant::now();
    let e = sent.await.unwrap_err();
    assert!(matches!(e, ProxyError::BodyTimeout(t) if t == Duration::from_secs(60)), "{e:?}");
    assert_eq!(e.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed().as_secs(), 60);
    drop(tx);
}

/// Regression: a client's own framing error (a bad chunk size, a body cut short) was answered 502 and
/// counted against the backend.
#[tokio::test(start_paused = true)]
async fn a_broken_request_body_is_the_clients_400_not_a_502() {
    let (sent, tx) = sending_body().await;
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part")))).await.unwrap();
    tx.send(Err(std::io::Error::other("invalid chunk size"))).await.unwrap();
    let e = sent.await.unwrap_err();
    assert!(matches!(&e, ProxyError::ClientBody(cause) if cause.contains("invalid chunk size")), "{e:?}");
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}
