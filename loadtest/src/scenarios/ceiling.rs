//! `ceiling`: is the load generator the bottleneck? `loadtest` and `wrk` run against the same fast backend
//! with the same threads and connections, interleaved, and the report gives their throughput ratio and the
//! client CPU each spent per request. A ratio near 1 (or above) means numbers measured with `loadtest` are
//! not limited by it any more than wrk's would be.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::load::{self, LoadResult, LoadSpec};
use crate::procs::{self, Tools};
use crate::report::{Machine, Table, kilo};
use crate::scenarios::overhead::{BackendKind, start_backend};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Serialize)]
pub struct CeilingOpts {
    pub connections: Vec<usize>,
    pub threads: usize,
    pub rounds: usize,
    pub duration: Duration,
    pub backend: BackendKind,
    pub backend_threads: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingRun {
    pub round: usize,
    pub connections: usize,
    pub tool: String,
    pub rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub client_cpu_us_per_req: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingSummary {
    pub connections: usize,
    pub loadtest_rps: Spread,
    pub wrk_rps: Spread,
    /// loadtest ÷ wrk, paired per round.
    pub ratio: Spread,
    pub loadtest_cpu_us_per_req: Spread,
    pub wrk_cpu_us_per_req: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: CeilingOpts,
    pub backend: String,
    pub wrk: Option<String>,
    pub runs: Vec<CeilingRun>,
    pub summary: Vec<CeilingSummary>,
}

pub fn find_wrk() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join("wrk")).find(|p| p.is_file())
}

fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
        t(u.user_time()) + t(u.system_time())
    })
}

/// `12.34us`, `1.2ms`, `3s` → µs.
fn wrk_time_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn wrk_pct(out: &str, p: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == p).then(|| wrk_time_us(it.next()?)).flatten()
    })
}

/// Requests/sec and the 50 % and 99 % latencies from `wrk --latency` output.
pub fn parse_wrk(out: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
    let rps = out.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())?;
    Some((rps, wrk_pct(out, "50%"), wrk_pct(out, "99%")))
}

/// Runs `wrk --latency` (closed loop, HTTP/1.1) and returns what it reports in a [`LoadResult`] (no p99.9;
/// `max` is wrk's; errors from its `Socket errors` and `Non-2xx` lines).
pub fn wrk_load(wrk: &std::path::Path, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    crate::ensure_loopback(spec.target)?;
    let secs = spec.duration.as_secs().max(1);
    let out = Command::new(wrk)
        .args(["--latency", "-t", &spec.threads.clamp(1, spec.connections).to_string()])
        .args(["-c", &spec.connections.to_string(), "-d", &format!("{secs}s"), "--timeout", "10s"])
        .args(["-H", &format!("Host: {}", spec.hosts[0]), &format!("http://{}{}", spec.target, spec.path)])
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rps, p50, p99) = parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("unexpected wrk output: {text}"))?;
    let mut errors = std::collections::BTreeMap::new();
    if let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix("Socket errors:")) {
        for part in line.split(',') {
            let mut it = part.split_whitespace();
            if let (Some(kind), Some(n)) = (it.next(), it.next().and_then(|n| n.parse::<u64>().ok()))
                && n > 0
            {
                errors.insert(kind.to_string(), n);
            }
        }
    }
    let non2xx: u64 =
        text.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:")?.trim().parse().ok()).unwrap_or(0);
    let responses = (rps * secs as f64).round() as u64;
    let max = text
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"Latency") && f.len() >= 4).then(|| wrk_time_us(f[3])).flatten()
        })
        .unwrap_or(f64::NAN);
    let mut status = std::collections::BTreeMap::new();
    status.insert("2xx".to_string(), responses.saturating_sub(non2xx));
    if non2xx > 0 {
        status.insert("non-2xx".to_string(), non2xx);
    }
    Ok(LoadResult {
        label: format!("{} (wrk)", spec.label),
        target: spec.target.to_string(),
        protocol: load::Protocol::H1,
        connections: spec.connections,
        concurrency: spec.connections,
        threads: spec.threads,
        rate_target: None,
        seconds: secs as f64,
        responses,
        ok: responses.saturating_sub(non2xx),
        rps,
        latency: load::Latency {
            p50_us: p50.unwrap_or(f64::NAN),
            p90_us: wrk_pct(&text, "90%").unwrap_or(f64::NAN),
            p99_us: p99.unwrap_or(f64::NAN),
            p999_us: f64::NAN,
            max_us: max,
            mean_us: f64::NAN,
        },
        status,
        errors,
        unfinished: 0,
        connects: spec.connections as u64,
        body_bytes: 0,
        completions: Vec::new(),
        started: None,
    })
}

