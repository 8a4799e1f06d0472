//! `cold-burst`: N concurrent requests (one per connection) arrive at a route whose backend is down; they are
//! held; the backend process starts after a delay; the report says how many were served, how long after the
//! backend listened the last one was answered, and the interceptor's memory while holding them.
//!
//! Each (round, N) uses a fresh interceptor so its resident memory before the burst is a clean baseline.

// Hold and release times of real processes are wall-clock measurements.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{self, LoadResult, LoadSpec, Protocol};
use crate::net::Reserved;
use crate::procs::{self, Tools};
use crate::report::{Machine, Table};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Serialize)]
pub struct ColdBurstOpts {
    pub sizes: Vec<usize>,
    pub rounds: usize,
    /// The backend starts this long after the burst started (and not before every request is held, up to
    /// `hold_wait`).
    pub delay: Duration,
    /// Longest wait for every request to be held.
    pub hold_wait: Duration,
    pub proxy_threads: usize,
    pub client_threads: usize,
    pub backend_threads: usize,
    /// Per-request bound (the run as a whole is bounded by delay + timeout).
    pub timeout: Duration,
    /// HTTP/1.1: one connection per request; h2: `h2_streams` held requests per connection.
    pub protocol: Protocol,
    pub h2_streams: usize,
    /// The route's `coldStart.maxConcurrentPerPod`, if any.
    pub max_concurrent_per_pod: Option<usize>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurstRun {
    pub round: usize,
    pub n: usize,
    /// Highest `Concurrency` seen in `/queue` before the backend started.
    pub held: i64,
    /// From the burst's start until `/queue` showed every request, ms (`null` if it never did).
    pub all_held_after_ms: Option<f64>,
    /// From spawning the backend process to its `listening` line, ms.
    pub backend_start_ms: f64,
    pub rss_before_kib: u64,
    pub rss_holding_kib: u64,
    pub rss_peak_kib: u64,
    /// (holding − before) ÷ N.
    pub kib_per_held_request: f64,
    /// 2xx answers.
    pub served: u64,
    /// From the backend listening to the first / median / 99th percentile / last answer, ms.
    pub release_first_ms: f64,
    pub release_p50_ms: f64,
    pub release_p99_ms: f64,
    pub release_last_ms: f64,
    pub result: LoadResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurstSummary {
    pub n: usize,
    pub served_all_rounds: bool,
    pub served: Spread,
    pub release_last_ms: Spread,
    pub release_p50_ms: Spread,
    pub kib_per_held_request: Spread,
    pub rss_holding_mib: Spread,
    pub all_held_after_ms: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdBurstReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: ColdBurstOpts,
    pub fd_limit: u64,
    pub runs: Vec<BurstRun>,
    pub summary: Vec<BurstSummary>,
}

const HOST: &str = "cold.local";
const KEY: &str = "default/cold";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// When held requests were answered, relative to the backend being ready (ms; negative: before it), at
/// quantile `q` of the answers.
fn release_percentiles(result: &LoadResult, started: Instant, ready: Instant) -> impl Fn(f64) -> f64 + use<> {
    let release: Vec<f64> = result
        .completions
        .iter()
        .map(|c| {
            let at = started + *c;
            if at >= ready { ms(at - ready) } else { -ms(ready - at) }
        })
        .collect();
    move |q: f64| -> f64 {
        if release.is_empty() {
            return f64::NAN;
        }
        release[((release.len() - 1) as f64 * q).round() as usize]
    }
}

fn one(tools: &Tools, opts: &ColdBurstOpts, round: usize, n: usize) -> anyhow::Result<BurstRun> {
    // The backend starts after the burst, on this port; until then connections to it are refused.
    let upstream = Reserved::new()?;
    let mut routes = format!("routes:\n  - name: cold\n    hosts: [{HOST}]\n    upstream: {}\n", upstream.addr());
    if let Some(per_pod) = opts.max_concurrent_per_pod {
        routes.push_str(&format!("    coldStart: {{maxConcurrentPerPod: {per_pod}}}\n"));
    }
    let mut interceptor = procs::start_interceptor(
        tools,
        &routes,
        &[
            ("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string()),
            ("KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS", n.max(10_000).to_string()),
        ],
    )?;
    let pid = interceptor.child.pid();
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = procs::rss_kib(pid);

    let streams = match opts.protocol {
        Protocol::H1 => 1,
        Protocol::H2 => opts.h2_streams.clamp(1, n),
    };
    let spec = LoadSpec {
        label: format!("round {}/{} N={n}", round + 1, opts.rounds),
        threads: opts.client_threads,
        duration: opts.delay + opts.hold_wait + opts.timeout,
        warmup: Duration::ZERO,
        timeout: opts.delay + opts.hold_wait + opts.timeout,
        requests_per_stream: Some(1),
        connect_parallelism: 512,
        progress: opts.progress,
        protocol: opts.protocol,
        h2_streams: streams,
        ..LoadSpec::closed("", interceptor.proxy, HOST, n.div_ceil(streams))
    };
    anyhow::ensure!(n.is_multiple_of(streams), "N ({n}) must be a multiple of --h2-streams ({streams})");
    let burst_start = Instant::now();
    let client = std::thread::spawn(move || load::run(&spec));

    // Wait until every request is held (or the hold wait passes), then until the delay has passed.
    let mut held = 0i64;
    let mut all_held_after = None;
    let hold_deadline = burst_start + opts.delay.max(opts.hold_wait);
    while Instant::now() < hold_deadline && !aborted() {
        interceptor.child.check_running()?;
        held = held.max(interceptor.concurrency(KEY).unwrap_or(-1));
        if held >= n as i64 {
            all_held_after = Some(burst_start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let rss_holding = procs::rss_kib(pid);
    while burst_start.elapsed() < opts.delay && !aborted() {
        std::thread::sleep(Duration::from_millis(5));
    }
    held = held.max(interceptor.concurrency(KEY).unwrap_or(-1));

    let spawned = Instant::now();
    let (mut backend, _) = procs::start_backend(tools, upstream.addr(), opts.backend_threads, "ok", &[])?;
    let ready = Instant::now();
    let mut rss_peak = rss_holding;
    while !client.is_finished() {
        rss_peak = rss_peak.max(procs::rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = client.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    interceptor.child.stop(Duration::from_secs(3));
    backend.stop(Duration::from_secs(3));

    let pct = release_percentiles(&result, result.started.unwrap_or(burst_start), ready);
    Ok(BurstRun {
        round,
        n,
        held,
        all_held_after_ms: all_held_after.map(ms),
        backend_start_ms: ms(ready - spawned),
        rss_before_kib: rss_before,
        rss_holding_kib: rss_holding,
        rss_peak_kib: rss_peak,
        kib_per_held_request: rss_holding.saturating_sub(rss_before) as f64 / n as f64,
        served: result.ok,
        release_first_ms: pct(0.0),
        release_p50_ms: pct(0.5),
        release_p99_ms: pct(0.99),
        release_last_ms: pct(1.0),
        result,
    })
}

pub fn run(tools: &Tools, opts: &ColdBurstOpts) -> anyhow::Result<ColdBurstReport> {
    let machine = Machine::describe(tools);
    let fd_limit = procs::raise_fd_limit();
    // The client holds N sockets; the interceptor N from clients plus up to N to the backend while releasing.
    let need = opts.sizes.iter().max().copied().unwrap_or(0) as u64 + 200;
    if fd_limit < need {
        eprintln!(
            "warning: open-file limit {fd_limit} is below {need}; raise it with `ulimit -n {need}` or `prlimit` before running"
        );
    }
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for &n in &opts.sizes {
            anyhow::ensure!(!aborted(), "interrupted");
            let r = one(tools, opts, round, n)?;
            eprintln!(
                "  round {} N={n:<6} served {}/{n}  held {}  last released {:.0} ms after ready  {:.2} KiB/held request  failed {}",
                round + 1,
                r.served,
                r.held,
                r.release_last_ms,
                r.kib_per_held_request,
                r.result.failed()
            );
            runs.push(r);
        }
    }
    let summary = opts
        .sizes
        .iter()
        .map(|&n| {
            let rs: Vec<&BurstRun> = runs.iter().filter(|r| r.n == n).collect();
            let s = |f: &dyn Fn(&BurstRun) -> f64| Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            BurstSummary {
                n,
                served_all_rounds: rs.iter().all(|r| r.served == n as u64),
                served: s(&|r| r.served as f64),
                release_last_ms: s(&|r| r.release_last_ms),
                release_p50_ms: s(&|r| r.release_p50_ms),
                kib_per_held_request: s(&|r| r.kib_per_held_request),
                rss_holding_mib: s(&|r| r.rss_holding_kib as f64 / 1024.0),
                all_held_after_ms: s(&|r| r.all_held_after_ms.unwrap_or(f64::NAN)),
            }
        })
        .collect();
    Ok(ColdBurstReport { scenario: "cold-burst", machine, opts: opts.clone(), fd_limit, runs, summary })
}

impl ColdBurstReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "cold-burst: backend starts {:?} after the burst; {}; interceptor with {} proxy thread(s); {} round(s); open-file limit {}",
            self.opts.delay,
            match self.opts.protocol {
                Protocol::H1 => "HTTP/1.1, one connection per request".to_string(),
                Protocol::H2 => format!("h2c, {} requests per connection", self.opts.h2_streams),
            },
            self.opts.proxy_threads,
            self.opts.rounds,
            self.fd_limit
        );
        if let Some(per_pod) = self.opts.max_concurrent_per_pod {
            println!("route with coldStart.maxConcurrentPerPod: {per_pod}");
        }
        let mut t = Table::new(&[
            "N",
            "served (all rounds)",
            "all held after ms",
            "p50 release ms",
            "last release ms",
            "RSS holding MiB",
            "KiB per held request",
        ]);
        for s in &self.summary {
            t.row(vec![
                s.n.to_string(),
                format!("{} ({})", s.served.show(0), if s.served_all_rounds { "all" } else { "NOT all" }),
                s.all_held_after_ms.show(0),
                s.release_p50_ms.show(0),
                s.release_last_ms.show(0),
                s.rss_holding_mib.show(1),
                s.kib_per_held_request.show(2),
            ]);
        }
        println!("median (min–max) over rounds; release = answer time − backend listening:");
        t.print();
    }
}
