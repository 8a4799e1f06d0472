//! Admin endpoints, metric names, routes-file reloads, graceful shutdown, and the real binary's start-up
//! errors and signal handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use httpscale_testkit::process::Spawned;
use httpscale_testkit::*;
use tokio::time::Instant;

fn one_route(upstream: &str) -> String {
    format!("routes:\n  - name: app\n    hosts: [app.local]\n    upstream: '{upstream}'\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_answer_as_upstream() {
    let b = named_backend("app").await;
    let h = interceptor(&one_route(&b.authority())).await;
    let (status, headers, body) = get(h.admin(), "x", "/queue").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, r#"{"default/app":{"Concurrency":0,"RequestCount":0}}"#);
    assert_eq!(get(h.admin(), "x", "/livez").await.0, StatusCode::OK);
    let (status, _, body) = get(h.admin(), "x", "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
    assert_eq!(get(h.admin(), "x", "/nope").await.0, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_use_upstream_names_and_labels() {
    let b = named_backend("app").await;
    let h = interceptor(&one_route(&b.authority())).await;
    eventually(Duration::from_secs(5), "served", || async {
        get(h.proxy(), "app.local", "/").await.0 == StatusCode::OK
    })
    .await;
    let _ = get(h.proxy(), "unknown.local", "/").await;
    let m = h.metrics().await;
    for want in [
        r#"interceptor_request_count_total{code="200",method="GET",route_name="app",route_namespace="default"}"#,
        r#"interceptor_request_count_total{code="404",method="GET",route_name="",route_namespace=""} 1"#,
        r#"interceptor_request_duration_seconds_bucket{le="0.005",code="200",method="GET",route_name="app",route_namespace="default",cold_start="false"}"#,
        r#"interceptor_request_concurrency{route_name="app",route_namespace="default"} 0"#,
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_routes_file_is_reloaded_and_a_bad_edit_keeps_the_old_table() {
    let (a, b) = (named_backend("a").await, named_backend("b").await);
    let h = interceptor(&one_route(&a.authority())).await;
    eventually(Duration::from_secs(5), "a serves", || async { get(h.proxy(), "app.local", "/").await.2 == "a" }).await;
    let count_before = queue(h.admin()).await["default/app"]["RequestCount"].as_i64().unwrap();

    std::fs::write(
        &h.routes_file,
        format!(
            "{}  - name: new\n    hosts: [new.local]\n    upstream: '{}'\n",
            one_route(&a.authority()),
            b.authority()
        ),
    )
    .unwrap();
    eventually(Duration::from_secs(5), "new route served", || async {
        get(h.proxy(), "new.local", "/").await.2 == "b"
    })
    .await;
    let after = queue(h.admin()).await;
    assert!(after["default/app"]["RequestCount"].as_i64().unwrap() >= count_before, "counts survive a reload");

    std::fs::write(&h.routes_file, "routes:\n  - name: broken\n    upstream: not-an-address\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(h.proxy(), "new.local", "/").await.2, "b", "an invalid edit keeps the current routes");
    assert_eq!(get(h.admin(), "x", "/readyz").await.0, StatusCode::OK);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_streams_answers_held_requests_and_refuses_new_connections() {
    let cold = Reserved::new();
    let addr_cold = cold.addr();
    let b = backend(|s| {
        if s.uri.path() == "/stream" {
            Response::new(streaming_body(vec!["1", "2", "3", "4"], Duration::from_millis(300)))
        } else {
            Response::new(full("ok"))
        }
    })
    .await;
    let routes =
        format!("{}  - name: cold\n    hosts: [cold.local]\n    upstream: '{addr_cold}'\n", one_route(&b.authority()));
    let h = interceptor_with(&routes, |c| {
        c.shutdown_delay = Duration::from_millis(400);
        c.drain_timeout = Duration::from_secs(10);
    })
    .await;
    eventually(Duration::from_secs(5), "warm", || async { get(h.proxy(), "app.local", "/").await.0 == StatusCode::OK })
        .await;
    let proxy = h.proxy();
    let held = tokio::spawn(async move { get(proxy, "cold.local", "/").await });
    let stream = client().request(request(proxy, "app.local", "/stream").body(Full::default()).unwrap()).await.unwrap();
    eventually(Duration::from_secs(2), "cold request held", || async {
        concurrency(h.admin(), "default/cold").await == 1
    })
    .await;

    let started = Instant::now();
    h.shutdown.trigger();
    eventually(Duration::from_secs(1), "readyz 503", || async {
        get(h.admin(), "x", "/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // Still serving during the shutdown delay, telling HTTP/1 clients to go elsewhere.
    let (status, headers, _) = get(proxy, "app.local", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["connection"], "close");

    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a held request gets a clean answer: {body}");
    assert_eq!(headers["connection"], "close");
    assert!(started.elapsed() >= Duration::from_millis(400), "held requests are answered when the listener closes");

    let body = stream.into_body().collect().await.expect("the stream in flight finishes").to_bytes();
    assert_eq!(body.as_ref(), b"1234");
    tokio::time::timeout(Duration::from_secs(5), h.running.wait()).await.expect("stops after draining");
    assert!(tokio::net::TcpStream::connect(proxy).await.is_err(), "no new connections after the drain");
}

// ---- the real binary

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_interceptor"));
    c.env_remove("RUST_LOG").stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// `interceptor --config FILE` with OS-picked ports and JSON logs, started; waits for its start-up line.
fn started_binary(file: &std::path::Path, env: &[(&str, &str)]) -> (Spawned, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interceptor"));
    cmd.envs(env.iter().copied())
        .args(["--config", file.to_str().unwrap(), "--proxy-port", "0", "--admin-port", "0"])
        .args(["--zap-encoder", "json"]);
    let mut child = Spawned::start(&mut cmd);
    let line = child.wait_for("interceptor listening", Duration::from_secs(10));
    (child, line)
}

#[test]
fn an_invalid_routes_file_stops_start_up_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, "routes:\n  - name: a\n    upstream: 127.0.0.1:1\n    timeouts: {readiness: soon}\n")
        .unwrap();
    let out =
        binary().args(["--config", file.to_str().unwrap(), "--proxy-port", "0", "--admin-port", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(file.to_str().unwrap()) && err.contains("line 4") && err.contains("timeouts"), "{err}");
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let out = binary().env("KEDA_HTTP_DRAIN_TIMEOUT", "5x").args(["--config", "x.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KEDA_HTTP_DRAIN_TIMEOUT") && err.contains("5x"), "{err}");
    // Without a routes file the interceptor runs in Kubernetes mode; with no cluster to reach it says so.
    let out = binary().env("KUBECONFIG", "/nonexistent").env_remove("KUBERNETES_SERVICE_HOST").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot configure the Kubernetes client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, one_route("127.0.0.1:9")).unwrap();
    let (mut child, listening) =
        started_binary(&file, &[("KEDA_HTTP_SHUTDOWN_DELAY", "300ms"), ("OTEL_PROM_EXPORTER_PORT", "0")]);
    assert!(listening["proxy"].as_str().unwrap().starts_with("0.0.0.0:"), "{listening}");
    assert!(listening["admin"].as_str().unwrap().starts_with("127.0.0.1:"), "standalone: admin on loopback only");
    assert_eq!(child.signal_and_wait("TERM").code(), Some(0));
    let log = child.log();
    assert!(log.contains("draining") && log.contains("interceptor stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_stream_pushes_a_held_request_at_once() {
    let port = Reserved::new();
    let h = interceptor(&one_route(&port.addr().to_string())).await;
    let resp =
        client().request(request(h.admin(), "admin", "/queue/stream").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first: httpscale_core::queue::QueueUpdate = serde_json::from_slice(&first).unwrap();
    assert_eq!(first.queue["default/app"].concurrency, 0);

    let proxy = h.proxy();
    let sent = Instant::now();
    let _held = tokio::spawn(async move { get(proxy, "app.local", "/").await });
    // The next line carries the held request (how soon, against the heartbeat, is pinned on a paused clock in
    // the admin module's tests).
    let line = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("a line").unwrap().unwrap();
    let update: httpscale_core::queue::QueueUpdate = serde_json::from_slice(line.data_ref().unwrap()).unwrap();
    assert_eq!(update.queue["default/app"].concurrency, 1);
    eprintln!("queue stream: request sent -> line with it in {:?}", sent.elapsed());
    assert!(update.changed_us > 0);
    h.stop().await;
}

#[test]
fn request_logging_writes_one_line_per_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(named_backend("app"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, one_route(&backend.authority())).unwrap();
    let env = [
        ("KEDA_HTTP_LOG_REQUESTS", "true"),
        ("KEDA_HTTP_SHUTDOWN_DELAY", "0s"),
        ("OTEL_PROM_EXPORTER_ENABLED", "false"),
    ];
    let (mut child, listening) = started_binary(&file, &env);
    let proxy = listening["proxy"].as_str().unwrap().replace("0.0.0.0", "127.0.0.1");
    let proxy: std::net::SocketAddr = proxy.parse().unwrap();
    rt.block_on(async {
        eventually(Duration::from_secs(5), "served", || async {
            get(proxy, "app.local", "/hello?x=1").await.0 == StatusCode::OK
        })
        .await;
        assert_eq!(get(proxy, "nobody.local", "/").await.0, StatusCode::NOT_FOUND);
    });
    child.signal_and_wait("TERM");
    let requests: Vec<serde_json::Value> = child.lines().into_iter().filter(|v| v["message"] == "request").collect();
    let ok = requests.iter().find(|v| v["status"] == 200).expect("a line for the proxied request");
    assert_eq!(
        (ok["method"].as_str(), ok["route"].as_str(), ok["host"].as_str()),
        (Some("GET"), Some("default/app"), Some("app.local"))
    );
    assert!(ok["uri"].as_str().unwrap().ends_with("/hello?x=1"));
    assert!(requests.iter().any(|v| v["status"] == 404 && v["route"] == ""), "unmatched requests are logged too");
}

/// Regression: the admin listener's start-up errors named the proxy's address instead of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_admin_port_is_reported_with_the_admin_address() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, one_route("127.0.0.1:9")).unwrap();
    let mut config = httpscale_interceptor::Config::for_file(&file);
    config.admin_port = Some(admin.port());
    let shutdown = httpscale_core::Shutdown::new();
    let Err(e) = httpscale_interceptor::start(config.validate().unwrap(), shutdown).await else {
        panic!("started on a busy admin port");
    };
    assert!(e.to_string().starts_with(&format!("cannot listen on {admin} (admin)")), "{e}");
}

/// The soft open-file limit is raised to the hard one at start, as Go's runtime does.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, one_route("127.0.0.1:9")).unwrap();
    let bin = env!("CARGO_BIN_EXE_interceptor");
    let script = format!(
        "ulimit -S -n 256 && exec {bin} --config {} --proxy-port 0 --admin-port 0 --zap-encoder json",
        file.display()
    );
    let mut child = Spawned::start(Command::new("sh").args(["-c", &script]).env("OTEL_PROM_EXPORTER_PORT", "0"));
    child.wait_for("interceptor listening", Duration::from_secs(10));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
    let numbers: Vec<&str> = line.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(numbers[0], numbers[1], "soft raised to hard: {line}");
    assert_ne!(numbers[0], "256");
    child.signal_and_wait("TERM");
}
