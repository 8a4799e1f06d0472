//! LLM-native routing with the official OpenAI and Ollama Python clients and real programs
//! (`examples/fake_llm.py`, started on demand): one host, a route per model, model lists answered while
//! everything is stopped, 413 over the body bound, a swap in an exclusive group that never drops a stream,
//! idle stops per model, the admin port's `/programs`, the SSE keep-alive that outlasts a client's read
//! timeout and its rules (an `error` event the client raises when the model fails to start or answers 500;
//! never for Ollama's NDJSON or non-streaming requests), a failing program's output kept off the proxy port,
//! and the default 4 MiB body bound. Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use httpscale_testkit::process::peers_python;
use httpscale_testkit::*;
use serde_json::Value;
use tokio::time::Instant;

fn fake_llm() -> String {
    repo().join("examples/fake_llm.py").to_string_lossy().into_owned()
}

/// A route `name` on `models.local` for `models`, whose program is `fake_llm.py --name <name>` with `args`,
/// on the reserved `port`; `route_extra` and `process_extra` are more YAML lines.
fn model_route(name: &str, models: &[&str], port: u16, args: &str, route_extra: &str, process_extra: &str) -> String {
    let models = models.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "  - name: {name}\n    hosts: [models.local]\n    models: [{models}]\n    upstream: 127.0.0.1:{port}\n{route_extra}    process:\n      command: [python3, {:?}, --port, \"{port}\", --name, {name}{args}]\n      readiness: {{httpGet: /health}}\n{process_extra}",
        fake_llm()
    )
}

/// `llama` (`llama3:8b`) and `qwen` (`qwen2.5:7b`) on `models.local`, with more `process` lines for each.
fn two_models(r1: &Reserved, r2: &Reserved, llama_process: &str, qwen_process: &str) -> String {
    let llama = model_route("llama", &["llama3:8b"], r1.port(), "", "", llama_process);
    format!("routes:\n{llama}{}", model_route("qwen", &["qwen2.5:7b"], r2.port(), "", "", qwen_process))
}

async fn start(routes: &str, tweak: impl FnOnce(&mut httpscale_interceptor::Config)) -> Harness {
    interceptor_with(routes, |c| {
        c.process_launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_interceptor")));
        tweak(c);
    })
    .await
}

