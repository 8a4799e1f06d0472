//! `loadtest`: httpscale's load generator and benchmark scenarios. `loadtest --help` lists the subcommands;
//! docs/benchmarks.md has the commands behind the published numbers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use httpscale_loadtest::load::{self, LoadSpec, Protocol};
use httpscale_loadtest::procs::Tools;
use httpscale_loadtest::report::{Table, write_json};
use httpscale_loadtest::scenarios::{ceiling, cold_burst, instructions, many_routes, overhead, sigterm, streaming};
use httpscale_loadtest::{backend, parse_duration, set_aborted};

#[derive(Parser)]
#[command(name = "loadtest", version, about = "Load generator and benchmark scenarios for httpscale (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Write the JSON report here (`-` = stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Interceptor under test: a binary path, or `embedded` (this program's copy of the library, still a
    /// separate process). Default: `interceptor` beside this program, else target/release/interceptor
    /// (built with cargo when missing).
    #[arg(long)]
    interceptor: Option<String>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load one target (closed loop, or open loop with --rate).
    Run(RunArgs),
    /// Direct vs interceptor vs nginx on the same backend, interleaved, at several concurrencies.
    Overhead(OverheadArgs),
    /// Instructions per proxied request (valgrind's callgrind), interceptor and nginx on the same requests.
    Instructions(InstructionsArgs),
    /// N held requests released when a late backend comes up: served, release time, memory per request.
    ColdBurst(ColdBurstArgs),
    /// Many concurrent NDJSON streams: are the backend's gaps between lines preserved?
    Streaming(StreamingArgs),
    /// Routing-table lookup cost and end-to-end throughput with 10 … 10 000 routes.
    ManyRoutes(ManyRoutesArgs),
    /// loadtest's ceiling compared with wrk's against the same fast backend.
    Ceiling(CeilingArgs),
    /// SIGTERM under load: every request answered or refused, none accepted and lost.
    Sigterm(SigtermArgs),
    /// A tiny hyper backend (used by the scenarios as a child process).
    Backend(BackendArgs),
    /// nginx as a keep-alive reverse proxy to `--upstream` (the comparison proxy of the real-cluster
    /// benchmarks), until SIGTERM/SIGINT.
    Nginx {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        #[arg(long, default_value = "2")]
        workers: usize,
        /// Accept h2c (prior knowledge) from clients; nginx still speaks HTTP/1.1 upstream.
        #[arg(long)]
        h2: bool,
    },
    /// Draws a chart described in JSON (see `svg.rs`) as an SVG file.
    Chart {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs the interceptor library in this process with the interceptor's own flags (used by `--interceptor
    /// embedded`).
    #[command(hide = true)]
    RunInterceptor {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',').map(|x| x.trim().parse::<T>().map_err(|_| format!("bad list item {x:?}"))).collect()
}

#[derive(Args)]
struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/path (loopback only).
    url: String,
    /// Host header (`:authority` for h2); repeat to rotate over several. Default: the URL's host.
    #[arg(long = "host")]
    hosts: Vec<String>,
    #[arg(short = 'c', long, default_value = "64")]
    connections: usize,
    #[arg(short = 't', long, default_value = "1")]
    threads: usize,
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop: total requests per second (latency from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value = "h1")]
    protocol: Protocol,
    /// Concurrent streams per h2 connection.
    #[arg(long, default_value = "1")]
    h2_streams: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// One-shot: each connection (h2: stream) sends this many requests and stops; the JSON report then lists
    /// every completion time on the system's monotonic clock (`completions_monotonic_s`).
    #[arg(long)]
    requests_per_connection: Option<u64>,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct OverheadArgs {
    #[command(flatten)]
    common: Common,
    /// Comma-separated concurrencies (connections; with h2, streams in total).
    #[arg(long, default_value = "1,16,64", value_parser = list::<usize>)]
    concurrency: Vec<Vec<usize>>,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(short = 'd', long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Interceptor HTTPSCALE_PROXY_THREADS and nginx worker_processes.
    #[arg(long, default_value = "2")]
    proxy_threads: usize,
    #[arg(long, default_value = "1")]
    client_threads: usize,
    #[arg(long, value_enum, default_value = "nginx")]
    backend: overhead::BackendKind,
    #[arg(long, default_value = "1")]
    backend_threads: usize,
    #[arg(long, value_enum, default_value = "h1")]
    protocol: Protocol,
    #[arg(long, default_value = "16")]
    h2_streams: usize,
    /// Open loop at this many requests per second (each leg), instead of closed loop.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    skip_nginx: bool,
    /// Load generator for every leg: loadtest, or wrk (closed-loop HTTP/1.1, like the reference figures).
    #[arg(long, value_enum, default_value = "loadtest")]
    client: overhead::Client,
}

#[derive(Args)]
struct InstructionsArgs {
    #[command(flatten)]
    common: Common,
    /// Requests counted per round (rounded down to a multiple of the concurrency).
    #[arg(short = 'n', long, default_value = "20000")]
    requests: u64,
    /// Requests before counting starts.
    #[arg(long, default_value = "2000")]
    warmup_requests: u64,
    /// Client connections.
    #[arg(short = 'c', long, default_value = "4")]
    connections: usize,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(long, value_enum, default_value = "h1")]
    protocol: Protocol,
    /// Concurrent streams per h2 connection.
    #[arg(long, default_value = "4")]
    h2_streams: usize,
    /// Interceptor HTTPSCALE_PROXY_THREADS (nginx runs as one process).
    #[arg(long, default_value = "1")]
    proxy_threads: usize,
    #[arg(long, value_enum, default_value = "nginx")]
    backend: overhead::BackendKind,
    #[arg(long)]
    skip_nginx: bool,
    /// Keep the callgrind dumps in this directory (for callgrind_annotate).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(Args)]
struct SigtermArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(long, default_value = "64")]
    connections: usize,
    /// Load before the SIGTERM.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    before: Duration,
    /// The interceptor's KEDA_HTTP_SHUTDOWN_DELAY.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    shutdown_delay: Duration,
    #[arg(long, default_value = "2")]
    proxy_threads: usize,
    #[arg(long, default_value = "1")]
    client_threads: usize,
}

