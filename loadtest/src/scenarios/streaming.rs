//! `streaming`: many concurrent long NDJSON streams (a backend writing one line every `interval`) reached
//! directly, through the interceptor, and through nginx with `proxy_buffering off`. For every line the client
//! compares its arrival gap with the gap between the backend's `sent_us` stamps (same machine, same clock),
//! measures the line's delivery delay (arrival − sent), and counts lines that arrived in the same read as the
//! one before (coalesced: a proxy that buffers shows up here).

// Chunk arrival times of real streams are wall-clock measurements.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::backend::now_us;
use crate::load::{Latency, new_histogram};
use crate::net::{ANY_LOOPBACK_PORT, Reserved};
use crate::procs::{self, Child, NginxRole, Tools};
use crate::report::{Machine, Table};
use crate::{Spread, aborted};

#[derive(Debug, Clone, Serialize)]
pub struct StreamingOpts {
    pub streams: usize,
    pub lines: u32,
    pub interval: Duration,
    pub pad: usize,
    pub rounds: usize,
    pub proxy_threads: usize,
    pub client_threads: usize,
    pub backend_threads: usize,
    pub skip_nginx: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRun {
    pub round: usize,
    pub leg: String,
    pub streams: usize,
    pub complete_streams: u64,
    pub lines: u64,
    pub frames: u64,
    /// Lines that arrived in the same read as the previous line of their stream.
    pub coalesced_lines: u64,
    /// |client gap − backend gap| per line after the first, µs.
    pub gap_error: Latency,
    /// Arrival − sent per line, µs.
    pub delivery: Latency,
    /// Mean gap between lines at the client, ms (the backend's is `interval`).
    pub mean_client_gap_ms: f64,
    pub errors: u64,
    pub proxy_cpu_us_per_line: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub leg: String,
    pub complete_streams: Spread,
    pub coalesced_lines: Spread,
    pub gap_error_p50_us: Spread,
    pub gap_error_p99_us: Spread,
    pub gap_error_max_us: Spread,
    pub delivery_p50_us: Spread,
    pub delivery_p99_us: Spread,
    pub mean_client_gap_ms: Spread,
    pub proxy_cpu_us_per_line: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamingReport {
    pub scenario: &'static str,
    pub machine: Machine,
    pub opts: StreamingOpts,
    pub notes: Vec<String>,
    pub runs: Vec<StreamRun>,
    pub summary: Vec<StreamSummary>,
}

const HOST: &str = "stream.local";

#[derive(Default)]
struct Acc {
    gap_error: Option<Histogram<u64>>,
    delivery: Option<Histogram<u64>>,
    complete: u64,
    lines: u64,
    frames: u64,
    coalesced: u64,
    gap_sum_us: f64,
    gaps: u64,
    errors: u64,
}

/// Parses the `"sent_us":N` of one line.
fn sent_us(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}

async fn one_stream(
    target: SocketAddr,
    path: &str,
    lines: u32,
    acc: &RefCell<Acc>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(target).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = path.parse()?;
    req.headers_mut().insert(http::header::HOST, HeaderValue::from_static(HOST));
    let work = async {
        let resp = sender.send_request(req).await?;
        anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
        let mut body = resp.into_body();
        let mut carry: Vec<u8> = Vec::new();
        let mut prev: Option<(u64, u64)> = None; // (sent_us, arrival_us)
        let mut seen = 0u32;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else { continue };
            let arrival = now_us();
            let mut a = acc.borrow_mut();
            a.frames += 1;
            carry.extend_from_slice(data);
            let mut in_this_read = 0;
            while let Some(nl) = carry.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = carry.drain(..=nl).collect();
                let Some(sent) = sent_us(&line) else { continue };
                seen += 1;
                a.lines += 1;
                in_this_read += 1;
                if in_this_read > 1 {
                    a.coalesced += 1;
                }
                if let Some(h) = a.delivery.as_mut() {
                    let _ = h.record(arrival.saturating_sub(sent).max(1) * 1000);
                }
                if let Some((psent, parr)) = prev {
                    let client_gap = arrival as i64 - parr as i64;
                    let backend_gap = sent as i64 - psent as i64;
                    a.gap_sum_us += client_gap as f64;
                    a.gaps += 1;
                    if let Some(h) = a.gap_error.as_mut() {
                        let _ = h.record((client_gap - backend_gap).unsigned_abs().max(1) * 1000);
                    }
                }
                prev = Some((sent, arrival));
            }
        }
        if seen == lines {
            acc.borrow_mut().complete += 1;
        }
        Ok(())
    };
    tokio::time::timeout_at(deadline.into(), work).await.map_err(|_| anyhow::anyhow!("stream timed out"))?
}

