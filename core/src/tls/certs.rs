//! A TLS listener's certificates: the default pair and the pairs of the certificate stores, chosen by the
//! name the client asks for (SNI), and reloaded when their files change.
//!
//! - **Files**: the default pair (`KEDA_HTTP_PROXY_TLS_CERT_PATH`/`_KEY_PATH`, either may be empty for none),
//!   and every pair found by walking the store directories (`KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS`), matched
//!   by file name as upstream: `X.crt` + `X.key`, or `X.pem` + `X-key.pem`. A certificate without its key is
//!   an error; a key without a certificate is ignored. Entries whose name starts with `..` (a mounted
//!   Secret's `..data` and timestamped directories) are skipped, so each pair is read once, through its link.
//! - **Selection**: an exact DNS name of a certificate's SANs, then a wildcard SAN (`*.example.com` for
//!   `a.example.com`), then the default pair; with none, the handshake fails. A name in several certificates
//!   goes to the one loaded last (the default first, then the stores in path order).
//! - **Reload**: [`Certificates::reload`] reads the files again and swaps in the new set when the bytes
//!   differ; a set that does not load (a half-written Secret update, a key that no longer matches) keeps
//!   the previous one. Connections already open keep the certificate they shook hands with.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where a listener's certificates come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSources {
    /// The default pair; `None` when either path is empty.
    pub default: Option<(PathBuf, PathBuf)>,
    /// Directories walked for more pairs.
    pub stores: Vec<PathBuf>,
}

/// Which of the listener's settings a [`CertError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSetting {
    CertPath,
    KeyPath,
    StorePaths,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CertError {
    pub setting: CertSetting,
    pub message: String,
}

fn cert_err(setting: CertSetting, message: impl Into<String>) -> CertError {
    CertError { setting, message: message.into() }
}

/// A file's path and bytes.
type File = (PathBuf, Vec<u8>);

/// Everything read from the files, compared whole to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    default: Option<(File, File)>,
    stores: Vec<(File, File)>,
}

fn read(path: &Path, setting: CertSetting) -> Result<File, CertError> {
    std::fs::read(path)
        .map(|bytes| (path.to_owned(), bytes))
        .map_err(|e| cert_err(setting, format!("cannot read {}: {e}", path.display())))
}

/// Every file under `dir` (not following directory links; `..`-named entries skipped).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("..") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The certificate/key pairs of the stores, in path order.
fn store_pairs(stores: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, CertError> {
    let mut files = Vec::new();
    for dir in stores {
        walk(dir, &mut files)
            .map_err(|e| cert_err(CertSetting::StorePaths, format!("cannot walk {}: {e}", dir.display())))?;
    }
    let (mut certs, mut keys) = (Vec::new(), HashMap::new());
    for f in files {
        let s = f.to_string_lossy().into_owned();
        if let Some(stem) = s.strip_suffix("-key.pem").or_else(|| s.strip_suffix(".key")) {
            keys.insert(stem.to_owned(), f);
        } else if let Some(stem) = s.strip_suffix(".pem").or_else(|| s.strip_suffix(".crt")) {
            certs.push((stem.to_owned(), f));
        }
    }
    certs.sort();
    certs
        .into_iter()
        .map(|(stem, cert)| match keys.remove(&stem) {
            Some(key) => Ok((cert, key)),
            None => Err(cert_err(
                CertSetting::StorePaths,
                format!("no key for certificate {} ({stem}.key or {stem}-key.pem)", cert.display()),
            )),
        })
        .collect()
}

impl Files {
    fn read(sources: &CertSources) -> Result<Self, CertError> {
        let default = match &sources.default {
            Some((cert, key)) => Some((read(cert, CertSetting::CertPath)?, read(key, CertSetting::KeyPath)?)),
            None => None,
        };
        let stores = store_pairs(&sources.stores)?
            .iter()
            .map(|(c, k)| Ok((read(c, CertSetting::StorePaths)?, read(k, CertSetting::StorePaths)?)))
            .collect::<Result<_, CertError>>()?;
        Ok(Self { default, stores })
    }
}

/// One certificate chain and its key, checked to belong together; and the DNS names of its SANs.
fn certified(
    (cert_path, cert): &File,
    (key_path, key): &File,
    settings: (CertSetting, CertSetting),
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(settings.0, format!("{}: not PEM certificates: {e}", cert_path.display())))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(settings.0, format!("{}: no PEM certificate in it", cert_path.display())));
    };
    let names = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| cert_err(settings.0, format!("{}: not a usable X.509 certificate: {e}", cert_path.display())))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| cert_err(settings.1, format!("{}: no PEM private key in it: {e}", key_path.display())))?;
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("{} does not belong to the certificate {}", key_path.display(), cert_path.display())
            }
            other => format!("{}: unusable private key: {other}", key_path.display()),
        };
        cert_err(settings.1, message)
    })?;
    Ok((Arc::new(ck), names))
}

