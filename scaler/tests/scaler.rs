//! The real interceptor and the real scaler on loopback, driven the way KEDA drives the scaler: activation
//! pushed within milliseconds, metrics matching what was sent, rate windows, hung and lost interceptors,
//! errors, health, and a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use httpscale_scaler::proto::externalscaler::{GetMetricSpecResponse, GetMetricsRequest, MetricSpec, ScaledObjectRef};
use httpscale_testkit::scaler::{metric_values, scaler, send_held, so_ref};
use httpscale_testkit::*;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn route(name: &str, upstream: std::net::SocketAddr, extra: &str) -> String {
    format!("  - name: {name}\n    hosts: [{name}.local]\n    upstream: '{upstream}'\n{extra}")
}

fn httpso(name: &str) -> ScaledObjectRef {
    so_ref(name, "default", &[("httpScaledObject", name), ("scalerAddress", "unused:9090")])
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_reaches_an_open_stream_within_milliseconds() {
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    // Polling every 10 s and a 10 s stream interval: only the push path can be this fast.
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| {
        c.tick = Duration::from_secs(10);
        c.stream_interval_ms = 10_000;
    })
    .await;
    eventually(Duration::from_secs(5), "push subscription up", || async {
        s.running.state.metrics.push_updates.get() > 0
    })
    .await;
    let mut client = s.client().await;
    let mut stream = client.stream_is_active(httpso("app")).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(!first.result, "idle at first");

    let sent = Instant::now();
    let _held = send_held(i.proxy(), "app.local");
    let msg =
        tokio::time::timeout(Duration::from_secs(2), stream.message()).await.expect("true arrives").unwrap().unwrap();
    let took = sent.elapsed();
    assert!(msg.result);
    // Within 2 s, against a 10 s poll tick and a 10 s stream interval: only the push path delivers this.
    eprintln!("activation: request sent -> StreamIsActive true in {took:?}");
    let m = s.metrics().await;
    assert!(m.contains("scaler_activation_latency_seconds_count 1"), "{m}");
    s.stop().await;
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_match_what_was_sent_for_every_trigger_kind() {
    let dead = Reserved::new();
    let routes = format!(
        "routes:\n{}{}",
        route("app", dead.addr(), ""),
        route(
            "ir",
            dead.addr(),
            "    scalingMetric: {concurrency: {targetValue: 5}, requestRate: {targetValue: 10}}\n"
        )
    );
    let i = interceptor(&routes).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| c.tick = Duration::from_millis(100)).await;
    let mut client = s.client().await;
    let _held: Vec<_> = (0..3).map(|_| send_held(i.proxy(), "app.local")).collect();
    let _held_ir = send_held(i.proxy(), "ir.local");
    eventually(Duration::from_secs(3), "3 held on app", || {
        let mut c = client.clone();
        async move { metric_values(&mut c, &httpso("app")).await[0].metric_value_float == 3.0 }
    })
    .await;

    let spec = client.get_metric_spec(httpso("app")).await.unwrap().into_inner().metric_specs;
    assert_eq!(spec.len(), 1);
    assert_eq!(spec[0].metric_name, "http-default_002Fapp");
    #[allow(deprecated)]
    let (target_int, value_int) =
        (spec[0].target_size, metric_values(&mut client, &httpso("app")).await[0].metric_value);
    assert_eq!((spec[0].target_size_float, target_int, value_int), (100.0, 100, 3), "float and int fields both filled");
    assert!(client.is_active(httpso("app")).await.unwrap().into_inner().result);

    let ir = so_ref("ir-so", "default", &[("interceptorRoute", "ir")]);
    let spec = client.get_metric_spec(ir.clone()).await.unwrap().into_inner().metric_specs;
    let names: Vec<_> = spec.iter().map(|m| (m.metric_name.as_str(), m.target_size_float)).collect();
    assert_eq!(names, vec![("http_ir_concurrency", 5.0), ("http_ir_rate", 10.0)]);
    let one = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(ir.clone()),
            metric_name: "http_ir_concurrency".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .metric_values;
    assert_eq!((one.len(), one[0].metric_value_float), (1, 1.0), "filtered by metric name");

    let fleet = so_ref("keda-add-ons-http-interceptor", "keda", &[("interceptorTargetPendingRequests", "200")]);
    let spec = client.get_metric_spec(fleet.clone()).await.unwrap().into_inner().metric_specs;
    assert_eq!(
        (spec[0].metric_name.as_str(), spec[0].target_size_float),
        ("http-keda_002Fkeda-add-ons-http-interceptor", 200.0)
    );
    assert_eq!(metric_values(&mut client, &fleet).await[0].metric_value_float, 4.0, "all routes, all interceptors");
    s.stop().await;
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_rate_rises_with_traffic_and_falls_to_zero_a_window_after_it_stops() {
    let b = named_backend("ok").await;
    let i = interceptor(&format!(
        "routes:\n{}",
        route("rate", b.addr, "    scalingMetric: {requestRate: {targetValue: 10, window: 2s, granularity: 1s}}\n")
    ))
    .await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| c.tick = Duration::from_millis(100)).await;
    let mut client = s.client().await;
    let r = so_ref("rate", "default", &[("interceptorRoute", "rate")]);
    tokio::time::sleep(Duration::from_millis(300)).await; // the scaler has seen the interceptor once
    for _ in 0..20 {
        assert_eq!(get(i.proxy(), "rate.local", "/").await.0, http::StatusCode::OK);
    }
    eventually(Duration::from_secs(3), "rate above zero", || {
        let (mut c, r) = (client.clone(), r.clone());
        async move { metric_values(&mut c, &r).await[0].metric_value_float > 0.0 }
    })
    .await;
    assert!(client.is_active(r.clone()).await.unwrap().into_inner().result, "a rate keeps the route active");
    // When exactly it reaches zero (one window after the traffic) is pinned by the pure rate-window tests.
    eventually(Duration::from_secs(6), "rate back to zero", || {
        let (mut c, r) = (client.clone(), r.clone());
        async move { metric_values(&mut c, &r).await[0].metric_value_float == 0.0 }
    })
    .await;
    assert!(!client.is_active(r).await.unwrap().into_inner().result);
    s.stop().await;
    i.stop().await;
}

