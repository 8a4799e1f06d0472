//! The load generator.
//!
//! Each client thread runs its own current-thread Tokio runtime with a `LocalSet`; every connection is one
//! local task that drives a raw hyper client connection (`hyper::client::conn::http1` or `http2`) and sends
//! requests on it one after another (HTTP/1.1) or on `h2_streams` concurrent streams (h2c). Latencies go into
//! one HDR histogram per thread (nanoseconds, 3 significant digits), merged at the end; nothing is shared
//! between threads on the hot path except one relaxed counter per thread for the progress line.
//!
//! - **Closed loop** (`rate: None`): each stream sends its next request as soon as the previous answer ended;
//!   latency is measured from the send.
//! - **Open loop** (`rate: Some(r)`): the streams share `r` requests per second, evenly spaced. A request
//!   held back because the previous answer on its stream came after its slot is measured from its *intended*
//!   send time, so a stalled server is charged for the requests it delayed (no coordinated omission, as in
//!   wrk2); otherwise from its actual send (Tokio's timer wakes up to a millisecond late, and that lateness is
//!   the client's, not the server's).
//!
//! Requests whose intended start falls in the warm-up are not recorded. Requests still in flight when the run
//! ends are counted as `unfinished`, not as errors.

// The load generator measures wall-clock latency on threads and runtimes it owns; no test pauses them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::io::IsTerminal;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::HOST;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::aborted;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1, one request at a time per connection.
    H1,
    /// HTTP/2 cleartext with prior knowledge, `h2_streams` concurrent streams per connection.
    H2,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Shown on the progress line and in the report.
    pub label: String,
    pub target: SocketAddr,
    /// Host header values (`:authority` for h2), rotated per request. At least one.
    pub hosts: Vec<String>,
    pub path: String,
    pub protocol: Protocol,
    pub connections: usize,
    /// Concurrent streams per h2 connection (ignored for HTTP/1.1).
    pub h2_streams: usize,
    pub threads: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    /// Open loop: total requests per second. `None`: closed loop.
    pub rate: Option<f64>,
    /// Per-request bound (from its start, or its intended start in open loop).
    pub timeout: Duration,
    /// Each stream sends this many requests and stops (cold-burst). `None`: until the run ends.
    pub requests_per_stream: Option<u64>,
    /// Concurrent connection attempts per thread while connections open.
    pub connect_parallelism: usize,
    /// Print a progress line on stderr.
    pub progress: bool,
}

impl LoadSpec {
    pub fn closed(label: impl Into<String>, target: SocketAddr, host: &str, connections: usize) -> Self {
        LoadSpec {
            label: label.into(),
            target,
            hosts: vec![host.to_string()],
            path: "/".into(),
            protocol: Protocol::H1,
            connections,
            h2_streams: 1,
            threads: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rate: None,
            timeout: Duration::from_secs(10),
            requests_per_stream: None,
            connect_parallelism: 256,
            progress: true,
        }
    }

    fn streams(&self) -> usize {
        match self.protocol {
            Protocol::H1 => 1,
            Protocol::H2 => self.h2_streams.max(1),
        }
    }

    /// Concurrent requests at most: connections × streams.
    pub fn concurrency(&self) -> usize {
        self.connections * self.streams()
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// Quantiles for a latency chart: dense in the tail, where proxies differ.
const CDF_QUANTILES: [f64; 24] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.997, 0.998, 0.999,
    0.9995, 0.9999, 0.99999, 1.0,
];

fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CDF_QUANTILES.iter().map(|&q| (q, h.value_at_quantile(q) as f64 / 1000.0)).collect()
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub label: String,
    pub target: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub concurrency: usize,
    pub threads: usize,
    pub rate_target: Option<f64>,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Answers received in the measured window (any status).
    pub responses: u64,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers per second in the measured window.
    pub rps: f64,
    pub latency: Latency,
    /// Answers by status class (`2xx`, `5xx`, …).
    pub status: BTreeMap<String, u64>,
    /// Failures by kind: `connect`, `connect-timeout`, `timeout`, `reset`, `closed`, `protocol`, `other`, and
    /// `closed-between-requests` (a connection that ended with no request on it: nothing was lost).
    pub errors: BTreeMap<String, u64>,
    /// Requests cut by the end of the run.
    pub unfinished: u64,
    /// Connections opened (first ones and reconnects).
    pub connects: u64,
    pub body_bytes: u64,
    /// Latency distribution: (quantile, µs) pairs from the minimum to the maximum, for charts.
    pub cdf: Vec<(f64, f64)>,
    /// Completion times of recorded requests, from the start of the run (only with `requests_per_stream`).
    #[serde(skip)]
    pub completions: Vec<Duration>,
    /// When the run started (the zero of `completions`).
    #[serde(skip)]
    pub started: Option<Instant>,
}

