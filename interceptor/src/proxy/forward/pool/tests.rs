use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use httpscale_testkit::Reserved;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

type Pool = Arc<Http1Pool<Empty<Bytes>>>;

fn pool(max_idle_per_host: usize) -> Pool {
    Http1Pool::new(Duration::from_millis(500), max_idle_per_host)
}

/// An HTTP/1.1 backend answering `ok`; counts the connections it accepted.
async fn backend() -> (Authority, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    (authority, accepted)
}

fn get(authority: &Authority) -> Request<Empty<Bytes>> {
    Request::get("/").header(http::header::HOST, authority.as_str()).body(Empty::new()).unwrap()
}

/// Sends one request and reads its answer to the end; the answer's body.
async fn exchange(pool: &Pool, authority: &Authority) -> Bytes {
    let resp = pool.send(authority, get(authority)).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// Waits (yielding to the connection tasks) until the pool holds `n` idle connections to `authority`.
async fn until_idle(pool: &Pool, authority: &Authority, n: usize) {
    for _ in 0..1000 {
        if pool.idle_count(authority) == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the pool holds {} idle connections, not {n}", pool.idle_count(authority));
}

#[tokio::test]
async fn a_connection_is_reused_once_its_answer_was_read() {
    let (authority, accepted) = backend().await;
    let pool = pool(8);
    for _ in 0..5 {
        assert_eq!(exchange(&pool, &authority).await, "ok");
        until_idle(&pool, &authority, 1).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_whose_answer_is_still_streaming_is_not_lent_to_another_request() {
    // Each connection gets a head and half of its 4-byte body, and then nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok").await;
            open.push(s);
            if open.len() == 2 {
                break;
            }
        }
        std::future::pending::<()>().await;
    });
    let pool = pool(8);
    let first = pool.send(&authority, get(&authority)).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), pool.send(&authority, get(&authority))).await;
    assert!(second.expect("the second request waited for the first's connection").is_ok());
    assert_eq!(pool.idle_count(&authority), 0);
    drop(first);
}

#[tokio::test]
async fn no_more_than_max_idle_per_host_are_kept() {
    let (authority, accepted) = backend().await;
    let pool = pool(1);
    let (a, b) = tokio::join!(pool.send(&authority, get(&authority)), pool.send(&authority, get(&authority)));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    for resp in [a.unwrap(), b.unwrap()] {
        resp.into_body().collect().await.unwrap();
    }
    until_idle(&pool, &authority, 1).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.idle_count(&authority), 1);
}

#[tokio::test(start_paused = true)]
async fn a_connection_idle_past_the_idle_timeout_is_not_reused() {
    let (authority, accepted) = backend().await;
    let pool = pool(8);
    exchange(&pool, &authority).await;
    until_idle(&pool, &authority, 1).await;
    tokio::time::advance(IDLE_TIMEOUT - Duration::from_secs(1)).await;
    exchange(&pool, &authority).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused within the idle timeout");
    until_idle(&pool, &authority, 1).await;
    tokio::time::advance(IDLE_TIMEOUT).await;
    exchange(&pool, &authority).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection after it");
}

/// A backend that answers one request per connection with keep-alive, then closes the connection.
async fn closing_backend() -> (Authority, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            drop(s);
        }
    });
    (authority, accepted)
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_replaced_not_failed() {
    let (authority, accepted) = closing_backend().await;
    let pool = pool(8);
    for n in 1..=3 {
        assert_eq!(exchange(&pool, &authority).await, "ok", "request {n}");
        // Time for the connection's task to see the close.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error_and_hands_the_request_back() {
    let reserved = Reserved::new();
    let authority: Authority = reserved.addr().to_string().parse().unwrap();
    let e = pool(8).send(&authority, get(&authority)).await.unwrap_err();
    assert!(matches!(e.error, SendError::Connect(_)), "{e:?}");
    let unsent = e.request.expect("a request that was not sent is handed back");
    assert_eq!(unsent.headers()[http::header::HOST], authority.as_str());
}

#[test]
fn the_upstream_uri_is_the_path_and_query() {
    for (from, to) in [("http://a:1/x/y?q=1", "/x/y?q=1"), ("http://a:1", "/"), ("/", "/"), ("/p?", "/p?")] {
        assert_eq!(origin_form(&from.parse().unwrap()), to, "{from}");
    }
}
