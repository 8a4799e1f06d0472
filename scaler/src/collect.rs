//! Gathering counts from every interceptor, two ways at once:
//!
//! - **pull** (upstream's path, so a Go interceptor fleet can be mixed in): every tick, `GET /queue` on each
//!   interceptor in parallel, each fetch bounded by its own timeout so one hung interceptor cannot stall the
//!   others (upstream #1730); then counter movements become rate samples.
//! - **push**: a long-lived `GET /queue/stream` per interceptor; a route's first in-flight request reaches the
//!   aggregate, and every open `StreamIsActive`, as soon as the interceptor sees it. Interceptors that answer
//!   404 (upstream's) are polled only; broken streams reconnect with back-off.
//!
//! Health: `liveness` is SERVING while the process runs; `readiness` turns NOT_SERVING only when no interceptor
//! has answered for the grace period, and the log says which interceptors failed and why.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use httpscale_core::Shutdown;
use httpscale_core::queue::{QueueCounts, QueueUpdate, unix_micros};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::state::State;

/// Largest `/queue` body accepted (a cluster with very many routes stays far below it).
const MAX_QUEUE_BODY: usize = 16 << 20;
/// An interceptor stream silent for this long is considered broken (interceptors send a line every second).
const STREAM_SILENCE: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Why an interceptor's counts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("building the request: {0}")]
    Request(http::Error),
    #[error("GET {path}: {source}")]
    Send { path: &'static str, source: hyper_util::client::legacy::Error },
    #[error("GET {path} answered {status}")]
    Status { path: &'static str, status: StatusCode },
    #[error("reading /queue: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
    #[error("decoding {what}: {source}")]
    Decode { what: &'static str, source: serde_json::Error },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("reading the count stream: {0}")]
    Stream(hyper::Error),
    #[error("stream went silent")]
    Silent,
    #[error("stream line too long")]
    LineTooLong,
}

#[derive(Debug, Clone, Copy)]
pub struct CollectSettings {
    pub tick: Duration,
    pub fetch_timeout: Duration,
    pub stale_after: Duration,
    pub unreachable_grace: Duration,
    pub push: bool,
}

fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn fetch(client: &HttpClient, addr: &str) -> Result<QueueCounts, FetchError> {
    let path = "/queue";
    let req = Request::get(format!("http://{addr}{path}")).body(Empty::new()).map_err(FetchError::Request)?;
    let resp = client.request(req).await.map_err(|source| FetchError::Send { path, source })?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status { path, status: resp.status() });
    }
    let body = Limited::new(resp.into_body(), MAX_QUEUE_BODY).collect().await.map_err(FetchError::Read)?;
    serde_json::from_slice(&body.to_bytes()).map_err(|source| FetchError::Decode { what: path, source })
}

