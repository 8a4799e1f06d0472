//! The proxy listeners (the plain one, and the TLS one when enabled: same pipeline, same limits, each its
//! own connection budget; a TLS connection's handshake counts toward its head's timeout and ALPN picks
//! `h2` or HTTP/1.1). Work runs on `N` threads, each with its own single-threaded runtime, its own
//! `SO_REUSEPORT` listener on the shared port and its own upstream connection pool: no connection, pool or
//! task crosses threads on the hot path. HTTP/1.1 and h2c (prior knowledge) share the port, told apart by
//! the first bytes within the header timeout. A plain HTTP/1.1 connection whose first request is for a backend
//! that is not ready waits parked before hyper reads it ([`park`]). HTTP/1.1 requests without a body are read and
//! answered by our own server half ([`h1`]), which hands a connection to hyper at its first other head. Every
//! connection is held to the listener's limits
//! ([`httpscale_core::listener`]): a budget of open connections shared by the threads (`503` past it), the
//! header and idle timeouts, and the header size and count limits (`431`).
//!
//! Shutdown, when `stop` fires: each thread stops accepting without resetting what the kernel had queued
//! (those connections are served), then drains: an idle connection is closed, an HTTP/2 one gets GOAWAY, a
//! request in flight (streams included) is answered and its connection closed after it, and a connection
//! that has not sent its first request yet gets it answered (with `Connection: close`) instead of being cut.
//! The drain timeout bounds it all; whatever is left then is cut.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::listener::{ConnState, Gatekeeper, Permit, Protocol};
use httpscale_core::startup::bind_reuseport;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

mod body;
mod conn;
mod h1;
mod park;
mod rewind;

use self::body::ClientBody;
use self::conn::{Builders, Conn, Shared};
use self::park::{Parker, Parking};
use crate::cluster::pods::PodRouter;
use crate::proxy::forward::{Forward, ForwardSettings};
use crate::proxy::peek::PeekBody;
use crate::proxy::stack::{Pipeline, StackParams, stack};

/// Pending connections each listener keeps (a burst of clients arriving at a cold route).
const LISTEN_BACKLOG: i32 = 4096;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    /// Largest request head (HTTP/1) or header list (HTTP/2) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP/1 request; more gets 431.
    pub max_headers: usize,
    /// Serve plain HTTP/1.1 requests without a body with our own server half ([`h1`]) first.
    pub own_http1: bool,
    pub drain_timeout: Duration,
    pub forward: ForwardSettings,
}

/// The running proxy threads.
pub struct ProxyThreads {
    pub addr: SocketAddr,
    done: Vec<oneshot::Receiver<()>>,
}

impl ProxyThreads {
    /// Resolves when every thread has drained and exited.
    pub async fn join(self) {
        for d in self.done {
            let _ = d.await;
        }
    }
}

/// One proxy listener: where it binds, who it admits, and (the TLS listener) how it shakes hands.
#[derive(Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub gate: Arc<Gatekeeper>,
    pub tls: Option<TlsAcceptor>,
}

/// Binds every listener first (so errors surface here and the port is known), then starts the threads, all
/// admitting connections through the listener's gate.
pub fn spawn(
    listener: Listener,
    settings: ServerSettings,
    params: StackParams,
    pods: Option<Arc<PodRouter>>,
    stop: Shutdown,
) -> io::Result<ProxyThreads> {
    let Listener { addr, gate, tls } = listener;
    let first = bind_reuseport(addr, LISTEN_BACKLOG)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..settings.threads.max(1) {
        listeners.push(bind_reuseport(addr, LISTEN_BACKLOG)?);
    }
    let mut done = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        done.push(rx);
        let (settings, params, pods, gate, tls, stop) =
            (settings.clone(), params.clone(), pods.clone(), gate.clone(), tls.clone(), stop.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let name = if tls.is_some() { format!("proxy-tls-{i}") } else { format!("proxy-{i}") };
        std::thread::Builder::new().name(name).spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, settings, params, pods, Listener { addr, gate, tls }, stop).await,
                    Err(e) => {
                        tracing::error!(cause = %e, "proxy listener could not be registered")
                    }
                }
            });
            let _ = tx.send(());
        })?;
    }
    Ok(ProxyThreads { addr, done })
}