impl LoadResult {
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Answers that were not 2xx plus failures.
    pub fn failed(&self) -> u64 {
        self.responses - self.ok + self.errors_total()
    }
}

/// A latency histogram: 1 ns to 10 min, 3 significant digits.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).map_err(|e| anyhow::anyhow!("histogram: {e:?}"))
}

struct ThreadStats {
    hist: Histogram<u64>,
    responses: u64,
    ok: u64,
    status: [u64; 6],
    errors: BTreeMap<&'static str, u64>,
    unfinished: u64,
    connects: u64,
    body_bytes: u64,
    completions: Vec<Duration>,
}

impl ThreadStats {
    fn new() -> anyhow::Result<Self> {
        Ok(ThreadStats {
            hist: new_histogram()?,
            responses: 0,
            ok: 0,
            status: [0; 6],
            errors: BTreeMap::new(),
            unfinished: 0,
            connects: 0,
            body_bytes: 0,
            completions: Vec::new(),
        })
    }

    fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

struct Ctx {
    spec: Arc<LoadSpec>,
    start: Instant,
    record_from: Instant,
    end: Instant,
    hosts: Vec<HeaderValue>,
    uri: Uri,
    stats: RefCell<ThreadStats>,
    done_counter: Arc<AtomicU64>,
    record_completions: bool,
}

impl Ctx {
    fn over(&self) -> bool {
        aborted() || Instant::now() >= self.end
    }
}

type H1Conn = Pin<Box<http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>;

/// A client connection. HTTP/1.1 connections are driven inside the task that sends on them (no second task
/// and no cross-task wake-up per request); h2 connections run as their own local task, shared by the streams.
enum Sender {
    H1 { tx: http1::SendRequest<Empty<Bytes>>, conn: H1Conn, conn_done: bool },
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// Polls `fut` and, while it is pending, the connection that serves it. `None`: the connection ended first.
async fn drive<F: Future>(conn: &mut H1Conn, conn_done: &mut bool, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if *conn_done {
            return Poll::Ready(None);
        }
        if conn.as_mut().poll(cx).is_ready() {
            *conn_done = true;
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if *conn_done => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

async fn read_answer(
    resp: impl Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>>,
) -> Result<(u16, u64), hyper::Error> {
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok((status, bytes))
}

impl Sender {
    async fn ready(&mut self) -> Result<(), &'static str> {
        match self {
            Sender::H1 { tx, conn, conn_done } => match drive(conn, conn_done, tx.ready()).await {
                Some(r) => r.map_err(|e| error_kind(&e)),
                None => Err("closed"),
            },
            Sender::H2(s) => s.ready().await.map_err(|e| error_kind(&e)),
        }
    }

    /// Sends `req` and reads the whole answer: status and body length.
    async fn exchange(&mut self, req: Request<Empty<Bytes>>) -> Result<(u16, u64), &'static str> {
        match self {
            Sender::H1 { tx, conn, conn_done } => match drive(conn, conn_done, read_answer(tx.send_request(req))).await
            {
                Some(r) => r.map_err(|e| error_kind(&e)),
                None => Err("closed"),
            },
            Sender::H2(s) => read_answer(s.send_request(req)).await.map_err(|e| error_kind(&e)),
        }
    }
}

/// The error kind of a connection that ended while no request was on it (nothing lost).
pub const CLOSED_BETWEEN_REQUESTS: &str = "closed-between-requests";

/// Classifies a hyper error into a short kind.
pub fn error_kind(e: &hyper::Error) -> &'static str {
    use std::error::Error as _;
    if e.is_timeout() {
        return "timeout";
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => "reset",
                std::io::ErrorKind::TimedOut => "timeout",
                std::io::ErrorKind::UnexpectedEof => "closed",
                _ => "io",
            };
        }
        if s.to_string().contains("reset") {
            return "reset";
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        "closed"
    } else if e.is_parse() || e.is_parse_status() {
        "protocol"
    } else {
        "other"
    }
}