#[derive(Args)]
struct ColdBurstArgs {
    #[command(flatten)]
    common: Common,
    /// Comma-separated burst sizes.
    #[arg(long, default_value = "1000,10000", value_parser = list::<usize>)]
    sizes: Vec<Vec<usize>>,
    #[arg(long, default_value = "3")]
    rounds: usize,
    /// The backend starts this long after the burst (once every request is held).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    delay: Duration,
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    hold_wait: Duration,
    #[arg(long, default_value = "2")]
    proxy_threads: usize,
    #[arg(long, default_value = "1")]
    client_threads: usize,
    #[arg(long, default_value = "1")]
    backend_threads: usize,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// h1: one connection per held request; h2: --h2-streams held requests per connection.
    #[arg(long, value_enum, default_value = "h1")]
    protocol: Protocol,
    #[arg(long, default_value = "100")]
    h2_streams: usize,
    /// The route's `coldStart.maxConcurrentPerPod`: released requests go on in waves of this many.
    #[arg(long)]
    max_concurrent_per_pod: Option<usize>,
}

#[derive(Args)]
struct StreamingArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "1000")]
    streams: usize,
    #[arg(long, default_value = "50")]
    lines: u32,
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    interval: Duration,
    /// Padding bytes per line.
    #[arg(long, default_value = "64")]
    pad: usize,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(long, default_value = "2")]
    proxy_threads: usize,
    #[arg(long, default_value = "1")]
    client_threads: usize,
    #[arg(long, default_value = "1")]
    backend_threads: usize,
    #[arg(long)]
    skip_nginx: bool,
}

#[derive(Args)]
struct ManyRoutesArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "10,100,1000,10000", value_parser = list::<usize>)]
    routes: Vec<Vec<usize>>,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(long, default_value = "2000000")]
    lookups: usize,
    /// Only the lookup microbenchmark.
    #[arg(long)]
    lookup_only: bool,
    #[arg(short = 'c', long, default_value = "64")]
    connections: usize,
    #[arg(short = 'd', long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    #[arg(long, default_value = "2")]
    proxy_threads: usize,
    #[arg(long, default_value = "1")]
    client_threads: usize,
    #[arg(long, value_enum, default_value = "nginx")]
    backend: overhead::BackendKind,
}

#[derive(Args)]
struct CeilingArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "64", value_parser = list::<usize>)]
    connections: Vec<Vec<usize>>,
    #[arg(short = 't', long, default_value = "1")]
    threads: usize,
    #[arg(long, default_value = "3")]
    rounds: usize,
    #[arg(short = 'd', long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, value_enum, default_value = "nginx")]
    backend: overhead::BackendKind,
    #[arg(long, default_value = "1")]
    backend_threads: usize,
}

#[derive(Args)]
struct BackendArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value = "1")]
    threads: usize,
    #[arg(long, value_enum, default_value = "ok")]
    mode: backend::Mode,
    #[arg(long, default_value = "50")]
    lines: u32,
    #[arg(long, default_value = "100")]
    interval_ms: u64,
    #[arg(long, default_value = "64")]
    pad: usize,
}

fn flatten<T: Clone>(v: Vec<Vec<T>>) -> Vec<T> {
    v.into_iter().flatten().collect()
}