/// A loaded set, ready to answer handshakes.
#[derive(Default)]
pub struct CertStore {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Every loaded chain, for the backends' trust store (upstream trusts its serving certificates).
    chains: Vec<CertificateDer<'static>>,
}

impl CertStore {
    fn add(&mut self, ck: &Arc<CertifiedKey>, names: Vec<String>) {
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => self.wildcard.insert(parent.to_owned(), ck.clone()),
                None => self.exact.insert(name, ck.clone()),
            };
        }
        self.chains.extend(ck.cert.iter().cloned());
    }

    fn build(files: &Files, provider: &CryptoProvider) -> Result<Self, CertError> {
        let mut store = Self::default();
        if let Some((cert, key)) = &files.default {
            let (ck, names) = certified(cert, key, (CertSetting::CertPath, CertSetting::KeyPath), provider)?;
            store.add(&ck, names);
            store.default = Some(ck);
        }
        for (cert, key) in &files.stores {
            let (ck, names) = certified(cert, key, (CertSetting::StorePaths, CertSetting::StorePaths), provider)?;
            store.add(&ck, names);
        }
        if store.chains.is_empty() {
            return Err(cert_err(CertSetting::CertPath, "no certificate: set a certificate and key, or a store"));
        }
        Ok(store)
    }

    /// The certificate for a client asking for `name` (see the module docs).
    pub fn select(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = name.map(str::to_ascii_lowercase).and_then(|n| {
            self.exact.get(&n).or_else(|| n.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent))).cloned()
        });
        by_name.or_else(|| self.default.clone())
    }
}

/// The listener's certificates, swapped whole on reload; the TLS server and client configs hold it.
pub struct Certificates {
    current: ArcSwap<CertStore>,
    sources: CertSources,
    provider: Arc<CryptoProvider>,
    files: Mutex<Files>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").field("sources", &self.sources).finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads and checks every certificate and key (start-up: an error stops it).
    pub fn load(sources: CertSources, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, CertError> {
        let files = Files::read(&sources)?;
        let store = CertStore::build(&files, &provider)?;
        Ok(Arc::new(Self { current: ArcSwap::from_pointee(store), sources, provider, files: Mutex::new(files) }))
    }

    /// Reads the files again: `Ok(true)` when they changed and the new set is in force, `Ok(false)` when
    /// nothing changed, `Err` (the previous set stays) when the new files do not load.
    pub fn reload(&self) -> Result<bool, CertError> {
        let files = Files::read(&self.sources)?;
        let mut seen = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == files {
            return Ok(false);
        }
        let store = CertStore::build(&files, &self.provider)?;
        self.current.store(Arc::new(store));
        *seen = files;
        Ok(true)
    }

    /// Every chain loaded at this moment.
    pub fn chains(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().chains.clone()
    }

    /// The certificate a client asking for `name` gets now.
    pub fn select(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().select(name)
    }

    /// Follows the files every `interval` until `stop` fires, logging each reload and each failed one.
    pub async fn watch(self: Arc<Self>, interval: std::time::Duration, stop: crate::Shutdown) {
        let mut failing = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.triggered() => return,
            }
            let me = self.clone();
            let result = tokio::task::spawn_blocking(move || me.reload()).await;
            match result {
                Ok(Ok(true)) => {
                    tracing::info!(sources = ?self.sources, "TLS certificates reloaded");
                    failing = None;
                }
                Ok(Ok(false)) => failing = None,
                Ok(Err(e)) => {
                    // Once per distinct failure: a Secret update in flight fails for a moment, then loads.
                    if failing.as_ref() != Some(&e) {
                        tracing::warn!(cause = %e, "TLS certificates changed but do not load; keeping the previous ones");
                        failing = Some(e);
                    }
                }
                Err(e) => tracing::warn!(cause = %e, "TLS certificate reload failed"),
            }
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(hello.server_name())
    }
}

/// Toward backends that ask for a client certificate, the default pair is presented (upstream presents its
/// serving certificates).
impl ResolvesClientCert for Certificates {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current.load().default.clone().filter(|ck| ck.key.choose_scheme(schemes).is_some())
    }

    fn has_certs(&self) -> bool {
        self.current.load().default.is_some()
    }
}

#[cfg(test)]
mod tests;
