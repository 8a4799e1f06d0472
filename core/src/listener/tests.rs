use std::time::Duration;

use http::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::Shutdown;
use crate::admin::{self, AdminBody};

fn limits(max_connections: usize) -> Limits {
    Limits {
        header_timeout: Some(Duration::from_millis(300)),
        idle_timeout: Some(Duration::from_millis(900)),
        max_connections,
    }
}

/// An admin-style listener answering `ok`, with `limits`.
async fn server(limits: Limits) -> (std::net::SocketAddr, Arc<Gatekeeper>, Shutdown) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Gatekeeper::new("test", limits);
    let stop = Shutdown::new();
    let ok = |_: &_| -> Response<AdminBody> { admin::text(StatusCode::OK, "ok") };
    tokio::spawn(admin::serve(listener, gate.clone(), ok, stop.clone()));
    (addr, gate, stop)
}

/// How long until the server closes `s` (reading and discarding what it sends), bounded by 5 s.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async { while s.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("closed by the server");
    started.elapsed()
}

#[test]
fn the_default_budget_leaves_room_for_held_requests_upstream_connections() {
    assert_eq!(default_max_connections(1 << 20), 30_000);
    assert_eq!(default_max_connections(65_536), 30_000);
    assert_eq!(default_max_connections(20_000), 10_000);
    assert_eq!(default_max_connections(1_024), 512);
}

#[tokio::test]
async fn past_the_budget_a_connection_gets_503_and_is_closed_never_silence() {
    let (addr, gate, _stop) = server(limits(2)).await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("connection: close") && answer.ends_with("(limit 2)\n"), "{answer}");
    assert_eq!(gate.stats.hits(Limit::Connections), 1);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let (addr, gate, _stop) = server(limits(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let after = closed_after(&mut s).await;
    assert!(after >= Duration::from_millis(250) && after < Duration::from_secs(2), "{after:?}");
    assert_eq!(gate.stats.hits(Limit::HeaderTimeout), 1);
    assert_eq!(gate.open(), 0, "its place is given back");
}

#[tokio::test]
async fn a_trickled_head_is_cut_at_the_header_timeout() {
    let (addr, gate, _stop) = server(limits(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1" {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle).await.unwrap();
    let after = started.elapsed() + closed_after(&mut s).await;
    assert!(after < Duration::from_secs(2), "cut at the header timeout, not when the client stops: {after:?}");
    assert!(gate.stats.hits(Limit::HeaderTimeout) >= 1);
}

#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
    let (addr, gate, _stop) = server(limits(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let after = closed_after(&mut s).await;
    assert!(after >= Duration::from_millis(800) && after < Duration::from_secs(3), "{after:?}");
    assert_eq!(gate.stats.hits(Limit::IdleTimeout), 1);
}

#[tokio::test]
async fn an_http2_client_that_stops_inside_its_preface_is_closed() {
    let (addr, gate, _stop) = server(limits(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let after = closed_after(&mut s).await;
    assert!(after < Duration::from_secs(2), "{after:?}");
    assert_eq!(gate.stats.hits(Limit::HeaderTimeout), 1);
}

#[tokio::test]
async fn an_invalid_host_is_a_400_on_the_admin_listeners_too() {
    let (addr, _gate, _stop) = server(limits(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn hits_are_all_counted_but_logged_once_per_period() {
    let stats = Stats::new("test");
    for _ in 0..100 {
        stats.hit(Limit::Connections, "refused");
    }
    assert_eq!(stats.hits(Limit::Connections), 100);
    assert_eq!(stats.unlogged[Limit::Connections as usize].load(Ordering::Relaxed), 99);
    tokio::time::sleep(stats::LOG_EVERY).await;
    stats.hit(Limit::Connections, "refused");
    assert_eq!(stats.unlogged[Limit::Connections as usize].load(Ordering::Relaxed), 0, "logged with the 99");
}