/// Runs `tests/peers/llm_client.py` through the proxy; its JSON lines.
async fn llm_client(proxy: SocketAddr, timeout: f64, args: &[&str]) -> Vec<Value> {
    let out = tokio::process::Command::new(peers_python())
        .arg(repo().join("tests/peers/llm_client.py"))
        .args(["--url", &format!("http://{proxy}"), "--host-header", "models.local", "--timeout", &timeout.to_string()])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn text(lines: &[Value]) -> String {
    lines.iter().filter(|l| l["kind"] == "chunk").map(|l| l["text"].as_str().unwrap()).collect()
}

fn error(lines: &[Value]) -> Option<&Value> {
    lines.iter().find(|l| l["kind"] == "error")
}

async fn admin(h: &Harness, method: &str, path: &str) -> (StatusCode, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", h.admin()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(req).await;
    (status, body)
}

/// The admin port's view of the route `name`'s program.
async fn program(h: &Harness, name: &str) -> Value {
    let (_, body) = admin(h, "GET", "/programs").await;
    let all: Value = serde_json::from_str(&body).unwrap();
    all["programs"].as_array().unwrap().iter().find(|p| p["route"] == format!("default/{name}")).unwrap().clone()
}

async fn state(h: &Harness, name: &str) -> String {
    program(h, name).await["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_reach_each_model_through_one_host_and_list_them_while_stopped() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let routes = format!(
        "routes:\n{}{}",
        model_route("llama", &["llama3:8b", "llama3*"], r1.port(), "", "", ""),
        model_route("qwen", &["qwen2.5:7b"], r2.port(), "", "", "")
    );
    let h = start(&routes, |_| {}).await;
    let listed = llm_client(h.proxy(), 30.0, &["openai-models"]).await;
    assert_eq!(listed[0]["ids"], serde_json::json!(["llama3:8b", "qwen2.5:7b"]), "exact names, while nothing runs");
    let listed = llm_client(h.proxy(), 30.0, &["ollama-list"]).await;
    assert_eq!(listed[0]["ids"], serde_json::json!(["llama3:8b", "qwen2.5:7b"]));
    assert_eq!((state(&h, "llama").await, state(&h, "qwen").await), ("stopped".into(), "stopped".into()));

    let llama = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3.1:70b"]).await;
    assert!(text(&llama).starts_with("[llama@"), "a prefix pattern: {llama:?}");
    let qwen = llm_client(h.proxy(), 30.0, &["ollama-chat", "qwen2.5:7b"]).await;
    assert!(text(&qwen).starts_with("[qwen@") && qwen.len() > 3, "streamed by the other program: {qwen:?}");
    let unknown = llm_client(h.proxy(), 30.0, &["openai-chat", "mistral"]).await;
    let e = error(&unknown).unwrap();
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("NotFoundError"), Some(404)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("mistral"), "{e}");

    let q = queue(h.admin()).await;
    assert_eq!(
        (q["default/llama"]["RequestCount"].as_i64(), q["default/qwen"]["RequestCount"].as_i64()),
        (Some(1), Some(1))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_bound_is_refused_with_413_and_never_starts_the_model() {
    let r = Reserved::new();
    let routes = format!("routes:\n{}", model_route("llama", &["llama3:8b"], r.port(), "", "", ""));
    let h = start(&routes, |c| c.model_body_limit = 64 * 1024).await;
    let big = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b", "--prompt-bytes", "100000"]).await;
    let e = error(&big).unwrap();
    assert_eq!(e["status"].as_u64(), Some(413), "{e}");
    assert!(e["message"].as_str().unwrap().contains("65536 bytes"), "says why: {e}");
    let small = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b", "--prompt-bytes", "60000"]).await;
    assert!(text(&small).starts_with("[llama@"), "under the bound: {small:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exclusive_group_swaps_models_without_dropping_the_running_stream() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let slow = ", --tokens, \"8\", --token-delay, \"0.3\"";
    let routes = format!(
        "groups:\n  gpu: {{exclusive: true, drainTimeout: 30s}}\nroutes:\n{}{}",
        model_route("llama", &["llama3:8b"], r1.port(), slow, "", "      group: gpu\n"),
        model_route("qwen", &["qwen2.5:7b"], r2.port(), "", "", "      group: gpu\n")
    );
    let h = start(&routes, |_| {}).await;
    let proxy = h.proxy();
    let stream = tokio::spawn(async move { llm_client(proxy, 30.0, &["openai-chat", "llama3:8b", "--stream"]).await });
    eventually(Duration::from_secs(20), "llama streaming", || async { program(&h, "llama").await["inFlight"] == 1 })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let qwen = llm_client(proxy, 30.0, &["ollama-chat", "qwen2.5:7b"]).await;
    let llama = stream.await.unwrap();
    assert!(error(&llama).is_none() && llama.last().unwrap()["kind"] == "done", "the stream was not cut: {llama:?}");
    assert_eq!(llama.iter().filter(|l| l["kind"] == "chunk").count(), 8, "every token: {llama:?}");
    assert!(text(&qwen).starts_with("[qwen@"), "{qwen:?}");
    let (llama_end, qwen_start) = (llama.last().unwrap()["at"].as_f64().unwrap(), qwen[0]["at"].as_f64().unwrap());
    assert!(qwen_start >= llama_end, "qwen answered only after llama's stream ended and llama stopped");
    assert_eq!((state(&h, "llama").await, state(&h, "qwen").await), ("stopped".into(), "running".into()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_model_stops_after_its_own_idle_period() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let routes = two_models(&r1, &r2, "      scaledownPeriod: 1s\n", "      scaledownPeriod: 60s\n");
    let h = start(&routes, |_| {}).await;
    let mut done_at = 0.0;
    for model in ["qwen2.5:7b", "llama3:8b"] {
        let answer = llm_client(h.proxy(), 30.0, &["openai-chat", model]).await;
        assert!(error(&answer).is_none(), "{answer:?}");
        done_at = answer.last().unwrap()["at"].as_f64().unwrap();
    }
    eventually(Duration::from_secs(10), "llama stopped", || async { state(&h, "llama").await == "stopped" }).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // Idleness is sampled every quarter period: a program stops between 0.75 and 1 period after its last answer.
    assert!(now - done_at >= 0.75, "stopped {:.2}s after its last answer", now - done_at);
    assert_eq!(state(&h, "qwen").await, "running", "the other model keeps its own idle period");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_lists_unloads_and_streams_each_programs_output() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let routes = two_models(&r1, &r2, "", "");
    let h = start(&routes, |_| {}).await;
    assert!(error(&llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b"]).await).is_none());
    let llama = program(&h, "llama").await;
    assert_eq!((llama["state"].as_str(), llama["inFlight"].as_i64()), (Some("running"), Some(0)), "{llama}");
    assert!(llama["pid"].as_i64().unwrap() > 0 && llama["since"].as_str().unwrap().ends_with('Z'), "{llama}");
    assert_eq!(llama["models"], serde_json::json!(["llama3:8b"]));

    let (status, output) = admin(&h, "GET", "/programs/default/llama/output?lines=5").await;
    assert_eq!(status, StatusCode::OK);
    assert!(output.contains("POST /v1/chat/completions HTTP/1.1\" 200"), "the program's own log: {output}");
    let (_, _, on_proxy) = get(h.proxy(), "models.local", "/programs/default/llama/output").await;
    assert!(!on_proxy.contains("POST /v1/chat"), "never on the proxy port: {on_proxy}");

    // The live stream: the kept lines, then a new line as a request arrives.
    let req = request(h.admin(), "admin", "/programs/default/llama/output/stream?lines=0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let proxy = h.proxy();
    tokio::spawn(async move { llm_client(proxy, 30.0, &["openai-chat", "llama3:8b"]).await });
    let event = tokio::time::timeout(Duration::from_secs(20), body.frame()).await.unwrap().unwrap().unwrap();
    let event = String::from_utf8(event.into_data().unwrap().to_vec()).unwrap();
    assert!(event.starts_with("data: ") && event.contains("POST /v1/chat/completions"), "{event}");
    drop(body);

    let (status, body) = admin(&h, "GET", "/programs/default/llama/unload").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let (status, body) = admin(&h, "POST", "/programs/default/llama/unload").await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, r#"{"unloading":["default/llama"]}"#));
    eventually(Duration::from_secs(10), "llama unloaded", || async { state(&h, "llama").await == "stopped" }).await;
    assert!(error(&llm_client(h.proxy(), 30.0, &["openai-chat", "qwen2.5:7b"]).await).is_none());
    let (status, body) = admin(&h, "POST", "/programs/unload").await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, r#"{"unloading":["default/qwen"]}"#));
    eventually(Duration::from_secs(10), "qwen unloaded", || async { state(&h, "qwen").await == "stopped" }).await;
    assert_eq!(admin(&h, "GET", "/programs/default/nope/output").await.0, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_a_2s_read_timeout_outlasts_a_10s_load_only_with_the_keep_alive() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let load = ", --load-delay, \"10\"";
    let routes = format!(
        "routes:\n{}{}",
        model_route("llama", &["llama3:8b"], r1.port(), load, "    coldStart: {streamKeepAlive: {interval: 1s}}\n", ""),
        model_route("plain", &["plain"], r2.port(), load, "", "")
    );
    let h = start(&routes, |_| {}).await;
    let proxy = h.proxy();
    let without = tokio::spawn(async move { llm_client(proxy, 2.0, &["openai-chat", "plain", "--stream"]).await });
    let started = Instant::now();
    let kept = llm_client(h.proxy(), 2.0, &["openai-chat", "llama3:8b", "--stream"]).await;
    assert!(started.elapsed() >= Duration::from_secs(10), "the load took its 10 s");
    assert!(error(&kept).is_none(), "kept alive through the load: {kept:?}");
    assert!(text(&kept).starts_with("[llama@"), "then the model's stream: {kept:?}");
    let timed_out = without.await.unwrap();
    assert_eq!(error(&timed_out).map(|e| e["type"].as_str().unwrap()), Some("APITimeoutError"), "{timed_out:?}");
    h.stop().await;
}

/// A route `name` for `models` whose program prints `secret` and exits with status 3 before it is ready.
fn crashing_route(name: &str, models: &[&str], port: u16, secret: &str, route_extra: &str) -> String {
    let models = models.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
    let script = format!("import sys; print({secret:?}, flush=True); sys.exit(3)");
    format!(
        "  - name: {name}\n    hosts: [models.local]\n    models: [{models}]\n    upstream: 127.0.0.1:{port}\n{route_extra}    process:\n      command: [python3, -c, {script:?}]\n      readiness: {{httpGet: /health}}\n      startTimeout: 20s\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_stream_whose_model_fails_to_start_ends_with_an_error_the_client_raises() {
    let r = Reserved::new();
    let keep = "    coldStart: {streamKeepAlive: {interval: 1s}}\n";
    let routes = format!("routes:\n{}", crashing_route("llama", &["llama3:8b"], r.port(), "CUDA_TOKEN=s3cr3t", keep));
    let h = start(&routes, |_| {}).await;
    let started = Instant::now();
    let lines = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b", "--stream"]).await;
    assert!(started.elapsed() < Duration::from_secs(25), "the stream ended, nothing hung: {:?}", started.elapsed());
    let e = error(&lines).unwrap_or_else(|| panic!("the client raised: {lines:?}"));
    // The head (200) was sent before the program failed: the OpenAI client raises the SSE `error` event's
    // `error.message` as an `APIError` (no status code: the status line said 200).
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("APIError"), None), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("Bad Gateway: ") && message.contains("exit status: 3"), "says why: {e}");
    assert!(!message.contains("s3cr3t"), "the program's output stays off the proxy port: {e}");
    assert!(lines.iter().all(|l| l["kind"] != "chunk"), "no answer before the error: {lines:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_stream_whose_backend_answers_500_ends_with_an_error_the_client_raises() {
    let r = Reserved::new();
    let keep = "    coldStart: {streamKeepAlive: {interval: 500ms}}\n";
    let failing = ", --load-delay, \"3\", --fail-status, \"500\"";
    let routes = format!("routes:\n{}", model_route("llama", &["llama3:8b"], r.port(), failing, keep, ""));
    let h = start(&routes, |_| {}).await;
    let started = Instant::now();
    let lines = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b", "--stream"]).await;
    assert!(started.elapsed() < Duration::from_secs(25), "the stream ended, nothing hung: {:?}", started.elapsed());
    let e = error(&lines).unwrap_or_else(|| panic!("the client raised: {lines:?}"));
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("APIError"), None), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("the backend answered 500 Internal Server Error: ") && message.contains("out of memory"),
        "the backend's status and the start of its answer: {e}"
    );
    assert_eq!(state(&h, "llama").await, "running", "the program itself runs");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_keep_alive_holds_ollama_and_non_streaming_requests_without_comments() {
    let r = Reserved::new();
    let keep = "    coldStart: {streamKeepAlive: {interval: 500ms}}\n";
    // A long load, so that the Python clients (slow to start on a busy machine) surely arrive during it.
    let load = ", --load-delay, \"20\"";
    let routes = format!("routes:\n{}", model_route("llama", &["llama3:8b"], r.port(), load, keep, ""));
    let h = start(&routes, |_| {}).await;
    let proxy = h.proxy();
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let ollama = tokio::spawn(async move { llm_client(proxy, 60.0, &["ollama-chat", "llama3:8b"]).await });
    let plain = tokio::spawn(async move { llm_client(proxy, 60.0, &["openai-chat", "llama3:8b"]).await });
    // The load starts with the first of them; both Python clients start together.
    eventually(Duration::from_secs(30), "both held", || async { concurrency(h.admin(), "default/llama").await == 2 })
        .await;
    let body = Bytes::from(r#"{"model": "llama3:8b", "messages": [{"role": "user", "content": "Hi"}]}"#);
    let req = request(proxy, "models.local", "/v1/chat/completions").method("POST").body(Full::new(body)).unwrap();
    let raw = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(60), client().request(req)).await });
    eventually(Duration::from_secs(5), "all three held", || async {
        concurrency(h.admin(), "default/llama").await == 3
    })
    .await;
    assert_eq!(state(&h, "llama").await, "starting", "held during the load");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!raw.is_finished(), "a non-streaming request gets no early head (two comment intervals passed)");

    // NDJSON has no comments: a `: waiting for model` line would make the Ollama client's JSON parsing fail.
    let ollama = ollama.await.unwrap();
    assert!(error(&ollama).is_none(), "no SSE comment in the NDJSON stream: {ollama:?}");
    assert!(text(&ollama).starts_with("[llama@") && ollama.len() > 3, "streamed after the load: {ollama:?}");
    let plain = plain.await.unwrap();
    assert!(error(&plain).is_none() && text(&plain).starts_with("[llama@"), "held, then answered: {plain:?}");
    for answer in [&ollama, &plain] {
        let first = answer[0]["at"].as_f64().unwrap();
        assert!(first - started >= 19.5, "answered only after the 20 s load: {:.2}s", first - started);
    }
    let raw = raw.await.unwrap().expect("answered in time").unwrap();
    assert_eq!((raw.status(), raw.headers()["content-type"].to_str().unwrap()), (StatusCode::OK, "application/json"));
    let raw = raw.into_body().collect().await.unwrap().to_bytes();
    assert!(raw.starts_with(b"{"), "the model's JSON, no comment before it: {raw:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_programs_output_is_on_the_admin_port_never_in_the_proxys_answer() {
    let r = Reserved::new();
    let routes = format!("routes:\n{}", crashing_route("llama", &["llama3:8b"], r.port(), "HF_TOKEN=hf_s3cr3t", ""));
    let h = start(&routes, |_| {}).await;
    let lines = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3:8b"]).await;
    let e = error(&lines).unwrap();
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("InternalServerError"), Some(502)), "{e}");
    assert!(!e["message"].as_str().unwrap().contains("s3cr3t"), "{e}");
    // The whole answer, as a plain HTTP client reads it.
    let req = request(h.proxy(), "models.local", "/v1/chat/completions")
        .method("POST")
        .body(Full::new(Bytes::from(r#"{"model": "llama3:8b", "messages": []}"#)))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("default/llama") && !body.contains("s3cr3t"), "the reason, not the output: {body}");
    assert!(!format!("{headers:?}").contains("s3cr3t"), "{headers:?}");

    let (status, output) = admin(&h, "GET", "/programs/default/llama/output").await;
    assert_eq!(status, StatusCode::OK);
    assert!(output.contains("HF_TOKEN=hf_s3cr3t"), "the admin port shows the program's output: {output}");
    let (status, _, on_proxy) = get(h.proxy(), "models.local", "/programs/default/llama/output").await;
    assert!(!on_proxy.contains("s3cr3t"), "the admin path on the proxy port: {status} {on_proxy}");
    h.stop().await;
}

/// Sends `head` then `body` on a fresh connection while reading the answer (an early answer is read even
/// when the server stops reading the body); the answer as text, once its head and `Content-Length` body are in.
async fn raw_post(addr: SocketAddr, head: String, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let len =
                    head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok());
                if len.is_some_and(|n: usize| rest.len() >= n) {
                    return;
                }
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("an answer in time");
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

/// A chat request for `model` whose JSON body is exactly `len` bytes.
fn chat_body(model: &str, len: usize) -> Vec<u8> {
    let empty = serde_json::json!({"model": model, "messages": [{"role": "user", "content": ""}]}).to_string();
    let padded =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "x".repeat(len - empty.len())}]});
    let body = padded.to_string().into_bytes();
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_body_bound_is_4_mib_end_to_end() {
    let r = Reserved::new();
    let routes = format!("routes:\n{}", model_route("llama", &["llama3:8b"], r.port(), "", "", ""));
    let h = start(&routes, |_| {}).await; // HTTPSCALE_MODEL_BODY_LIMIT left at its default
    const BOUND: usize = 4 * 1024 * 1024;
    for chunked in [false, true] {
        let framing = if chunked { "Transfer-Encoding: chunked" } else { &format!("Content-Length: {}", BOUND + 1) };
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: models.local\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        );
        let mut body = chat_body("llama3:8b", BOUND + 1);
        if chunked {
            body = [format!("{:x}\r\n", body.len()).into_bytes(), body, b"\r\n0\r\n\r\n".to_vec()].concat();
        }
        let answer = raw_post(h.proxy(), head, body).await;
        assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "chunked {chunked}: {answer:.300}");
        let json: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(
            json["error"]["message"],
            "Payload Too Large: the request body is larger than 4194304 bytes, the most read to find the model it names (HTTPSCALE_MODEL_BODY_LIMIT)"
        );
    }
    assert_eq!(state(&h, "llama").await, "stopped", "nothing was forwarded or started");

    let req = request(h.proxy(), "models.local", "/v1/chat/completions")
        .method("POST")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat_body("llama3:8b", BOUND))))
        .unwrap();
    // The model starts for this one: a bound roomier than `send`'s, for a busy machine.
    let resp = tokio::time::timeout(Duration::from_secs(60), client().request(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "exactly the bound is read and routed");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("[llama@"), "{body:?}");
    h.stop().await;
}

