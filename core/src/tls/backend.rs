//! TLS toward backends: what a server certificate is verified against (the system roots, the PEM files of
//! `KEDA_HTTP_TLS_CA_DIRS`, and the listener's own certificates, as upstream), or nothing at all with
//! `KEDA_HTTP_TLS_SKIP_VERIFY`; ALPN offers `h2` then `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::policy::{Policy, UnusablePolicy};

/// Why what backends are verified against, or the client configuration, cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendTlsError {
    #[error("cannot read the CA directory {}: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot read the CA file {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("{}: not PEM certificates: {source}", path.display())]
    NotPem { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("no PEM certificates found in {}", path.display())]
    NoCertificate { path: PathBuf },
    #[error("no CA certificate was loaded from any of its directories")]
    NoCa,
    #[error("a CA certificate is not a usable trust anchor: {0}")]
    NotAnAnchor(rustls::Error),
    #[error(transparent)]
    Policy(#[from] UnusablePolicy),
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// The certificates of every file in `dirs` (not in subdirectories; `..`-named entries, a mounted volume's
/// metadata, skipped). As upstream, strictly: a file without a PEM certificate is an error, and so is a
/// list of directories that yields none.
pub fn ca_dirs(dirs: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, BackendTlsError> {
    let mut certs = Vec::new();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| BackendTlsError::ReadDir { dir: dir.clone(), source })?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .map(|e| e.path())
            .filter(|p| !p.is_dir())
            .collect();
        entries.sort();
        for path in entries {
            certs.extend(pem_certs(&path)?);
        }
    }
    if !dirs.is_empty() && certs.is_empty() {
        return Err(BackendTlsError::NoCa);
    }
    Ok(certs)
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BackendTlsError> {
    let bytes = std::fs::read(path).map_err(|source| BackendTlsError::ReadFile { path: path.into(), source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|source| BackendTlsError::NotPem { path: path.into(), source })?;
    if certs.is_empty() {
        return Err(BackendTlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The system's roots (as rustls-native-certs finds them: `SSL_CERT_FILE`/`SSL_CERT_DIR` or the
/// distribution's bundle) plus `extra`. A CA from `KEDA_HTTP_TLS_CA_DIRS` that is not a usable trust anchor
/// is an error; the system's own unusable ones are skipped.
pub fn roots(extra: &[CertificateDer<'static>]) -> Result<RootCertStore, BackendTlsError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(added, ignored, errors = system.errors.len(), "system trust roots loaded");
    for cert in extra {
        roots.add(cert.clone()).map_err(BackendTlsError::NotAnAnchor)?;
    }
    Ok(roots)
}

/// What a backend's certificate is checked against.
pub enum Verify {
    Roots(RootCertStore),
    /// `KEDA_HTTP_TLS_SKIP_VERIFY`: any certificate, any name.
    Skip,
}

/// The client configuration toward backends: `policy`'s versions and algorithms, `verify`, ALPN `h2` then
/// `http/1.1`, and `client_cert` presented to a backend that asks for one.
pub fn client_config(
    policy: &Policy,
    verify: Verify,
    client_cert: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<ClientConfig, BackendTlsError> {
    let builder = ClientConfig::builder_with_provider(policy.provider.clone())
        .with_protocol_versions(&policy.versions)
        .map_err(UnusablePolicy)?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        // No anchor at all (a machine without a CA bundle): start anyway, and refuse every https backend.
        Verify::Roots(roots) if roots.is_empty() => Arc::new(NoRoots(SkipVerify(policy.provider.clone()))),
        Verify::Roots(roots) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), policy.provider.clone()).build()?
        }
        Verify::Skip => Arc::new(SkipVerify(policy.provider.clone())),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = super::alpn();
    Ok(config)
}

/// Accepts any server certificate for any name (Go's `InsecureSkipVerify`); the handshake's own signatures
/// are still checked, so the connection is at least to whoever holds that certificate's key.
#[derive(Debug)]
pub struct SkipVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// With no trust anchor, every server certificate is refused as of an unknown issuer.
#[derive(Debug)]
pub struct NoRoots(SkipVerify);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn ca_dirs_load_every_file_strictly_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("..2026_01")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("ca.crt"), ca_pem() + &ca_pem()).unwrap();
        std::fs::write(a.join("..2026_01/ignored"), "not read").unwrap();
        std::fs::write(b.join("other.pem"), ca_pem()).unwrap();
        let certs = ca_dirs(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(certs.len(), 3);
        assert_eq!(roots(&certs).unwrap().len(), roots(&[]).unwrap().len() + 3, "added to the system roots");

        std::fs::write(b.join("notes.txt"), "hello\n").unwrap();
        let e = ca_dirs(&[a.clone(), b.clone()]).unwrap_err().to_string();
        assert!(e.contains("no PEM certificates found in") && e.contains("notes.txt"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(
            ca_dirs(&[empty]).unwrap_err().to_string(),
            "no CA certificate was loaded from any of its directories"
        );
        let missing = dir.path().join("missing");
        let e = ca_dirs(std::slice::from_ref(&missing)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read the CA directory {}: ", missing.display())), "{e}");
        assert!(ca_dirs(&[]).unwrap().is_empty(), "unset: nothing to load, no error");
    }

    #[test]
    fn no_trust_anchor_is_not_a_start_up_failure() {
        let policy = Policy::default_policy();
        assert!(client_config(&policy, Verify::Roots(RootCertStore::empty()), None).is_ok());
    }

    #[test]
    fn the_client_config_offers_h2_first() {
        let policy = Policy::new(crate::tls::PolicySpec { min_version: Some("1.3"), ..Default::default() }).unwrap();
        let config = client_config(&policy, Verify::Skip, None).unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