enum StreamEnd {
    /// The run is over or this stream sent all its requests.
    Done,
    /// The connection broke; open a new one.
    Broken,
}

/// One stream of requests on a connection.
async fn stream_loop(ctx: &Ctx, sender: &mut Sender, slot: usize, sent: &mut u64) -> StreamEnd {
    let spec = &ctx.spec;
    let total_slots = spec.connections * spec.streams();
    let interval = spec.rate.map(|r| Duration::from_secs_f64(total_slots as f64 / r.max(0.001)));
    let mut intended = match spec.rate {
        Some(r) => ctx.start + Duration::from_secs_f64(slot as f64 / r.max(0.001)),
        None => ctx.start,
    };
    if let Some(iv) = interval {
        // Skip the slots already passed (after a reconnect).
        let now = Instant::now();
        while intended + iv < now {
            intended += iv;
        }
    }
    let mut host_i = slot.wrapping_mul(7919) % ctx.hosts.len();
    let mut prev_done = ctx.start;
    loop {
        if let Some(max) = spec.requests_per_stream
            && *sent >= max
        {
            return StreamEnd::Done;
        }
        if ctx.over() {
            return StreamEnd::Done;
        }
        if interval.is_some() {
            let now = Instant::now();
            if intended > now {
                if intended >= ctx.end {
                    return StreamEnd::Done;
                }
                tokio::time::sleep_until(intended.into()).await;
            }
        }
        if let Err(kind) = sender.ready().await {
            if Instant::now() >= ctx.record_from && !ctx.over() {
                // No request was on the connection: it ended between two (a server's `Connection: close`).
                ctx.stats.borrow_mut().error(if kind == "closed" { CLOSED_BETWEEN_REQUESTS } else { kind });
            }
            return StreamEnd::Broken;
        }
        let req = next_request(ctx, sender, host_i);
        host_i = (host_i + 1) % ctx.hosts.len();
        // Open loop: a request sent late because the previous answer on this stream came after its slot is
        // charged from its slot (no coordinated omission); one sent late only because the client's timer woke
        // late (Tokio's timer has millisecond granularity) is charged from its actual send.
        let now = Instant::now();
        let t0 = match interval {
            Some(_) if prev_done > intended => intended,
            _ => now,
        };
        if let Some(iv) = interval {
            intended += iv;
        }
        *sent += 1;
        let deadline = (t0 + spec.timeout).min(ctx.end);
        let outcome = tokio::time::timeout_at(deadline.into(), sender.exchange(req)).await;
        let t1 = Instant::now();
        prev_done = t1;
        if let Some(end) = record(ctx, outcome, t0, t1) {
            return end;
        }
    }
}

/// The next request of a stream, for the `host_i`-th host.
fn next_request(ctx: &Ctx, sender: &Sender, host_i: usize) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = ctx.uri.clone();
    if let Sender::H1 { .. } = sender {
        req.headers_mut().insert(HOST, ctx.hosts[host_i].clone());
    } else if ctx.hosts.len() > 1 {
        // h2: the authority is the host.
        let h = ctx.hosts[host_i].to_str().unwrap_or("localhost");
        if let Ok(uri) = Uri::builder().scheme("http").authority(h).path_and_query(ctx.spec.path.as_str()).build() {
            *req.uri_mut() = uri;
        }
    }
    req
}

type Outcome = Result<Result<(u16, u64), &'static str>, tokio::time::error::Elapsed>;

