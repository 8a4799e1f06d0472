//! `many-routes`: does the cost of finding a route grow with the number of routes?
//!
//! - **lookup**: a microbenchmark of `httpscale_core::table::RoutingTable::lookup` over tables of N routes
//!   parsed from a generated routes file (`httpscale_core::standalone::parse`), one exact host per route,
//!   looking up hosts spread over the whole table (hits) and hosts no route has (misses).
//! - **end to end**: one interceptor per N with N routes to the same backend, loaded with requests whose Host
//!   rotates over every route; A/B interleaved across N.

// Lookup and end-to-end timings are wall-clock measurements.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use httpscale_core::standalone;
use httpscale_core::table::RoutingTable;
use serde::Serialize;

use crate::load::{self, LoadSpec};
use crate::procs::{self, RunningInterceptor, Tools};
use crate::report::{Machine, Table, kilo};
use crate::scenarios::overhead::{BackendKind, start_backend};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Serialize)]
pub struct ManyRoutesOpts {
    pub counts: Vec<usize>,
    pub rounds: usize,
    /// Lookups per microbenchmark round.
    pub lookups: usize,
    /// Skip the end-to-end part (lookup microbenchmark only).
    pub lookup_only: bool,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub proxy_threads: usize,
    pub client_threads: usize,
    pub backend: BackendKind,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LookupResult {
    pub routes: usize,
    pub build_ms: f64,
    /// Hits on path `/api/generate` (three prefix probes: `api/generate`, `api`, `` on the host).
    pub hit_ns: Spread,
    /// Hits on path `/` (one prefix probe).
    pub hit_root_ns: Spread,
    pub miss_ns: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eRun {
    pub round: usize,
    pub routes: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub failed: u64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eSummary {
    pub routes: usize,
    pub rps: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    /// rps(N) ÷ rps(smallest N) in the same round.
    pub rps_over_smallest: Spread,
    pub rss_mib: Spread,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManyRoutesReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: ManyRoutesOpts,
    pub lookup: Vec<LookupResult>,
    pub e2e_runs: Vec<E2eRun>,
    pub e2e: Vec<E2eSummary>,
}

pub fn host(i: usize) -> String {
    format!("r{i}.bench.local")
}

/// A routes file with `n` routes, route `i` for host `r<i>.bench.local`, all to `upstream`.
pub fn routes_file(n: usize, upstream: &str) -> String {
    let mut s = String::with_capacity(n * 80 + 10);
    s.push_str("routes:\n");
    for i in 0..n {
        s.push_str(&format!("  - name: r{i}\n    hosts: [{}]\n    upstream: {upstream}\n", host(i)));
    }
    s
}

/// Spreads `k` picks over `0..n` (xorshift; the same sequence every run).
fn picks(n: usize, k: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..k)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

pub fn lookup_bench(n: usize, rounds: usize, lookups: usize) -> anyhow::Result<LookupResult> {
    let text = routes_file(n, "127.0.0.1:9");
    let t0 = Instant::now();
    let parsed = standalone::parse(&text)?;
    let table = RoutingTable::new(parsed.routes.into_iter().map(Arc::new).collect());
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(table.len() == n, "table has {} routes, expected {n}", table.len());
    let hits: Vec<String> = picks(n, 4096).into_iter().map(host).collect();
    let misses: Vec<String> = (0..4096).map(|i| format!("m{i}.other.local")).collect();
    let headers = HeaderMap::new();
    let path = "/api/generate";
    // Check the table answers what it should before timing it.
    for (i, h) in hits.iter().enumerate().take(64) {
        let found = table.lookup(h, path, &headers).map(|r| r.route.key.name.clone());
        anyhow::ensure!(found.as_deref() == h.split('.').next(), "lookup {i} of {h} found {found:?}");
    }
    anyhow::ensure!(table.lookup(&misses[0], path, &headers).is_none(), "a miss matched");
    let time = |hosts: &[String], path: &str| {
        let t = Instant::now();
        let mut found = 0usize;
        for i in 0..lookups {
            found += usize::from(table.lookup(black_box(&hosts[i % hosts.len()]), path, &headers).is_some());
        }
        black_box(found);
        t.elapsed().as_nanos() as f64 / lookups.max(1) as f64
    };
    time(&hits, path); // warm-up
    let (mut hit, mut hit_root, mut miss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        hit.push(time(&hits, path));
        hit_root.push(time(&hits, "/"));
        miss.push(time(&misses, path));
    }
    Ok(LookupResult {
        routes: n,
        build_ms,
        hit_ns: Spread::of(&hit),
        hit_root_ns: Spread::of(&hit_root),
        miss_ns: Spread::of(&miss),
    })
}

pub fn run(tools: &Tools, opts: &ManyRoutesOpts) -> anyhow::Result<ManyRoutesReport> {
    let machine = Machine::describe(tools);
    let mut lookup = Vec::new();
    for &n in &opts.counts {
        anyhow::ensure!(!aborted(), "interrupted");
        let r = lookup_bench(n, opts.rounds.max(3), opts.lookups)?;
        eprintln!(
            "  lookup: {n:>6} routes  hit {} ns  hit on / {} ns  miss {} ns",
            r.hit_ns.show(1),
            r.hit_root_ns.show(1),
            r.miss_ns.show(1)
        );
        lookup.push(r);
    }
    let mut e2e_runs = Vec::new();
    if !opts.lookup_only {
        let dir = tempfile::tempdir()?;
        let (mut backend, backend_addr, _) = start_backend(tools, opts.backend, 1, false, dir.path())?;
        let mut interceptors: Vec<(usize, RunningInterceptor)> = Vec::new();
        for &n in &opts.counts {
            let routes = routes_file(n, &backend_addr.to_string());
            let env = [("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string())];
            interceptors.push((n, procs::start_interceptor(tools, &routes, &env)?));
        }
        for round in 0..opts.rounds {
            for (n, i) in interceptors.iter_mut() {
                anyhow::ensure!(!aborted(), "interrupted");
                backend.check_running()?;
                i.child.check_running()?;
                let hosts: Vec<String> = picks(*n, (*n).min(4096)).into_iter().map(host).collect();
                let target: SocketAddr = i.proxy;
                let spec = LoadSpec {
                    label: format!("round {}/{} routes={n}", round + 1, opts.rounds),
                    hosts,
                    threads: opts.client_threads,
                    duration: opts.duration,
                    warmup: opts.warmup,
                    progress: opts.progress,
                    ..LoadSpec::closed("", target, "", opts.connections)
                };
                let r = load::run(&spec)?;
                let run = E2eRun {
                    round,
                    routes: *n,
                    rps: r.rps,
                    p50_us: r.latency.p50_us,
                    p99_us: r.latency.p99_us,
                    failed: r.failed(),
                    rss_kib: procs::rss_kib(i.child.pid()),
                };
                eprintln!(
                    "  round {} routes={n:<6} {:>9.0} req/s  p50 {:.0} µs  p99 {:.0} µs  failed {}",
                    round + 1,
                    run.rps,
                    run.p50_us,
                    run.p99_us,
                    run.failed
                );
                e2e_runs.push(run);
            }
        }
        for (_, mut i) in interceptors {
            i.child.stop(Duration::from_secs(3));
        }
        backend.stop(Duration::from_secs(3));
    }
    let smallest = opts.counts.iter().min().copied().unwrap_or(0);
    let e2e = if e2e_runs.is_empty() {
        Vec::new()
    } else {
        opts.counts
            .iter()
            .map(|&n| {
                let rs: Vec<&E2eRun> = e2e_runs.iter().filter(|r| r.routes == n).collect();
                let s = |f: &dyn Fn(&E2eRun) -> f64| Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
                let ratio: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| {
                        let base = e2e_runs.iter().find(|b| b.routes == smallest && b.round == r.round)?;
                        Some(r.rps / base.rps)
                    })
                    .collect();
                E2eSummary {
                    routes: n,
                    rps: s(&|r| r.rps),
                    p50_us: s(&|r| r.p50_us),
                    p99_us: s(&|r| r.p99_us),
                    rps_over_smallest: Spread::of(&ratio),
                    rss_mib: s(&|r| r.rss_kib as f64 / 1024.0),
                    failed: rs.iter().map(|r| r.failed).sum(),
                }
            })
            .collect()
    };
    Ok(ManyRoutesReport { scenario: "many-routes", machine, opts: opts.clone(), lookup, e2e_runs, e2e })
}

impl ManyRoutesReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "many-routes: RoutingTable::lookup, {} lookups per round, median (min–max) of {} rounds; exact-host routes, path /api/generate",
            self.opts.lookups,
            self.opts.rounds.max(3)
        );
        let mut t = Table::new(&["routes", "build ms", "hit ns (/api/generate)", "hit ns (/)", "miss ns"]);
        for r in &self.lookup {
            t.row(vec![
                r.routes.to_string(),
                format!("{:.1}", r.build_ms),
                r.hit_ns.show(1),
                r.hit_root_ns.show(1),
                r.miss_ns.show(1),
            ]);
        }
        t.print();
        if !self.e2e.is_empty() {
            println!(
                "end to end through the interceptor ({} proxy thread(s)), c={}, Host rotating over the routes, {} round(s) of {:?}:",
                self.opts.proxy_threads, self.opts.connections, self.opts.rounds, self.opts.duration
            );
            let mut t = Table::new(&["routes", "req/s", "÷ smallest", "p50 µs", "p99 µs", "RSS MiB", "failed"]);
            for s in &self.e2e {
                t.row(vec![
                    s.routes.to_string(),
                    format!("{} ({}–{})", kilo(s.rps.median), kilo(s.rps.min), kilo(s.rps.max)),
                    s.rps_over_smallest.show(2),
                    s.p50_us.show(0),
                    s.p99_us.show(0),
                    s.rss_mib.show(1),
                    s.failed.to_string(),
                ]);
            }
            t.print();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_table_finds_every_route() {
        let r = lookup_bench(50, 1, 1000).unwrap();
        assert_eq!(r.routes, 50);
        assert!(r.hit_ns.median > 0.0);
    }

    #[test]
    fn picks_cover_the_range() {
        let p = picks(10, 1000);
        assert!(p.iter().all(|i| *i < 10));
        assert_eq!((0..10).filter(|i| p.contains(i)).count(), 10);
    }
}
