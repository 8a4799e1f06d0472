#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rustls::crypto::ring;

use super::*;

/// A self-signed certificate for `names` and its key, as PEM.
fn pair(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The DER of the leaf a client asking for `name` gets.
fn leaf(certs: &Certificates, name: Option<&str>) -> Option<Vec<u8>> {
    certs.select(name).map(|ck| ck.cert[0].to_vec())
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().unwrap().unwrap().to_vec()
}

#[test]
fn sni_picks_an_exact_name_then_a_wildcard_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (default_cert, default_key) = pair(&["default.local"]);
    let (a_cert, a_key) = pair(&["a.example"]);
    let (b_cert, b_key) = pair(&["b.example", "*.apps.example"]);
    write(&dir.path().join("tls.crt"), &default_cert);
    write(&dir.path().join("tls.key"), &default_key);
    write(&dir.path().join("store/a.crt"), &a_cert);
    write(&dir.path().join("store/a.key"), &a_key);
    write(&dir.path().join("store/nested/b.pem"), &b_cert);
    write(&dir.path().join("store/nested/b-key.pem"), &b_key);
    write(&dir.path().join("store/orphan.key"), &a_key);
    let sources = CertSources {
        default: Some((dir.path().join("tls.crt"), dir.path().join("tls.key"))),
        stores: vec![dir.path().join("store")],
    };
    let certs = Certificates::load(sources, provider()).unwrap();
    assert_eq!(leaf(&certs, Some("a.example")), Some(der(&a_cert)));
    assert_eq!(leaf(&certs, Some("A.Example")), Some(der(&a_cert)), "names are case-insensitive");
    assert_eq!(leaf(&certs, Some("b.example")), Some(der(&b_cert)), ".pem + -key.pem, found recursively");
    assert_eq!(leaf(&certs, Some("x.apps.example")), Some(der(&b_cert)), "wildcard SAN");
    assert_eq!(leaf(&certs, Some("y.x.apps.example")), Some(der(&default_cert)), "a wildcard covers one label");
    assert_eq!(leaf(&certs, Some("default.local")), Some(der(&default_cert)));
    assert_eq!(leaf(&certs, Some("other.example")), Some(der(&default_cert)), "no match: the default");
    assert_eq!(leaf(&certs, None), Some(der(&default_cert)), "no SNI: the default");
    assert_eq!(certs.chains().len(), 3);
}

#[test]
fn without_a_default_an_unknown_name_gets_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = pair(&["a.example"]);
    write(&dir.path().join("a.crt"), &a_cert);
    write(&dir.path().join("a.key"), &a_key);
    let certs = Certificates::load(CertSources { default: None, stores: vec![dir.path().into()] }, provider()).unwrap();
    assert!(certs.select(Some("a.example")).is_some());
    assert!(certs.select(Some("b.example")).is_none(), "the handshake fails");
    let e = Certificates::load(CertSources::default(), provider()).unwrap_err();
    assert_eq!(e.setting, CertSetting::CertPath);
}

#[test]
fn every_bad_file_is_an_error_naming_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(&["a.example"]);
    let (_, other_key) = pair(&["a.example"]);
    let p = |n: &str| dir.path().join(n);
    write(&p("cert.pem"), &cert);
    write(&p("key.pem"), &key);
    write(&p("other-key.pem"), &other_key);
    write(&p("garbage"), "not a certificate\n");
    let load = |c: &str, k: &str| {
        Certificates::load(CertSources { default: Some((p(c), p(k))), stores: vec![] }, provider()).unwrap_err()
    };
    let e = load("missing.pem", "key.pem");
    assert_eq!(e.setting, CertSetting::CertPath);
    assert!(e.message.contains("missing.pem") && e.message.contains("cannot read"), "{e}");
    let e = load("cert.pem", "missing.pem");
    assert_eq!(e.setting, CertSetting::KeyPath);
    let e = load("garbage", "key.pem");
    assert_eq!((e.setting, e.message.contains("no PEM certificate")), (CertSetting::CertPath, true), "{e}");
    let e = load("cert.pem", "garbage");
    assert_eq!((e.setting, e.message.contains("no PEM private key")), (CertSetting::KeyPath, true), "{e}");
    let e = load("cert.pem", "other-key.pem");
    assert_eq!(e.setting, CertSetting::KeyPath);
    assert!(e.message.contains("does not belong to the certificate"), "{e}");
    let e = load("key.pem", "key.pem");
    assert_eq!(e.setting, CertSetting::CertPath, "a key where the certificate should be: {e}");

    let store = dir.path().join("store");
    write(&store.join("lonely.crt"), &cert);
    let e = Certificates::load(CertSources { default: None, stores: vec![store.clone()] }, provider()).unwrap_err();
    assert_eq!(e.setting, CertSetting::StorePaths);
    assert!(e.message.contains("no key for certificate") && e.message.contains("lonely.crt"), "{e}");
    let e = Certificates::load(CertSources { default: None, stores: vec![p("nowhere")] }, provider()).unwrap_err();
    assert_eq!(e.setting, CertSetting::StorePaths);
}

/// A directory laid out as the kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`, `..data -> ..<stamp>`.
fn mount_secret(dir: &Path, stamp: &str, cert: &str, key: &str) {
    let data = dir.join(format!("..{stamp}"));
    write(&data.join("tls.crt"), cert);
    write(&data.join("tls.key"), key);
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{stamp}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if !dir.join(f).exists() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

#[test]
fn a_secret_updated_in_place_is_reloaded_and_a_broken_update_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_key) = pair(&["app.example"]);
    mount_secret(dir.path(), "2026_01", &first, &first_key);
    let sources = CertSources {
        default: Some((dir.path().join("tls.crt"), dir.path().join("tls.key"))),
        stores: vec![dir.path().into()],
    };
    let certs = Certificates::load(sources, provider()).unwrap();
    assert_eq!(certs.chains().len(), 2, "the pair once as default, once from the store; `..` entries skipped");
    assert!(!certs.reload().unwrap(), "unchanged");

    let (second, second_key) = pair(&["app.example"]);
    mount_secret(dir.path(), "2026_02", &second, &second_key);
    assert!(certs.reload().unwrap());
    assert_eq!(leaf(&certs, Some("app.example")), Some(der(&second)));

    // A certificate whose key does not follow (a half-done update by hand): refused, the last good set stays.
    let (third, _) = pair(&["app.example"]);
    write(&dir.path().join("..2026_02/tls.crt"), &third);
    let e = certs.reload().unwrap_err();
    assert_eq!(e.setting, CertSetting::KeyPath, "{e}");
    assert_eq!(leaf(&certs, Some("app.example")), Some(der(&second)));
}

#[test]
fn the_default_pair_is_the_client_certificate_toward_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(&["interceptor.local"]);
    write(&dir.path().join("c.pem"), &cert);
    write(&dir.path().join("k.pem"), &key);
    let sources = CertSources { default: Some((dir.path().join("c.pem"), dir.path().join("k.pem"))), stores: vec![] };
    let certs = Certificates::load(sources, provider()).unwrap();
    assert!(ResolvesClientCert::has_certs(&*certs));
    let ck = ResolvesClientCert::resolve(&*certs, &[], &[SignatureScheme::ECDSA_NISTP256_SHA256]).unwrap();
    assert_eq!(ck.cert[0].to_vec(), der(&cert));
    assert!(
        ResolvesClientCert::resolve(&*certs, &[], &[SignatureScheme::RSA_PSS_SHA256]).is_none(),
        "no usable scheme"
    );
}
