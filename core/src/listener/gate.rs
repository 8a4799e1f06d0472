//! A listener's budget and how it takes connections: admission (`503` past the budget), the protocol read
//! from the first bytes, the open-file limit, and stopping without resetting what the kernel queued.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::settings::Limits;
use super::stats::{Limit, Stats};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Open files kept out of the proxy's connection budget: the admin and metrics listeners' budgets, the
/// routes file, logs, the upstream pool's idle connections.
pub const FILE_RESERVE: usize = 1_024;
/// Upstream connections kept for held requests: 10 000 held requests (the default hold cap of a route)
/// released at once each need one.
pub const HELD_RESERVE: usize = 10_000;
/// The default cap of client connections per proxy listener on a machine with plenty of open files.
pub const MAX_CONNECTIONS: usize = 30_000;
/// Over-limit connections that may linger (503 written, reading what the client still sends) at once.
const MAX_LINGERING: usize = 64;
const LINGER: Duration = Duration::from_secs(1);

/// Which protocol a connection speaks, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The open-file limit in force (the soft limit); `usize::MAX` where it cannot be read.
pub fn open_file_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(usize::MAX, |(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
}

/// Raises the soft open-file limit to the hard one, as Go's runtime does at start; returns the limit in force.
pub fn raise_open_file_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, cause = %e, "cannot raise the open-file limit");
    }
    open_file_limit()
}

/// The default cap of client connections of the proxy listener, for an open-file limit of `files`: the lower
/// of [`MAX_CONNECTIONS`] and `files` less a reserve ([`HELD_RESERVE`] + [`FILE_RESERVE`], but at most half
/// of `files`), so that the accepted connections can still reach their backends.
pub fn default_max_connections(files: usize) -> usize {
    let reserve = (HELD_RESERVE + FILE_RESERVE).min(files / 2);
    MAX_CONNECTIONS.min(files - reserve).max(1)
}

/// One listener's budget and counts, shared by every thread that accepts on it.
pub struct Gatekeeper {
    pub name: &'static str,
    pub limits: Limits,
    pub stats: Stats,
    open: AtomicUsize,
    parked: AtomicUsize,
    lingering: AtomicUsize,
    busy: Vec<u8>,
}

/// A place in a listener's budget, given back when dropped.
pub struct Permit(pub(super) Arc<Gatekeeper>);

/// A connection counted as parked (see [`Gatekeeper::parked`]) until this is dropped.
pub struct ParkedConn(Arc<Gatekeeper>);

