//! The certificate of the HTTPS metrics endpoint (`--metrics-secure`), as controller-runtime chooses it:
//! `tls.crt` and `tls.key` from `--metrics-cert-dir` when it is set, otherwise a self-signed certificate made
//! at start-up (Prometheus scrapes it with `insecureSkipVerify`, as upstream's ServiceMonitor does).

use std::path::Path;
use std::sync::Arc;

use httpscale_core::startup::ConfigError;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const SETTING: &str = "--metrics-cert-dir";

/// The TLS configuration of the metrics listener (HTTP/2 and HTTP/1.1 over ALPN).
pub fn server_config(cert_dir: Option<&Path>) -> Result<Arc<ServerConfig>, ConfigError> {
    let (certs, key) = match cert_dir {
        Some(dir) => from_dir(dir)?,
        None => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ConfigError { setting: SETTING, message: format!("the certificate and key do not fit: {e}") })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn from_dir(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let bad = |path: &Path, e: &dyn std::fmt::Display| ConfigError {
        setting: SETTING,
        message: format!("cannot read {}: {e}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(&crt)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&crt, &e))?;
    if certs.is_empty() {
        return Err(bad(&crt, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, &e))?;
    Ok((certs, key))
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()));
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| ConfigError {
        setting: SETTING,
        message: format!("could not make a self-signed certificate: {e}"),
    })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    Ok((vec![made.cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_without_a_cert_dir() {
        let config = server_config(None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_cert_dir_without_the_files_is_refused_naming_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = server_config(Some(dir.path())).unwrap_err();
        assert_eq!(e.setting, "--metrics-cert-dir");
        assert!(e.message.contains("tls.crt"), "{}", e.message);
    }

    #[test]
    fn a_cert_dir_with_a_certificate_and_key_is_used() {
        let made = rcgen::generate_simple_self_signed(vec!["metrics.test".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        server_config(Some(dir.path())).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).unwrap();
        std::fs::write(dir.path().join("tls.key"), other.signing_key.serialize_pem()).unwrap();
        let e = server_config(Some(dir.path())).unwrap_err();
        assert!(e.message.contains("do not fit"), "{}", e.message);
    }
}