/// Records one exchange sent (or charged) at `t0` and ended at `t1`; how the stream ends, if it must.
fn record(ctx: &Ctx, outcome: Outcome, t0: Instant, t1: Instant) -> Option<StreamEnd> {
    let record = t0 >= ctx.record_from;
    let mut st = ctx.stats.borrow_mut();
    match outcome {
        Ok(Ok((status, bytes))) => {
            ctx.done_counter.fetch_add(1, Ordering::Relaxed);
            if record {
                let _ = st.hist.record(t1.duration_since(t0).as_nanos().max(1) as u64);
                st.responses += 1;
                st.body_bytes += bytes;
                let class = (status / 100).min(5) as usize;
                st.status[class] += 1;
                if class == 2 {
                    st.ok += 1;
                }
                if ctx.record_completions {
                    st.completions.push(t1.duration_since(ctx.start));
                }
            }
            None
        }
        Ok(Err(kind)) => {
            if record {
                st.error(kind);
            }
            Some(StreamEnd::Broken)
        }
        Err(_) => {
            if t1 >= ctx.end || aborted() {
                st.unfinished += 1;
                return Some(StreamEnd::Done);
            }
            if record {
                st.error("timeout");
            }
            // The connection still carries the abandoned request: start over on a new one.
            Some(StreamEnd::Broken)
        }
    }
}

async fn connect(ctx: &Ctx) -> Result<Sender, &'static str> {
    let connect_timeout = Duration::from_secs(5).min(ctx.spec.timeout);
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(ctx.spec.target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err("connect"),
        Err(_) => return Err("connect-timeout"),
    };
    let _ = stream.set_nodelay(true);
    ctx.stats.borrow_mut().connects += 1;
    let io = TokioIo::new(stream);
    match ctx.spec.protocol {
        Protocol::H1 => {
            let (tx, conn) = http1::handshake(io).await.map_err(|_| "connect")?;
            Ok(Sender::H1 { tx, conn: Box::pin(conn), conn_done: false })
        }
        Protocol::H2 => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .handshake(io)
                .await
                .map_err(|_| "connect")?;
            tokio::task::spawn_local(async move {
                let _ = conn.await;
            });
            Ok(Sender::H2(sender))
        }
    }
}