pub fn run(tools: &Tools, opts: &CeilingOpts) -> anyhow::Result<CeilingReport> {
    let machine = Machine::describe(tools);
    let wrk = find_wrk();
    if wrk.is_none() {
        eprintln!("wrk is not installed (apt-get install -y wrk): only loadtest runs");
    }
    let dir = tempfile::tempdir()?;
    let (mut backend, addr, backend_desc): (procs::Child, SocketAddr, String) =
        start_backend(tools, opts.backend, opts.backend_threads, false, dir.path())?;
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for &c in &opts.connections {
            anyhow::ensure!(!aborted(), "interrupted");
            backend.check_running()?;
            let spec = LoadSpec {
                label: format!("round {}/{} c={c} loadtest", round + 1, opts.rounds),
                threads: opts.threads,
                duration: opts.duration,
                warmup: Duration::ZERO,
                progress: opts.progress,
                ..LoadSpec::closed("", addr, "bench.local", c)
            };
            let cpu0 = procs::own_cpu_time();
            let r = load::run(&spec)?;
            let cpu = procs::own_cpu_time().saturating_sub(cpu0);
            runs.push(CeilingRun {
                round,
                connections: c,
                tool: "loadtest".into(),
                rps: r.rps,
                p50_us: Some(r.latency.p50_us),
                p99_us: Some(r.latency.p99_us),
                client_cpu_us_per_req: cpu.as_secs_f64() * 1e6 / r.responses.max(1) as f64,
            });
            if let Some(wrk) = &wrk {
                let cpu0 = children_cpu();
                let out = Command::new(wrk)
                    .args(["--latency", "-t", &opts.threads.min(c).to_string(), "-c", &c.to_string()])
                    .args(["-d", &format!("{}s", opts.duration.as_secs().max(1))])
                    .args(["-H", "Host: bench.local", &format!("http://{addr}/")])
                    .stdin(Stdio::null())
                    .output()?;
                let cpu = children_cpu().saturating_sub(cpu0);
                let text = String::from_utf8_lossy(&out.stdout);
                let (rps, p50, p99) =
                    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("unexpected wrk output: {text}"))?;
                let secs = opts.duration.as_secs().max(1) as f64;
                runs.push(CeilingRun {
                    round,
                    connections: c,
                    tool: "wrk".into(),
                    rps,
                    p50_us: p50,
                    p99_us: p99,
                    client_cpu_us_per_req: cpu.as_secs_f64() * 1e6 / (rps * secs).max(1.0),
                });
            }
            for r in runs.iter().rev().take(if wrk.is_some() { 2 } else { 1 }).rev() {
                eprintln!("  round {} c={c:<4} {:<9} {:>9.0} req/s", round + 1, r.tool, r.rps);
            }
        }
    }
    backend.stop(Duration::from_secs(3));
    let summary = opts
        .connections
        .iter()
        .map(|&c| {
            let of = |tool: &str, f: &dyn Fn(&CeilingRun) -> f64| {
                Spread::of(&runs.iter().filter(|r| r.connections == c && r.tool == tool).map(f).collect::<Vec<_>>())
            };
            let ratio: Vec<f64> = runs
                .iter()
                .filter(|r| r.connections == c && r.tool == "loadtest")
                .filter_map(|l| {
                    let w = runs.iter().find(|w| w.connections == c && w.tool == "wrk" && w.round == l.round)?;
                    Some(l.rps / w.rps)
                })
                .collect();
            CeilingSummary {
                connections: c,
                loadtest_rps: of("loadtest", &|r| r.rps),
                wrk_rps: of("wrk", &|r| r.rps),
                ratio: Spread::of(&ratio),
                loadtest_cpu_us_per_req: of("loadtest", &|r| r.client_cpu_us_per_req),
                wrk_cpu_us_per_req: of("wrk", &|r| r.client_cpu_us_per_req),
            }
        })
        .collect();
    Ok(CeilingReport {
        scenario: "ceiling",
        machine,
        opts: opts.clone(),
        backend: backend_desc,
        wrk: wrk.map(|p| p.display().to_string()),
        runs,
        summary,
    })
}

impl CeilingReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "ceiling: loadtest vs wrk ({}), {} client thread(s), against {}; {} round(s) of {:?}",
            self.wrk.as_deref().unwrap_or("not installed"),
            self.opts.threads,
            self.backend,
            self.opts.rounds,
            self.opts.duration
        );
        let mut t = Table::new(&[
            "c",
            "loadtest req/s",
            "wrk req/s",
            "loadtest ÷ wrk",
            "loadtest CPU µs/req",
            "wrk CPU µs/req",
        ]);
        for s in &self.summary {
            t.row(vec![
                s.connections.to_string(),
                format!("{} ({}–{})", kilo(s.loadtest_rps.median), kilo(s.loadtest_rps.min), kilo(s.loadtest_rps.max)),
                format!("{} ({}–{})", kilo(s.wrk_rps.median), kilo(s.wrk_rps.min), kilo(s.wrk_rps.max)),
                s.ratio.show(2),
                s.loadtest_cpu_us_per_req.show(2),
                s.wrk_cpu_us_per_req.show(2),
            ]);
        }
        t.print();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  310.00us\n     75%  400.00us\n     90%    1.20ms\n     99%    2.50ms\n  100000 requests in 5.00s, 10MB read\nRequests/sec:  20000.50\nTransfer/sec:      2MB\n";
        let (rps, p50, p99) = parse_wrk(out).unwrap();
        assert_eq!(rps, 20000.5);
        assert_eq!(p50, Some(310.0));
        assert_eq!(p99, Some(2500.0));
    }
}
