//! Smoke runs of every `loadtest` scenario with tiny parameters, so the tool cannot rot. They check that each
//! scenario runs end to end and measures something sensible (every request answered, every stream complete,
//! every held request served), not how fast anything is: speed belongs in docs/benchmarks.md.
//!
//! Each test runs the real `loadtest` binary, which starts its backends and the interceptor (its embedded copy
//! of the interceptor library, `--interceptor embedded`) as child processes on loopback ports and stops them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use httpscale_loadtest::procs::find_program;
use serde_json::Value;

const LOADTEST: &str = env!("CARGO_BIN_EXE_loadtest");

/// Runs `loadtest args… --json FILE`, bounded by `within`; returns the JSON report.
fn loadtest(args: &[&str], within: Duration) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (ok, out) = run(args, Some(&json), within);
    assert!(ok, "loadtest {args:?} failed:\n{out}");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{out}"));
    serde_json::from_str(&text).unwrap()
}

/// Runs `loadtest`; returns whether it succeeded and its combined output. Kills it (by PID) past `within`.
fn run(args: &[&str], json: Option<&Path>, within: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(LOADTEST);
    cmd.args(args);
    if let Some(j) = json {
        cmd.arg("--json").arg(j);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // SIGTERM lets loadtest stop what it started; then make sure.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), out),
        None => (false, format!("timed out after {within:?}\n{out}")),
    }
}