/// The pull loop: runs until `stop` fires. `interceptors` may change at any time (discovery).
pub async fn run(
    state: Arc<State>,
    mut interceptors: watch::Receiver<BTreeSet<String>>,
    s: CollectSettings,
    health: HealthReporter,
) {
    let client = client(s.fetch_timeout);
    let mut subscriptions: HashMap<String, Shutdown> = HashMap::new();
    let started = Instant::now();
    let mut serving: Option<bool> = None;
    health.set_service_status("liveness", ServingStatus::Serving).await;
    let mut ticker = tokio::time::interval(s.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = interceptors.changed() => {}
            _ = state.stop.triggered() => break,
        }
        let addrs = interceptors.borrow_and_update().clone();
        if s.push {
            subscriptions.retain(|a, stop| {
                addrs.contains(a) || {
                    stop.trigger();
                    false
                }
            });
            for a in &addrs {
                subscriptions.entry(a.clone()).or_insert_with(|| {
                    let stop = Shutdown::new();
                    tokio::spawn(subscribe(state.clone(), client.clone(), a.clone(), stop.clone()));
                    stop
                });
            }
        }
        let results = futures_util::future::join_all(addrs.iter().map(|a| {
            let client = &client;
            async move {
                let t = Instant::now();
                let r = match tokio::time::timeout(s.fetch_timeout, fetch(client, a)).await {
                    Ok(r) => r,
                    Err(_) => Err(FetchError::Timeout(s.fetch_timeout)),
                };
                (a, r, t.elapsed())
            }
        }))
        .await;
        let now = Instant::now();
        let specs = state.specs.load();
        let mut failures = 0;
        let (reachable, known, errors) = {
            let mut agg = state.agg();
            agg.set_interceptors(&addrs);
            for (addr, result, took) in results {
                state.metrics.fetch_duration.observe(took.as_secs_f64());
                match result {
                    Ok(counts) => {
                        agg.observe(addr, counts, now, unix_micros());
                    }
                    Err(e) => {
                        failures += 1;
                        state.metrics.fetch_errors.inc();
                        tracing::debug!(interceptor = %addr, cause = %e, "fetch failed");
                        agg.failed(addr, e.to_string());
                    }
                }
            }
            agg.tick(now, |key| specs.get(key).and_then(|s| s.rate).map(|r| (r.window, r.granularity)), s.stale_after);
            agg.reachability(now, s.unreachable_grace)
        };
        state.metrics.endpoints.set(known as i64);
        state.metrics.unreachable.set(failures);
        state.bump();
        let ok = reachable > 0 || started.elapsed() < s.unreachable_grace;
        if serving != Some(ok) {
            let status = if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
            health.set_service_status("readiness", status).await;
            health.set_service_status("", status).await;
            if ok {
                tracing::info!(interceptors = known, "readiness: SERVING");
            } else {
                tracing::warn!(
                    grace = ?s.unreachable_grace,
                    errors = %errors.join("; "),
                    "readiness: NOT_SERVING, no interceptor has answered within the grace period"
                );
            }
            serving = Some(ok);
        }
    }
    for stop in subscriptions.values() {
        stop.trigger();
    }
    health.set_service_status("readiness", ServingStatus::NotServing).await;
}

enum StreamEnd {
    Stopped,
    NotSupported,
    Closed,
}

/// Follows one interceptor's `/queue/stream` until `stop`, reconnecting with back-off.
async fn subscribe(state: Arc<State>, client: HttpClient, addr: String, stop: Shutdown) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let wait = match follow(&state, &client, &addr, &stop).await {
            Ok(StreamEnd::Stopped) => return,
            Ok(StreamEnd::NotSupported) => {
                tracing::info!(interceptor = %addr, "no /queue/stream (an upstream interceptor?); polling only");
                Duration::from_secs(60)
            }
            Ok(StreamEnd::Closed) => {
                backoff = Duration::from_millis(100);
                backoff
            }
            Err(e) => {
                tracing::debug!(interceptor = %addr, cause = %e, retry_in = ?backoff, "count stream broken");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.triggered() => return,
        }
    }
}

async fn follow(state: &State, client: &HttpClient, addr: &str, stop: &Shutdown) -> Result<StreamEnd, FetchError> {
    let path = "/queue/stream";
    let req = Request::get(format!("http://{addr}{path}")).body(Empty::new()).map_err(FetchError::Request)?;
    let resp = tokio::select! {
        r = client.request(req) => r.map_err(|source| FetchError::Send { path, source })?,
        _ = stop.triggered() => return Ok(StreamEnd::Stopped),
    };
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(StreamEnd::NotSupported),
        status => return Err(FetchError::Status { path, status }),
    }
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(STREAM_SILENCE, body.frame()) => f.map_err(|_| FetchError::Silent)?,
            _ = stop.triggered() => return Ok(StreamEnd::Stopped),
        };
        let Some(frame) = frame else { return Ok(StreamEnd::Closed) };
        let Ok(data) = frame.map_err(FetchError::Stream)?.into_data() else { continue };
        buf.extend_from_slice(&data);
        if buf.len() > MAX_QUEUE_BODY {
            return Err(FetchError::LineTooLong);
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(end + 1);
            let update: QueueUpdate =
                serde_json::from_slice(&line).map_err(|source| FetchError::Decode { what: "a stream line", source })?;
            state.pushed(addr, update.queue, update.changed_us);
        }
    }
}
