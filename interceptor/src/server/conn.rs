//! One accepted connection, served by hyper's server for the protocol the listener detected (HTTP/1.1 or
//! h2: no second detection, so hyper's read buffer starts empty and keeps its first 8 KiB), with each request
//! tagged, guarded and run through the pipeline. An HTTP/1.1 connection is served by our own server half
//! ([`super::h1`]) until its first head that half leaves to hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, StatusCode};
use httpscale_core::Shutdown;
use httpscale_core::listener::{ConnState, Gatekeeper, Guarded, Limit, Protocol, RequestGuard};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::ClientBody;
use super::h1::{self, Served};
use super::rewind::Rewind;
use crate::proxy::peek::PeekBody;
use crate::proxy::stack::Pipeline;
use crate::proxy::types::{ArrivedOverTls, BoxFuture, ClientAddr, Parked, ProxyResponse};

/// The per-connection hyper service: tags requests with the client address, keeps the connection busy
/// until each answer ends, and runs the pipeline.
#[derive(Clone)]
struct ConnService<S> {
    stack: S,
    remote: SocketAddr,
    state: Arc<ConnState>,
    tls: bool,
    /// The connection waited parked for its first request ([`super::park`]).
    parked: Option<Parked>,
}

impl<S: Pipeline<PeekBody<ClientBody>>> hyper::service::Service<Request<Incoming>> for ConnService<S> {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Answered;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        hyper::service::Service::call(self, req.map(ClientBody::Hyper))
    }
}

impl<S: Pipeline<PeekBody<ClientBody>>> hyper::service::Service<Request<ClientBody>> for ConnService<S> {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Answered;

    fn call(&self, mut req: Request<ClientBody>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.remote));
        if self.tls {
            req.extensions_mut().insert(ArrivedOverTls);
        }
        if let Some(parked) = &self.parked
            && parked.claim()
        {
            req.extensions_mut().insert(parked.clone());
        }
        let guard = self.state.begin();
        // Every layer is always ready (failures are per request), so `call` needs no `poll_ready` first.
        Answered { inner: self.stack.clone().call(req.map(PeekBody::new)), guard: Some(guard) }
    }
}

/// A request's answer, which takes the request's place on the connection along to its end.
struct Answered {
    inner: BoxFuture<Result<ProxyResponse, Infallible>>,
    guard: Option<RequestGuard>,
}

impl Future for Answered {
    type Output = Result<ProxyResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut resp) = ready!(self.inner.as_mut().poll(cx));
        if let Some(guard) = self.guard.take() {
            match resp.status() {
                StatusCode::SWITCHING_PROTOCOLS => guard.state().upgraded(),
                StatusCode::REQUEST_TIMEOUT => {
                    guard.state().hit(Limit::BodyTimeout, "request refused with 408: its body stalled or was too slow")
                }
                _ => {}
            }
            resp.body_mut().hold_connection(guard);
        }
        Poll::Ready(Ok(resp))
    }
}

/// hyper's server for each protocol, configured once per thread, and whether plain HTTP/1.1 requests are
/// served by our own server half first ([`super::h1`]).
#[derive(Clone)]
pub(super) struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    own_h1: bool,
}

impl Builders {
    /// Heads up to `max_header_bytes` with at most `max_headers` lines (HTTP/1), header lists up to
    /// `max_header_bytes` (HTTP/2); more is `431`.
    pub(super) fn new(max_header_bytes: usize, max_headers: usize, own_h1: bool) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // The connection's own deadlines (`Guarded`) bound the head: hyper's would also cut idle keep-alive.
            .header_read_timeout(None)
            .max_buf_size(max_header_bytes.max(8192))
            // Checked on the parsed head too: the buffer limit alone lets a head through that arrives whole in
            // one read past it.
            .max_header_size(max_header_bytes)
            .max_headers(max_headers);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        Self { h1, h2, own_h1 }
    }
}

/// What one proxy thread's connections share: each holds a pointer to it, not a copy, so that a connection
/// waiting parked is small.
pub(super) struct Shared<S> {
    pub(super) stack: S,
    pub(super) builders: Builders,
    pub(super) gate: Arc<Gatekeeper>,
    pub(super) stop: Shutdown,
}

/// One connection: what its thread's connections share, and who it is.
pub(super) struct Conn<S> {
    pub(super) shared: Arc<Shared<S>>,
    pub(super) remote: SocketAddr,
    pub(super) tls: bool,
}

impl<S: Pipeline<PeekBody<ClientBody>> + Sync> Conn<S> {
    /// Serves one connection until it ends, or drains it when `stop` fires (see the module docs of
    /// [`super`]); `parked` marks its first request when the connection waited parked for it.
    pub(super) async fn serve<I>(self, stream: I, state: Arc<ConnState>, parked: Option<Parked>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = &*self.shared;
        let (remote, tls) = (self.remote, self.tls);
        let service = ConnService { stack: shared.stack.clone(), remote, state: state.clone(), tls, parked };
        let io = Guarded::new(stream, state.clone());
        // Each protocol's connection boxed at its own size: a task holds only the one it serves.
        let ended = match state.protocol() {
            Protocol::Http1 => {
                let io = if shared.builders.own_h1 {
                    match Box::pin(h1::serve(io, &service, &shared.stop, || state.quiet())).await {
                        Ok(Served::Hyper(io)) => io,
                        Ok(Served::Ended) => return,
                        Err(e) => {
                            return tracing::debug!(client = %remote, cause = %e, "connection ended with an error");
                        }
                    }
                } else {
                    Rewind::new(Bytes::new(), io)
                };
                let conn = Box::pin(shared.builders.h1.serve_connection(TokioIo::new(io), service).with_upgrades());
                drain_on_stop(conn, &shared.stop, &state, |c| c.get_mut().as_mut().graceful_shutdown()).await
            }
            Protocol::Http2 => {
                let conn = Box::pin(shared.builders.h2.serve_connection(TokioIo::new(io), service));
                drain_on_stop(conn, &shared.stop, &state, |c| c.get_mut().as_mut().graceful_shutdown()).await
            }
        };
        if let Err(e) = ended {
            if e.is_parse_too_large() {
                shared.gate.stats.hit(Limit::HeaderSize, "request refused with 431: its headers are too large");
            }
            tracing::debug!(client = %remote, cause = %e, "connection ended with an error");
        }
    }
}

/// Runs `conn` to its end; when `stop` fires first, asks it to close gracefully unless it is an HTTP/1
/// connection whose first request (or next head) is on its way: that one is left to bring it, and it is
/// answered with `Connection: close`.
async fn drain_on_stop<C>(
    conn: C,
    stop: &Shutdown,
    state: &ConnState,
    graceful: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stop.triggered() => {
            if state.protocol() == Protocol::Http2 || state.quiet() || state.in_flight() > 0 {
                graceful(conn.as_mut());
            }
            conn.await
        }
    }
}
