use std::time::Duration;

use super::*;

#[test]
fn a_complete_plain_head_becomes_a_request() {
    let req =
        head(b"POST /api/generate HTTP/1.1\r\nHost: ollama.ollama\r\nContent-Length: 12\r\n\r\n{\"model\":1}").unwrap();
    assert_eq!((req.method().as_str(), req.uri().path()), ("POST", "/api/generate"));
    assert_eq!(req.headers()["host"], "ollama.ollama");
    assert_eq!(req.version(), Version::HTTP_11);
    let req = head(b"GET / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    assert_eq!(req.version(), Version::HTTP_10);
}

#[test]
fn an_incomplete_or_oddly_framed_head_is_left_to_hyper() {
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(head(bytes).is_none(), "{}", String::from_utf8_lossy(bytes));
    }
    let many: String = (0..=MAX_PARKED_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
    assert!(head(format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()).is_none());
}

/// A connected pair of loopback sockets: (the client's, the server's).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    (client, listener.accept().await.unwrap().0)
}

#[tokio::test]
async fn closed_waits_through_new_bytes_and_ends_when_the_client_closes_its_side() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    server.readable().await.unwrap();
    let mut waiting = Box::pin(closed(&server));
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiting).await.is_err(), "unread bytes are no close");
    client.write_all(b"more").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiting).await.is_err(), "new bytes are no close");
    client.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the close is seen");
    let mut buf = [0u8; 64];
    assert_eq!(server.peek(&mut buf).await.unwrap(), 31, "the bytes stay for hyper");
}
