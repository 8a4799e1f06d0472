//! Plain HTTP/1.1 upstream connections of one proxy thread, under a pool of our own in place of hyper-util's
//! general-purpose client for the common case (a plain `http://` backend): our own connections ([`super::h1`])
//! for requests without a body, hyper's client connection (`conn::http1`, [`Http1Pool`]) for the rest. What
//! it saves per request, measured in `docs/benchmarks.md` ("Our own HTTP/1.1 upstream pool"): the pool key
//! built, cloned and hashed byte by byte, the race between checkout and connect, the absolute URI built and
//! then rewritten to origin form.
//!
//! - **Checkout** takes the most recently idle connection to the authority (LIFO keeps the fewest warm).
//!   A connection the backend closed while idle is skipped, and so is one idle longer than [`IDLE_TIMEOUT`].
//! - **Return**: once the answer's body has been read to its end and the connection can carry the next
//!   request (hyper's: at once when it already does; otherwise a small task waits for it), the connection
//!   goes back, unless `max_idle_per_host` are idle already. An upgraded connection (`101`) never comes back.
//! - **A stale connection**: a request that hyper hands back unsent (the backend closed the connection just
//!   as it was taken) is sent again on another connection; on a fresh connection it is not (the error is
//!   the backend's).
//! - **Nothing is lost to a failed connect**: a request that was not sent is handed back with the error
//!   ([`Unsent`]), so the forwarder's connect retries send the same request again without having copied it.
//!
//! One pool per proxy thread ([`super::Forward`]); its mutex is only ever taken by that thread's tasks, for
//! a push or a pop, never across an await.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::fasthash::FastBuild;
use crate::proxy::body::BoxError;

/// How long a connection may stay idle before it is closed instead of reused (as hyper-util's client).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A failed attempt: why, and the request when it was not sent (a failed connect).
#[derive(Debug)]
pub struct Unsent<B> {
    pub error: SendError,
    pub request: Option<Request<B>>,
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: refused, unreachable, timed out, or a name that did not resolve.
    #[error("connect failed: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or its answer awaited.
    #[error("{0}")]
    Exchange(#[source] BoxError),
    /// No answer's head within the response-header timeout (our own exchange keeps that clock itself).
    #[error("no answer within the response-header timeout")]
    HeaderTimeout,
}

/// A pooled connection: whether it can still carry a request.
pub trait Reusable {
    fn reusable(&self) -> bool;
}

impl<B> Reusable for SendRequest<B> {
    fn reusable(&self) -> bool {
        self.is_ready()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// The idle connections of one proxy thread, by authority: hyper's client connections ([`Http1Pool`]) or our
/// own ([`super::h1`]).
pub struct Pool<C> {
    /// Keyed by the backend's authority, from the routes (never a client's choice), so hashed fast.
    idle: Mutex<HashMap<Box<str>, VecDeque<Idle<C>>, FastBuild>>,
    connect_timeout: Duration,
    max_idle_per_host: usize,
}

/// hyper's client connections, for requests with a body or an upgrade.
pub type Http1Pool<B> = Pool<SendRequest<B>>;

impl<C: Reusable> Pool<C> {
    pub fn new(connect_timeout: Duration, max_idle_per_host: usize) -> Arc<Self> {
        Arc::new(Self { idle: Mutex::default(), connect_timeout, max_idle_per_host })
    }

    /// How many idle connections to `authority` the pool holds (for tests).
    #[cfg(test)]
    pub(super) fn idle_count(&self, authority: &Authority) -> usize {
        self.lock().get(authority.as_str()).map_or(0, VecDeque::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, VecDeque<Idle<C>>, FastBuild>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently idle connection to `authority` that is still usable.
    pub(super) fn checkout(&self, authority: &Authority) -> Option<C> {
        let mut idle = self.lock();
        let list = idle.get_mut(authority.as_str())?;
        let now = Instant::now();
        while let Some(entry) = list.pop_back() {
            if now.duration_since(entry.since) < IDLE_TIMEOUT && entry.conn.reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to `authority`, unless `max_idle_per_host` are idle already.
    pub(super) fn put(&self, authority: &str, conn: C) {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = match idle.get_mut(authority) {
            Some(list) => list,
            None => idle.entry(authority.into()).or_default(),
        };
        // The oldest are at the front: drop those that expired.
        while list.front().is_some_and(|e| now.duration_since(e.since) >= IDLE_TIMEOUT) {
            list.pop_front();
        }
        if list.len() < self.max_idle_per_host {
            list.push_back(Idle { conn, since: now });
        }
    }

    /// A new connection to `authority`, bounded by the connect timeout, with `TCP_NODELAY`.
    pub(super) async fn connect_tcp(&self, authority: &Authority) -> Result<TcpStream, SendError> {
        let connect = |e: io::Error| SendError::Connect(e.into());
        // `[::1]` names an IPv6 address; the resolver wants it bare.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        Ok(stream)
    }
}

impl<B> Pool<SendRequest<B>>
where
    B: Body<Error: Into<BoxError>> + Send + 'static,
    B::Data: Send,
{
    /// Sends `req` (its URI in origin form, its `Host` set) to `authority` on an idle connection or a new one.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: Request<B>,
    ) -> Result<Response<Incoming>, Unsent<B>> {
        loop {
            let (mut sender, reused) = match self.checkout(authority) {
                Some(sender) => (sender, true),
                None => match self.connect(authority).await {
                    Ok(sender) => (sender, false),
                    Err(error) => return Err(Unsent { error, request: Some(req) }),
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.put_when_idle(authority, sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Unsent { error: SendError::Exchange(e.into_error().into()), request: None }),
                },
            }
        }
    }

    /// Returns the connection once hyper wants its next request: after the answer's body has been read.
    fn put_when_idle(self: &Arc<Self>, authority: &Authority, mut sender: SendRequest<B>) {
        if sender.is_ready() {
            return self.put(authority.as_str(), sender);
        }
        let (pool, authority) = (self.clone(), authority.clone());
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(authority.as_str(), sender);
            }
        });
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<B>, SendError> {
        let stream = self.connect_tcp(authority).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| SendError::Exchange(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(cause = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// The URI a request to an upstream is written with: its path and query, `/` when it has none.
pub fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => Uri::from(pq.clone()),
        _ => Uri::from_static("/"),
    }
}

#[cfg(test)]
mod tests;
