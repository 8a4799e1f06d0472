//! The tutorial's client side with real peers: the official Ollama Python client streams a generation and a
//! chat through the interceptor from `fake_ollama.py`, warm and across a cold start, chunk by chunk.
//! Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use httpscale_testkit::process::{Killed, peers_python, spawn_reporting_port};
use httpscale_testkit::*;

/// Starts fake_ollama.py on `port` (0 = any) streaming tokens `gap` apart; returns it and its port.
fn fake_ollama(port: u16, gap: Duration) -> (Killed, u16) {
    spawn_reporting_port(Command::new(peers_python()).arg(repo().join("tests/peers/fake_ollama.py")).args([
        "--port",
        &port.to_string(),
        "--delay",
        &gap.as_secs_f64().to_string(),
    ]))
}

/// Runs the official client through the proxy; returns the arrival times of the generate chunks.
async fn stream_through(proxy: std::net::SocketAddr) -> Vec<(f64, String)> {
    let out = tokio::process::Command::new(peers_python())
        .arg(repo().join("tests/peers/ollama_stream.py"))
        .args(["--url", &format!("http://{proxy}"), "--host-header", "ollama.local"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "generate")
        .map(|v| (v["at"].as_f64().unwrap(), v["text"].as_str().unwrap().to_owned()))
        .collect()
}

fn route(port: u16) -> String {
    format!(
        "routes:\n  - name: ollama\n    namespace: ollama\n    hosts: [ollama.local]\n    upstream: 127.0.0.1:{port}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_ollama_client_streams_through_the_interceptor() {
    let gap = Duration::from_millis(200);
    let (_ollama, port) = fake_ollama(0, gap);
    let h = interceptor(&route(port)).await;
    let chunks = stream_through(h.proxy()).await;
    assert!(chunks.len() >= 4, "{chunks:?}");
    assert!(chunks[0].1.contains("host=ollama.local"), "the backend saw the client's Host: {chunks:?}");
    for w in chunks.windows(2).take(chunks.len() - 2) {
        assert!(w[1].0 - w[0].0 >= 0.1, "chunks arrive spread out, not buffered: {chunks:?}");
    }
    assert_eq!(queue(h.admin()).await["ollama/ollama"]["Concurrency"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_requested_while_ollama_is_down_is_held_then_streamed() {
    // Reserved until fake_ollama.py takes it over (it binds with SO_REUSEADDR).
    let reserved = Reserved::new();
    let port = reserved.port();
    let h = interceptor(&route(port)).await;
    let proxy = h.proxy();
    let client = tokio::spawn(async move { stream_through(proxy).await });
    eventually(Duration::from_secs(10), "held", || async { concurrency(h.admin(), "ollama/ollama").await >= 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_ollama, _) = fake_ollama(port, Duration::from_millis(100));
    let chunks = tokio::time::timeout(Duration::from_secs(30), client).await.unwrap().unwrap();
    assert!(chunks.len() >= 4 && chunks[0].1.contains("host=ollama.local"), "{chunks:?}");
    h.stop().await;
}