async fn connection_task(ctx: Rc<Ctx>, conn_index: usize, gate: Rc<tokio::sync::Semaphore>) {
    let streams = ctx.spec.streams();
    let mut sent = vec![0u64; streams];
    let mut first = true;
    loop {
        if ctx.over() {
            return;
        }
        let sender = {
            let _permit = if first { gate.acquire().await.ok() } else { None };
            first = false;
            connect(&ctx).await
        };
        let sender = match sender {
            Ok(s) => s,
            Err(kind) => {
                if Instant::now() >= ctx.record_from {
                    ctx.stats.borrow_mut().error(kind);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let ends: Vec<StreamEnd> = match sender {
            Sender::H1 { .. } => {
                let mut sender = sender;
                vec![stream_loop(&ctx, &mut sender, conn_index, &mut sent[0]).await]
            }
            Sender::H2(ref s) => {
                let base = s.clone();
                let futs = sent.iter_mut().enumerate().map(|(i, sent)| {
                    let mut sender = Sender::H2(base.clone());
                    let ctx = &ctx;
                    async move { stream_loop(ctx, &mut sender, conn_index * streams + i, sent).await }
                });
                futures_util::future::join_all(futs).await
            }
        };
        if ends.iter().all(|e| matches!(e, StreamEnd::Done)) {
            return;
        }
    }
}

/// Runs the load described by `spec` and returns what it measured. Blocks until the run ends.
pub fn run(spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    crate::ensure_local(spec.target)?;
    anyhow::ensure!(!spec.hosts.is_empty(), "at least one host");
    anyhow::ensure!(spec.connections > 0, "at least one connection");
    let hosts: Vec<HeaderValue> = spec.hosts.iter().map(|h| HeaderValue::from_str(h)).collect::<Result<_, _>>()?;
    let uri: Uri = match spec.protocol {
        Protocol::H1 => spec.path.parse()?,
        Protocol::H2 => format!("http://{}{}", spec.hosts[0], spec.path).parse()?,
    };
    let spec = Arc::new(spec.clone());
    let threads = spec.threads.clamp(1, spec.connections);
    let start = Instant::now() + Duration::from_millis(5);
    let record_from = start + spec.warmup;
    let end = record_from + spec.duration;
    let counters: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut handles = Vec::new();
    for (t, counter) in counters.iter().enumerate() {
        let conns: Vec<usize> = (t..spec.connections).step_by(threads).collect();
        let (spec, hosts, uri, counter) = (spec.clone(), hosts.clone(), uri.clone(), counter.clone());
        let handle =
            std::thread::Builder::new().name(format!("load-{t}")).spawn(move || -> anyhow::Result<ThreadStats> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let local = tokio::task::LocalSet::new();
                let ctx = Rc::new(Ctx {
                    record_completions: spec.requests_per_stream.is_some(),
                    spec: spec.clone(),
                    start,
                    record_from,
                    end,
                    hosts,
                    uri,
                    stats: RefCell::new(ThreadStats::new()?),
                    done_counter: counter,
                });
                let gate = Rc::new(tokio::sync::Semaphore::new(spec.connect_parallelism.max(1)));
                local.block_on(&rt, async {
                    tokio::time::sleep_until(start.into()).await;
                    let tasks: Vec<_> = conns
                        .into_iter()
                        .map(|i| tokio::task::spawn_local(connection_task(ctx.clone(), i, gate.clone())))
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                drop(local);
                drop(rt);
                let ctx = Rc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("load tasks still running"))?;
                Ok(ctx.stats.into_inner())
            })?;
        handles.push(handle);
    }
    progress_until_done(&spec, &handles, &counters, start, record_from, end);
    let merged = merge(handles)?;
    let finished = Instant::now();
    // One-shot runs end when every stream is done, which may be before `end`.
    let window_end = if spec.requests_per_stream.is_some() { finished.min(end) } else { end };
    let seconds = window_end.saturating_duration_since(record_from).as_secs_f64().max(1e-9);
    let status = merged
        .status
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (if i == 0 { "other".to_string() } else { format!("{i}xx") }, *n))
        .collect();
    Ok(LoadResult {
        label: spec.label.clone(),
        target: spec.target.to_string(),
        protocol: spec.protocol,
        connections: spec.connections,
        concurrency: spec.concurrency(),
        threads,
        rate_target: spec.rate,
        seconds,
        responses: merged.responses,
        ok: merged.ok,
        rps: merged.responses as f64 / seconds,
        latency: Latency::of(&merged.hist),
        cdf: cdf(&merged.hist),
        status,
        errors: merged.errors.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        unfinished: merged.unfinished,
        connects: merged.connects,
        body_bytes: merged.body_bytes,
        completions: merged.completions,
        started: Some(start),
    })
}

/// Every thread's statistics, merged.
fn merge(handles: Vec<std::thread::JoinHandle<anyhow::Result<ThreadStats>>>) -> anyhow::Result<ThreadStats> {
    let mut merged = ThreadStats::new()?;
    for h in handles {
        let st = h.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        merged.hist.add(&st.hist).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
        merged.responses += st.responses;
        merged.ok += st.ok;
        for (a, b) in merged.status.iter_mut().zip(st.status) {
            *a += b;
        }
        for (k, v) in st.errors {
            *merged.errors.entry(k).or_default() += v;
        }
        merged.unfinished += st.unfinished;
        merged.connects += st.connects;
        merged.body_bytes += st.body_bytes;
        merged.completions.extend(st.completions);
    }
    merged.completions.sort();
    Ok(merged)
}

fn progress_until_done<T>(
    spec: &LoadSpec,
    handles: &[std::thread::JoinHandle<T>],
    counters: &[Arc<AtomicU64>],
    start: Instant,
    record_from: Instant,
    end: Instant,
) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(5) };
    let mut last_print = Instant::now();
    let mut last_count = 0u64;
    let mut printed = false;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if !spec.progress || last_print.elapsed() < every {
            continue;
        }
        let count: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let now = Instant::now();
        let rate = (count - last_count) as f64 / now.duration_since(last_print).as_secs_f64();
        let phase = if now < record_from { "warm-up" } else { "measuring" };
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let total = end.duration_since(start).as_secs_f64();
        let line = format!("  [{}] {phase} {elapsed:4.1}/{total:.0}s  {rate:>9.0} req/s  {count} done", spec.label);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line:<90}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        printed = true;
        last_print = now;
        last_count = count;
    }
    if printed && tty {
        let _ = write!(std::io::stderr(), "\r{:<90}\r", "");
    }
}
