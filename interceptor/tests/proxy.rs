//! The forwarding path on real sockets: what reaches the backend, what comes back, streaming, upgrades,
//! HTTP/2 and gRPC, timeouts, upstream failures, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use httpscale_testkit::*;

fn route(name: &str, host: &str, upstream: &str) -> String {
    format!("  - name: {name}\n    hosts: [{host}]\n    upstream: {upstream}\n")
}

async fn warm(h: &Harness, host: &str) {
    eventually(Duration::from_secs(5), "backend ready", || async {
        get(h.proxy(), host, "/").await.0 != StatusCode::GATEWAY_TIMEOUT
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_method_path_query_body_and_host_with_forwarded_headers() {
    let b = named_backend("app").await;
    let h = interceptor(&format!("routes:\n{}", route("app", "app.local", &b.authority()))).await;
    let req = Request::post(format!("http://{}/api/v1/items?x=1&y=%20z", h.proxy()))
        .header("host", "App.Local:8080")
        .header("x-custom", "kept")
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.9.9.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("proxy-authorization", "Basic dropped")
        .body(Full::new(Bytes::from_static(b"{\"prompt\":\"hi\"}")))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app"));
    assert_eq!(headers["x-keda-http-cold-start"], "false");
    let seen = b.seen().pop().unwrap();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.uri.to_string(), "/api/v1/items?x=1&y=%20z");
    assert_eq!(seen.body.as_ref(), b"{\"prompt\":\"hi\"}");
    assert_eq!(seen.headers["host"], "App.Local:8080", "the client's Host reaches the backend unchanged");
    assert_eq!(seen.headers["x-custom"], "kept");
    assert_eq!(seen.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "App.Local:8080");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["forwarded"], "for=127.0.0.1;host=\"App.Local:8080\";proto=http",
        "replaced, not the client's"
    );
    for gone in ["x-hop", "proxy-authorization", "connection"] {
        assert!(!seen.headers.contains_key(gone), "{gone} must not be forwarded");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_response_headers_are_removed() {
    let b = backend(|_| {
        Response::builder()
            .header("keep-alive", "timeout=5")
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("x-app", "yes")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let h = interceptor(&format!("routes:\n{}", route("app", "app.local", &b.authority()))).await;
    let (status, headers, _) = get(h.proxy(), "app.local", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-app"], "yes");
    assert!(!headers.contains_key("keep-alive") && !headers.contains_key("x-internal"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_gets_404_and_is_never_forwarded() {
    let b = named_backend("app").await;
    let h = interceptor(&format!("routes:\n{}", route("app", "app.local", &b.authority()))).await;
    let (status, headers, body) = get(h.proxy(), "evil.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "Not Found\n");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Absolute-form target naming another host: routed on the target's authority, so 404 too, even though
    // the Host header names a real route.
    let resp = raw(
        h.proxy(),
        b"GET http://evil.example/steal HTTP/1.1\r\nHost: app.local\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    // And an absolute-form target naming the route works.
    let resp = raw(
        h.proxy(),
        b"GET http://app.local/x HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("app"), "{resp}");
    assert_eq!(b.seen().len(), 1, "only the routed request reached the backend");
    assert_eq!(b.seen()[0].headers["host"], "app.local");
    assert_eq!(queue(h.admin()).await["default/app"]["RequestCount"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_path_and_header_end_to_end() {
    let (a, b, c) = (named_backend("a").await, named_backend("b").await, named_backend("c").await);
    let routes = format!(
        "routes:\n  - {{name: root, hosts: [h.local], upstream: '{}'}}\n  - {{name: api, hosts: [h.local], pathPrefixes: [/api], upstream: '{}'}}\n  - {{name: blue, hosts: [h.local], pathPrefixes: [/api], headers: [{{name: X-Tenant, value: blue}}], upstream: '{}'}}\n",
        a.authority(),
        b.authority(),
        c.authority()
    );
    let h = interceptor(&routes).await;
    assert_eq!(get(h.proxy(), "h.local", "/").await.2, "a");
    assert_eq!(get(h.proxy(), "h.local", "/api/x").await.2, "b");
    assert_eq!(get(h.proxy(), "h.local", "/apix").await.2, "a");
    let req = request(h.proxy(), "H.LOCAL.", "/api/x").header("x-tenant", "blue").body(Full::default()).unwrap();
    assert_eq!(send(req).await.2, "c", "case-insensitive host, trailing dot ignored, header match");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_chunks_as_they_arrive_and_counts_until_the_end() {
    // The backend sends each chunk only when the test says so: the client can only read chunk n before
    // chunk n+1 exists if the interceptor passes frames on as they arrive.
    let senders = Arc::new(Mutex::new(Vec::new()));
    let for_backend = senders.clone();
    let b = backend(move |s| {
        if s.uri.path() != "/api/generate" {
            return Response::new(full("ready"));
        }
        let (tx, body) = channel_body();
        for_backend.lock().unwrap().push(tx);
        Response::builder().header("content-type", "application/x-ndjson").body(body).unwrap()
    })
    .await;
    let h = interceptor(&format!("routes:\n{}", route("llm", "llm.local", &b.authority()))).await;
    warm(&h, "llm.local").await;
    let resp = client()
        .request(request(h.proxy(), "llm.local", "/api/generate").body(Full::default()).unwrap())
        .await
        .unwrap();
    let tx = senders.lock().unwrap().pop().unwrap();
    let mut body = resp.into_body();
    for chunk in ["{\"t\":1}\n", "{\"t\":2}\n", "{\"t\":3}\n"] {
        tx.send(chunk).unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("each chunk arrives before the next exists")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk, "one frame per chunk");
        assert_eq!(concurrency(h.admin(), "default/llm").await, 1, "the stream is counted while it runs");
    }
    tx.send("{\"done\":true}\n").unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "{\"done\":true}\n");
    eventually(Duration::from_secs(2), "count returned", || async { concurrency(h.admin(), "default/llm").await == 0 })
        .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_is_tunnelled_and_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let h = interceptor(&format!("routes:\n{}", route("ws", "ws.local", &ws_addr.to_string()))).await;
    warm(&h, "ws.local").await;
    let stream = tokio::net::TcpStream::connect(h.proxy()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.local/chat", stream).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through the interceptor"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.to_text().unwrap(), text);
    }
    assert_eq!(concurrency(h.admin(), "default/ws").await, 1, "an open tunnel counts as in flight");
    ws.close(None).await.unwrap();
    drop(ws);
    eventually(Duration::from_secs(3), "tunnel count returned", || async {
        concurrency(h.admin(), "default/ws").await == 0
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_clients_with_prior_knowledge_are_served() {
    let b = named_backend("app").await;
    let h = interceptor(&format!("routes:\n{}", route("app", "app.local", &b.authority()))).await;
    warm(&h, "app.local").await;
    // Over h2 the `:authority` names the route; the connection goes to the proxy.
    let stream = tokio::net::TcpStream::connect(h.proxy()).await.unwrap();
    let (mut send_req, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://app.local/h2").body(Full::<Bytes>::default()).unwrap();
    let resp = send_req.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes().as_ref(), b"app");
    assert_eq!(b.seen().last().unwrap().headers["host"], "app.local", "HTTP/1.1 backends get Host from :authority");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_and_streaming_pass_through_an_h2c_upstream() {
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("demo", ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let routes = format!(
        "routes:\n  - name: grpc\n    hosts: [grpc.local]\n    upstream: '{grpc_addr}'\n    appProtocol: kubernetes.io/h2c\n"
    );
    let h = interceptor(&routes).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.proxy()))
        .unwrap()
        .origin("http://grpc.local".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let unary = client.check(HealthCheckRequest { service: "demo".into() }).await.unwrap().into_inner();
    assert_eq!(unary.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let mut watch = client.watch(HealthCheckRequest { service: "demo".into() }).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    reporter.set_service_status("demo", ServingStatus::NotServing).await;
    let second = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(second.status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    assert_eq!(concurrency(h.admin(), "default/grpc").await, 1, "the open stream is counted");
    drop(watch);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn response_header_timeout_gives_504_globally_and_per_route() {
    let slow = backend(|_| delayed(600, "late")).await;
    let routes = format!(
        "routes:\n{}  - name: patient\n    hosts: [patient.local]\n    upstream: '{}'\n    timeouts: {{responseHeader: 5s}}\n",
        route("slow", "slow.local", &slow.authority()),
        slow.authority()
    );
    let h = interceptor_with(&routes, |c| c.response_header_timeout = Duration::from_millis(200)).await;
    warm(&h, "patient.local").await;
    let (status, headers, body) = get(h.proxy(), "slow.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"));
    assert_eq!(headers["x-keda-http-cold-start"], "false", "sent on, so the answer says so, as upstream's 504");
    let (status, _, body) = get(h.proxy(), "patient.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "late"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_gives_504_and_cuts_a_stream_at_the_deadline() {
    let b = backend(|s| {
        if s.uri.path() == "/stream" {
            Response::new(streaming_body(vec!["a", "b", "c", "d", "e"], Duration::from_millis(200)))
        } else if s.uri.path() == "/slow" {
            delayed(700, "late")
        } else {
            Response::new(full("ok"))
        }
    })
    .await;
    let routes = format!(
        "routes:\n  - name: app\n    hosts: [app.local]\n    upstream: '{}'\n    timeouts: {{request: 500ms}}\n",
        b.authority()
    );
    let h = interceptor(&routes).await;
    warm(&h, "app.local").await;
    let (status, _, _) = get(h.proxy(), "app.local", "/slow").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let resp =
        client().request(request(h.proxy(), "app.local", "/stream").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Five chunks 200 ms apart, cut 500 ms after the request: some arrive, never all (when exactly: the route
    // layer's paused-clock tests).
    let mut body = resp.into_body();
    let mut chunks = 0;
    let ended = loop {
        match body.frame().await {
            Some(Ok(f)) if f.is_data() => chunks += 1,
            Some(Ok(_)) => {}
            Some(Err(_)) => break "cut",
            None => break "completed",
        }
    };
    assert_eq!(ended, "cut", "the stream is cut, not completed");
    assert!(chunks < 5, "cut at the deadline, before the stream's end: {chunks} chunks");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_that_drops_connections_gives_502_and_other_routes_keep_working() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    let good = named_backend("good").await;
    let routes = format!(
        "routes:\n{}{}",
        route("rude", "rude.local", &rude.to_string()),
        route("good", "good.local", &good.authority())
    );
    let h = interceptor(&routes).await;
    warm(&h, "good.local").await;
    let (status, headers, body) = get(h.proxy(), "rude.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
    assert_eq!(headers["x-keda-http-cold-start"], "false", "sent on, so the answer says so, as upstream's 502");
    assert_eq!(get(h.proxy(), "good.local", "/").await.2, "good");
    assert_eq!(concurrency(h.admin(), "default/rude").await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_cancels_is_counted_as_499_not_502() {
    let b = backend(|s| if s.uri.path() == "/x" { delayed(1500, "late") } else { Response::new(full("ok")) }).await;
    let h = interceptor(&format!("routes:\n{}", route("app", "app.local", &b.authority()))).await;
    warm(&h, "app.local").await;
    let mut s = tokio::net::TcpStream::connect(h.proxy()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /x HTTP/1.1\r\nHost: app.local\r\n\r\n").await.unwrap();
    eventually(Duration::from_secs(2), "request in flight", || async {
        concurrency(h.admin(), "default/app").await == 1
    })
    .await;
    drop(s);
    eventually(Duration::from_secs(3), "499 recorded", || async {
        h.metrics().await.contains(
            r#"interceptor_request_count_total{code="499",method="GET",route_name="app",route_namespace="default"} 1"#,
        )
    })
    .await;
    assert_eq!(concurrency(h.admin(), "default/app").await, 0);
    assert!(!h.metrics().await.contains(r#"code="502""#));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_precise_answers_and_leaks_nothing() {
    let b = named_backend("app").await;
    let h = interceptor_with(&format!("routes:\n{}", route("app", "app.local", &b.authority())), |c| {
        c.listen.header_read_timeout = Duration::from_millis(300);
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    warm(&h, "app.local").await;
    let before = b.seen().len();
    let wait = Duration::from_secs(5);

    let resp = raw(h.proxy(), b"GET / HTTP/1.1\r\nHost: app.local\r\nthis is not a header\r\n\r\n", wait).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "malformed: {resp}");

    let big = format!("GET / HTTP/1.1\r\nHost: app.local\r\nX-Big: {}\r\n\r\n", "a".repeat(32 * 1024));
    let resp = raw(h.proxy(), big.as_bytes(), wait).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "oversized headers: {resp}");

    let slow = raw_until_closed(h.proxy(), b"GET / HTTP/1.1\r\nHost: app.local\r\n", wait).await;
    assert!(slow.is_some(), "a client sending headers too slowly is cut off by the interceptor");

    let resp = raw(h.proxy(), b"CONNECT app.local:443 HTTP/1.1\r\nHost: app.local:443\r\n\r\n", wait).await;
    assert!(resp.starts_with("HTTP/1.1 405"), "CONNECT: {resp}");

    let resp = raw(h.proxy(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", wait).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "missing Host: {resp}");

    assert_eq!(b.seen().len(), before, "none of these reached the backend");
    assert_eq!(queue(h.admin()).await["default/app"]["Concurrency"], 0);
    assert_eq!(get(h.proxy(), "app.local", "/").await.0, StatusCode::OK, "the route still works");
    h.stop().await;
}