fn run_leg(target: SocketAddr, opts: &StreamingOpts) -> anyhow::Result<Acc> {
    crate::ensure_local(target)?;
    let path = format!("/stream?lines={}&interval_ms={}&pad={}", opts.lines, opts.interval.as_millis(), opts.pad);
    let threads = opts.client_threads.clamp(1, opts.streams.max(1));
    let deadline = Instant::now() + opts.interval * opts.lines + Duration::from_secs(10);
    let mut handles = Vec::new();
    for t in 0..threads {
        let count = (t..opts.streams).step_by(threads).count();
        let (path, lines) = (path.clone(), opts.lines);
        handles.push(std::thread::spawn(move || -> anyhow::Result<Acc> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let local = tokio::task::LocalSet::new();
            let acc = Rc::new(RefCell::new(Acc {
                gap_error: Some(new_histogram()?),
                delivery: Some(new_histogram()?),
                ..Default::default()
            }));
            local.block_on(&rt, async {
                let tasks: Vec<_> = (0..count)
                    .map(|_| {
                        let (acc, path) = (acc.clone(), path.clone());
                        tokio::task::spawn_local(async move {
                            if one_stream(target, &path, lines, &acc, deadline).await.is_err() {
                                acc.borrow_mut().errors += 1;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
            drop(local);
            drop(rt);
            Rc::try_unwrap(acc).map(RefCell::into_inner).map_err(|_| anyhow::anyhow!("stream tasks still running"))
        }));
    }
    let mut total = Acc { gap_error: Some(new_histogram()?), delivery: Some(new_histogram()?), ..Default::default() };
    for h in handles {
        let a = h.join().map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
        if let (Some(t), Some(x)) = (total.gap_error.as_mut(), a.gap_error.as_ref()) {
            t.add(x).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        if let (Some(t), Some(x)) = (total.delivery.as_mut(), a.delivery.as_ref()) {
            t.add(x).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        total.complete += a.complete;
        total.lines += a.lines;
        total.frames += a.frames;
        total.coalesced += a.coalesced;
        total.gap_sum_us += a.gap_sum_us;
        total.gaps += a.gaps;
        total.errors += a.errors;
    }
    Ok(total)
}

pub fn run(tools: &Tools, opts: &StreamingOpts) -> anyhow::Result<StreamingReport> {
    let machine = Machine::describe(tools);
    procs::raise_fd_limit();
    let mut notes = Vec::new();
    let extra =
        ["--lines".to_string(), opts.lines.to_string(), "--interval-ms".into(), opts.interval.as_millis().to_string()];
    let (mut backend, backend_addr) =
        procs::start_backend(tools, ANY_LOOPBACK_PORT, opts.backend_threads, "stream", &extra)?;
    let routes = format!("routes:\n  - name: stream\n    hosts: [{HOST}]\n    upstream: {backend_addr}\n");
    let mut interceptor =
        procs::start_interceptor(tools, &routes, &[("HTTPSCALE_PROXY_THREADS", opts.proxy_threads.to_string())])?;
    let dir = tempfile::tempdir()?;
    let mut nginx: Option<(Child, SocketAddr)> = None;
    match (&tools.nginx, opts.skip_nginx) {
        (_, true) => notes.push("nginx leg skipped (--skip-nginx)".into()),
        (None, _) => notes.push("nginx leg skipped: nginx is not installed".into()),
        (Some(bin), false) => {
            let (port, role) = (Reserved::new()?, NginxRole::Proxy { upstream: backend_addr, buffering: false });
            let listen = port.addr();
            nginx = Some((
                procs::start_nginx(bin, dir.path(), listen, opts.proxy_threads, false, role)?.holding(port),
                listen,
            ));
        }
    }
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        let mut legs: Vec<(&str, SocketAddr, Option<u32>)> =
            vec![("direct", backend_addr, None), ("interceptor", interceptor.proxy, Some(interceptor.child.pid()))];
        if let Some((n, a)) = &nginx {
            legs.push(("nginx", *a, Some(n.pid())));
        }
        for (leg, addr, pid) in legs {
            anyhow::ensure!(!aborted(), "interrupted");
            backend.check_running()?;
            interceptor.child.check_running()?;
            let cpu0 = pid.map(procs::cpu_time);
            let t0 = Instant::now();
            let acc = run_leg(addr, opts)?;
            let seconds = t0.elapsed().as_secs_f64();
            let cpu = pid.zip(cpu0).map(|(p, c0)| procs::cpu_time(p).saturating_sub(c0));
            let lat = |h: &Option<Histogram<u64>>| h.as_ref().map(Latency::of).unwrap_or_default();
            let r = StreamRun {
                round,
                leg: leg.into(),
                streams: opts.streams,
                complete_streams: acc.complete,
                lines: acc.lines,
                frames: acc.frames,
                coalesced_lines: acc.coalesced,
                gap_error: lat(&acc.gap_error),
                delivery: lat(&acc.delivery),
                mean_client_gap_ms: if acc.gaps == 0 { f64::NAN } else { acc.gap_sum_us / acc.gaps as f64 / 1e3 },
                errors: acc.errors,
                proxy_cpu_us_per_line: cpu.map(|c| c.as_secs_f64() * 1e6 / acc.lines.max(1) as f64),
                seconds,
            };
            eprintln!(
                "  round {} {leg:<12} {}/{} streams complete, {} lines, {} coalesced, gap error p99 {:.0} µs, delivery p99 {:.0} µs",
                round + 1,
                r.complete_streams,
                r.streams,
                r.lines,
                r.coalesced_lines,
                r.gap_error.p99_us,
                r.delivery.p99_us
            );
            runs.push(r);
        }
    }
    interceptor.child.stop(Duration::from_secs(3));
    if let Some((mut n, _)) = nginx {
        n.stop(Duration::from_secs(3));
    }
    backend.stop(Duration::from_secs(3));
    let mut summary = Vec::new();
    for leg in ["direct", "interceptor", "nginx"] {
        let rs: Vec<&StreamRun> = runs.iter().filter(|r| r.leg == leg).collect();
        if rs.is_empty() {
            continue;
        }
        let s = |f: &dyn Fn(&StreamRun) -> f64| Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        summary.push(StreamSummary {
            leg: leg.into(),
            complete_streams: s(&|r| r.complete_streams as f64),
            coalesced_lines: s(&|r| r.coalesced_lines as f64),
            gap_error_p50_us: s(&|r| r.gap_error.p50_us),
            gap_error_p99_us: s(&|r| r.gap_error.p99_us),
            gap_error_max_us: s(&|r| r.gap_error.max_us),
            delivery_p50_us: s(&|r| r.delivery.p50_us),
            delivery_p99_us: s(&|r| r.delivery.p99_us),
            mean_client_gap_ms: s(&|r| r.mean_client_gap_ms),
            proxy_cpu_us_per_line: s(&|r| r.proxy_cpu_us_per_line.unwrap_or(f64::NAN)),
        });
    }
    Ok(StreamingReport { scenario: "streaming", machine, opts: opts.clone(), notes, runs, summary })
}

impl StreamingReport {
    pub fn print(&self) {
        self.machine.print();
        println!(
            "streaming: {} concurrent streams × {} lines every {:?} ({} B padding); proxies with {} thread(s); {} round(s)",
            self.opts.streams,
            self.opts.lines,
            self.opts.interval,
            self.opts.pad,
            self.opts.proxy_threads,
            self.opts.rounds
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        let mut t = Table::new(&[
            "leg",
            "complete streams",
            "coalesced lines",
            "gap error p50 µs",
            "gap error p99 µs",
            "gap error max µs",
            "delivery p50 µs",
            "delivery p99 µs",
            "mean gap ms",
            "proxy CPU µs/line",
        ]);
        for s in &self.summary {
            t.row(vec![
                s.leg.clone(),
                s.complete_streams.show(0),
                s.coalesced_lines.show(0),
                s.gap_error_p50_us.show(0),
                s.gap_error_p99_us.show(0),
                s.gap_error_max_us.show(0),
                s.delivery_p50_us.show(0),
                s.delivery_p99_us.show(0),
                s.mean_client_gap_ms.show(2),
                s.proxy_cpu_us_per_line.show(1),
            ]);
        }
        println!("median (min–max) over rounds:");
        t.print();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sent_stamp() {
        assert_eq!(sent_us(br#"{"seq":3,"sent_us":1712345678901234,"pad":""}"#), Some(1712345678901234));
        assert_eq!(sent_us(b"{}"), None);
    }
}