/// A server that accepts connections and never answers (upstream #1730).
async fn hung_interceptor() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_interceptor_does_not_stall_the_others() {
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    let hung = hung_interceptor().await;
    let s = scaler(&i.routes_file, vec![hung, i.admin().to_string()], |c| {
        c.tick = Duration::from_millis(200);
        c.fetch_timeout = Some(Duration::from_millis(300));
        c.push = false; // the pull path alone must cope
    })
    .await;
    let client = s.client().await;
    let _held = send_held(i.proxy(), "app.local");
    // Stalled, the count would never come: each fetch is bounded on its own (upstream #1730).
    eventually(Duration::from_secs(2), "count from the healthy interceptor", || {
        let mut c = client.clone();
        async move { metric_values(&mut c, &httpso("app")).await[0].metric_value_float == 1.0 }
    })
    .await;
    eventually(Duration::from_secs(2), "errors counted", || async { s.running.state.metrics.fetch_errors.get() >= 1 })
        .await;
    assert!(s.metrics().await.contains("scaler_pinger_fetch_errors_total"));
    let mut health = HealthClient::new(s.channel().await);
    let ready = health.check(HealthCheckRequest { service: "readiness".into() }).await.unwrap().into_inner();
    assert_eq!(ready.status, ServingStatus::Serving as i32, "one reachable interceptor is enough");
    s.stop().await;
    i.stop().await;
}

