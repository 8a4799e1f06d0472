//! A TLS listener's connections: the handshake is part of the head, so it must complete within the header
//! timeout of accept (a client that connects and stays silent, or stalls mid-handshake, is closed and
//! counted as `header_timeout`); the protocol is then the one ALPN chose (`h2`, else HTTP/1).

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::gate::{Gatekeeper, Protocol};
use super::stats::Limit;

impl Gatekeeper {
    /// Completes the TLS handshake of a new connection; `None` when it is to be closed (timed out, or the
    /// handshake failed: logged at debug, as a client's own failure).
    pub async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
    ) -> Option<(TlsStream<TcpStream>, Protocol)> {
        let peer = stream.peer_addr().ok();
        let accept = acceptor.accept(stream);
        let shaken = match self.limits.header_timeout {
            Some(t) => match tokio::time::timeout(t, accept).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.hit(Limit::HeaderTimeout, "connection closed: TLS handshake not completed in time");
                    return None;
                }
            },
            None => accept.await,
        };
        match shaken {
            Ok(tls) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                Some((tls, if h2 { Protocol::Http2 } else { Protocol::Http1 }))
            }
            Err(e) => {
                tracing::debug!(listener = self.name, client = ?peer, cause = %e, "TLS handshake failed");
                None
            }
        }
    }
}
