//! Standalone scale-to-zero with real child programs: started once on the first request, stopped when idle
//! and never during a stream, restarted on demand, failures reported with back-off, and no orphans.
//!
//! The supervisor's timing (idle period, back-off, start timeout) is pinned on a paused clock in
//! `src/standalone/supervisor/tests.rs`; here the programs are real and every check is on what they did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use httpscale_testkit::process::Spawned;
use httpscale_testkit::*;
use tokio::time::Instant;

fn fake_ollama() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/fake_ollama.py").to_string_lossy().into_owned()
}

fn yaml_list(items: &[&str]) -> String {
    // JSON strings are valid YAML flow scalars, with every quote escaped.
    format!("[{}]", items.iter().map(|i| serde_json::to_string(i).unwrap()).collect::<Vec<_>>().join(", "))
}

/// A route whose upstream is a program started on demand.
fn process_route(port: u16, command: &[&str], process_extra: &str) -> String {
    format!(
        "routes:\n  - name: llm\n    hosts: [llm.local]\n    upstream: 127.0.0.1:{port}\n    process:\n      command: {}\n{process_extra}",
        yaml_list(command)
    )
}

async fn start(routes: &str) -> Harness {
    interceptor_with(routes, |c| c.process_launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_interceptor")))).await
}

async fn metric(h: &Harness, name: &str) -> f64 {
    let m = h.metrics().await;
    m.lines()
        .find(|l| l.starts_with(&format!("{name}{{route_name=\"llm\",route_namespace=\"default\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_once_for_many_first_requests_stops_when_idle_and_restarts() {
    // Reserved for the program, which takes it over (Python's servers bind with SO_REUSEADDR).
    let reserved = Reserved::new();
    let port = reserved.port();
    let p = port.to_string();
    let routes = process_route(
        port,
        &["python3", &fake_ollama(), "--port", &p],
        "      readiness: {httpGet: /api/version}\n      scaledownPeriod: 1s\n      stopTimeout: 5s\n",
    );
    let h = start(&routes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!port_open(port).await, "nothing runs before the first request");

    let proxy = h.proxy();
    let tasks: Vec<_> =
        (0..20).map(|_| tokio::spawn(async move { get(proxy, "llm.local", "/api/version").await })).collect();
    for t in tasks {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), t).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("0.0.0-fake"));
    }
    assert_eq!(metric(&h, "httpscale_process_starts_total").await, 1.0, "20 concurrent first requests, one start");
    assert_eq!(metric(&h, "httpscale_process_up").await, 1.0);
    assert!(
        h.metrics()
            .await
            .contains("httpscale_process_start_seconds_count{route_name=\"llm\",route_namespace=\"default\"} 1")
    );

    let idle_since = Instant::now();
    eventually(Duration::from_secs(5), "stopped when idle", || async { !port_open(port).await }).await;
    // Idleness is checked every quarter of the period, so the stop comes 0.75 to 1.25 periods after the last
    // request (exactly: the supervisor's paused-clock tests).
    assert!(idle_since.elapsed() >= Duration::from_millis(500), "not stopped long before scaledownPeriod");
    assert_eq!(metric(&h, "httpscale_process_up").await, 0.0);

    let (status, headers, _) = get(h.proxy(), "llm.local", "/api/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-keda-http-cold-start"], "true");
    assert_eq!(metric(&h, "httpscale_process_starts_total").await, 2.0, "restarted on the next request");
    h.stop().await;
    assert!(!port_open(port).await, "stopped with the interceptor");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_stream_is_never_cut_by_the_idle_stop() {
    let reserved = Reserved::new();
    let port = reserved.port();
    let p = port.to_string();
    let routes = process_route(
        port,
        &["python3", &fake_ollama(), "--port", &p, "--delay", "0.4"],
        "      scaledownPeriod: 300ms\n      stopTimeout: 5s\n",
    );
    let h = start(&routes).await;
    let req = Request::post(format!("http://{}/api/generate", h.proxy()))
        .header("host", "llm.local")
        .body(Full::new(Bytes::from_static(br#"{"model":"fake","prompt":"hi"}"#)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let started = Instant::now();
    let body = resp.into_body().collect().await.expect("the stream completes").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(started.elapsed() >= Duration::from_millis(1200), "the stream outlived several scaledownPeriods");
    assert!(text.lines().last().unwrap().contains("\"done\": true"), "{text}");
    eventually(Duration::from_secs(5), "stopped after the stream", || async { !port_open(port).await }).await;
    assert_eq!(metric(&h, "httpscale_process_starts_total").await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_crashes_at_start_gives_502_with_the_reason_and_backs_off() {
    let reserved = Reserved::new();
    let crash = ["python3", "-c", "import sys; print('DB_PASSWORD=hunter2', flush=True); sys.exit(3)"];
    let routes = process_route(reserved.port(), &crash, "      startTimeout: 10s\n");
    let h = start(&routes).await;
    let (status, _, body) = get(h.proxy(), "llm.local", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("default/llm") && body.contains("exit status: 3"), "{body}");
    // Regression: the program's last output lines (here a secret it printed) were in the answer to anyone.
    assert!(!body.contains("hunter2"), "the output stays in the log: {body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");

    let (status, _, body) = get(h.proxy(), "llm.local", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("next start attempt in 1s"), "refused by the back-off, not by a new start: {body}");
    assert_eq!(metric(&h, "httpscale_process_starts_total").await, 1.0, "no restart during the back-off");

    eventually(Duration::from_secs(10), "the next request after the back-off tries again", || async {
        assert_eq!(get(h.proxy(), "llm.local", "/").await.0, StatusCode::BAD_GATEWAY);
        metric(&h, "httpscale_process_starts_total").await == 2.0
    })
    .await;
    assert_eq!(metric(&h, "httpscale_process_starts_total").await, 2.0, "one start per back-off");
    assert_eq!(concurrency(h.admin(), "default/llm").await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_that_opts_in_shows_the_programs_output_in_the_answer() {
    let reserved = Reserved::new();
    let crash = ["python3", "-c", "import sys; print('boom: no GPU found', flush=True); sys.exit(3)"];
    let routes = process_route(reserved.port(), &crash, "      startTimeout: 10s\n      exposeOutput: true\n");
    let h = start(&routes).await;
    let (status, _, body) = get(h.proxy(), "llm.local", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("exit status: 3") && body.contains("(last output: boom: no GPU found)"), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_not_ready_within_start_timeout_gives_504_and_is_stopped() {
    let reserved = Reserved::new();
    let routes = process_route(reserved.port(), &["sleep", "30"], "      startTimeout: 400ms\n      stopTimeout: 1s\n");
    let h = start(&routes).await;
    let (status, _, body) = get(h.proxy(), "llm.local", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("not ready within 400ms"), "{body}");
    assert_eq!(metric(&h, "httpscale_process_up").await, 0.0);
    h.stop().await;
}

// ---- no orphans, with the real binary

fn pid_alive(pid: u32) -> bool {
    // A zombie waiting for a reaper is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Starts the interceptor binary with a program route, wakes the program, and returns both (and the port
/// reservation, kept until the test ends).
fn running_binary_with_program(dir: &tempfile::TempDir) -> (Spawned, u32, Reserved) {
    let reserved = Reserved::new();
    let port = reserved.port();
    let file = dir.path().join("routes.yaml");
    std::fs::write(
        &file,
        process_route(port, &["python3", &fake_ollama(), "--port", &port.to_string()], "      scaledownPeriod: 1h\n"),
    )
    .unwrap();
    let mut child = Spawned::start(
        Command::new(env!("CARGO_BIN_EXE_interceptor"))
            .env("KEDA_HTTP_SHUTDOWN_DELAY", "0s")
            .env("OTEL_PROM_EXPORTER_ENABLED", "false")
            .args(["--config", file.to_str().unwrap(), "--proxy-port", "0", "--admin-port", "0"])
            .args(["--zap-encoder", "json"]),
    );
    let listening = child.wait_for("interceptor listening", Duration::from_secs(20));
    let proxy = listening["proxy"].as_str().unwrap().to_owned();
    // Wake the program.
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(proxy).unwrap();
        s.write_all(b"GET /api/version HTTP/1.1\r\nHost: llm.local\r\n\r\n").unwrap();
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
    });
    let pid = child.wait_for("program starting", Duration::from_secs(20))["pid"].as_u64().unwrap() as u32;
    let until = std::time::Duration::from_secs(10);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < until, "program never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, pid, reserved)
}

fn wait_dead(pid: u32, what: &str) {
    let started = Instant::now();
    while pid_alive(pid) {
        assert!(started.elapsed() < Duration::from_secs(10), "program {pid} still alive after {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_program_is_left_behind_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, pid, _port) = running_binary_with_program(&dir);
    assert!(pid_alive(pid));
    assert_eq!(child.signal_and_wait("TERM").code(), Some(0));
    wait_dead(pid, "the interceptor's SIGTERM");
}

#[test]
fn no_program_is_left_behind_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, pid, _port) = running_binary_with_program(&dir);
    assert!(pid_alive(pid));
    child.signal_and_wait("KILL"); // no chance to clean up
    wait_dead(pid, "the interceptor was SIGKILLed");
}

/// The README's first command: the example file as shipped (only its ports moved to free ones).
#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_example_starts_its_web_server_on_demand() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let reserved = Reserved::new();
    let port = reserved.port();
    let text = std::fs::read_to_string(repo.join("examples/standalone.yaml"))
        .unwrap()
        .replace("8000", &port.to_string())
        .replace("examples/www", repo.join("examples/www").to_str().unwrap());
    let h = start(&text).await;
    let (status, headers, body) = get(h.proxy(), "demo.local", "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-keda-http-cold-start"], "true");
    assert!(body.contains("started on demand"), "{body}");
    h.stop().await;
    assert!(!port_open(port).await);
}

#[test]
fn the_ollama_example_is_valid() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("examples/ollama.yaml")).unwrap();
    let file = httpscale_core::standalone::parse(&text).unwrap();
    assert_eq!(file.routes[0].process.as_ref().unwrap().command, vec!["ollama", "serve"]);
}
