//! `overhead`: the same backend reached directly, through the interceptor and through nginx as an equivalent
//! keep-alive reverse proxy, A/B interleaved (direct, interceptor, nginx, direct, …) at several
//! concurrencies, with throughput and latency ratios and CPU per request of each proxy process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::load::{self, LoadResult, LoadSpec, Protocol};
use crate::net::{ANY_LOOPBACK_PORT, Reserved};
use crate::procs::{self, Child, NginxRole, Tools};
use crate::report::{Machine, Table, kilo};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// nginx, one worker, `return 200 "ok"` (the reference figures' backend).
    Nginx,
    /// `loadtest backend --mode ok`: a tiny hyper server answering `200 ok`.
    Hyper,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadOpts {
    pub concurrencies: Vec<usize>,
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Interceptor `HTTPSCALE_PROXY_THREADS` and nginx `worker_processes`.
    pub proxy_threads: usize,
    pub client_threads: usize,
    pub backend: BackendKind,
    pub backend_threads: usize,
    pub protocol: Protocol,
    pub h2_streams: usize,
    /// Open loop at this total rate instead of closed loop.
    pub rate: Option<f64>,
    pub skip_nginx: bool,
    pub progress: bool,
    /// The load generator: `loadtest` (default) or `wrk` (closed loop, HTTP/1.1; comparable with the
    /// reference figures, which were taken with wrk).
    pub client: Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Loadtest,
    Wrk,
}

