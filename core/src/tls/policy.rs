//! The TLS policy, read from upstream's spellings (Go's `crypto/tls` names, as `KEDA_HTTP_TLS_*` takes them)
//! and turned into what rustls uses: the protocol versions and a crypto provider restricted to the listed
//! cipher suites and key-exchange groups. Pure: every parser is unit-tested without I/O. Empty settings keep
//! the defaults, which match Go's: TLS 1.2 to 1.3, every suite and group rustls implements.
//!
//! Go semantics kept: the cipher-suite list restricts TLS 1.2 only (Go's TLS 1.3 suites are not
//! configurable; their names are accepted and change nothing); the curve list is the key-exchange
//! preference order. Names Go knows that rustls does not implement (CBC and RSA key-exchange suites, P-521,
//! X25519MLKEM768) are dropped and reported in [`Policy::skipped`] for a warning; an unknown name is an error.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// A name in a policy setting that is not one upstream accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("unsupported TLS version {0:?}: must be \"1.2\"/\"TLS12\" or \"1.3\"/\"TLS13\"")]
    Version(String),
    #[error("unknown cipher suite {0:?} (Go's crypto/tls names)")]
    CipherSuite(String),
    #[error("unknown curve {0:?}: one of CurveP256, CurveP384, CurveP521, X25519, X25519MLKEM768, P-256, P-384, P-521")]
    Curve(String),
    /// Every curve listed is one rustls does not implement.
    #[error("none of {} is implemented here (X25519, P-256 and P-384 are)", .0.join(", "))]
    NoCurveImplemented(Vec<String>),
}

/// A protocol version upstream accepts (`1.2`/`TLS12`, `1.3`/`TLS13`, any case).
pub fn parse_version(s: &str) -> Result<&'static SupportedProtocolVersion, NameError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1.2" | "tls12" => Ok(&rustls::version::TLS12),
        "1.3" | "tls13" => Ok(&rustls::version::TLS13),
        _ => Err(NameError::Version(s.to_owned())),
    }
}

/// What a Go cipher-suite name means here.
enum Suite {
    /// A TLS 1.2 suite rustls implements.
    Tls12(SupportedCipherSuite),
    /// A TLS 1.3 suite: always enabled (not configurable in Go either).
    Tls13,
    /// A suite Go offers that rustls does not implement.
    Unimplemented,
}

fn suite(name: &str) -> Option<Suite> {
    use ring::cipher_suite as cs;
    let implemented = match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Some(Suite::Tls13);
        }
        // The rest of Go's `tls.CipherSuites()` (Go 1.21 to 1.25).
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384" => return Some(Suite::Unimplemented),
        _ => return None,
    };
    Some(Suite::Tls12(implemented))
}

/// The names in a comma-separated list, trimmed, empty ones dropped (as upstream splits them).
fn names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// The TLS 1.2 cipher suites a Go-style list enables, in its order, and the names skipped. An unknown name
/// is an error.
pub fn parse_cipher_suites(list: &str) -> Result<(Vec<SupportedCipherSuite>, Vec<String>), NameError> {
    let (mut tls12, mut skipped) = (Vec::new(), Vec::new());
    for name in names(list) {
        match suite(name) {
            Some(Suite::Tls12(s)) if !tls12.contains(&s) => tls12.push(s),
            Some(Suite::Tls12(_) | Suite::Tls13) => {}
            Some(Suite::Unimplemented) => skipped.push(name.to_owned()),
            None => return Err(NameError::CipherSuite(name.to_owned())),
        }
    }
    Ok((tls12, skipped))
}

/// The key-exchange groups a Go-style curve list names, in its order (the preference); the names skipped.
pub fn parse_curves(list: &str) -> Result<(Vec<&'static dyn SupportedKxGroup>, Vec<String>), NameError> {
    let (mut groups, mut skipped): (Vec<&'static dyn SupportedKxGroup>, _) = (Vec::new(), Vec::new());
    for name in names(list) {
        let group: &'static dyn SupportedKxGroup = match name {
            "CurveP256" | "P-256" => ring::kx_group::SECP256R1,
            "CurveP384" | "P-384" => ring::kx_group::SECP384R1,
            "X25519" => ring::kx_group::X25519,
            "CurveP521" | "P-521" | "X25519MLKEM768" => {
                skipped.push(name.to_owned());
                continue;
            }
            _ => return Err(NameError::Curve(name.to_owned())),
        };
        if !groups.iter().any(|g| g.name() == group.name()) {
            groups.push(group);
        }
    }
    if groups.is_empty() && !skipped.is_empty() {
        return Err(NameError::NoCurveImplemented(skipped));
    }
    Ok((groups, skipped))
}

