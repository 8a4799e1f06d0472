//! `sigterm`: SIGTERM under load, with zero requests lost. A closed-loop HTTP/1.1 load runs against the
//! interceptor (a separate process, in front of `loadtest backend`); after `before` the interceptor gets
//! SIGTERM and the load goes on until the process has exited and a moment more. Every request ends one way:
//! *answered*, *refused* (the connect failed: the port was closed, nothing was accepted), or *lost* (sent on
//! an accepted connection and never answered: reset, closed, timed out). A round passes when nothing is lost.

// Signal and exit times of real processes are wall-clock measurements.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::aborted;
use crate::load::{self, CLOSED_BETWEEN_REQUESTS, LoadSpec};
use crate::net::ANY_LOOPBACK_PORT;
use crate::procs::{self, Tools};
use crate::report::{Machine, Table};

#[derive(Debug, Clone, Serialize)]
pub struct SigtermOpts {
    pub rounds: usize,
    pub connections: usize,
    /// Load before the SIGTERM.
    pub before: Duration,
    /// `KEDA_HTTP_SHUTDOWN_DELAY`: serving goes on this long after the SIGTERM.
    pub shutdown_delay: Duration,
    pub proxy_threads: usize,
    pub client_threads: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SigtermRun {
    pub round: usize,
    pub answered: u64,
    pub ok: u64,
    pub refused: u64,
    pub lost: u64,
    /// Lost requests by kind (`reset`, `closed`, `timeout`, …).
    pub lost_by_kind: BTreeMap<String, u64>,
    /// From the SIGTERM to the process's exit, ms.
    pub exit_after_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SigtermReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: SigtermOpts,
    pub runs: Vec<SigtermRun>,
    pub lost_total: u64,
}

const HOST: &str = "app.local";

fn one(tools: &Tools, opts: &SigtermOpts, round: usize) -> anyhow::Result<SigtermRun> {
    let (mut backend, upstream) = procs::start_backend(tools, ANY_LOOPBACK_PORT, 1, "ok", &[])?;
    let routes = format!("routes:\n  - name: app\n    hosts: [{HOST}]\n    upstream: {upstream}\n");
    let delay = format!("{}ms", opts.shutdown_delay.as_millis());
    let env = [
        ("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string()),
        ("KEDA_HTTP_SHUTDOWN_DELAY", delay),
        ("KEDA_HTTP_DRAIN_TIMEOUT", "10s".to_string()),
    ];
    let mut interceptor = procs::start_interceptor(tools, &routes, &env)?;
    let spec = LoadSpec {
        label: format!("round {}/{}", round + 1, opts.rounds),
        threads: opts.client_threads,
        duration: opts.before + opts.shutdown_delay + Duration::from_secs(2),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        progress: opts.progress,
        ..LoadSpec::closed("", interceptor.proxy, HOST, opts.connections)
    };
    let client = std::thread::spawn(move || load::run(&spec));
    std::thread::sleep(opts.before);
    let signalled = Instant::now();
    let _ = kill(Pid::from_raw(interceptor.child.pid() as i32), Signal::SIGTERM);
    interceptor.child.stop(Duration::from_secs(30));
    let exit_after = signalled.elapsed();
    let result = client.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    backend.stop(Duration::from_secs(3));
    let not_lost = |k: &str| k.starts_with("connect") || k == CLOSED_BETWEEN_REQUESTS;
    let lost_by_kind: BTreeMap<String, u64> =
        result.errors.iter().filter(|(k, _)| !not_lost(k)).map(|(k, v)| (k.clone(), *v)).collect();
    Ok(SigtermRun {
        round,
        answered: result.responses,
        ok: result.ok,
        refused: result.errors.iter().filter(|(k, _)| k.starts_with("connect")).map(|(_, v)| v).sum(),
        lost: lost_by_kind.values().sum(),
        lost_by_kind,
        exit_after_ms: exit_after.as_secs_f64() * 1e3,
    })
}

pub fn run(tools: &Tools, opts: &SigtermOpts) -> anyhow::Result<SigtermReport> {
    let machine = Machine::describe(tools);
    procs::raise_fd_limit();
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        anyhow::ensure!(!aborted(), "interrupted");
        let r = one(tools, opts, round)?;
        eprintln!(
            "  round {}: answered {}  refused {}  lost {}  exit {:.0} ms after SIGTERM",
            round + 1,
            r.answered,
            r.refused,
            r.lost,
            r.exit_after_ms
        );
        runs.push(r);
    }
    let lost_total = runs.iter().map(|r| r.lost).sum();
    Ok(SigtermReport { scenario: "sigterm", machine, opts: opts.clone(), runs, lost_total })
}

impl SigtermReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "sigterm: {} connections, SIGTERM after {:?}, shutdown delay {:?}, {} proxy thread(s), {} round(s)",
            self.opts.connections,
            self.opts.before,
            self.opts.shutdown_delay,
            self.opts.proxy_threads,
            self.opts.rounds
        );
        let mut t = Table::new(&["round", "answered", "2xx", "refused", "lost", "exit after SIGTERM ms"]);
        for r in &self.runs {
            t.row(vec![
                (r.round + 1).to_string(),
                r.answered.to_string(),
                r.ok.to_string(),
                r.refused.to_string(),
                format!("{} {:?}", r.lost, r.lost_by_kind),
                format!("{:.0}", r.exit_after_ms),
            ]);
        }
        t.print();
        println!("lost in all rounds: {}", self.lost_total);
    }
}
