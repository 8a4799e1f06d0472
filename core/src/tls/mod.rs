//! TLS with rustls (on *ring*; no OpenSSL): the policy read from upstream's settings ([`policy`]), a
//! listener's certificates chosen by SNI and reloaded when their files change ([`certs`]), and what
//! connections to backends trust ([`backend`]). A listener completes its handshakes through
//! [`crate::listener`], within the same limits as a plain one.

pub mod backend;
pub mod certs;
pub mod policy;

use std::sync::Arc;

use rustls::ServerConfig;

pub use certs::{CertError, CertSetting, CertSources, Certificates};
pub use policy::{Policy, PolicyError, PolicySetting, PolicySpec, UnusablePolicy};

/// The ALPN protocols a listener offers and a client asks for, in preference order.
pub fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// A listener's server configuration: `policy`'s versions and algorithms, certificates from `certs` (by
/// SNI, reloadable), ALPN `h2` then `http/1.1`, no client certificates asked for.
pub fn server_config(policy: &Policy, certs: Arc<Certificates>) -> Result<ServerConfig, UnusablePolicy> {
    let mut config = ServerConfig::builder_with_provider(policy.provider.clone())
        .with_protocol_versions(&policy.versions)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn();
    Ok(config)
}