impl Drop for ParkedConn {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gatekeeper {
    pub fn new(name: &'static str, limits: Limits) -> Arc<Self> {
        let body = format!("Service Unavailable: too many connections (limit {})\n", limits.max_connections);
        let busy = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Arc::new(Self {
            name,
            limits,
            stats: Stats::new(name),
            open: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            busy: busy.into_bytes(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections parked now: open, their first request not read yet because its backend is not ready.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Counts a connection as parked until the guard drops.
    pub fn park(self: &Arc<Self>) -> ParkedConn {
        self.parked.fetch_add(1, Ordering::Relaxed);
        ParkedConn(self.clone())
    }

    fn admit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.limits.max_connections;
        self.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Permit(self.clone()))
    }

    /// The next connection that fits the budget. Those that do not get `503` and are closed; a failed
    /// accept (out of files) is counted, logged and retried after a pause instead of spinning.
    pub async fn accept(self: &Arc<Self>, listener: &TcpListener) -> (TcpStream, SocketAddr, Permit) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(permit) = self.admit() else {
                        self.stats.hit(Limit::Connections, "connection refused with 503: the listener is at its limit");
                        self.refuse(stream);
                        continue;
                    };
                    tune(&stream);
                    return (stream, peer, permit);
                }
                Err(e) => {
                    self.stats.hit(Limit::AcceptFailed, &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The protocol of a new connection ([`detect`] within the header timeout); `None` (counted when it
    /// timed out) when the connection is to be closed.
    pub async fn protocol(&self, stream: &TcpStream) -> Option<Protocol> {
        match detect(stream, self.limits.header_timeout).await {
            Ok(p) => Some(p),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.stats.hit(Limit::HeaderTimeout, "connection closed: no request head in time");
                None
            }
            Err(_) => None,
        }
    }

    /// Writes the `503` and closes: after a FIN the client's request is read and dropped for a moment (so
    /// the close does not reset the answer away), unless too many are lingering already.
    fn refuse(self: &Arc<Self>, mut stream: TcpStream) {
        let _ = stream.try_write(&self.busy);
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(LINGER, async { while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {} })
                .await;
            me.lingering.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// No Nagle delay, and TCP keep-alive probes (15 s, as Go's server) so a peer that vanished is noticed.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive =
        socket2::TcpKeepalive::new().with_time(Duration::from_secs(15)).with_interval(Duration::from_secs(15));
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Reads which protocol the client speaks from its first bytes (without consuming them): HTTP/2 when it
/// sends the whole preface, HTTP/1 as soon as a byte differs from it. `TimedOut` when that is not known
/// within `within` (a silent client, or one stopped inside the preface); `UnexpectedEof` when it closes.
pub async fn detect(stream: &TcpStream, within: Option<Duration>) -> io::Result<Protocol> {
    let read = async {
        let mut buf = [0u8; 24];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Ok(Protocol::Http1);
            }
            if n == H2_PREFACE.len() {
                return Ok(Protocol::Http2);
            }
            // Part of the preface so far: the rest is on its way (peeking again at once would spin).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    match within {
        Some(t) => tokio::time::timeout(t, read).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        None => read.await,
    }
}

/// How long handshakes already under way get to complete once new ones are ignored (loopback takes
/// microseconds; a cluster network one round trip).
const HANDSHAKE_GRACE: Duration = Duration::from_millis(100);

/// A socket filter for a listener: drops every packet with SYN set (a new handshake: its client retries and
/// finds the port closed), keeps the rest (the ACK that completes a handshake under way). A TCP socket
/// filter sees the packet from the TCP header on; byte 13 holds the flags.
const IGNORE_NEW_HANDSHAKES: [(u16, u8, u8, u32); 4] = [
    (0x30, 0, 0, 13),       // ldb [13]
    (0x45, 0, 1, 0x02),     // jset #SYN, drop, keep
    (0x06, 0, 0, 0),        // drop: ret #0
    (0x06, 0, 0, u32::MAX), // keep: ret #all
];

impl Gatekeeper {
    /// Stops taking new connections without resetting those the kernel completed or is completing: new
    /// handshakes are ignored (their clients retry and find the port closed, so they were never accepted),
    /// those under way get [`HANDSHAKE_GRACE`] to complete, then the queue is accepted and returned, to be
    /// served like any other, before the caller closes the listener.
    pub async fn stop_accepting(self: &Arc<Self>, listener: &TcpListener) -> Vec<(TcpStream, SocketAddr, Permit)> {
        let filter = IGNORE_NEW_HANDSHAKES.map(|(code, jt, jf, k)| socket2::SockFilter::new(code, jt, jf, k));
        match socket2::SockRef::from(listener).attach_filter(&filter) {
            Ok(()) => tokio::time::sleep(HANDSHAKE_GRACE).await,
            Err(e) => tracing::debug!(cause = %e, "cannot filter the listener; closing it after draining its queue"),
        }
        let mut queued = Vec::new();
        while let Some(Ok((stream, peer))) = futures_util::FutureExt::now_or_never(listener.accept()) {
            match self.admit() {
                Some(permit) => {
                    tune(&stream);
                    queued.push((stream, peer, permit));
                }
                None => self.refuse(stream),
            }
        }
        queued
    }
}