/// An upstream-style interceptor: `/queue` only (no push stream), with fixed counts; can be taken down.
async fn fixed_interceptor(body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
                    let mut r = Response::new(Full::new(Bytes::from_static(if req.uri().path() == "/queue" {
                        body.as_bytes()
                    } else {
                        b"404 page not found\n"
                    })));
                    if req.uri().path() != "/queue" {
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    Ok::<_, Infallible>(r)
                });
                // One request per connection, so taking the listener down takes the interceptor down.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr.to_string(), task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_interceptor_keeps_its_counts_for_a_while_then_health_says_why() {
    let (addr, task) = fixed_interceptor(r#"{"default/app":{"Concurrency":2,"RequestCount":5}}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, "routes:\n  - {name: app, hosts: [app.local], upstream: '127.0.0.1:9'}\n").unwrap();
    let s = scaler(&file, vec![addr], |c| {
        c.tick = Duration::from_millis(100);
        c.fetch_timeout = Some(Duration::from_millis(200));
        c.stale_after = Duration::from_secs(3);
        c.unreachable_grace = Duration::from_millis(1000);
    })
    .await;
    let mut client = s.client().await;
    eventually(Duration::from_secs(2), "counts read from an upstream-style interceptor", || {
        let mut c = client.clone();
        async move { metric_values(&mut c, &httpso("app")).await[0].metric_value_float == 2.0 }
    })
    .await;
    let lost = Instant::now();
    task.abort();
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(metric_values(&mut client, &httpso("app")).await[0].metric_value_float, 2.0, "kept while not stale");
    eventually(Duration::from_secs(8), "dropped once stale", || {
        let mut c = client.clone();
        async move { metric_values(&mut c, &httpso("app")).await[0].metric_value_float == 0.0 }
    })
    .await;
    // Counted from the last successful fetch, which came before `lost`.
    assert!(lost.elapsed() >= Duration::from_secs(2), "kept for about the staleness bound: {:?}", lost.elapsed());
    let mut health = HealthClient::new(s.channel().await);
    eventually(Duration::from_secs(3), "readiness NOT_SERVING", || {
        let mut h = health.clone();
        async move {
            h.check(HealthCheckRequest { service: "readiness".into() }).await.unwrap().into_inner().status
                == ServingStatus::NotServing as i32
        }
    })
    .await;
    let live = health.check(HealthCheckRequest { service: "liveness".into() }).await.unwrap().into_inner();
    assert_eq!(live.status, ServingStatus::Serving as i32, "liveness stays up: a restart would not help");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_references_and_unsupported_calls_answer_precise_statuses() {
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |_| {}).await;
    let mut client = s.client().await;
    let e = client.is_active(httpso("nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "HTTPScaledObject default/nope not found");
    let e = client.get_metric_spec(so_ref("x", "default", &[("interceptorRoute", "gone")])).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "InterceptorRoute default/gone not found"));
    let e = client.stream_is_active(httpso("nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(so_ref("x", "y", &[])), metric_name: String::new() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("unable to get HTTPScaledObject reference"), "{}", e.message());
    let e = client.is_active(so_ref("x", "y", &[("interceptorTargetPendingRequests", "many")])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client.stream_metric_spec(httpso("nope")).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "HTTPScaledObject default/nope not found"));
    let mut health = HealthClient::new(s.channel().await);
    for service in ["liveness", "readiness"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    // The stream ends cleanly on shutdown.
    let mut stream = client.stream_is_active(httpso("app")).await.unwrap().into_inner();
    stream.message().await.unwrap().unwrap();
    s.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(end, Ok(None)), "clean end of stream, got {end:?}");
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scaler_recovers_within_one_tick() {
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    let _held = send_held(i.proxy(), "app.local");
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| c.tick = Duration::from_millis(500)).await;
    s.stop().await;
    // A tick far longer than the wait below: only the fetch a restarted scaler makes at once can deliver.
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| {
        c.tick = Duration::from_secs(3600);
        c.push = false;
    })
    .await;
    let client = s.client().await;
    eventually(Duration::from_secs(5), "count right after the restart", || {
        let mut c = client.clone();
        async move { metric_values(&mut c, &httpso("app")).await[0].metric_value_float == 1.0 }
    })
    .await;
    s.stop().await;
    i.stop().await;
}

#[test]
fn the_binary_refuses_bad_settings_naming_them() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scaler"))
        .env("KEDA_HTTP_SCALER_STREAM_INTERVAL_MS", "fast")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEDA_HTTP_SCALER_STREAM_INTERVAL_MS"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scaler")).args(["--config", "r.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTPSCALE_INTERCEPTORS"));
}

