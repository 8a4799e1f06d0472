//! `ceiling`: is the load generator the bottleneck? `loadtest` and `wrk` run against the same fast backend
//! with the same threads and connections, interleaved, and the report gives their throughput ratio and the
//! client CPU each spent per request. A ratio near 1 (or above) means numbers measured with `loadtest` are
//! not limited by it any more than wrk's would be.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::load::{self, LoadSpec};
use crate::procs::{self, Tools};
use crate::report::{Machine, Table, kilo};
use crate::scenarios::overhead::{BackendKind, start_backend};
use crate::wrk::{find_wrk, parse_wrk};
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

fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
        t(u.user_time()) + t(u.system_time())
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