/// What one proxy thread's connections share.
struct Connections<S> {
    shared: Arc<Shared<S>>,
    tls: Option<TlsAcceptor>,
    /// Parks plain HTTP/1.1 connections whose first request waits for its backend.
    parker: Arc<Parker>,
    /// Each connection holds a clone; the drain waits until every one is dropped.
    open: mpsc::Sender<()>,
}

impl<S: Pipeline<PeekBody<ClientBody>> + Sync> Connections<S> {
    fn spawn(&self, stream: TcpStream, remote: SocketAddr, permit: Permit) {
        let (tls, open, parker) = (self.tls.clone(), self.open.clone(), self.parker.clone());
        let conn = Conn { shared: self.shared.clone(), remote, tls: tls.is_some() };
        tokio::spawn(async move {
            let start = Instant::now();
            match tls {
                None => serve_plain(conn, stream, permit, start, &parker).await,
                // Boxed: a TLS session's state would otherwise enlarge every plain connection's task.
                Some(acceptor) => Box::pin(serve_tls(conn, stream, permit, start, acceptor)).await,
            }
            drop(open);
        });
    }
}

/// A TLS connection: the handshake (its time counts toward the head's), then served.
async fn serve_tls<S: Pipeline<PeekBody<ClientBody>> + Sync>(
    conn: Conn<S>,
    stream: TcpStream,
    permit: Permit,
    start: Instant,
    acceptor: TlsAcceptor,
) {
    if let Some((stream, protocol)) = conn.shared.gate.handshake(&acceptor, stream).await {
        Box::pin(conn.serve(stream, ConnState::new(permit, protocol, start), None)).await;
    }
}

/// A plain connection: its protocol read from its first bytes, parked (HTTP/1.1) while its first request waits
/// for its backend, then served.
async fn serve_plain<S: Pipeline<PeekBody<ClientBody>> + Sync>(
    conn: Conn<S>,
    stream: TcpStream,
    permit: Permit,
    start: Instant,
    parker: &Parker,
) {
    // Boxed, as what follows: a parked connection's task holds none of them.
    let Some(protocol) = Box::pin(conn.shared.gate.protocol(&stream)).await else { return };
    let (stream, parked, start) = match protocol {
        Protocol::Http2 => (stream, None, start),
        Protocol::Http1 => match Box::pin(parker.park(stream, &conn.shared.gate)).await {
            Ok(Parking::Passed(stream)) => (stream, None, start),
            // A parked connection's head time runs from the end of its park.
            Ok(Parking::Parked(stream, parked)) => (stream, Some(parked), Instant::now()),
            Ok(Parking::Left) => return,
            Err(e) => return tracing::warn!(client = %conn.remote, cause = %e, "a parked connection was lost"),
        },
    };
    Box::pin(conn.serve(stream, ConnState::new(permit, protocol, start), parked)).await;
}

async fn serve(
    listener: TcpListener,
    settings: ServerSettings,
    params: StackParams,
    pods: Option<Arc<PodRouter>>,
    Listener { gate, tls, .. }: Listener,
    stop: Shutdown,
) {
    let forward = Forward::new(settings.forward.clone(), pods);
    let (open, mut closed) = mpsc::channel(1);
    let parker = Arc::new(Parker {
        routes: params.routes.clone(),
        normalize_path: params.normalize_path,
        stopping: params.cold_start.stopping.clone(),
        requests: params.requests.clone(),
        cold_start: params.cold_start.metrics.clone(),
    });
    let shared = Arc::new(Shared {
        stack: stack(&params, forward),
        builders: Builders::new(settings.max_header_bytes, settings.max_headers, settings.own_http1),
        gate: gate.clone(),
        stop: stop.clone(),
    });
    let conns = Connections { shared, tls, parker, open };
    loop {
        let (stream, remote, permit) = tokio::select! {
            accepted = gate.accept(&listener) => accepted,
            _ = stop.triggered() => break,
        };
        conns.spawn(stream, remote, permit);
    }
    for (stream, remote, permit) in gate.stop_accepting(&listener).await {
        conns.spawn(stream, remote, permit);
    }
    drop(listener);
    drop(conns);
    let drained = closed.recv();
    if settings.drain_timeout.is_zero() {
        drained.await;
    } else if tokio::time::timeout(settings.drain_timeout, drained).await.is_err() {
        tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout reached; closing remaining connections");
    }
}
