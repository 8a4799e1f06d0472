//! The interceptor's TLS settings (upstream's names, and their deprecated spellings) and what they build at
//! start: the TLS listener's acceptor with its reloadable certificates, and the client configuration every
//! https connection to a backend uses. Every failure names the setting at fault and stops start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use httpscale_core::settings::{duration, go_bool};
use httpscale_core::startup::ConfigError;
use httpscale_core::tls::backend::{self, Verify};
use httpscale_core::tls::{CertError, CertSetting, CertSources, Certificates, Policy, PolicySetting, PolicySpec};
use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;

/// Upstream's default certificate pair (the chart mounts the Secret at `/certs`).
const DEFAULT_CERT: &str = "/certs/tls.crt";
const DEFAULT_KEY: &str = "/certs/tls.key";

#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve a second proxy listener with TLS on KEDA_HTTP_PROXY_TLS_PORT.
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_ENABLED", value_name = "KEDA_HTTP_PROXY_TLS_ENABLED", default_value = "false", value_parser = go_bool, action = clap::ArgAction::Set)]
    pub proxy_tls_enabled: bool,

    /// Port of the TLS proxy listener.
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_PORT", value_name = "KEDA_HTTP_PROXY_TLS_PORT", default_value = "8443")]
    pub proxy_tls_port: u16,

    /// The default certificate (PEM chain), served when no certificate of the stores matches the client's
    /// SNI. Default /certs/tls.crt; empty for none.
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_CERT_PATH", value_name = "KEDA_HTTP_PROXY_TLS_CERT_PATH")]
    pub proxy_tls_cert_path: Option<String>,

    /// The default certificate's private key (PEM). Default /certs/tls.key; empty for none.
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_KEY_PATH", value_name = "KEDA_HTTP_PROXY_TLS_KEY_PATH")]
    pub proxy_tls_key_path: Option<String>,

    /// Directories (comma-separated) walked for more pairs, chosen by SNI: `X.crt` + `X.key` or `X.pem` +
    /// `X-key.pem`.
    #[arg(
        long,
        env = "KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS",
        value_name = "KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS",
        value_delimiter = ','
    )]
    pub proxy_tls_cert_store_paths: Vec<String>,

    /// Lowest TLS version, both ways: `1.2`/`TLS12` or `1.3`/`TLS13`. Default 1.2.
    #[arg(long, env = "KEDA_HTTP_TLS_MIN_VERSION", value_name = "KEDA_HTTP_TLS_MIN_VERSION")]
    pub tls_min_version: Option<String>,

    /// Highest TLS version, both ways. Default 1.3.
    #[arg(long, env = "KEDA_HTTP_TLS_MAX_VERSION", value_name = "KEDA_HTTP_TLS_MAX_VERSION")]
    pub tls_max_version: Option<String>,

    /// TLS 1.2 cipher suites (Go's names, comma-separated), in preference order. Default: all implemented.
    #[arg(long, env = "KEDA_HTTP_TLS_CIPHER_SUITES", value_name = "KEDA_HTTP_TLS_CIPHER_SUITES")]
    pub tls_cipher_suites: Option<String>,

    /// Key-exchange groups (Go's names, comma-separated), in preference order. Default: X25519, P-256, P-384.
    #[arg(long, env = "KEDA_HTTP_TLS_CURVE_PREFERENCES", value_name = "KEDA_HTTP_TLS_CURVE_PREFERENCES")]
    pub tls_curve_preferences: Option<String>,

    /// Do not verify backends' certificates (logged as a warning at start).
    #[arg(long, env = "KEDA_HTTP_TLS_SKIP_VERIFY", value_name = "KEDA_HTTP_TLS_SKIP_VERIFY", value_parser = go_bool)]
    pub tls_skip_verify: Option<bool>,

    /// Directories (comma-separated) of PEM CA certificates trusted for backends, beside the system roots.
    #[arg(long, env = "KEDA_HTTP_TLS_CA_DIRS", value_name = "KEDA_HTTP_TLS_CA_DIRS", value_delimiter = ',')]
    pub tls_ca_dirs: Vec<String>,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "HTTPSCALE_TLS_RELOAD_INTERVAL", value_name = "HTTPSCALE_TLS_RELOAD_INTERVAL", default_value = "1s", value_parser = duration)]
    pub tls_reload_interval: Duration,

    #[command(flatten)]
    pub deprecated: DeprecatedTlsArgs,
}