fn nginx_installed() -> Option<PathBuf> {
    find_program("nginx", "/usr/sbin")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn overhead_direct_interceptor_and_nginx() {
    let r = loadtest(
        &[
            "overhead",
            "--interceptor",
            "embedded",
            "--quiet",
            "--backend",
            "hyper",
            "--concurrency",
            "1,4",
            "--rounds",
            "1",
            "-d",
            "700ms",
            "--warmup",
            "200ms",
            "--proxy-threads",
            "1",
        ],
        Duration::from_secs(60),
    );
    let runs = r["runs"].as_array().unwrap();
    let mut legs: Vec<&str> = runs.iter().map(|x| x["leg"].as_str().unwrap()).collect();
    legs.dedup();
    match nginx_installed() {
        Some(_) => assert_eq!(runs.len(), 6, "direct, interceptor and nginx at c=1 and c=4: {legs:?}"),
        None => {
            eprintln!("nginx is not installed: the nginx leg was skipped (apt-get install -y nginx)");
            assert_eq!(runs.len(), 4, "{legs:?}");
        }
    }
    for x in runs {
        let res = &x["result"];
        assert!(u(&res["responses"]) > 0, "{} answered nothing: {res}", x["leg"]);
        assert_eq!(u(&res["responses"]), u(&res["ok"]), "{} had non-2xx answers: {res}", x["leg"]);
        assert!(res["errors"].as_object().unwrap().is_empty(), "{} had errors: {res}", x["leg"]);
        if x["leg"] != "direct" {
            assert!(x["proxy_cpu_us_per_req"].as_f64().unwrap() > 0.0, "proxy CPU measured: {x}");
        }
    }
    let ratios = r["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 2);
    assert!(ratios[0]["rps_interceptor_over_direct"]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn cold_burst_serves_every_held_request() {
    let r = loadtest(
        &[
            "cold-burst",
            "--interceptor",
            "embedded",
            "--quiet",
            "--sizes",
            "50",
            "--rounds",
            "1",
            "--delay",
            "500ms",
            "--hold-wait",
            "10s",
            "--timeout",
            "20s",
            "--proxy-threads",
            "1",
        ],
        Duration::from_secs(60),
    );
    let run = &r["runs"][0];
    assert_eq!(u(&run["n"]), 50);
    assert_eq!(u(&run["held"]), 50, "every request was held before the backend started: {run}");
    assert_eq!(u(&run["served"]), 50, "every held request was served: {run}");
    let last = run["release_last_ms"].as_f64().unwrap();
    assert!(last >= 0.0, "answers came after the backend listened: {run}");
    assert!(u(&run["rss_holding_kib"]) > 0);
    assert_eq!(r["summary"][0]["served_all_rounds"], Value::Bool(true));

    // The same over h2c: 40 held requests on 2 connections.
    let r = loadtest(
        &[
            "cold-burst",
            "--interceptor",
            "embedded",
            "--quiet",
            "--sizes",
            "40",
            "--rounds",
            "1",
            "--delay",
            "500ms",
            "--hold-wait",
            "10s",
            "--timeout",
            "20s",
            "--proxy-threads",
            "1",
            "--protocol",
            "h2",
            "--h2-streams",
            "20",
        ],
        Duration::from_secs(60),
    );
    let run = &r["runs"][0];
    assert_eq!(u(&run["result"]["connections"]), 2);
    assert_eq!(u(&run["held"]), 40, "{run}");
    assert_eq!(u(&run["served"]), 40, "{run}");
}

#[test]
fn streaming_keeps_lines_apart() {
    let r = loadtest(
        &[
            "streaming",
            "--interceptor",
            "embedded",
            "--streams",
            "8",
            "--lines",
            "4",
            "--interval",
            "60ms",
            "--rounds",
            "1",
            "--proxy-threads",
            "1",
        ],
        Duration::from_secs(60),
    );
    let runs = r["runs"].as_array().unwrap();
    assert!(runs.len() >= 2, "direct and interceptor legs: {runs:?}");
    for x in runs {
        assert_eq!(u(&x["complete_streams"]), 8, "every stream complete on {}: {x}", x["leg"]);
        assert_eq!(u(&x["lines"]), 32);
        assert_eq!(u(&x["errors"]), 0);
        // A proxy that buffered would deliver several lines per read; 60 ms apart they arrive one by one.
        assert!(u(&x["coalesced_lines"]) < 8, "lines coalesced on {}: {x}", x["leg"]);
    }
}

#[test]
fn many_routes_lookup_and_end_to_end() {
    let r = loadtest(
        &[
            "many-routes",
            "--interceptor",
            "embedded",
            "--quiet",
            "--routes",
            "10,200",
            "--rounds",
            "1",
            "--lookups",
            "20000",
            "-d",
            "500ms",
            "--warmup",
            "100ms",
            "-c",
            "4",
            "--backend",
            "hyper",
            "--proxy-threads",
            "1",
        ],
        Duration::from_secs(60),
    );
    let lookup = r["lookup"].as_array().unwrap();
    assert_eq!(lookup.len(), 2);
    for l in lookup {
        assert!(l["hit_ns"]["median"].as_f64().unwrap() > 0.0, "{l}");
    }
    let e2e = r["e2e"].as_array().unwrap();
    assert_eq!(e2e.len(), 2);
    for e in e2e {
        assert!(e["rps"]["median"].as_f64().unwrap() > 0.0, "{e}");
        assert_eq!(u(&e["failed"]), 0, "every request through N routes answered 2xx: {e}");
    }
}

#[test]
fn ceiling_compares_with_wrk_when_present() {
    let r = loadtest(
        &[
            "ceiling",
            "--quiet",
            "--rounds",
            "1",
            "-d",
            "1s",
            "--connections",
            "4",
            "--backend",
            "hyper",
            "--interceptor",
            "embedded",
        ],
        Duration::from_secs(60),
    );
    let s = &r["summary"][0];
    assert!(s["loadtest_rps"]["median"].as_f64().unwrap() > 0.0, "{s}");
    if r["wrk"].is_null() {
        eprintln!("wrk is not installed: only loadtest ran (apt-get install -y wrk)");
    } else {
        assert!(s["ratio"]["median"].as_f64().unwrap() > 0.0, "{s}");
    }
}

/// `loadtest run` against a `loadtest backend`: closed loop over HTTP/1.1 and h2c, and open loop.
#[test]
fn run_closed_open_and_h2() {
    let mut backend = Command::new(LOADTEST)
        .args(["backend", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = backend.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let url = format!("http://{addr}/");
    let base = ["run", url.as_str(), "--quiet", "-d", "500ms", "--warmup", "100ms", "-c", "2"];
    let cases: [&[&str]; 3] = [&[], &["--protocol", "h2", "--h2-streams", "4"], &["--rate", "400"]];
    let mut results = Vec::new();
    for extra in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        results.push(loadtest(&args, Duration::from_secs(30)));
    }
    let _ = backend.kill();
    let _ = backend.wait();
    for r in &results {
        assert!(u(&r["responses"]) > 0, "{r}");
        assert_eq!(u(&r["responses"]), u(&r["ok"]), "{r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
        assert!(r["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(results[1]["concurrency"], 8, "2 h2 connections × 4 streams");
    // Open loop at 400/s for 0.5 s: about 200 answers, not as many as the server can give.
    let open = u(&results[2]["responses"]);
    assert!((100..=300).contains(&open), "open loop kept its rate: {open} answers");
}

#[test]
fn refuses_targets_off_this_host() {
    let (ok, out) = run(&["run", "http://10.1.2.3:80/", "-d", "1s"], None, Duration::from_secs(20));
    assert!(!ok);
    assert!(out.contains("only addresses of this host"), "{out}");
}

#[test]
fn sigterm_under_load_loses_nothing() {
    let r = loadtest(
        &[
            "sigterm",
            "--interceptor",
            "embedded",
            "--quiet",
            "--rounds",
            "1",
            "--connections",
            "16",
            "--before",
            "700ms",
            "--shutdown-delay",
            "300ms",
            "--proxy-threads",
            "2",
        ],
        Duration::from_secs(60),
    );
    let run = &r["runs"][0];
    assert!(u(&run["answered"]) > 100, "under load: {run}");
    assert!(u(&run["refused"]) > 0, "refused once the port closed: {run}");
    assert_eq!(u(&r["lost_total"]), 0, "nothing accepted and lost: {run}");
}

fn valgrind_installed() -> bool {
    ["valgrind", "callgrind_control"].iter().all(|b| find_program(b, "/usr/bin").is_some())
}

#[test]
fn instructions_counts_both_proxies_per_request() {
    if !valgrind_installed() {
        eprintln!("skipped: valgrind is not installed (apt-get install -y valgrind, or scripts/setup-test-peers.sh)");
        return;
    }
    let r = loadtest(
        &[
            "instructions",
            "--interceptor",
            "embedded",
            "--quiet",
            "--backend",
            "hyper",
            "-n",
            "200",
            "--warmup-requests",
            "40",
            "-c",
            "2",
            "--rounds",
            "2",
        ],
        Duration::from_secs(240),
    );
    let counts = r["counts"].as_array().unwrap();
    let legs: Vec<&str> = counts.iter().map(|c| c["leg"].as_str().unwrap()).collect();
    let want = if nginx_installed().is_some() { 4 } else { 2 };
    assert_eq!(counts.len(), want, "two rounds of each proxy: {legs:?}");
    for c in counts {
        assert_eq!(u(&c["requests"]), 200, "exactly the requests asked for were counted: {c}");
        let per = c["per_request"].as_f64().unwrap();
        // A proxied request costs thousands of instructions at least; ten million would mean the count ran
        // over the warm-up or start-up, not one request.
        assert!(per > 1_000.0 && per < 10_000_000.0, "implausible instructions per request: {c}");
        assert_eq!(u(&c["instructions"]) as f64 / 200.0, per, "{c}");
    }
    if want == 4 {
        let ratio = r["ratio"]["median"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio.is_finite(), "interceptor ÷ nginx: {}", r["ratio"]);
    }
}
