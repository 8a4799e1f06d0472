//! TLS both ways against real peers: the TLS listener with a CA made in the test, seen by curl, `openssl
//! s_client` and rustls clients (SNI selection, ALPN h2, reload of a Secret updated in place while a
//! connection stays open, version bounds, start-up errors, deprecated names), and https backends (trusted
//! through `KEDA_HTTP_TLS_CA_DIRS`, or skip-verify; Kubernetes routes over https from the TLS listener with the
//! Service's name as SNI, also with direct pod routing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use http::StatusCode;
use httpscale_interceptor::Config;
use httpscale_testkit::tls::{Pki, Sender, all_versions, connect, der, https_backend, peer_leaf};
use httpscale_testkit::*;

/// The TLS listener on, its default pair at `cert`/`key`, `stores` walked for more.
fn tls_on(c: &mut Config, cert: &Path, key: &Path, stores: &[&Path]) {
    c.tls.proxy_tls_enabled = true;
    c.tls.proxy_tls_cert_path = Some(cert.display().to_string());
    c.tls.proxy_tls_key_path = Some(key.display().to_string());
    c.tls.proxy_tls_cert_store_paths = stores.iter().map(|p| p.display().to_string()).collect();
    c.tls.tls_reload_interval = Duration::from_millis(100);
}

fn app_routes(upstream: &str) -> String {
    format!("routes:\n  - name: app\n    hosts: [app.local, a.example, b.example]\n    upstream: '{upstream}'\n")
}

