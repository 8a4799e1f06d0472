//! `instructions`: user-space instructions per proxied request, counted by valgrind's callgrind, for the
//! interceptor and for nginx on the same request mix (keep-alive GETs through the proxy to the `overhead`
//! backend). Unlike CPU time, an instruction count does not depend on what else the machine is doing, so a
//! change to the hot path can be judged in minutes on a busy machine.
//!
//! Each proxy runs as one process under `valgrind --tool=callgrind --instr-atstart=no` (the interceptor with
//! one proxy thread, nginx with `master_process off`, so the process that serves is the one counted). After a
//! warm-up (connections to the backend open, lazy initialisation done) instrumentation is switched on, and each
//! round is `callgrind_control --zero`, exactly N requests from the load client, `callgrind_control --dump`;
//! the dump's total `Ir` (every thread of the process, user space only: the kernel's TCP work is not in it)
//! divided by N is the figure. The dumps can be kept (`--out-dir`) for `callgrind_annotate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::overhead::{self, BackendKind, HOST};
use crate::load::{self, LoadSpec, Protocol};
use crate::net::Reserved;
use crate::procs::{self, Child, Launch, NginxRole, NginxServer, Tools, find_program};
use crate::report::{Machine, Table};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Serialize)]
pub struct InstructionsOpts {
    /// Requests counted per round (rounded down to a multiple of the concurrency).
    pub requests: u64,
    /// Requests before counting starts.
    pub warmup_requests: u64,
    pub connections: usize,
    pub rounds: usize,
    pub protocol: Protocol,
    /// Concurrent streams per h2 connection.
    pub h2_streams: usize,
    /// Interceptor `HTTPSCALE_PROXY_THREADS` (nginx always runs as one process).
    pub proxy_threads: usize,
    pub backend: BackendKind,
    pub skip_nginx: bool,
    /// Keep the callgrind dumps here (default: a temporary directory, removed).
    pub out_dir: Option<PathBuf>,
    pub progress: bool,
}

/// One counted round of one proxy.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub round: usize,
    pub leg: String,
    pub requests: u64,
    /// Callgrind `Ir` between the zero and the dump, every thread of the process.
    pub instructions: u64,
    pub per_request: f64,
    /// The dump file, when kept.
    pub dump: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstructionsReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: InstructionsOpts,
    pub backend: String,
    pub valgrind: String,
    pub notes: Vec<String>,
    pub counts: Vec<Count>,
    pub interceptor_per_request: Spread,
    pub nginx_per_request: Spread,
    /// Interceptor ÷ nginx, paired per round.
    pub ratio: Spread,
}

/// valgrind and its `callgrind_control`.
struct Valgrind {
    valgrind: PathBuf,
    control: PathBuf,
    version: String,
}

impl Valgrind {
    fn locate() -> anyhow::Result<Valgrind> {
        let missing = "valgrind is not installed (apt-get install -y valgrind)";
        let valgrind = find_program("valgrind", "/usr/bin").context(missing)?;
        let control = find_program("callgrind_control", "/usr/bin").context(missing)?;
        let out = Command::new(&valgrind).arg("--version").output().context("running valgrind --version")?;
        Ok(Valgrind { valgrind, control, version: String::from_utf8_lossy(&out.stdout).trim().to_string() })
    }

    /// The launch of a process counted into `dir/<leg>.callgrind.<n>`, instrumentation off until switched on.
    fn launch(&self, dir: &Path, leg: &str) -> Launch {
        let out = dir.join(format!("{leg}.callgrind"));
        let log = dir.join(format!("{leg}.valgrind.log"));
        let wrapper = vec![
            self.valgrind.clone().into_os_string(),
            "--tool=callgrind".into(),
            "--instr-atstart=no".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
            format!("--log-file={}", log.display()).into(),
        ];
        Launch { wrapper, ready_within: Some(Duration::from_secs(120)) }
    }
}

/// A proxy process under callgrind, controlled by PID.
struct Counted<'a> {
    valgrind: &'a Valgrind,
    pid: u32,
    out: PathBuf,
    dumps: usize,
}

