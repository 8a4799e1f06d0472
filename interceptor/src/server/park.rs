//! Parking: a plain HTTP/1.1 connection whose first request is for a backend that is not ready waits here, as a
//! bare socket, before hyper reads it. hyper gives every connection a read and a write buffer (16 KiB together)
//! whatever it carries; a parked connection costs its task, its socket's registration and this wait, so that
//! thousands of clients can wait for a model to load in a few kilobytes each.
//!
//! The first head is peeked, not read: it stays in the socket until hyper takes the connection. If it is
//! complete in what has arrived, framed plainly, and routes (by the route layer's own checks and lookup) to a
//! backend that is not ready on a route whose hold has nothing special (no placeholder answered at once, no
//! per-pod admission, no keep-alive stream, no static routes), and the route's hold queue has room, the
//! connection parks: the request is counted for the scaler from now and takes its place in the hold queue.
//! It waits until the gate opens, the readiness deadline passes or the interceptor stops; then hyper takes the
//! connection and the first request goes through the pipeline with its [`Parked`] mark, so that every outcome
//! (served cold, `504`, the fallback, `503` at shutdown) plays out in the cold-start layer exactly as for a
//! request held there. A client that closes its side meanwhile has left: its request is recorded as the
//! metrics layer and the cold-start layer record one that leaves while held (`499`, `canceled`) and the
//! connection is closed. Anything else goes to hyper at once.

use std::cell::RefCell;
use std::future::pending;
use std::io;
use std::sync::Arc;

use futures_util::FutureExt;
use http::{Method, Request, Version};
use httpscale_core::Shutdown;
use httpscale_core::listener::Gatekeeper;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::labels::{MethodLabel, Outcome, RequestLabels};
use crate::metrics::{ColdStartMetrics, RequestMetrics};
use crate::proxy::cold_start::HoldSlot;
use crate::proxy::route::head_route;
use crate::proxy::types::Parked;
use crate::routes::{RouteState, Routes};

/// The largest first head that can park (a longer one goes to hyper at once).
const MAX_PARKED_HEAD: usize = 8 * 1024;
/// The most header lines of a head that can park.
const MAX_PARKED_HEADERS: usize = 100;

thread_local! {
    /// Where a proxy thread peeks first heads (one at a time, never across an await).
    static HEAD: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_PARKED_HEAD]);
}

/// What parking needs: the routes, how paths are matched, when the interceptor stops, and the metrics of a
/// request whose client left.
pub(super) struct Parker {
    pub(super) routes: Arc<Routes>,
    pub(super) normalize_path: bool,
    pub(super) stopping: Shutdown,
    pub(super) requests: Arc<RequestMetrics>,
    pub(super) cold_start: ColdStartMetrics,
}

/// How a connection leaves [`Parker::park`].
pub(super) enum Parking {
    /// Not parked: hyper takes it at once.
    Passed(TcpStream),
    /// Parked until now: hyper takes it, its first request marked.
    Parked(TcpStream, Parked),
    /// The client left while parked (recorded): nothing is left to serve.
    Left,
}

impl Parker {
    /// Parks `stream` while its first request waits for its backend (see the module docs).
    pub(super) async fn park(&self, stream: TcpStream, gate: &Arc<Gatekeeper>) -> io::Result<Parking> {
        let Some((route, method)) = self.cold_route(&stream) else { return Ok(Parking::Passed(stream)) };
        let Some(slot) = HoldSlot::take(&route.pending, route.max_pending) else { return Ok(Parking::Passed(stream)) };
        let counted = gate.park();
        let parked = Parked::new(Instant::now(), route.counters.begin());
        let deadline = route.readiness_timeout.map(|t| parked.since() + t);
        tokio::select! {
            _ = route.gate.wait_open() => {}
            () = until(deadline) => {}
            () = self.stopping.triggered() => {}
            () = closed(&stream) => {
                self.left(&route, &method, parked.since());
                return Ok(Parking::Left);
            }
        }
        drop((slot, counted));
        Ok(Parking::Parked(rearmed(stream)?, parked))
    }

    /// Records a request whose client left while parked.
    fn left(&self, route: &RouteState, method: &Method, since: Instant) {
        let waited = since.elapsed().as_secs_f64();
        self.cold_start.observe(&route.labels, Outcome::Canceled, waited);
        self.requests.record(&RequestLabels::new(499, MethodLabel::from(method), route.labels.clone()), true, waited);
        tracing::info!(route = %route.route.key, status = 499, "client closed the request before an answer");
    }

    /// The route and method of the first head, if the connection is to park for it.
    fn cold_route(&self, stream: &TcpStream) -> Option<(Arc<RouteState>, Method)> {
        let req = HEAD.with_borrow_mut(|buf| {
            let n = stream.peek(buf).now_or_never()?.ok()?;
            head(&buf[..n])
        })?;
        let method = req.method().clone();
        let route = head_route(&self.routes, req, self.normalize_path)?;
        parks(&route).then_some((route, method))
    }
}

/// Whether a request for `route` parks (see the module docs).
fn parks(route: &RouteState) -> bool {
    !route.gate.is_open()
        && route.immediate_placeholder().is_none()
        && route.route.max_concurrent_per_pod.is_none()
        && route.route.stream_keep_alive.is_none()
        && route.statics.is_empty()
}

/// A complete, plainly framed request head (at most one `Content-Length` of digits, or `Transfer-Encoding:
/// chunked` alone), as a request; `None` for anything hyper should judge itself.
fn head(bytes: &[u8]) -> Option<Request<()>> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_PARKED_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    if !parsed.parse(bytes).ok()?.is_complete() {
        return None;
    }
    let version = if parsed.version? == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut req = Request::builder().method(parsed.method?).uri(parsed.path?).version(version);
    let (mut length, mut chunked) = (0, 0);
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length += if h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) { 2 } else { 1 };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked += if h.value.eq_ignore_ascii_case(b"chunked") { 1 } else { 2 };
        }
        req = req.header(h.name, h.value);
    }
    if length + chunked > 1 {
        return None;
    }
    req.body(()).ok()
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}

/// Resolves when the client closes its side (or the socket fails). Bytes that arrive meanwhile (a body, a
/// pipelined request) stay in the socket for hyper. The socket's readiness is forgotten on the way (see
/// [`rearmed`]).
async fn closed(stream: &TcpStream) {
    loop {
        // Forget the readiness the unread head leaves, so that only a new event wakes this.
        let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        match stream.ready(Interest::READABLE).await {
            Ok(ready) if !ready.is_read_closed() && !ready.is_error() => continue,
            _ => return,
        }
    }
}

/// `stream` registered afresh: the reactor's readiness is edge-triggered, and [`closed`] forgot that unread
/// bytes wait, so hyper's first read would wait for an edge that never comes. A new registration reports
/// what is there.
fn rearmed(stream: TcpStream) -> io::Result<TcpStream> {
    TcpStream::from_std(stream.into_std()?)
}

#[cfg(test)]
mod tests;
