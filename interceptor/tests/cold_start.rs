//! Holding requests across scale-from-zero, on real sockets: counted before waiting, released when the
//! backend comes up, bounded by timeouts and a per-route cap, answered by placeholder or fallback, and freed
//! at once when the client leaves.
//!
//! Timing is pinned by the cold-start layer's paused-clock tests (`src/proxy/cold_start/tests.rs`); here
//! every wait is bounded generously and every check is on what the client and the backend saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::Full;
use httpscale_testkit::*;

fn route_to(name: &str, host: &str, upstream: std::net::SocketAddr, extra: &str) -> String {
    format!("routes:\n  - name: {name}\n    hosts: [{host}]\n    upstream: '{upstream}'\n{extra}")
}

/// The proxy listener's `httpscale_parked_connections` is `n`.
async fn parked(h: &Harness, n: usize) -> bool {
    h.metrics().await.contains(&format!("httpscale_parked_connections{{listener=\"proxy\"}} {n}\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_request_is_counted_then_served_when_the_backend_comes_up() {
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "")).await;
    let proxy = h.proxy();
    let pending = tokio::spawn(async move { get(proxy, "app.local", "/hello").await });
    eventually(Duration::from_secs(2), "held request counted", || async {
        let q = queue(h.admin()).await;
        q["default/app"]["Concurrency"] == 1 && q["default/app"]["RequestCount"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "held while no backend listens");
    assert!(parked(&h, 1).await, "held parked, before hyper read it");
    let b = backend_on(port.listen(), |_| Response::new(full("woke up")));
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "woke up"));
    assert_eq!(headers["x-keda-http-cold-start"], "true");
    assert_eq!(b.seen().len(), 1);
    assert_eq!(concurrency(h.admin(), "default/app").await, 0);
    assert_eq!(queue(h.admin()).await["default/app"]["RequestCount"], 1, "counted once, parked and served");
    assert!(parked(&h, 0).await);
    let m = h.metrics().await;
    assert!(
        m.contains(r#"interceptor_cold_start_duration_seconds_count{route_name="app",route_namespace="default",outcome="ready"} 1"#),
        "{m}"
    );
    // Now warm.
    let (_, headers, _) = get(h.proxy(), "app.local", "/").await;
    assert_eq!(headers["x-keda-http-cold-start"], "false");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cold_start_header_can_be_turned_off() {
    let b = named_backend("app").await;
    let h = interceptor_with(&route_to("app", "app.local", b.addr, ""), |c| c.enable_cold_start_header = false).await;
    let (status, headers, _) = get(h.proxy(), "app.local", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("x-keda-http-cold-start"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_timeout_gives_504_with_the_route_value_winning() {
    let port = Reserved::new();
    let addr = port.addr();
    let routes = format!(
        "{}  - name: quick\n    hosts: [quick.local]\n    upstream: '{addr}'\n    timeouts: {{readiness: 50ms}}\n",
        route_to("app", "app.local", addr, "")
    );
    // The global timeout is far longer than any test may take: only the route's own can answer in time.
    let h = interceptor_with(&routes, |c| c.readiness_timeout = Duration::from_secs(3600)).await;
    let (status, headers, body) = get(h.proxy(), "quick.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    h.stop().await;
    let h = interceptor_with(&routes, |c| c.readiness_timeout = Duration::from_millis(400)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(get(h.proxy(), "app.local", "/").await.0, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(400), "the global readiness timeout, not sooner");
    assert_eq!(queue(h.admin()).await["default/app"]["Concurrency"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fallback_answers_after_the_readiness_timeout() {
    let port = Reserved::new();
    let fallback = named_backend("fallback").await;
    let extra =
        format!("    timeouts: {{readiness: 200ms}}\n    coldStart: {{fallback: {{upstream: '{}'}}}}\n", fallback.addr);
    let h = interceptor(&route_to("app", "app.local", port.addr(), &extra)).await;
    let (status, headers, body) = get(h.proxy(), "app.local", "/x").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fallback"));
    assert!(!headers.contains_key("x-keda-http-cold-start"), "no cold-start header from the fallback, as upstream");
    assert_eq!(fallback.seen()[0].headers["host"], "app.local");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_placeholder_answers_at_once_still_counts_and_beats_the_fallback() {
    let port = Reserved::new();
    let fallback = named_backend("fallback").await;
    let extra = format!(
        "    coldStart:\n      fallback: {{upstream: '{}'}}\n      placeholder: {{response: {{statusCode: 418, body: warming up, headers: {{Content-Type: text/html, Refresh: '5'}}}}}}\n",
        fallback.addr
    );
    // No readiness timeout and no request deadline: an answer at all proves the placeholder did not wait.
    let h = interceptor(&route_to("app", "app.local", port.addr(), &extra)).await;
    let (status, headers, body) = get(h.proxy(), "app.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::IM_A_TEAPOT, "warming up"));
    assert_eq!(headers["content-type"], "text/html");
    assert_eq!(headers["refresh"], "5");
    assert_eq!(
        queue(h.admin()).await["default/app"]["RequestCount"],
        1,
        "placeholder requests count (they wake the backend)"
    );
    assert!(fallback.seen().is_empty());
    let _b = backend_on(port.listen(), |_| Response::new(full("real")));
    eventually(Duration::from_secs(5), "real backend answers", || async {
        get(h.proxy(), "app.local", "/").await.2 == "real"
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_hold_cap_requests_get_503_with_retry_after_and_held_ones_survive() {
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "    coldStart: {maxPendingRequests: 2}\n")).await;
    let proxy = h.proxy();
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(async move { get(proxy, "app.local", "/").await })).collect();
    eventually(Duration::from_secs(2), "two held", || async { concurrency(h.admin(), "default/app").await == 2 }).await;
    let (status, headers, body) = get(h.proxy(), "app.local", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert!(body.contains("cold-start queue of route default/app is full (2 requests held)"), "{body}");
    assert!(
        h.metrics()
            .await
            .contains(r#"interceptor_cold_start_rejections_total{route_name="app",route_namespace="default"} 1"#)
    );
    let _b = backend_on(port.listen(), |_| Response::new(full("ok")));
    for r in held {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    h.stop().await;
}

/// Upstream 0.16 (PR #1733): placeholder + the route's own `maxPendingRequests` + `overflow: Placeholder`
/// holds requests up to the limit; only the overflow gets the placeholder, and the held ones are served by
/// the backend when it comes up.
#[tokio::test(flavor = "multi_thread")]
async fn with_overflow_placeholder_requests_are_held_up_to_the_limit_and_only_the_overflow_gets_the_placeholder() {
    let port = Reserved::new();
    let extra = "    coldStart:\n      placeholder: {response: {statusCode: 202, body: warming up}}\n      \
                 maxPendingRequests: 2\n      overflow: Placeholder\n";
    let h = interceptor(&route_to("app", "app.local", port.addr(), extra)).await;
    let proxy = h.proxy();
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(async move { get(proxy, "app.local", "/").await })).collect();
    eventually(Duration::from_secs(2), "two held", || async { concurrency(h.admin(), "default/app").await == 2 }).await;
    let (status, headers, body) = get(h.proxy(), "app.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, "warming up"), "the overflow gets the placeholder");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8", "sniffed as upstream's Go server does");
    assert!(
        h.metrics()
            .await
            .contains(r#"interceptor_cold_start_rejections_total{route_name="app",route_namespace="default"} 1"#)
    );
    let _b = backend_on(port.listen(), |_| Response::new(full("real")));
    for r in held {
        let (status, headers, body) = tokio::time::timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "real"));
        assert_eq!(headers["x-keda-http-cold-start"], "true");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_while_held_frees_its_place_and_is_never_forwarded() {
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "    coldStart: {maxPendingRequests: 1}\n")).await;
    let mut s = tokio::net::TcpStream::connect(h.proxy()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"POST /abandoned HTTP/1.1\r\nHost: app.local\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(2), "held", || async { concurrency(h.admin(), "default/app").await == 1 }).await;
    assert!(parked(&h, 1).await);
    drop(s);
    eventually(Duration::from_secs(2), "count given back", || async {
        concurrency(h.admin(), "default/app").await == 0
    })
    .await;
    assert!(parked(&h, 0).await, "unparked when the client left");
    let m = h.metrics().await;
    assert!(
        m.contains(r#"interceptor_cold_start_duration_seconds_count{route_name="app",route_namespace="default",outcome="canceled"} 1"#),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("interceptor_request_count_total{")
            && l.contains(r#"code="499""#)
            && l.ends_with(" 1")),
        "recorded as a request whose client left: {m}"
    );
    // Its hold slot is free too: with a cap of 1 the next request is held, not refused.
    let proxy = h.proxy();
    let next = tokio::spawn(async move { get(proxy, "app.local", "/kept").await });
    eventually(Duration::from_secs(2), "next held", || async { concurrency(h.admin(), "default/app").await == 1 })
        .await;
    let b = backend_on(port.listen(), |_| Response::new(full("ok")));
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), next).await.unwrap().unwrap().0, StatusCode::OK);
    let paths: Vec<String> = b.seen().iter().map(|s| s.uri.path().to_owned()).collect();
    assert_eq!(paths, vec!["/kept"], "the abandoned request was never forwarded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_retries_cover_a_backend_that_is_ready_but_not_yet_accepting() {
    let port = Reserved::new();
    let addr = port.addr();
    let b = backend_on(port.listen(), |_| Response::new(full("first")));
    let h = interceptor(&route_to("app", "app.local", addr, "")).await;
    eventually(Duration::from_secs(5), "warm", || async { get(h.proxy(), "app.local", "/").await.2 == "first" }).await;
    // Down while the gate still says ready; the port is kept from everyone else once the backend let it go.
    drop(b);
    let port = eventually_some(Duration::from_secs(5), "the backend's port released", || async {
        Reserved::try_on(addr).ok()
    })
    .await;
    let proxy = h.proxy();
    let pending = tokio::spawn(async move { get(proxy, "app.local", "/again").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _b = backend_on(port.listen(), |_| Response::new(full("second")));
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "second"), "no 502 while the backend comes back");
    assert_eq!(headers["x-keda-http-cold-start"], "false", "it passed as warm and was carried by connect retries");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_held_requests_are_all_released() {
    const N: usize = 2000;
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "")).await;
    let client = client();
    let proxy = h.proxy();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let req = request(proxy, "app.local", &format!("/{i}")).body(Full::default()).unwrap();
                client.request(req).await.map(|r| r.status())
            })
        })
        .collect();
    eventually(Duration::from_secs(20), "all held", || async {
        concurrency(h.admin(), "default/app").await == N as i64
    })
    .await;
    let b = backend_on(port.listen(), |_| Response::new(full("ok")));
    for t in tasks {
        let status = tokio::time::timeout(Duration::from_secs(30), t).await.unwrap().unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(b.seen().len(), N);
    assert_eq!(concurrency(h.admin(), "default/app").await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_routes_answer_without_counting_and_forward_when_the_backend_is_ready() {
    let port = Reserved::new();
    let extra = "    staticRoutes:\n      - rules: [{paths: [{value: /healthz}]}]\n        response: {body: healthy, headers: {X-Static: 'true'}}\n      - rules: [{paths: [{value: /robots.txt}]}]\n        responseMode: Always\n        response: {statusCode: 200, body: 'User-agent: *'}\n";
    let h = interceptor(&route_to("app", "app.local", port.addr(), extra)).await;
    let (status, headers, body) = get(h.proxy(), "app.local", "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "healthy"));
    assert_eq!(headers["x-static"], "true");
    assert!(!headers.contains_key("x-keda-http-cold-start"));
    assert_eq!(queue(h.admin()).await["default/app"]["RequestCount"], 0, "static traffic does not wake the backend");

    let _b = backend_on(port.listen(), |s| {
        Response::new(full(if s.uri.path() == "/healthz" { "from the app" } else { "app" }))
    });
    eventually(Duration::from_secs(5), "backend ready", || async {
        get(h.proxy(), "app.local", "/x").await.2 == "app"
    })
    .await;
    let count = queue(h.admin()).await["default/app"]["RequestCount"].as_i64().unwrap();
    let (status, headers, body) = get(h.proxy(), "app.local", "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "from the app"), "WhenUnavailable forwards once ready");
    assert!(!headers.contains_key("x-keda-http-cold-start"));
    assert_eq!(get(h.proxy(), "app.local", "/robots.txt").await.2, "User-agent: *", "Always answers even when ready");
    assert_eq!(queue(h.admin()).await["default/app"]["RequestCount"].as_i64().unwrap(), count, "neither was counted");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_per_pod_keeps_a_fresh_backend_from_being_flooded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A backend that remembers how many requests it served at once.
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (n, p) = (now.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (n, p) = (n.clone(), p.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_| {
                    let (n, p) = (n.clone(), p.clone());
                    async move {
                        let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(c, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        n.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let h = interceptor(&route_to("gpu", "gpu.local", addr, "    coldStart: {maxConcurrentPerPod: 1}\n")).await;
    eventually(Duration::from_secs(5), "warm", || async { get(h.proxy(), "gpu.local", "/").await.0 == StatusCode::OK })
        .await;
    peak.store(0, Ordering::SeqCst);
    let proxy = h.proxy();
    let burst: Vec<_> = (0..4).map(|_| tokio::spawn(async move { get(proxy, "gpu.local", "/").await })).collect();
    eventually(Duration::from_secs(2), "all four counted while waiting", || async {
        concurrency(h.admin(), "default/gpu").await == 4
    })
    .await;
    for r in burst {
        assert_eq!(r.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one request at a time reached the single pod");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn held_http1_connections_park_before_hyper_and_h2c_streams_wait_in_the_pipeline_alike() {
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "")).await;
    let proxy = h.proxy();
    let mut held: Vec<_> =
        (0..3).map(|i| tokio::spawn(async move { get(proxy, "app.local", &format!("/h1/{i}")).await })).collect();
    held.push(tokio::spawn(async move {
        // Over h2 the `:authority` names the route; the connection goes to the proxy.
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        let resp =
            send.send_request(http::Request::get("http://app.local/h2").body(Full::<bytes::Bytes>::default()).unwrap());
        let resp = resp.await.unwrap();
        (resp.status(), resp.headers().clone(), String::new())
    }));
    eventually(Duration::from_secs(5), "all four held", || async { concurrency(h.admin(), "default/app").await == 4 })
        .await;
    assert!(parked(&h, 3).await, "the three HTTP/1.1 connections parked, the h2c stream not");
    let b = backend_on(port.listen(), |_| Response::new(full("ok")));
    for t in held {
        let (status, headers, _) = tokio::time::timeout(Duration::from_secs(5), t).await.unwrap().unwrap();
        assert_eq!((status, headers["x-keda-http-cold-start"].to_str().unwrap()), (StatusCode::OK, "true"));
    }
    assert_eq!(b.seen().len(), 4);
    let q = queue(h.admin()).await;
    assert_eq!(
        (q["default/app"]["Concurrency"].as_i64(), q["default/app"]["RequestCount"].as_i64()),
        (Some(0), Some(4))
    );
    assert!(parked(&h, 0).await);
    let m = h.metrics().await;
    assert!(
        m.contains(r#"interceptor_cold_start_duration_seconds_count{route_name="app",route_namespace="default",outcome="ready"} 4"#),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_request_times_out_from_its_arrival_and_its_duration_includes_the_park() {
    let port = Reserved::new();
    let h = interceptor(&route_to("app", "app.local", port.addr(), "    timeouts: {readiness: 1s}\n")).await;
    let started = tokio::time::Instant::now();
    let (status, _, _) = get(h.proxy(), "app.local", "/").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1900),
        "one readiness timeout, not two: {took:?}"
    );
    // Both the wait and the request's duration count from its arrival: the park is in them.
    let m = h.metrics().await;
    let bucket = |name: &str, le: &str, label: &str| {
        m.lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("le=\"{le}\"")) && l.contains(label))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    assert_eq!(
        bucket("interceptor_cold_start_duration_seconds_bucket", "0.5", r#"outcome="timeout""#).as_deref(),
        Some("0"),
        "{m}"
    );
    assert_eq!(
        bucket("interceptor_cold_start_duration_seconds_bucket", "2.5", r#"outcome="timeout""#).as_deref(),
        Some("1"),
        "{m}"
    );
    assert_eq!(
        bucket("interceptor_request_duration_seconds_bucket", "0.75", r#"code="504""#).as_deref(),
        Some("0"),
        "{m}"
    );
    h.stop().await;
}