/// The README's model quick start: `examples/models.yaml` as shipped (only its ports and the script's path
/// moved), with the official OpenAI client.
#[tokio::test(flavor = "multi_thread")]
async fn the_models_example_serves_two_models_behind_one_host() {
    let (r1, r2) = (Reserved::new(), Reserved::new());
    let file = std::fs::read_to_string(repo().join("examples/models.yaml"))
        .unwrap()
        .replace("8001", &r1.port().to_string())
        .replace("8002", &r2.port().to_string())
        .replace("examples/fake_llm.py", &fake_llm());
    let h = start(&file, |_| {}).await;
    let listed = llm_client(h.proxy(), 30.0, &["openai-models"]).await;
    assert_eq!(listed[0]["ids"], serde_json::json!(["llama3:8b", "qwen2.5:7b"]));
    let qwen = llm_client(h.proxy(), 30.0, &["openai-chat", "qwen2.5:7b", "--stream"]).await;
    assert!(text(&qwen).starts_with("[qwen@"), "{qwen:?}");
    let llama = llm_client(h.proxy(), 30.0, &["openai-chat", "llama3.1:70b"]).await;
    assert!(text(&llama).starts_with("[llama@"), "{llama:?}");
    assert_eq!(state(&h, "qwen").await, "stopped", "one at a time in the gpu group");
    h.stop().await;
}
