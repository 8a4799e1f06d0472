#![allow(clippy::unwrap_used)]

use clap::Parser;

use super::*;
use crate::Config;

fn args(flags: &[&str]) -> TlsArgs {
    let mut all = vec!["interceptor"];
    all.extend_from_slice(flags);
    Config::try_parse_from(all).unwrap().tls
}

#[test]
fn deprecated_names_win_when_set_and_are_listed_with_their_replacement() {
    let a = args(&["--tls-min-version", "1.2", "--proxy-tls-min-version", "1.3", "--proxy-tls-skip-verify", "true"]);
    assert_eq!(
        a.deprecated_in_use(),
        [
            ("KEDA_HTTP_PROXY_TLS_MIN_VERSION", "KEDA_HTTP_TLS_MIN_VERSION"),
            ("KEDA_HTTP_PROXY_TLS_SKIP_VERIFY", "KEDA_HTTP_TLS_SKIP_VERIFY")
        ]
    );
    let p = a.policy().unwrap();
    assert_eq!(p.versions.len(), 1, "the old name's 1.3 wins over the new name's 1.2, as upstream");
    assert_eq!(a.skip_verify(), (true, "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY"));
    let e = args(&["--proxy-tls-cipher-suites", "TLS_NOPE"]).policy().unwrap_err();
    assert_eq!(e.setting, "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES", "the error names the variable that was read");
    let e = args(&["--tls-curve-preferences", "P-999"]).policy().unwrap_err();
    assert_eq!(e.setting, "KEDA_HTTP_TLS_CURVE_PREFERENCES");
    assert!(args(&[]).deprecated_in_use().is_empty());
}

#[test]
fn the_default_pair_is_upstreams_unless_emptied_or_absent_beside_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let s = args(&[]).cert_sources();
    assert_eq!(s.default, Some((PathBuf::from(DEFAULT_CERT), PathBuf::from(DEFAULT_KEY))));
    assert!(s.stores.is_empty());
    let s = args(&["--proxy-tls-cert-store-paths", store]).cert_sources();
    assert_eq!(s.default, None, "defaults absent on disk, a store set: the store alone");
    assert_eq!(s.stores, [PathBuf::from(store)]);
    let s = args(&["--proxy-tls-cert-path", "", "--proxy-tls-key-path", ""]).cert_sources();
    assert_eq!(s.default, None);
    let s = args(&[
        "--proxy-tls-cert-path",
        "/x/a.crt",
        "--proxy-tls-key-path",
        "/x/a.key",
        "--proxy-tls-cert-store-paths",
        store,
    ])
    .cert_sources();
    assert_eq!(s.default, Some((PathBuf::from("/x/a.crt"), PathBuf::from("/x/a.key"))), "set: read, and must load");
}

#[test]
fn a_missing_certificate_or_ca_dir_stops_start_up_naming_the_setting() {
    let mut a = args(&["--proxy-tls-enabled", "true", "--proxy-tls-cert-path", "/nonexistent/tls.crt"]);
    let e = Tls::setup(&a).err().unwrap();
    assert_eq!(e.setting, "KEDA_HTTP_PROXY_TLS_CERT_PATH");
    assert!(e.message.contains("/nonexistent/tls.crt"), "{e}");
    a.proxy_tls_enabled = false;
    a.tls_ca_dirs = vec!["/nonexistent/ca".into()];
    let e = Tls::setup(&a).err().unwrap();
    assert_eq!(e.setting, "KEDA_HTTP_TLS_CA_DIRS");
}
