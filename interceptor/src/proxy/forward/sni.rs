//! The name an https backend's certificate is checked for, and what a failed handshake says.
//!
//! The pooled client keys connections by the address it dials, which with direct pod routing is a pod's
//! address; the certificate must still be checked for the Service's name (as upstream). The attempt sets
//! that name in a task-local around the client's request: the connector reads it when it starts the
//! connection, which happens while that request is first polled, inside the scope.

use std::error::Error as StdError;
use std::io;

use http::Uri;
use hyper_rustls::ResolveServerName;
use rustls::pki_types::ServerName;

tokio::task_local! {
    /// The host the certificate is checked for, set around each https attempt.
    pub static SERVER_NAME: String;
}

/// Reads [`SERVER_NAME`], else the host of the address dialled.
pub struct TaskLocal;

type BoxError = Box<dyn StdError + Send + Sync>;

impl ResolveServerName for TaskLocal {
    fn resolve(&self, uri: &Uri) -> Result<ServerName<'static>, BoxError> {
        let host = SERVER_NAME.try_with(Clone::clone).ok().or_else(|| uri.host().map(str::to_owned));
        let host = host.ok_or("the upstream URI has no host")?;
        // An IPv6 literal comes bracketed from a URI.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        ServerName::try_from(host).map_err(|e| Box::new(e) as BoxError)
    }
}

/// The TLS error in a failed connect's causes, if the handshake is what failed (a certificate not trusted or
/// not for the name, a protocol or version mismatch); `None` for a connect refused or timed out.
pub fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error::source` skips the error it wraps: look inside it.
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
            && let Some(found) = tls_failure(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}