/// Regression: a 1 MB route name was echoed back as a 1 MB error message; a connection that never sent its
/// HTTP/2 preface stayed open forever; streams per connection were unlimited.
#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_server_bounds_messages_echoes_and_silent_connections() {
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| {
        c.listen.header_read_timeout = Duration::from_millis(300);
        c.grpc_max_concurrent_streams = 4;
    })
    .await;
    let mut client = s.client().await;
    let huge = "x".repeat(1 << 20);
    let e = client.is_active(httpso(&huge)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", &e.message()[..100.min(e.message().len())]);
    let long = "y".repeat(10_000);
    let e = client.is_active(httpso(&long)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().len() < 200, "a short prefix of the name, not all of it: {} bytes", e.message().len());

    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(client.stream_is_active(httpso("app")).await.unwrap().into_inner());
    }
    let fifth = tokio::time::timeout(Duration::from_millis(500), client.clone().stream_is_active(httpso("app"))).await;
    assert!(fifth.is_err(), "the fifth concurrent stream waits for a place");
    drop(streams);
    // Each limit counted (the stream bound once per stream that found its connection full).
    let m = s.metrics().await;
    assert!(m.contains(r#"httpscale_connection_limits_total{listener="grpc",limit="message_size"} 1"#), "{m}");
    assert!(!m.contains(r#"httpscale_connection_limits_total{listener="grpc",limit="max_streams"} 0"#), "{m}");

    let mut silent = tokio::net::TcpStream::connect(s.running.grpc_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut silent, &mut buf));
    assert!(matches!(closed.await, Ok(Ok(0)) | Ok(Err(_))), "closed within the header timeout");
    s.stop().await;
    i.stop().await;
}

/// The gRPC listener's other limits on real sockets: metadata over `HTTPSCALE_GRPC_MAX_METADATA_BYTES` is
/// refused, an HTTP/2 connection with no stream is closed after the idle timeout, and connections past
/// `HTTPSCALE_GRPC_MAX_CONNECTIONS` get `503`.
#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_listener_bounds_metadata_idle_connections_and_connection_count() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dead = Reserved::new();
    let i = interceptor(&format!("routes:\n{}", route("app", dead.addr(), ""))).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| {
        c.listen.idle_timeout = Duration::from_millis(600);
        c.grpc_max_metadata_bytes = 8 * 1024;
        c.grpc_max_connections = 3;
    })
    .await;
    let mut client = s.client().await;
    let mut big = tonic::Request::new(httpso("app"));
    big.metadata_mut().insert("x-big", "v".repeat(16 * 1024).parse().unwrap());
    let e = client.is_active(big).await.expect_err("metadata over the bound is refused");
    assert!(e.message().contains("431"), "the server's HTTP/2 layer answers 431: {e:?}");
    assert!(!client.is_active(httpso("app")).await.unwrap().into_inner().result, "the next call is served");
    drop(client);

    // Preface and settings, then no stream: closed after the idle timeout, not before.
    let mut idle = tokio::net::TcpStream::connect(s.running.grpc_addr).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async { while idle.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("closed when idle");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "{took:?}");

    // The metrics scrape is another listener: three held gRPC connections fill this one's budget.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(s.running.grpc_addr).await.unwrap());
    }
    eventually(Duration::from_secs(5), "3 gRPC connections accepted", || async {
        s.metrics().await.contains("httpscale_open_connections{listener=\"grpc\"} 3\n")
    })
    .await;
    let resp = raw(s.running.grpc_addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 503") && resp.contains("too many connections (limit 3)"), "{resp}");
    let m = s.metrics().await;
    assert!(m.contains(r#"httpscale_connection_limits_total{listener="grpc",limit="max_connections"} 1"#), "{m}");
    assert!(m.contains(r#"httpscale_connection_limits_total{listener="grpc",limit="idle_timeout"} 1"#), "{m}");
    drop(held);
    s.stop().await;
    i.stop().await;
}

/// Measures the scaler's memory per open `StreamIsActive` stream (the figure in docs/operations.md):
/// `cargo test -p httpscale-scaler --test scaler memory_per_stream -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn memory_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, format!("routes:\n{}", route("app", "127.0.0.1:9".parse().unwrap(), ""))).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scaler"));
    cmd.args(["--config", file.to_str().unwrap(), "--interceptors", "127.0.0.1:9", "--port", "0"]).args([
        "--prometheus-enabled",
        "false",
        "--zap-encoder",
        "json",
        "--stream-interval-ms",
        "600000",
    ]);
    let mut scaler = httpscale_testkit::process::Spawned::start(&mut cmd);
    let addr = scaler.wait_for("scaler listening", Duration::from_secs(10))["grpc"]
        .as_str()
        .unwrap()
        .replace("0.0.0.0", "127.0.0.1");
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client =
            httpscale_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient::new(channel);
        let _warm = client.stream_is_active(httpso("app")).await.unwrap().into_inner();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss(scaler.pid());
        let n = 10_000;
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            streams.push(client.stream_is_active(httpso("app")).await.unwrap().into_inner());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss(scaler.pid());
        eprintln!(
            "{n} StreamIsActive streams on one connection: RSS {before} KiB -> {after} KiB, {:.1} KiB per stream",
            (after - before) as f64 / n as f64
        );
    });
    scaler.signal_and_wait("TERM");
}

async fn next(stream: &mut tonic::Streaming<GetMetricSpecResponse>) -> Option<GetMetricSpecResponse> {
    tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("a message in time").unwrap()
}

/// KEDA 2.21's StreamMetricSpec, called with the tonic client generated from KEDA's proto: the current specs at
/// once, nothing more while only the counts move, the new specs as soon as a target changes (here the routes
/// file; in Kubernetes mode an InterceptorRoute, tests/kubernetes.rs), GetMetricSpec always agreeing, and the
/// stream ending with NOT_FOUND when the route goes away.
#[tokio::test(flavor = "multi_thread")]
async fn stream_metric_spec_sends_the_specs_at_once_then_every_change() {
    let dead = Reserved::new();
    let ir = |target: u32| {
        route("ir", dead.addr(), &format!("    scalingMetric: {{concurrency: {{targetValue: {target}}}}}\n"))
    };
    let i = interceptor(&format!("routes:\n{}", ir(5))).await;
    let s = scaler(&i.routes_file, vec![i.admin().to_string()], |c| c.tick = Duration::from_millis(100)).await;
    let mut client = s.client().await;
    let r = so_ref("ir-so", "default", &[("interceptorRoute", "ir")]);
    let targets =
        |specs: Vec<MetricSpec>| specs.into_iter().map(|m| (m.metric_name, m.target_size_float)).collect::<Vec<_>>();
    let mut stream = client.stream_metric_spec(r.clone()).await.unwrap().into_inner();
    let first = next(&mut stream).await.unwrap();
    assert_eq!(targets(first.metric_specs.clone()), [("http_ir_concurrency".to_string(), 5.0)]);
    assert_eq!(client.get_metric_spec(r.clone()).await.unwrap().into_inner(), first);

    let _held = send_held(i.proxy(), "ir.local");
    eventually(Duration::from_secs(3), "the held request counted", || {
        let (mut c, r) = (client.clone(), r.clone());
        async move { metric_values(&mut c, &r).await[0].metric_value_float == 1.0 }
    })
    .await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(quiet.is_err(), "counts are not specs: nothing is sent while only they change, got {quiet:?}");

    std::fs::write(&i.routes_file, format!("routes:\n{}", ir(7))).unwrap();
    let changed = next(&mut stream).await.unwrap();
    assert_eq!(targets(changed.metric_specs.clone()), [("http_ir_concurrency".to_string(), 7.0)]);
    assert_eq!(client.get_metric_spec(r.clone()).await.unwrap().into_inner(), changed, "GetMetricSpec agrees");

    std::fs::write(&i.routes_file, "routes: []\n").unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap_err();
    assert_eq!((gone.code(), gone.message()), (Code::NotFound, "InterceptorRoute default/ir not found"));
    s.stop().await;
    i.stop().await;
}