/// Runs a command off the runtime's threads.
async fn run(cmd: &'static str, args: Vec<String>, stdin_null: bool) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(cmd);
        c.args(args);
        if stdin_null {
            c.stdin(std::process::Stdio::null());
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_h2_over_alpn_reaches_the_backend() {
    let pki = Pki::new();
    let (dc, dk) = pki.leaf(&["app.local"]);
    let (ac, ak) = pki.leaf(&["a.example"]);
    let (bc, bk) = pki.leaf(&["b.example"]);
    let (cert, key) = (pki.write("tls.crt", &dc), pki.write("tls.key", &dk));
    pki.write("store/a.crt", &ac);
    pki.write("store/a.key", &ak);
    pki.write("store/b/b.pem", &bc);
    pki.write("store/b/b-key.pem", &bk);
    let ca = pki.write("ca.pem", &pki.ca_pem());
    let backend = named_backend("plain").await;
    let store = pki.path("store");
    let h = interceptor_with(&app_routes(&backend.authority()), |c| tls_on(c, &cert, &key, &[&store])).await;
    let tls = h.running.proxy_tls_addr.unwrap();

    let h2 = pki.client(&[&b"h2"[..], &b"http/1.1"[..]], all_versions());
    for (name, want) in [("a.example", &ac), ("b.example", &bc), ("app.local", &dc), ("other.example", &dc)] {
        let stream = connect(tls, name, pki.client(&[], all_versions())).await;
        match name {
            "other.example" => assert!(stream.is_err(), "the default certificate is not for {name}: refused"),
            _ => assert_eq!(peer_leaf(&stream.unwrap()), der(want), "SNI {name}"),
        }
    }
    let stream = connect(tls, "a.example", h2.clone()).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = Sender::on(stream).await;
    let (status, body, version) = sender.get("a.example", "/x").await;
    assert_eq!((status, body.as_str(), version), (StatusCode::OK, "plain", http::Version::HTTP_2));
    let seen = backend.seen();
    assert_eq!(seen.last().unwrap().headers["x-forwarded-proto"], "https", "the client came over TLS");

    // curl, its own TLS stack (OpenSSL) and HTTP/2 (nghttp2), trusting only the test CA.
    let port = tls.port();
    let args = vec![
        "-sS".into(),
        "--http2".into(),
        "--cacert".into(),
        ca.display().to_string(),
        "--resolve".into(),
        format!("b.example:{port}:127.0.0.1"),
        "-w".into(),
        "|%{http_version}|%{ssl_verify_result}".into(),
        format!("https://b.example:{port}/y"),
    ];
    let out = run("curl", args, false).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain|2|0", "{}", String::from_utf8_lossy(&out.stderr));
    // The plain listener still serves, and says http.
    assert_eq!(get(h.proxy(), "app.local", "/").await.0, StatusCode::OK);
    assert_eq!(backend.seen().last().unwrap().headers["x-forwarded-proto"], "http");
    h.stop().await;
}

/// Points the Secret-style `..data` link at `version` (as the kubelet does: a new link renamed over it).
fn secret_version(dir: &Path, version: &str, cert: &str, key: &str) {
    let v = dir.join(version);
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("tls.crt"), cert).unwrap();
    std::fs::write(v.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if !dir.join(f).exists() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_updated_in_place_is_served_to_new_connections_while_open_ones_go_on() {
    let pki = Pki::new();
    let secret = pki.path("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let (c1, k1) = pki.leaf(&["app.local"]);
    secret_version(&secret, "..2026_11_30_v1", &c1, &k1);
    let backend = named_backend("ok").await;
    let (cert, key) = (secret.join("tls.crt"), secret.join("tls.key"));
    let h = interceptor_with(&app_routes(&backend.authority()), |c| tls_on(c, &cert, &key, &[])).await;
    let tls = h.running.proxy_tls_addr.unwrap();
    let client = pki.client(&[&b"http/1.1"[..]], all_versions());

    let open = connect(tls, "app.local", client.clone()).await.unwrap();
    assert_eq!(peer_leaf(&open), der(&c1));
    let mut sender = Sender::on(open).await;
    assert_eq!(sender.get("app.local", "/1").await.0, StatusCode::OK);

    let (c2, k2) = pki.leaf(&["app.local"]);
    secret_version(&secret, "..2026_11_30_v2", &c2, &k2);
    let fresh = der(&c2);
    eventually(Duration::from_secs(5), "new connections get the new certificate", || {
        let (client, fresh) = (client.clone(), fresh.clone());
        async move { connect(tls, "app.local", client).await.map(|s| peer_leaf(&s) == fresh).unwrap_or(false) }
    })
    .await;
    // The connection opened before the update was not dropped: it keeps serving requests.
    assert_eq!(sender.get("app.local", "/2").await.0, StatusCode::OK);
    assert_eq!(backend.seen().len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn version_bounds_refuse_clients_outside_them() {
    let pki = Pki::new();
    let (c, k) = pki.leaf(&["app.local"]);
    let (cert, key) = (pki.write("tls.crt", &c), pki.write("tls.key", &k));
    let ca = pki.write("ca.pem", &pki.ca_pem());
    let backend = named_backend("ok").await;
    let h = interceptor_with(&app_routes(&backend.authority()), |cfg| {
        tls_on(cfg, &cert, &key, &[]);
        cfg.tls.tls_min_version = Some("1.3".into());
    })
    .await;
    let tls = h.running.proxy_tls_addr.unwrap();
    let s_client = |flag: &str| {
        vec![
            "s_client".into(),
            "-connect".into(),
            tls.to_string(),
            "-servername".into(),
            "app.local".into(),
            "-CAfile".into(),
            ca.display().to_string(),
            "-alpn".into(),
            "h2".into(),
            flag.into(),
        ]
    };
    let old = run("openssl", s_client("-tls1_2"), true).await;
    assert!(!old.status.success(), "TLS 1.2 refused under KEDA_HTTP_TLS_MIN_VERSION=1.3");
    let new = run("openssl", s_client("-tls1_3"), true).await;
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(new.status.success(), "{text}");
    assert!(text.contains("TLSv1.3") && text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    h.stop().await;

    let h = interceptor_with(&app_routes(&backend.authority()), |cfg| {
        tls_on(cfg, &cert, &key, &[]);
        cfg.tls.tls_max_version = Some("TLS12".into());
    })
    .await;
    let tls = h.running.proxy_tls_addr.unwrap();
    let only13 = pki.client(&[], &[&rustls::version::TLS13]);
    assert!(connect(tls, "app.local", only13).await.is_err(), "a TLS 1.3-only client refused under max 1.2");
    let ok = connect(tls, "app.local", pki.client(&[], all_versions())).await.unwrap();
    assert_eq!(ok.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    drop(ok);
    h.stop().await;
}

/// How long until the peer closes `stream` (reads until EOF or an error).
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Duration {
    use tokio::io::AsyncReadExt;
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 256];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_listener_has_the_plain_listeners_time_limits() {
    let pki = Pki::new();
    let (c, k) = pki.leaf(&["app.local"]);
    let (cert, key) = (pki.write("tls.crt", &c), pki.write("tls.key", &k));
    let backend = named_backend("ok").await;
    let h = interceptor_with(&app_routes(&backend.authority()), |cfg| {
        tls_on(cfg, &cert, &key, &[]);
        cfg.listen.header_read_timeout = Duration::from_millis(300);
        cfg.listen.idle_timeout = Duration::from_millis(800);
    })
    .await;
    let tls = h.running.proxy_tls_addr.unwrap();
    // Silent before the handshake, and silent after it: both closed within the header timeout of accept.
    let mut silent = tokio::net::TcpStream::connect(tls).await.unwrap();
    let mut shaken = connect(tls, "app.local", pki.client(&[], all_versions())).await.unwrap();
    let (a, b) = tokio::join!(closed_after(&mut silent), closed_after(&mut shaken));
    assert!(a < Duration::from_secs(2) && b < Duration::from_secs(2), "{a:?} {b:?}");
    // A kept-alive connection after its request: closed when idle, not before.
    let stream = connect(tls, "app.local", pki.client(&[&b"http/1.1"[..]], all_versions())).await.unwrap();
    let mut sender = Sender::on(stream).await;
    assert_eq!(sender.get("app.local", "/").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sender.get("app.local", "/again").await.0, StatusCode::OK, "not idle for long enough yet");
    let m = h.metrics().await;
    assert!(m.contains(r#"httpscale_connection_limits_total{listener="proxy-tls",limit="header_timeout"} 2"#), "{m}");
    assert!(m.contains(r#"httpscale_open_connections{listener="proxy-tls"} 1"#), "{m}");
    h.stop().await;
}

/// Runs the interceptor binary with only `env` set, expecting it to stop at start-up: exit code and stderr.
async fn start_binary(env: Vec<(&'static str, String)>) -> (Option<i32>, String) {
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_interceptor"));
        c.env_clear().envs(env).env("KEDA_HTTP_PROXY_PORT", "0").env("KEDA_HTTP_ADMIN_PORT", "0");
        c.env("OTEL_PROM_EXPORTER_ENABLED", "false").env("KEDA_HTTP_PROXY_TLS_PORT", "0");
        let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
        // A start that does not fail within 10 s is a failure of the test, not a hang.
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_certificate_key_or_setting_stops_start_up_naming_it() {
    let pki = Pki::new();
    let routes = pki.write("routes.yaml", &app_routes("127.0.0.1:1"));
    let (c, k) = pki.leaf(&["app.local"]);
    let (_, other_key) = pki.leaf(&["app.local"]);
    let cert = pki.write("tls.crt", &c);
    let key = pki.write("tls.key", &k);
    let wrong_key = pki.write("wrong.key", &other_key);
    let garbage = pki.write("garbage.crt", "not a certificate\n");
    let base = |cert: &Path, key: &Path| {
        vec![
            ("HTTPSCALE_CONFIG", routes.display().to_string()),
            ("KEDA_HTTP_PROXY_TLS_ENABLED", "true".to_string()),
            ("KEDA_HTTP_PROXY_TLS_CERT_PATH", cert.display().to_string()),
            ("KEDA_HTTP_PROXY_TLS_KEY_PATH", key.display().to_string()),
        ]
    };
    let (code, err) = start_binary(base(&garbage, &key)).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("KEDA_HTTP_PROXY_TLS_CERT_PATH") && err.contains("garbage.crt"), "{err}");
    let (code, err) = start_binary(base(&cert, &wrong_key)).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("KEDA_HTTP_PROXY_TLS_KEY_PATH") && err.contains("does not belong"), "{err}");
    let mut env = base(&cert, &key);
    env.push(("KEDA_HTTP_TLS_CURVE_PREFERENCES", "CurveP256,Brainpool".into()));
    let (code, err) = start_binary(env).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("KEDA_HTTP_TLS_CURVE_PREFERENCES") && err.contains("Brainpool"), "{err}");

    // A deprecated name is still read (its bad value is named), and warned about with its replacement.
    let mut env = base(&garbage, &key);
    env.push(("KEDA_HTTP_PROXY_TLS_MAX_VERSION", "1.3".into()));
    let (code, err) = start_binary(env).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("KEDA_HTTP_PROXY_TLS_MAX_VERSION is deprecated") && err.contains("use KEDA_HTTP_TLS_MAX_VERSION"),
        "{err}"
    );
    let mut env = base(&cert, &key);
    env.push(("KEDA_HTTP_PROXY_TLS_MIN_VERSION", "1.0".into()));
    let (code, err) = start_binary(env).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("KEDA_HTTP_PROXY_TLS_MIN_VERSION") && err.contains("\"1.0\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_verified_against_the_ca_dirs_or_not_at_all_with_skip_verify() {
    let pki = Pki::new();
    let (c, k) = pki.leaf(&["localhost"]);
    let (cert, key) = (pki.write("backend.crt", &c), pki.write("backend.key", &k));
    pki.write("cas/ca.pem", &pki.ca_pem());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = https_backend(listener, &cert, &key, "secure");
    let routes = app_routes(&format!("https://localhost:{port}"));
    let cas = pki.path("cas").display().to_string();

    let h = interceptor_with(&routes, |c| c.tls.tls_ca_dirs = vec![cas.clone()]).await;
    let (status, _, body) = get(h.proxy(), "app.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "secure"));
    let s = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(s.sni.as_deref(), Some("localhost"), "the certificate is checked for the upstream's host");
    assert_eq!((s.alpn.as_deref(), s.version), (Some(&b"h2"[..]), http::Version::HTTP_2), "ALPN h2 first");
    assert_eq!(s.forwarded_proto.as_deref(), Some("http"), "the client came over plain HTTP");
    h.stop().await;

    // Not trusted: answered at once with 502 (a handshake failure is not retried like a refused connect).
    let h = interceptor(&routes).await;
    let started = tokio::time::Instant::now();
    let (status, _, body) = get(h.proxy(), "app.local", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    h.stop().await;

    let h = interceptor_with(&routes, |c| c.tls.tls_skip_verify = Some(true)).await;
    assert_eq!(get(h.proxy(), "app.local", "/").await.0, StatusCode::OK, "KEDA_HTTP_TLS_SKIP_VERIFY");
    h.stop().await;
}

mod kubernetes {
    use http::StatusCode;
    use httpscale_core::spec::HTTPScaledObject;
    use httpscale_testkit::interceptor::in_cluster;
    use httpscale_testkit::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, PostParams};
    use serde_json::json;

    use super::*;

    async fn create<K>(client: &kube::Client, value: serde_json::Value)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(value).unwrap();
        Api::<K>::namespaced(client.clone(), "default").create(&PostParams::default(), &object).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn requests_from_the_tls_listener_go_over_https_named_for_the_service_even_to_a_pod() {
        let kmock = Kmock::start(&[
            "http.keda.sh/v1alpha1/httpscaledobjects=HTTPScaledObject",
            "http.keda.sh/v1beta1/interceptorroutes=InterceptorRoute",
            "discovery.k8s.io/v1/endpointslices=EndpointSlice",
            "v1/services=Service",
            "v1/configmaps=ConfigMap",
        ]);
        let client = kmock.client();
        let pki = Pki::new();
        let (bc, bk) = pki.leaf(&["secure.default"]);
        let (backend_cert, backend_key) = (pki.write("backend.crt", &bc), pki.write("backend.key", &bk));
        let (lc, lk) = pki.leaf(&["secure.local"]);
        let (cert, key) = (pki.write("tls.crt", &lc), pki.write("tls.key", &lk));
        pki.write("cas/ca.pem", &pki.ca_pem());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = https_backend(listener, &backend_cert, &backend_key, "pod");
        let cas = pki.path("cas").display().to_string();
        let h = in_cluster(client.clone(), |c| {
            c.direct_pod_routing = true;
            c.tls.tls_ca_dirs = vec![cas];
            tls_on(c, &cert, &key, &[]);
        })
        .await;
        let admin: SocketAddr = h.admin();
        eventually(Duration::from_secs(10), "first sync", || async move {
            get(admin, "admin", "/readyz").await.0 == StatusCode::OK
        })
        .await;
        create::<Service>(
            &client,
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "secure", "namespace": "default"},
            "spec": {"ports": [{"name": "https", "port": 443}]}}),
        )
        .await;
        create::<EndpointSlice>(&client, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {"name": "secure-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "secure"}},
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}))
        .await;
        create::<HTTPScaledObject>(&client, json!({"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
            "metadata": {"name": "secure", "namespace": "default"},
            "spec": {"hosts": ["secure.local"], "scaleTargetRef": {"name": "secure", "service": "secure", "port": 443}}}))
        .await;
        eventually(
            Duration::from_secs(10),
            "route",
            || async move { queue(admin).await.get("default/secure").is_some() },
        )
        .await;

        let tls = h.running.proxy_tls_addr.unwrap();
        let stream = connect(tls, "secure.local", pki.client(&[&b"http/1.1"[..]], all_versions())).await.unwrap();
        let mut sender = Sender::on(stream).await;
        let (status, body, _) = sender.get("secure.local", "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "pod"));
        let s = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(s.sni.as_deref(), Some("secure.default"), "SNI is the Service's name, not the pod address");
        assert_eq!(s.forwarded_proto.as_deref(), Some("https"));

        // The plain listener sends plain HTTP, which the TLS-only backend cannot answer.
        let before = seen.lock().unwrap().len();
        let (status, _, _) = get(h.proxy(), "secure.local", "/").await;
        assert_ne!(status, StatusCode::OK);
        assert_eq!(seen.lock().unwrap().len(), before);
        h.stop().await;
    }
}