/// SIGINT/SIGTERM end the current run early; scenarios then stop every process they started.
fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\nstopping: ending the run and every process it started");
            set_aborted();
        });
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Backend(a) => backend::serve(backend::BackendOpts {
            listen: a.listen,
            threads: a.threads,
            mode: a.mode,
            lines: a.lines,
            interval: Duration::from_millis(a.interval_ms),
            pad: a.pad,
        }),
        Cmd::RunInterceptor { args } => return run_interceptor(args),
        other => {
            watch_signals();
            scenario(other)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn scenario(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(a) => run_one(a),
        Cmd::Overhead(a) => overhead_cmd(a),
        Cmd::Instructions(a) => instructions_cmd(a),
        Cmd::ColdBurst(a) => {
            let tools = Tools::locate(a.common.interceptor.as_deref())?;
            let opts = cold_burst::ColdBurstOpts {
                sizes: flatten(a.sizes),
                rounds: a.rounds,
                delay: a.delay,
                hold_wait: a.hold_wait,
                proxy_threads: a.proxy_threads,
                client_threads: a.client_threads,
                backend_threads: a.backend_threads,
                timeout: a.timeout,
                protocol: a.protocol,
                h2_streams: a.h2_streams,
                max_concurrent_per_pod: a.max_concurrent_per_pod,
                progress: !a.common.quiet,
            };
            let report = cold_burst::run(&tools, &opts)?;
            report.print();
            a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
        }
        Cmd::Streaming(a) => {
            let tools = Tools::locate(a.common.interceptor.as_deref())?;
            let opts = streaming::StreamingOpts {
                streams: a.streams,
                lines: a.lines,
                interval: a.interval,
                pad: a.pad,
                rounds: a.rounds,
                proxy_threads: a.proxy_threads,
                client_threads: a.client_threads,
                backend_threads: a.backend_threads,
                skip_nginx: a.skip_nginx,
            };
            let report = streaming::run(&tools, &opts)?;
            report.print();
            a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
        }
        Cmd::ManyRoutes(a) => {
            let tools = Tools::locate(a.common.interceptor.as_deref())?;
            let opts = many_routes::ManyRoutesOpts {
                counts: flatten(a.routes),
                rounds: a.rounds,
                lookups: a.lookups,
                lookup_only: a.lookup_only,
                connections: a.connections,
                duration: a.duration,
                warmup: a.warmup,
                proxy_threads: a.proxy_threads,
                client_threads: a.client_threads,
                backend: a.backend,
                progress: !a.common.quiet,
            };
            let report = many_routes::run(&tools, &opts)?;
            report.print();
            a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
        }
        Cmd::Ceiling(a) => {
            let tools = Tools::locate(a.common.interceptor.as_deref())?;
            let opts = ceiling::CeilingOpts {
                connections: flatten(a.connections),
                threads: a.threads,
                rounds: a.rounds,
                duration: a.duration,
                backend: a.backend,
                backend_threads: a.backend_threads,
                progress: !a.common.quiet,
            };
            let report = ceiling::run(&tools, &opts)?;
            report.print();
            a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
        }
        Cmd::Nginx { listen, upstream, workers, h2 } => nginx_cmd(listen, upstream, workers, h2),
        Cmd::Chart { input, out } => chart_cmd(&input, &out),
        Cmd::Sigterm(a) => sigterm_cmd(a),
        Cmd::Backend(_) | Cmd::RunInterceptor { .. } => Ok(()),
    }
}

fn overhead_cmd(a: OverheadArgs) -> anyhow::Result<()> {
    let tools = Tools::locate(a.common.interceptor.as_deref())?;
    let opts = overhead::OverheadOpts {
        concurrencies: flatten(a.concurrency),
        rounds: a.rounds,
        duration: a.duration,
        warmup: a.warmup,
        proxy_threads: a.proxy_threads,
        client_threads: a.client_threads,
        backend: a.backend,
        backend_threads: a.backend_threads,
        protocol: a.protocol,
        h2_streams: a.h2_streams,
        rate: a.rate,
        skip_nginx: a.skip_nginx,
        progress: !a.common.quiet,
        client: a.client,
    };
    let report = overhead::run(&tools, &opts)?;
    report.print();
    a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
}

fn instructions_cmd(a: InstructionsArgs) -> anyhow::Result<()> {
    let tools = Tools::locate(a.common.interceptor.as_deref())?;
    let opts = instructions::InstructionsOpts {
        requests: a.requests,
        warmup_requests: a.warmup_requests,
        connections: a.connections,
        rounds: a.rounds,
        protocol: a.protocol,
        h2_streams: a.h2_streams,
        proxy_threads: a.proxy_threads,
        backend: a.backend,
        skip_nginx: a.skip_nginx,
        out_dir: a.out_dir,
        progress: !a.common.quiet,
    };
    let report = instructions::run(&tools, &opts)?;
    report.print();
    a.common.json.map_or(Ok(()), |p| write_json(&p, &report))
}