impl Counted<'_> {
    fn control(&self, what: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(&self.valgrind.control)
            .args(what)
            .arg(self.pid.to_string())
            .output()
            .context("running callgrind_control")?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && text.contains("OK"),
            "callgrind_control {what:?} {}: {text}{}",
            self.pid,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Dumps the counters and returns the total instructions since the last zero, with the dump's path.
    fn dump(&mut self) -> anyhow::Result<(u64, PathBuf)> {
        self.control(&["--dump"])?;
        self.dumps += 1;
        let file = PathBuf::from(format!("{}.{}", self.out.display(), self.dumps));
        // callgrind_control returns once the dump is requested; the file is complete when its totals line is.
        for _ in 0..500 {
            if let Some(ir) = std::fs::read_to_string(&file).ok().as_deref().and_then(total_ir) {
                return Ok((ir, file));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("no complete callgrind dump at {}", file.display())
    }
}

/// The `totals:` (else `summary:`) figure of a callgrind dump: its first event, `Ir`.
pub fn total_ir(dump: &str) -> Option<u64> {
    let line = |key: &str| dump.lines().find_map(|l| l.strip_prefix(key));
    line("totals:").or_else(|| line("summary:"))?.split_whitespace().next()?.parse().ok()
}

/// Sends exactly `per_stream` requests on each of the spec's streams; fails unless every one was a 2xx answer.
fn send(opts: &InstructionsOpts, addr: SocketAddr, label: &str, per_stream: u64) -> anyhow::Result<u64> {
    let spec = LoadSpec {
        label: label.to_string(),
        protocol: opts.protocol,
        h2_streams: opts.h2_streams.max(1),
        duration: Duration::from_secs(600),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(30),
        requests_per_stream: Some(per_stream),
        progress: opts.progress,
        ..LoadSpec::closed("", addr, HOST, opts.connections.max(1))
    };
    let want = per_stream * spec.concurrency() as u64;
    let r = load::run(&spec)?;
    anyhow::ensure!(
        r.responses == want && r.ok == want && r.errors.is_empty() && r.unfinished == 0,
        "{label}: {want} requests sent, {} answered ({} 2xx), errors {:?}, unfinished {}",
        r.responses,
        r.ok,
        r.errors,
        r.unfinished
    );
    Ok(want)
}

/// Warm-up, then `rounds` counted rounds through the proxy at `addr` (process `child` under callgrind).
fn count_leg(
    opts: &InstructionsOpts,
    vg: &Valgrind,
    leg: &str,
    (child, addr): (&mut Child, SocketAddr),
    dir: &Path,
) -> anyhow::Result<Vec<Count>> {
    let concurrency = opts.connections.max(1) * if opts.protocol == Protocol::H2 { opts.h2_streams.max(1) } else { 1 };
    let per_stream = (opts.requests / concurrency as u64).max(1);
    let mut counted = Counted { valgrind: vg, pid: child.pid(), out: dir.join(format!("{leg}.callgrind")), dumps: 0 };
    send(opts, addr, &format!("{leg} warm-up"), opts.warmup_requests.div_ceil(concurrency as u64).max(1))?;
    counted.control(&["--instr=on"])?;
    // Once more with instrumentation on, so that no round pays for translating the code.
    send(opts, addr, &format!("{leg} warm-up"), 1)?;
    let mut counts = Vec::new();
    for round in 0..opts.rounds {
        anyhow::ensure!(!aborted(), "interrupted");
        child.check_running()?;
        counted.control(&["--zero"])?;
        let requests = send(opts, addr, &format!("round {}/{} {leg}", round + 1, opts.rounds), per_stream)?;
        let (instructions, dump) = counted.dump()?;
        let per_request = instructions as f64 / requests as f64;
        eprintln!(
            "  round {} {leg:<12} {requests} requests  {instructions} instructions  {per_request:.0} per request",
            round + 1
        );
        counts.push(Count { round, leg: leg.to_string(), requests, instructions, per_request, dump: Some(dump) });
    }
    Ok(counts)
}

/// nginx as the proxy, one process under callgrind, unless skipped or not installed (said in `notes`).
fn nginx_leg(
    tools: &Tools,
    opts: &InstructionsOpts,
    vg: &Valgrind,
    backend: SocketAddr,
    dir: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Count>> {
    let bin = match (&tools.nginx, opts.skip_nginx) {
        (_, true) => {
            notes.push("nginx leg skipped (--skip-nginx)".into());
            return Ok(Vec::new());
        }
        (None, _) => {
            let why = "nginx leg skipped: nginx is not installed (apt-get install -y nginx)";
            eprintln!("{why}");
            notes.push(why.into());
            return Ok(Vec::new());
        }
        (Some(bin), false) => bin,
    };
    let port = Reserved::new()?;
    let listen = port.addr();
    let d = dir.join("nginx-proxy");
    std::fs::create_dir_all(&d)?;
    let role = NginxRole::Proxy { upstream: backend, buffering: true };
    let server = NginxServer { listen, workers: 0, h2: opts.protocol == Protocol::H2, role };
    let mut child = procs::start_nginx_with(bin, &d, server, &vg.launch(dir, "nginx"))?.holding(port);
    let counts = count_leg(opts, vg, "nginx", (&mut child, listen), dir);
    child.stop(Duration::from_secs(10));
    counts
}

pub fn run(tools: &Tools, opts: &InstructionsOpts) -> anyhow::Result<InstructionsReport> {
    let vg = Valgrind::locate()?;
    let machine = Machine::describe(tools);
    let mut notes = Vec::new();
    let tmp = tempfile::tempdir()?;
    let dir = match &opts.out_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let (mut backend, backend_addr, backend_desc) = overhead::start_backend(tools, opts.backend, 1, false, tmp.path())?;
    let env = [("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string())];
    let routes = overhead::routes_file(backend_addr, false);
    let mut interceptor = procs::start_interceptor_with(tools, &routes, &env, &vg.launch(&dir, "interceptor"))?;
    let mut counts = count_leg(opts, &vg, "interceptor", (&mut interceptor.child, interceptor.proxy), &dir);
    interceptor.child.stop(Duration::from_secs(10));
    if let Ok(c) = &mut counts {
        c.extend(nginx_leg(tools, opts, &vg, backend_addr, &dir, &mut notes)?);
    }
    backend.check_running()?;
    backend.stop(Duration::from_secs(3));
    let mut counts = counts?;
    if opts.out_dir.is_none() {
        counts.iter_mut().for_each(|c| c.dump = None);
    }
    notes.push(
        "instructions are callgrind's Ir of the proxy process (every thread, user space only) between a zero and \
         a dump around exactly the counted requests, divided by them"
            .into(),
    );
    let per =
        |leg: &str| Spread::of(&counts.iter().filter(|c| c.leg == leg).map(|c| c.per_request).collect::<Vec<_>>());
    let ratio: Vec<f64> = counts
        .iter()
        .filter(|c| c.leg == "interceptor")
        .filter_map(|i| {
            counts.iter().find(|n| n.leg == "nginx" && n.round == i.round).map(|n| i.per_request / n.per_request)
        })
        .collect();
    Ok(InstructionsReport {
        scenario: "instructions",
        machine,
        opts: opts.clone(),
        backend: backend_desc,
        valgrind: vg.version,
        notes,
        interceptor_per_request: per("interceptor"),
        nginx_per_request: per("nginx"),
        ratio: Spread::of(&ratio),
        counts,
    })
}

impl InstructionsReport {
    pub fn print(&self) {
        self.machine.print();
        let o = &self.opts;
        println!(
            "instructions: backend {}; {:?}, {} connection(s){}; {} round(s) of {} requests after {} warm-up; {}; interceptor with {} proxy thread(s), nginx as one process",
            self.backend,
            o.protocol,
            o.connections,
            if o.protocol == Protocol::H2 { format!(" × {} streams", o.h2_streams) } else { String::new() },
            o.rounds,
            self.counts.first().map_or(o.requests, |c| c.requests),
            o.warmup_requests,
            self.valgrind,
            o.proxy_threads,
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        let mut t = Table::new(&["leg", "instructions/request median (min–max)", "rounds"]);
        for (leg, s) in [("interceptor", &self.interceptor_per_request), ("nginx", &self.nginx_per_request)] {
            if s.n > 0 {
                t.row(vec![leg.to_string(), s.show(0), s.n.to_string()]);
            }
        }
        t.print();
        println!("ratio interceptor/nginx (paired per round): {}", self.ratio.show(3));
        for c in self.counts.iter().filter(|c| c.dump.is_some()) {
            println!(
                "dump: round {} {}: {}",
                c.round + 1,
                c.leg,
                c.dump.as_deref().map_or(String::new(), |p| p.display().to_string())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_of_a_dump() {
        let dump = "version: 1\ncmd: nginx\nevents: Ir\nsummary: 125220\n\nfn=(1) main\n3 4\ntotals: 125223\n";
        assert_eq!(total_ir(dump), Some(125_223));
        assert_eq!(total_ir("events: Ir\nsummary: 7\n"), Some(7));
        assert_eq!(total_ir("events: Ir\n"), None, "an incomplete dump has no total");
    }
}
