//! The tiny hyper backends the scenarios start as separate processes (`loadtest backend …`), so their CPU is
//! not mixed with the load generator's.
//!
//! - `ok`: answers every request `200 ok` (HTTP/1.1 and h2c), like nginx's `return 200 "ok"`.
//! - `stream`: answers an NDJSON stream, one line per frame every `interval`:
//!   `{"seq":N,"sent_us":MICROS_SINCE_EPOCH,"pad":"…"}`. `?lines=N&interval_ms=M` on the request overrides the
//!   defaults. The client compares the arrival gaps with the `sent_us` gaps.
//!
//! Each of `threads` threads has its own current-thread runtime and `SO_REUSEPORT` listener. The process
//! prints `listening ADDR` on stdout once it accepts, and runs until it is killed.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use httpscale_core::startup::bind_reuseport;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Pending connections each listener keeps (the cold-burst scenario connects thousands at once).
const LISTEN_BACKLOG: i32 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Ok,
    Stream,
}

#[derive(Debug, Clone, Copy)]
pub struct BackendOpts {
    pub listen: SocketAddr,
    pub threads: usize,
    pub mode: Mode,
    /// Stream mode: lines per answer.
    pub lines: u32,
    /// Stream mode: gap between lines.
    pub interval: Duration,
    /// Stream mode: padding bytes per line.
    pub pad: usize,
}

type Body = BoxBody<Bytes, Infallible>;

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn query_param(query: Option<&str>, name: &str) -> Option<u64> {
    query?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn stream_body(lines: u32, interval: Duration, pad: usize) -> Body {
    let start = tokio::time::Instant::now();
    let padding: &'static str = Box::leak("x".repeat(pad).into_boxed_str());
    let stream = futures_util::stream::unfold(0u32, move |seq| async move {
        if seq >= lines {
            return None;
        }
        tokio::time::sleep_until(start + interval * seq).await;
        let line = format!("{{\"seq\":{seq},\"sent_us\":{},\"pad\":\"{padding}\"}}\n", now_us());
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), seq + 1))
    });
    StreamBody::new(stream).boxed()
}

fn handle(opts: &BackendOpts, req: &Request<Incoming>) -> Response<Body> {
    match opts.mode {
        Mode::Ok => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
        Mode::Stream => {
            let q = req.uri().query();
            let lines = query_param(q, "lines").map_or(opts.lines, |v| v as u32);
            let interval = query_param(q, "interval_ms").map_or(opts.interval, Duration::from_millis);
            let pad = query_param(q, "pad").map_or(opts.pad, |v| v as usize);
            let mut resp = Response::new(stream_body(lines, interval, pad));
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-ndjson"));
            resp
        }
    }
}

async fn serve_listener(listener: TcpListener, opts: BackendOpts) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = handle(&opts, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Serves until the process is killed. Prints `listening ADDR` once every thread accepts.
pub fn serve(opts: BackendOpts) -> anyhow::Result<()> {
    let first = bind_reuseport(opts.listen, LISTEN_BACKLOG)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..opts.threads.max(1) {
        listeners.push(bind_reuseport(addr, LISTEN_BACKLOG)?);
    }
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        handles.push(std::thread::Builder::new().name(format!("backend-{i}")).spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(l) {
                    Ok(l) => serve_listener(l, opts).await,
                    Err(e) => eprintln!("backend: {e}"),
                }
            })
        })?);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    drop(out);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("lines=5&interval_ms=20"), "interval_ms"), Some(20));
        assert_eq!(query_param(Some("lines=5"), "lines"), Some(5));
        assert_eq!(query_param(Some("xlines=5"), "lines"), None);
        assert_eq!(query_param(None, "lines"), None);
    }
}