fn chart_cmd(input: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let chart: httpscale_loadtest::svg::Chart = serde_json::from_slice(&std::fs::read(input)?)?;
    Ok(std::fs::write(out, httpscale_loadtest::svg::render(&chart))?)
}

/// nginx as a reverse proxy in the foreground until SIGTERM/SIGINT (the real-cluster benchmarks' comparison).
fn nginx_cmd(listen: SocketAddr, upstream: SocketAddr, workers: usize, h2: bool) -> anyhow::Result<()> {
    let nginx = Tools::locate(Some("embedded"))?.nginx.ok_or_else(|| anyhow::anyhow!("nginx is not installed"))?;
    let dir = tempfile::tempdir()?;
    let role = httpscale_loadtest::procs::NginxRole::Proxy { upstream, buffering: true };
    let mut child = httpscale_loadtest::procs::start_nginx(&nginx, dir.path(), listen, workers, h2, role)?;
    println!("listening {listen}");
    while !httpscale_loadtest::aborted() {
        child.check_running()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    child.stop(Duration::from_secs(3));
    Ok(())
}

fn sigterm_cmd(a: SigtermArgs) -> anyhow::Result<()> {
    let tools = Tools::locate(a.common.interceptor.as_deref())?;
    let opts = sigterm::SigtermOpts {
        rounds: a.rounds,
        connections: a.connections,
        before: a.before,
        shutdown_delay: a.shutdown_delay,
        proxy_threads: a.proxy_threads,
        client_threads: a.client_threads,
        progress: !a.common.quiet,
    };
    let report = sigterm::run(&tools, &opts)?;
    report.print();
    a.common.json.map_or(Ok(()), |p| write_json(&p, &report))?;
    anyhow::ensure!(report.lost_total == 0, "{} requests lost", report.lost_total);
    Ok(())
}

fn run_one(a: RunArgs) -> anyhow::Result<()> {
    let uri: http::Uri = a.url.parse()?;
    let authority = uri.authority().ok_or_else(|| anyhow::anyhow!("the URL needs host:port"))?;
    let port = authority.port_u16().unwrap_or(80);
    let target: SocketAddr = match authority.host() {
        "localhost" => SocketAddr::from(([127, 0, 0, 1], port)),
        h => format!("{}:{port}", h.trim_start_matches('[').trim_end_matches(']')).parse()?,
    };
    let hosts = if a.hosts.is_empty() { vec![authority.to_string()] } else { a.hosts };
    let spec = LoadSpec {
        label: a.url.clone(),
        hosts,
        path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
        protocol: a.protocol,
        h2_streams: a.h2_streams,
        threads: a.threads,
        duration: a.duration,
        warmup: a.warmup,
        rate: a.rate,
        timeout: a.timeout,
        progress: !a.quiet,
        requests_per_stream: a.requests_per_connection,
        connect_parallelism: if a.requests_per_connection.is_some() { 512 } else { 256 },
        ..LoadSpec::closed("", target, "", a.connections)
    };
    let r = load::run(&spec)?;
    println!(
        "{} {:?} c={} ({} thread(s)){}: {:.0} req/s over {:.1}s, {} answers, {} failed",
        a.url,
        r.protocol,
        r.concurrency,
        r.threads,
        r.rate_target.map(|x| format!(", open loop at {x:.0}/s")).unwrap_or_default(),
        r.rps,
        r.seconds,
        r.responses,
        r.failed()
    );
    let mut t = Table::new(&["p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "mean µs"]);
    let l = r.latency;
    t.row([l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us].iter().map(|x| format!("{x:.0}")).collect());
    t.print();
    println!("status: {:?}  errors: {:?}  unfinished: {}  connects: {}", r.status, r.errors, r.unfinished, r.connects);
    #[derive(serde::Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        result: &'a load::LoadResult,
        completions_monotonic_s: Vec<f64>,
    }
    let completions_monotonic_s = r.started.map_or_else(Vec::new, |s| {
        let zero = httpscale_loadtest::monotonic_seconds(s);
        r.completions.iter().map(|d| zero + d.as_secs_f64()).collect()
    });
    a.json.map_or(Ok(()), |p| write_json(&p, &Report { result: &r, completions_monotonic_s }))
}

/// The interceptor's own `main`, on this program's copy of the library.
fn run_interceptor(args: Vec<String>) -> ExitCode {
    httpscale_interceptor::main_with_args(std::iter::once("interceptor".to_string()).chain(args).map(Into::into))
}