/// Upstream's names before 0.16: still read, and when set they win (as upstream), with a warning.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeprecatedTlsArgs {
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_MIN_VERSION", value_name = "KEDA_HTTP_PROXY_TLS_MIN_VERSION", hide = true)]
    pub proxy_tls_min_version: Option<String>,
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_MAX_VERSION", value_name = "KEDA_HTTP_PROXY_TLS_MAX_VERSION", hide = true)]
    pub proxy_tls_max_version: Option<String>,
    #[arg(
        long,
        env = "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES",
        value_name = "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES",
        hide = true
    )]
    pub proxy_tls_cipher_suites: Option<String>,
    #[arg(
        long,
        env = "KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES",
        value_name = "KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES",
        hide = true
    )]
    pub proxy_tls_curve_preferences: Option<String>,
    #[arg(long, env = "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY", value_name = "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY", value_parser = go_bool, hide = true)]
    pub proxy_tls_skip_verify: Option<bool>,
}

/// One policy setting: its value and the name it was read from (the deprecated one when that is set).
struct Setting<'a> {
    value: Option<&'a str>,
    name: &'static str,
}

fn pick<'a>(
    new: &'a Option<String>,
    new_name: &'static str,
    old: &'a Option<String>,
    old_name: &'static str,
) -> Setting<'a> {
    match old.as_deref() {
        Some(v) => Setting { value: Some(v), name: old_name },
        None => Setting { value: new.as_deref(), name: new_name },
    }
}

impl TlsArgs {
    /// The deprecated names that are set, each with the name to use instead (for a warning at start).
    pub fn deprecated_in_use(&self) -> Vec<(&'static str, &'static str)> {
        let d = &self.deprecated;
        [
            (d.proxy_tls_min_version.is_some(), "KEDA_HTTP_PROXY_TLS_MIN_VERSION", "KEDA_HTTP_TLS_MIN_VERSION"),
            (d.proxy_tls_max_version.is_some(), "KEDA_HTTP_PROXY_TLS_MAX_VERSION", "KEDA_HTTP_TLS_MAX_VERSION"),
            (d.proxy_tls_cipher_suites.is_some(), "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES", "KEDA_HTTP_TLS_CIPHER_SUITES"),
            (
                d.proxy_tls_curve_preferences.is_some(),
                "KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES",
                "KEDA_HTTP_TLS_CURVE_PREFERENCES",
            ),
            (d.proxy_tls_skip_verify.is_some(), "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY", "KEDA_HTTP_TLS_SKIP_VERIFY"),
        ]
        .into_iter()
        .filter_map(|(set, old, new)| set.then_some((old, new)))
        .collect()
    }

    /// The policy, from the deprecated names where set, else the new ones.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let d = &self.deprecated;
        let min = pick(
            &self.tls_min_version,
            "KEDA_HTTP_TLS_MIN_VERSION",
            &d.proxy_tls_min_version,
            "KEDA_HTTP_PROXY_TLS_MIN_VERSION",
        );
        let max = pick(
            &self.tls_max_version,
            "KEDA_HTTP_TLS_MAX_VERSION",
            &d.proxy_tls_max_version,
            "KEDA_HTTP_PROXY_TLS_MAX_VERSION",
        );
        let suites = pick(
            &self.tls_cipher_suites,
            "KEDA_HTTP_TLS_CIPHER_SUITES",
            &d.proxy_tls_cipher_suites,
            "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES",
        );
        let curves = pick(
            &self.tls_curve_preferences,
            "KEDA_HTTP_TLS_CURVE_PREFERENCES",
            &d.proxy_tls_curve_preferences,
            "KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES",
        );
        let spec = PolicySpec {
            min_version: min.value,
            max_version: max.value,
            cipher_suites: suites.value,
            curve_preferences: curves.value,
        };
        Policy::new(spec).map_err(|e| {
            let name = match e.setting {
                PolicySetting::MinVersion => min.name,
                PolicySetting::MaxVersion => max.name,
                PolicySetting::CipherSuites => suites.name,
                PolicySetting::CurvePreferences => curves.name,
            };
            ConfigError::new(name, e.message)
        })
    }

    /// Whether backends' certificates go unverified, and the name that said so.
    fn skip_verify(&self) -> (bool, &'static str) {
        match self.deprecated.proxy_tls_skip_verify {
            Some(v) => (v, "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY"),
            None => (self.tls_skip_verify.unwrap_or(false), "KEDA_HTTP_TLS_SKIP_VERIFY"),
        }
    }

    /// Where the listener's certificates come from. The default pair is left out when its paths are set
    /// empty, or when they are left at upstream's defaults, certificate stores are set and the default files
    /// do not exist.
    pub fn cert_sources(&self) -> CertSources {
        let explicit = |p: &Option<String>, default: &str| match p {
            Some(p) => (PathBuf::from(p.trim()), true),
            None => (PathBuf::from(default), false),
        };
        let (cert, cert_set) = explicit(&self.proxy_tls_cert_path, DEFAULT_CERT);
        let (key, key_set) = explicit(&self.proxy_tls_key_path, DEFAULT_KEY);
        let stores = paths(&self.proxy_tls_cert_store_paths);
        let empty = |p: &Path| p.as_os_str().is_empty();
        let absent_defaults = !cert_set && !key_set && !stores.is_empty() && !cert.exists() && !key.exists();
        let default = (!empty(&cert) && !empty(&key) && !absent_defaults).then_some((cert, key));
        CertSources { default, stores }
    }
}

