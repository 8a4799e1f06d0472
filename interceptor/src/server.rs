//! The proxy listener. Work runs on `N` threads, each with its own single-threaded runtime, its own
//! `SO_REUSEPORT` listener on the shared port and its own upstream connection pool: no connection, pool or
//! task crosses threads on the hot path. HTTP/1.1 and h2c (prior knowledge) share the port.
//!
//! Shutdown: when `stop` fires each thread stops accepting and drains: idle connections close, in-flight
//! requests (streams included) get up to the drain timeout, then whatever is left is cut.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use httpscale_core::Shutdown;
use httpscale_core::startup::bind_reuseport;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::Service;

use crate::cluster::pods::PodRouter;
use crate::proxy::forward::Forward;
use crate::proxy::peek::PeekBody;
use crate::proxy::stack::{StackParams, stack};
use crate::proxy::types::{BoxFuture, ClientAddr, ProxyResponse};

/// Pending connections each listener keeps (a burst of clients arriving at a cold route).
const LISTEN_BACKLOG: i32 = 4096;

#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    pub threads: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
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

/// Binds every listener first (so errors surface here and the port is known), then starts the threads.
pub fn spawn(
    addr: SocketAddr,
    settings: ServerSettings,
    params: StackParams,
    pods: Option<Arc<PodRouter>>,
    stop: Shutdown,
) -> io::Result<ProxyThreads> {
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
        let (params, pods, stop) = (params.clone(), pods.clone(), stop.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(format!("proxy-{i}")).spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, settings, params, pods, stop).await,
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

/// The per-connection hyper service: tags requests with the client address and runs the pipeline.
#[derive(Clone)]
struct ConnService<S> {
    stack: S,
    remote: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<
            Request<PeekBody<Incoming>>,
            Response = ProxyResponse,
            Error = Infallible,
            Future = BoxFuture<Result<ProxyResponse, Infallible>>,
        > + Clone,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<ProxyResponse, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.remote));
        // Every layer is always ready (failures are per request), so `call` needs no `poll_ready` first.
        self.stack.clone().call(req.map(PeekBody::new))
    }
}

async fn serve(
    listener: TcpListener,
    settings: ServerSettings,
    params: StackParams,
    pods: Option<Arc<PodRouter>>,
    stop: Shutdown,
) {
    let forward = Forward::new(settings.connect_timeout, settings.max_idle_per_host, pods);
    let stack = stack(&params, forward);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(settings.max_header_bytes as u32);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.triggered() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = ConnService { stack: stack.clone(), remote };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %remote, cause = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drained = graceful.shutdown();
    if settings.drain_timeout.is_zero() {
        drained.await;
    } else if tokio::time::timeout(settings.drain_timeout, drained).await.is_err() {
        tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout reached; closing remaining connections");
    }
}