/// rustls refused the policy's protocol versions when a configuration was built from it.
#[derive(Debug, thiserror::Error)]
#[error("TLS policy: {0}")]
pub struct UnusablePolicy(#[from] pub rustls::Error);

/// The policy in force: for the listener and for connections to backends.
#[derive(Debug, Clone)]
pub struct Policy {
    pub provider: Arc<CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// Names upstream accepts that rustls does not implement, dropped (to be logged once at start).
    pub skipped: Vec<String>,
}

/// The raw settings of a [`Policy`]; `None` or empty keeps the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySpec<'a> {
    pub min_version: Option<&'a str>,
    pub max_version: Option<&'a str>,
    pub cipher_suites: Option<&'a str>,
    pub curve_preferences: Option<&'a str>,
}

/// Which setting a [`PolicyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySetting {
    MinVersion,
    MaxVersion,
    CipherSuites,
    CurvePreferences,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub setting: PolicySetting,
    pub message: String,
}

fn set(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

impl Policy {
    /// The default policy (Go's defaults: TLS 1.2 and 1.3, everything rustls implements).
    pub fn default_policy() -> Self {
        Self {
            provider: Arc::new(ring::default_provider()),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            skipped: Vec::new(),
        }
    }

    pub fn new(spec: PolicySpec<'_>) -> Result<Self, PolicyError> {
        let err = |setting| move |message| PolicyError { setting, message };
        let named = |setting| move |e: NameError| PolicyError { setting, message: e.to_string() };
        let rank = |v: &SupportedProtocolVersion| if v.version == rustls::ProtocolVersion::TLSv1_3 { 13 } else { 12 };
        let min = set(spec.min_version).map(parse_version).transpose().map_err(named(PolicySetting::MinVersion))?;
        let max = set(spec.max_version).map(parse_version).transpose().map_err(named(PolicySetting::MaxVersion))?;
        let (min, max) = (min.map_or(12, rank), max.map_or(13, rank));
        if min > max {
            return Err(err(PolicySetting::MinVersion)(format!(
                "TLS 1.{} is above the maximum version TLS 1.{}",
                min - 10,
                max - 10
            )));
        }
        let mut policy = Self::default_policy();
        policy.versions.retain(|v| (min..=max).contains(&rank(v)));
        let mut provider = ring::default_provider();
        if let Some(list) = set(spec.cipher_suites) {
            let (tls12, skipped) = parse_cipher_suites(list).map_err(named(PolicySetting::CipherSuites))?;
            if tls12.is_empty() {
                if max == 12 {
                    return Err(err(PolicySetting::CipherSuites)(format!(
                        "no TLS 1.2 cipher suite left in {list:?} (implemented: the ECDHE AES-GCM and ChaCha20-Poly1305 suites)"
                    )));
                }
                // Go would fail every TLS 1.2 handshake with no suite: say so once and offer TLS 1.3 only.
                policy.versions.retain(|v| rank(v) == 13);
                policy.skipped.push("TLS 1.2 (no TLS 1.2 cipher suite listed)".to_owned());
            }
            provider
                .cipher_suites
                .retain(|s| s.version().version == rustls::ProtocolVersion::TLSv1_3 || tls12.contains(s));
            provider.cipher_suites.sort_by_key(|s| tls12.iter().position(|t| t == s).unwrap_or(0));
            policy.skipped.extend(skipped);
        }
        if let Some(list) = set(spec.curve_preferences) {
            let (groups, skipped) = parse_curves(list).map_err(named(PolicySetting::CurvePreferences))?;
            provider.kx_groups = groups;
            policy.skipped.extend(skipped);
        }
        policy.provider = Arc::new(provider);
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: &str, max: &str, suites: &str, curves: &str) -> Result<Policy, PolicyError> {
        Policy::new(PolicySpec {
            min_version: Some(min),
            max_version: Some(max),
            cipher_suites: Some(suites),
            curve_preferences: Some(curves),
        })
    }

    #[test]
    fn versions_take_upstreams_spellings_and_nothing_else() {
        for (s, v) in [("1.2", 12), ("TLS12", 12), ("tls12", 12), ("1.3", 13), ("TLS13", 13), (" 1.3 ", 13)] {
            let got = parse_version(s).unwrap();
            assert_eq!(got.version == rustls::ProtocolVersion::TLSv1_3, v == 13, "{s}");
        }
        for bad in ["1.1", "1.0", "TLS1.2", "tls 1.3", "2", ""] {
            assert!(parse_version(bad).unwrap_err().to_string().contains("\"1.2\"/\"TLS12\""), "{bad}");
        }
    }

    #[test]
    fn empty_settings_are_gos_defaults() {
        let p = policy("", "", "", "").unwrap();
        assert_eq!(p.versions.len(), 2);
        assert_eq!(p.provider.cipher_suites.len(), ring::default_provider().cipher_suites.len());
        assert_eq!(p.provider.kx_groups.len(), 3);
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn min_and_max_bound_the_versions_and_must_be_in_order() {
        let only = |min, max| policy(min, max, "", "").unwrap().versions;
        assert_eq!(only("1.3", "").len(), 1);
        assert_eq!(only("1.3", "")[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert_eq!(only("", "TLS12")[0].version, rustls::ProtocolVersion::TLSv1_2);
        let e = policy("1.3", "1.2", "", "").unwrap_err();
        assert_eq!(e.setting, PolicySetting::MinVersion);
        assert!(e.message.contains("above the maximum"), "{e}");
        assert_eq!(policy("", "1.4", "", "").unwrap_err().setting, PolicySetting::MaxVersion);
    }

    #[test]
    fn cipher_suites_restrict_tls12_in_order_and_skip_what_rustls_lacks() {
        let p = policy(
            "",
            "",
            " TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,",
            "",
        )
        .unwrap();
        let tls12: Vec<_> = p
            .provider
            .cipher_suites
            .iter()
            .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_2)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            tls12,
            ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            "listed order"
        );
        assert_eq!(p.provider.cipher_suites.len(), 5, "the three TLS 1.3 suites stay, as in Go");
        assert_eq!(p.skipped, ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]);
        let e = policy("", "", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FOO", "").unwrap_err();
        assert_eq!(e.setting, PolicySetting::CipherSuites);
        assert!(e.message.contains("TLS_FOO"), "{e}");
        assert!(policy("", "", "tls_ecdhe_rsa_with_aes_128_gcm_sha256", "").is_err(), "case-sensitive, as Go");
    }

    #[test]
    fn a_list_without_a_tls12_suite_leaves_tls13_only_unless_tls12_is_required() {
        let p = policy("", "", "TLS_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA", "").unwrap();
        assert_eq!(p.versions.len(), 1);
        assert_eq!(p.versions[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert!(p.skipped.iter().any(|s| s.contains("TLS 1.2")), "{:?}", p.skipped);
        let e = policy("", "1.2", "TLS_RSA_WITH_AES_128_CBC_SHA", "").unwrap_err();
        assert_eq!(e.setting, PolicySetting::CipherSuites);
    }

    #[test]
    fn curves_take_both_go_spellings_in_preference_order() {
        let p = policy("", "", "", "P-384,X25519,CurveP384,CurveP521").unwrap();
        let names: Vec<_> = p.provider.kx_groups.iter().map(|g| format!("{:?}", g.name())).collect();
        assert_eq!(names, ["secp384r1", "X25519"]);
        assert_eq!(p.skipped, ["CurveP521"]);
        assert_eq!(policy("", "", "", "CurveP256").unwrap().provider.kx_groups.len(), 1);
        let e = policy("", "", "", "secp256r1").unwrap_err();
        assert_eq!(e.setting, PolicySetting::CurvePreferences);
        let e = policy("", "", "", "X25519MLKEM768,P-521").unwrap_err();
        assert!(e.message.contains("none of X25519MLKEM768, P-521"), "{e}");
    }
}