#[derive(Debug, Clone, Serialize)]
pub struct LegRun {
    pub round: usize,
    pub concurrency: usize,
    pub leg: String,
    pub result: LoadResult,
    /// CPU of the proxy process tree (interceptor or nginx) per answer, µs.
    pub proxy_cpu_us_per_req: Option<f64>,
    pub backend_cpu_us_per_req: f64,
    /// CPU of this load generator per answer, µs.
    pub client_cpu_us_per_req: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LegSummary {
    pub concurrency: usize,
    pub leg: String,
    pub rps: Spread,
    pub p50_us: Spread,
    pub p90_us: Spread,
    pub p99_us: Spread,
    pub p999_us: Spread,
    pub proxy_cpu_us_per_req: Spread,
    pub backend_cpu_us_per_req: Spread,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    pub concurrency: usize,
    /// Paired per round (legs of one round ran back to back).
    pub rps_interceptor_over_direct: Spread,
    pub rps_interceptor_over_nginx: Spread,
    pub p50_interceptor_over_nginx: Spread,
    pub p99_interceptor_over_nginx: Spread,
    /// Interceptor p50 minus direct p50, µs.
    pub p50_added_us: Spread,
    pub cpu_interceptor_over_nginx: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: OverheadOpts,
    pub backend: String,
    pub notes: Vec<String>,
    pub runs: Vec<LegRun>,
    pub summary: Vec<LegSummary>,
    pub ratios: Vec<Ratios>,
}

pub const HOST: &str = "bench.local";

pub fn routes_file(upstream: SocketAddr, h2c: bool) -> String {
    let proto = if h2c { "\n    appProtocol: kubernetes.io/h2c" } else { "" };
    format!("routes:\n  - name: bench\n    hosts: [{HOST}]\n    upstream: {upstream}{proto}\n")
}

/// Starts the backend of the comparison; returns it and its address.
pub fn start_backend(
    tools: &Tools,
    kind: BackendKind,
    threads: usize,
    h2: bool,
    dir: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr, String)> {
    match (kind, &tools.nginx) {
        (BackendKind::Nginx, Some(nginx)) => {
            let d = dir.join("backend");
            std::fs::create_dir_all(&d)?;
            let port = Reserved::new()?;
            let listen = port.addr();
            let child = procs::start_nginx(nginx, &d, listen, threads, h2, NginxRole::Backend)?.holding(port);
            Ok((child, listen, format!("nginx, {threads} worker(s), return 200 \"ok\"")))
        }
        (BackendKind::Nginx, None) => anyhow::bail!("nginx is not installed; use --backend hyper"),
        (BackendKind::Hyper, _) => {
            let (child, addr) = procs::start_backend(tools, ANY_LOOPBACK_PORT, threads, "ok", &[])?;
            Ok((child, addr, format!("loadtest backend (hyper), {threads} thread(s), 200 \"ok\"")))
        }
    }
}

fn per_req_us(cpu: Duration, responses: u64) -> f64 {
    if responses == 0 { f64::NAN } else { cpu.as_secs_f64() * 1e6 / responses as f64 }
}

/// The load generator to use: `None` for `loadtest`, else wrk's path.
fn wrk_client(opts: &OverheadOpts) -> anyhow::Result<Option<std::path::PathBuf>> {
    match opts.client {
        Client::Loadtest => Ok(None),
        Client::Wrk => {
            anyhow::ensure!(
                opts.protocol == Protocol::H1 && opts.rate.is_none(),
                "--client wrk runs closed-loop HTTP/1.1 only"
            );
            Ok(Some(crate::wrk::find_wrk().ok_or_else(|| anyhow::anyhow!("wrk is not installed"))?))
        }
    }
}

/// nginx as the comparison proxy in front of `backend`, unless skipped or not installed (said in `notes`).
fn start_nginx_proxy(
    tools: &Tools,
    opts: &OverheadOpts,
    backend: SocketAddr,
    dir: &std::path::Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<(Child, SocketAddr)>> {
    match (&tools.nginx, opts.skip_nginx) {
        (_, true) => {
            notes.push("nginx leg skipped (--skip-nginx)".into());
            Ok(None)
        }
        (None, _) => {
            let why = "nginx leg skipped: nginx is not installed (apt-get install -y nginx)";
            eprintln!("{why}");
            notes.push(why.into());
            Ok(None)
        }
        (Some(bin), false) => {
            let port = Reserved::new()?;
            let listen = port.addr();
            let d = dir.join("proxy");
            std::fs::create_dir_all(&d)?;
            let role = NginxRole::Proxy { upstream: backend, buffering: true };
            let h2 = opts.protocol == Protocol::H2;
            Ok(Some((procs::start_nginx(bin, &d, listen, opts.proxy_threads, h2, role)?.holding(port), listen)))
        }
    }
}

/// One leg of one round: where the load goes and which process proxies it (none for the direct leg).
struct Leg<'a> {
    round: usize,
    concurrency: usize,
    name: &'a str,
    addr: SocketAddr,
    proxy_pid: Option<u32>,
}

/// Runs one leg and measures the CPU each process spent on it.
fn measure_leg(
    opts: &OverheadOpts,
    leg: Leg<'_>,
    backend_pid: u32,
    wrk: Option<&std::path::Path>,
) -> anyhow::Result<LegRun> {
    let c = leg.concurrency;
    let (connections, streams) = match opts.protocol {
        Protocol::H1 => (c, 1),
        Protocol::H2 => (c.div_ceil(opts.h2_streams.max(1)).max(1), opts.h2_streams.max(1).min(c)),
    };
    let spec = LoadSpec {
        label: format!("round {}/{} c={c} {}", leg.round + 1, opts.rounds, leg.name),
        protocol: opts.protocol,
        h2_streams: streams,
        threads: opts.client_threads,
        duration: opts.duration,
        warmup: opts.warmup,
        rate: opts.rate,
        progress: opts.progress,
        ..LoadSpec::closed("", leg.addr, HOST, connections)
    };
    // CPU is read over the whole run (warm-up included) and divided by every answer in it.
    let proxy_cpu0 = leg.proxy_pid.map(procs::cpu_time);
    let backend_cpu0 = procs::cpu_time(backend_pid);
    let client_cpu0 = procs::own_cpu_time();
    let result = match wrk {
        None => load::run(&spec)?,
        Some(w) => crate::wrk::wrk_load(w, &LoadSpec { duration: spec.warmup + spec.duration, ..spec.clone() })?,
    };
    let client_cpu = procs::own_cpu_time().saturating_sub(client_cpu0);
    let backend_cpu = procs::cpu_time(backend_pid).saturating_sub(backend_cpu0);
    let proxy_cpu = leg.proxy_pid.zip(proxy_cpu0).map(|(p, c0)| procs::cpu_time(p).saturating_sub(c0));
    let all = match wrk {
        None => result.responses as f64 * (spec.warmup + spec.duration).as_secs_f64() / spec.duration.as_secs_f64(),
        Some(_) => result.responses as f64,
    };
    let all = all.round() as u64;
    eprintln!(
        "  round {} c={c:<4} {:<12} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  failed {}",
        leg.round + 1,
        leg.name,
        result.rps,
        result.latency.p50_us,
        result.latency.p99_us,
        result.failed()
    );
    Ok(LegRun {
        round: leg.round,
        concurrency: c,
        leg: leg.name.to_string(),
        proxy_cpu_us_per_req: proxy_cpu.map(|cpu| per_req_us(cpu, all)),
        backend_cpu_us_per_req: per_req_us(backend_cpu, all),
        client_cpu_us_per_req: per_req_us(client_cpu, all),
        result,
    })
}

pub fn run(tools: &Tools, opts: &OverheadOpts) -> anyhow::Result<OverheadReport> {
    let machine = Machine::describe(tools);
    let mut notes = Vec::new();
    let dir = tempfile::tempdir()?;
    let h2 = opts.protocol == Protocol::H2;
    // With h2 the clients speak h2c to the proxies and to the direct backend; both proxies speak HTTP/1.1 to
    // the backend (nginx cannot proxy h2 upstream), so the backend must speak both: the hyper one does.
    anyhow::ensure!(
        !(h2 && opts.backend == BackendKind::Nginx),
        "--protocol h2 needs --backend hyper (the backend must speak h2c to the direct leg and HTTP/1.1 to the proxies)"
    );
    let (mut backend, backend_addr, backend_desc) =
        start_backend(tools, opts.backend, opts.backend_threads, false, dir.path())?;
    let mut interceptor = procs::start_interceptor(
        tools,
        &routes_file(backend_addr, false),
        &[("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string())],
    )?;
    let wrk = wrk_client(opts)?;
    let nginx = start_nginx_proxy(tools, opts, backend_addr, dir.path(), &mut notes)?;

    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for &concurrency in &opts.concurrencies {
            let mut legs: Vec<(&str, SocketAddr, Option<u32>)> =
                vec![("direct", backend_addr, None), ("interceptor", interceptor.proxy, Some(interceptor.child.pid()))];
            if let Some((n, addr)) = &nginx {
                legs.push(("nginx", *addr, Some(n.pid())));
            }
            for (name, addr, proxy_pid) in legs {
                if aborted() {
                    anyhow::bail!("interrupted");
                }
                backend.check_running()?;
                interceptor.child.check_running()?;
                let leg = Leg { round, concurrency, name, addr, proxy_pid };
                runs.push(measure_leg(opts, leg, backend.pid(), wrk.as_deref())?);
            }
        }
    }
    interceptor.child.stop(Duration::from_secs(3));
    if let Some((mut n, _)) = nginx {
        n.stop(Duration::from_secs(3));
    }
    backend.stop(Duration::from_secs(3));
    notes.push(
        "CPU per request divides the process tree's utime+stime over the whole run (warm-up included) by the \
         answers of the whole run (measured-window count scaled to the run length)"
            .into(),
    );
    let (summary, ratios) = summarize(&runs, &opts.concurrencies);
    Ok(OverheadReport {
        scenario: "overhead",
        machine,
        opts: opts.clone(),
        backend: backend_desc,
        notes,
        runs,
        summary,
        ratios,
    })
}

fn summarize(runs: &[LegRun], concurrencies: &[usize]) -> (Vec<LegSummary>, Vec<Ratios>) {
    let mut summary = Vec::new();
    let mut ratios = Vec::new();
    for &c in concurrencies {
        let mut by_leg: BTreeMap<&str, Vec<&LegRun>> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.concurrency == c) {
            by_leg.entry(r.leg.as_str()).or_default().push(r);
        }
        for leg in ["direct", "interceptor", "nginx"] {
            let Some(rs) = by_leg.get(leg) else { continue };
            let s = |f: &dyn Fn(&LegRun) -> f64| Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            summary.push(LegSummary {
                concurrency: c,
                leg: leg.into(),
                rps: s(&|r| r.result.rps),
                p50_us: s(&|r| r.result.latency.p50_us),
                p90_us: s(&|r| r.result.latency.p90_us),
                p99_us: s(&|r| r.result.latency.p99_us),
                p999_us: s(&|r| r.result.latency.p999_us),
                proxy_cpu_us_per_req: s(&|r| r.proxy_cpu_us_per_req.unwrap_or(f64::NAN)),
                backend_cpu_us_per_req: s(&|r| r.backend_cpu_us_per_req),
                failed: rs.iter().map(|r| r.result.failed()).sum(),
            });
        }
        let paired = |a: &str, b: &str, f: &dyn Fn(&LegRun) -> f64, diff: bool| {
            let (Some(xa), Some(xb)) = (by_leg.get(a), by_leg.get(b)) else { return Spread::of(&[]) };
            let v: Vec<f64> = xa
                .iter()
                .filter_map(|ra| {
                    let rb = xb.iter().find(|rb| rb.round == ra.round)?;
                    Some(if diff { f(ra) - f(rb) } else { f(ra) / f(rb) })
                })
                .collect();
            Spread::of(&v)
        };
        ratios.push(Ratios {
            concurrency: c,
            rps_interceptor_over_direct: paired("interceptor", "direct", &|r| r.result.rps, false),
            rps_interceptor_over_nginx: paired("interceptor", "nginx", &|r| r.result.rps, false),
            p50_interceptor_over_nginx: paired("interceptor", "nginx", &|r| r.result.latency.p50_us, false),
            p99_interceptor_over_nginx: paired("interceptor", "nginx", &|r| r.result.latency.p99_us, false),
            p50_added_us: paired("interceptor", "direct", &|r| r.result.latency.p50_us, true),
            cpu_interceptor_over_nginx: paired(
                "interceptor",
                "nginx",
                &|r| r.proxy_cpu_us_per_req.unwrap_or(f64::NAN),
                false,
            ),
        });
    }
    (summary, ratios)
}

impl OverheadReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "overhead: backend {}; proxies with {} thread(s)/worker(s); client {:?}, {} thread(s); {:?}{}; {} round(s) of {:?} (+{:?} warm-up) per leg",
            self.backend,
            self.opts.proxy_threads,
            self.opts.client,
            self.opts.client_threads,
            self.opts.protocol,
            self.opts.rate.map(|r| format!(", open loop at {r:.0} req/s")).unwrap_or_default(),
            self.opts.rounds,
            self.opts.duration,
            self.opts.warmup,
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        let mut t = Table::new(&[
            "c",
            "leg",
            "req/s median (min–max)",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "proxy CPU µs/req",
            "failed",
        ]);
        for s in &self.summary {
            t.row(vec![
                s.concurrency.to_string(),
                s.leg.clone(),
                format!("{} ({}–{})", kilo(s.rps.median), kilo(s.rps.min), kilo(s.rps.max)),
                s.p50_us.show(0),
                s.p90_us.show(0),
                s.p99_us.show(0),
                s.p999_us.show(0),
                s.proxy_cpu_us_per_req.show(1),
                s.failed.to_string(),
            ]);
        }
        t.print();
        let mut t = Table::new(&[
            "c",
            "rps interceptor/direct",
            "rps interceptor/nginx",
            "p50 interceptor/nginx",
            "p99 interceptor/nginx",
            "p50 added µs",
            "CPU/req interceptor/nginx",
        ]);
        for r in &self.ratios {
            t.row(vec![
                r.concurrency.to_string(),
                r.rps_interceptor_over_direct.show(2),
                r.rps_interceptor_over_nginx.show(2),
                r.p50_interceptor_over_nginx.show(2),
                r.p99_interceptor_over_nginx.show(2),
                r.p50_added_us.show(0),
                r.cpu_interceptor_over_nginx.show(2),
            ]);
        }
        println!("ratios (paired per round; median (min–max)):");
        t.print();
    }
}