/// The non-empty entries of a comma-separated list of paths.
fn paths(list: &[String]) -> Vec<PathBuf> {
    list.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).map(PathBuf::from).collect()
}

fn cert_error(e: CertError) -> ConfigError {
    let name = match e.setting {
        CertSetting::CertPath => "KEDA_HTTP_PROXY_TLS_CERT_PATH",
        CertSetting::KeyPath => "KEDA_HTTP_PROXY_TLS_KEY_PATH",
        CertSetting::StorePaths => "KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS",
    };
    ConfigError::new(name, e.message)
}

/// The TLS listener's parts.
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    pub certs: Arc<Certificates>,
    pub port: u16,
    pub reload_interval: Duration,
}

/// Everything TLS, built once at start.
pub struct Tls {
    pub listener: Option<TlsListener>,
    /// For https connections to backends.
    pub client: Arc<ClientConfig>,
}

impl Tls {
    /// Reads the policy, the certificates (when the listener is on) and the CA directories; logs the
    /// deprecated names in use, the policy names rustls does not implement, and skip-verify.
    pub fn setup(args: &TlsArgs) -> Result<Self, ConfigError> {
        for (old, new) in args.deprecated_in_use() {
            tracing::warn!("WARNING: {old} is deprecated and will be removed; use {new} instead");
        }
        let policy = args.policy()?;
        if !policy.skipped.is_empty() {
            tracing::warn!(skipped = ?policy.skipped, "TLS policy names not implemented by rustls are left out");
        }
        let listener = match args.proxy_tls_enabled {
            true => {
                let certs = Certificates::load(args.cert_sources(), policy.provider.clone()).map_err(cert_error)?;
                let config = httpscale_core::tls::server_config(&policy, certs.clone())
                    .map_err(|e| ConfigError::new("KEDA_HTTP_TLS_MIN_VERSION", e.to_string()))?;
                let acceptor = TlsAcceptor::from(Arc::new(config));
                Some(TlsListener {
                    acceptor,
                    certs,
                    port: args.proxy_tls_port,
                    reload_interval: args.tls_reload_interval,
                })
            }
            false => None,
        };
        let cas = backend::ca_dirs(&paths(&args.tls_ca_dirs))
            .map_err(|e| ConfigError::new("KEDA_HTTP_TLS_CA_DIRS", e.to_string()))?;
        let (skip, skip_name) = args.skip_verify();
        let verify = if skip {
            tracing::warn!(setting = skip_name, "certificates of https backends are NOT verified");
            Verify::Skip
        } else {
            let mut roots =
                backend::roots(&cas).map_err(|e| ConfigError::new("KEDA_HTTP_TLS_CA_DIRS", e.to_string()))?;
            // As upstream: the listener's own certificates are trusted too.
            if let Some(l) = &listener {
                roots.add_parsable_certificates(l.certs.chains());
            }
            if roots.is_empty() {
                tracing::warn!(
                    "no trust roots (no system CA bundle, no KEDA_HTTP_TLS_CA_DIRS): every https backend will be refused"
                );
            }
            Verify::Roots(roots)
        };
        let client_cert = listener.as_ref().map(|l| l.certs.clone() as Arc<dyn rustls::client::ResolvesClientCert>);
        let client = backend::client_config(&policy, verify, client_cert)
            .map_err(|e| ConfigError::new("KEDA_HTTP_TLS_MIN_VERSION", e.to_string()))?;
        Ok(Self { listener, client: Arc::new(client) })
    }
}

#[cfg(test)]
mod tests;
