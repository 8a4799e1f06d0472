//! The admin listener (`/queue`, `/queue/stream`, `/livez`, `/readyz`) and the Prometheus listener
//! (`/metrics`), both plain HTTP/1.1, answering as upstream does.
//!
//! `/queue/stream` is httpscale's push path to the scaler: NDJSON lines of [`QueueUpdate`], one at once, one
//! whenever a route's concurrency leaves or reaches zero (at most one per 5 ms), and one at least every
//! second. A scaler learns of the first request for an idle route within milliseconds instead of a poll tick.
//! Subscribers are capped ([`StreamSlots`]); past the cap the answer is `503`, counted on the admin listener
//! as `queue_streams` (with a rate-limited log line).
//!
//! `/programs` (standalone mode) shows and controls the programs started for routes ([`programs`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use httpscale_core::admin::{self, AdminBody, full, text};
use httpscale_core::listener::{Gatekeeper, Limit};
use httpscale_core::queue::QueueUpdate;
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::proxy::rescue::Draining;
use crate::routes::Routes;
use crate::standalone::Standalone;

mod programs;

/// What the admin and metrics listeners answer from.
pub struct AdminState {
    pub routes: Arc<Routes>,
    pub draining: Draining,
    pub metrics: Arc<Metrics>,
    pub streams: StreamSlots,
    /// Standalone mode: the programs started for routes.
    pub programs: Option<Arc<Standalone>>,
}

/// The cap on `/queue/stream` subscribers at once (`HTTPSCALE_MAX_QUEUE_STREAMS`): each holds a task and
/// a buffer, and a scaler replica needs one per interceptor.
pub struct StreamSlots {
    used: Arc<AtomicUsize>,
    max: usize,
    /// The admin listener, whose counts a refusal joins.
    gate: Arc<Gatekeeper>,
}

/// One subscriber's place, given back when its stream ends.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StreamSlots {
    pub fn new(max: usize, gate: Arc<Gatekeeper>) -> Self {
        Self { used: Arc::new(AtomicUsize::new(0)), max, gate }
    }

    fn take(&self) -> Option<StreamSlot> {
        let max = self.max;
        self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(StreamSlot(self.used.clone()))
    }

    fn refused(&self) {
        let max = self.max;
        self.gate
            .stats
            .hit(Limit::QueueStreams, format_args!("/queue/stream subscriber refused with 503: at the cap of {max}"));
    }
}

impl AdminState {
    /// `/readyz`: routes loaded, the readiness source current, and not draining.
    pub fn ready(&self) -> bool {
        self.routes.ready() && !self.draining.is_draining()
    }
}

/// Minimum spacing and maximum silence between `/queue/stream` lines.
pub const STREAM_MIN_SPACING: Duration = Duration::from_millis(5);
pub const STREAM_HEARTBEAT: Duration = Duration::from_secs(1);

/// Answers one admin request.
pub fn admin(state: &AdminState, req: &Request<Incoming>) -> Response<AdminBody> {
    if let Some(resp) = programs::answer(&state.routes, state.programs.as_deref(), req) {
        return resp;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    match req.uri().path() {
        "/queue/stream" => match state.streams.take() {
            Some(slot) => queue_stream(state.routes.clone(), slot),
            None => {
                state.streams.refused();
                text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: too many /queue/stream subscribers\n")
            }
        },
        "/queue" => match serde_json::to_vec(&state.routes.queue_counts()) {
            Ok(body) => {
                let mut r = Response::new(full(body));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
        },
        "/livez" => text(StatusCode::OK, "OK"),
        "/readyz" if state.ready() => text(StatusCode::OK, "OK"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn update_line(routes: &Routes, changed_us: u64) -> Bytes {
    let update = QueueUpdate { changed_us, queue: routes.queue_counts() };
    let mut line = serde_json::to_vec(&update).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The push stream (see the module docs), holding its subscriber's `slot` until it ends.
fn queue_stream(routes: Arc<Routes>, slot: StreamSlot) -> Response<AdminBody> {
    let rx = routes.activity.subscribe();
    let lines = futures_util::stream::unfold((routes, rx, true, slot), |(routes, mut rx, first, slot)| async move {
        if !first {
            tokio::time::sleep(STREAM_MIN_SPACING).await;
            if tokio::time::timeout(STREAM_HEARTBEAT, rx.changed()).await.is_ok_and(|r| r.is_err()) {
                // The routes are gone (shutting down): end the stream.
                return None;
            }
        }
        let changed_us = *rx.borrow_and_update();
        let line = update_line(&routes, changed_us);
        Some((Ok::<_, Infallible>(Frame::data(line)), (routes, rx, false, slot)))
    });
    let mut r = Response::new(StreamBody::new(lines).boxed_unsync());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

/// Answers one metrics request.
pub fn metrics(state: &AdminState, req: &Request<Incoming>) -> Response<AdminBody> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    admin::metrics(req.headers(), state.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    async fn next_line(body: &mut AdminBody) -> QueueUpdate {
        let frame = body.frame().await.unwrap().unwrap();
        serde_json::from_slice(frame.data_ref().unwrap()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_stream_pushes_a_change_within_the_spacing_and_beats_every_second() {
        let routes =
            crate::proxy::testing::routes("routes:\n  - {name: app, hosts: [app.local], upstream: '127.0.0.1:1'}\n");
        let limits = httpscale_core::listener::Limits { header_timeout: None, idle_timeout: None, max_connections: 1 };
        let slots = StreamSlots::new(1, Gatekeeper::new("admin", limits));
        let mut body = queue_stream(routes.clone(), slots.take().unwrap()).into_body();
        assert!(slots.take().is_none(), "one subscriber at the cap");
        assert_eq!(next_line(&mut body).await.queue["default/app"].concurrency, 0, "a line at once");
        let route = routes.table().routes().next().unwrap().clone();
        let t = Instant::now();
        let _in_flight = route.counters.begin();
        assert_eq!(next_line(&mut body).await.queue["default/app"].concurrency, 1);
        assert_eq!(t.elapsed(), STREAM_MIN_SPACING, "pushed, not left for the heartbeat");
        let t = Instant::now();
        assert_eq!(next_line(&mut body).await.queue["default/app"].concurrency, 1);
        assert_eq!(t.elapsed(), STREAM_MIN_SPACING + STREAM_HEARTBEAT, "nothing changed: the heartbeat");
        drop(body);
        assert!(slots.take().is_some(), "the place is given back when the stream ends");
    }
}
