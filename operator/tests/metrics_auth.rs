//! The operator's HTTPS metrics endpoint with authentication (`--metrics-secure --metrics-auth`, upstream's
//! chart defaults): curl over real TLS as the scraper, and kube's tower-test mock as the API server, which
//! checks each TokenReview and SubjectAccessReview the operator sends and answers as the API server would.
//! The real API server's answers are exercised by the e2e scenario `operator_metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::{Request, Response};
use http_body_util::BodyExt;
use httpscale_core::Shutdown;
use httpscale_core::listener::gate::Gatekeeper;
use httpscale_operator::metrics::Metrics;
use httpscale_operator::metrics_auth::MetricsAuth;
use httpscale_operator::metrics_server::{self, Secured};
use httpscale_operator::{Config, metrics_tls};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

async fn start(auth: bool) -> (SocketAddr, ApiHandle, Shutdown) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let config = Config::try_parse_from(["operator"]).unwrap();
    let gate = Gatekeeper::new("metrics", config.listen.admin());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let secured = Secured {
        tls: Some(metrics_tls::server_config(None).unwrap()),
        auth: auth.then(|| MetricsAuth::new(client)),
        metrics: Arc::new(Metrics::new()),
    };
    let stop = Shutdown::new();
    tokio::spawn(metrics_server::serve(listener, gate, secured, stop.clone()));
    (addr, handle, stop)
}

/// curl over HTTPS (the certificate is self-signed, hence `-k`); returns (status, body).
async fn curl(addr: SocketAddr, token: Option<&str>, path: &str) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}", &format!("https://{addr}{path}")]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

/// The next API request: (path, JSON body); answered with `reply`.
async fn api_call(api: &mut ApiHandle, reply: impl FnOnce(&Value) -> Value) -> (String, Value) {
    let (req, respond) = tokio::time::timeout(Duration::from_secs(5), api.next_request()).await.unwrap().unwrap();
    let path = req.uri().path().to_owned();
    let body: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let answer = reply(&body);
    respond
        .send_response(Response::builder().status(201).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap());
    (path, body)
}

fn token_review(authenticated: bool) -> impl FnOnce(&Value) -> Value {
    move |req| {
        let mut r = req.clone();
        r["status"] = if authenticated {
            json!({"authenticated": true, "user": {"username": "system:serviceaccount:monitoring:prometheus",
                "uid": "u-1", "groups": ["system:serviceaccounts", "system:authenticated"]}})
        } else {
            json!({"authenticated": false, "error": "token has expired"})
        };
        r
    }
}

fn access_review(allowed: bool) -> impl FnOnce(&Value) -> Value {
    move |req| {
        let mut r = req.clone();
        r["status"] = json!({"allowed": allowed, "reason": if allowed { "bound" } else { "" }});
        r
    }
}

#[tokio::test]
async fn an_allowed_token_reads_the_metrics_over_https_after_a_token_review_and_an_access_review() {
    let (addr, mut api, stop) = start(true).await;
    let scrape = tokio::spawn(async move { curl(addr, Some("good-token"), "/metrics").await });
    let (path, review) = api_call(&mut api, token_review(true)).await;
    assert_eq!(path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(review["spec"]["token"], "good-token");
    let (path, review) = api_call(&mut api, access_review(true)).await;
    assert_eq!(path, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert_eq!(review["spec"]["user"], "system:serviceaccount:monitoring:prometheus");
    assert_eq!(review["spec"]["uid"], "u-1");
    assert_eq!(review["spec"]["groups"], json!(["system:serviceaccounts", "system:authenticated"]));
    assert_eq!(review["spec"]["nonResourceAttributes"], json!({"path": "/metrics", "verb": "get"}));
    let (status, body) = scrape.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("leader_election_master_status 0"), "{body}");
    stop.trigger();
}

#[tokio::test]
async fn a_missing_or_rejected_token_is_401_and_a_user_without_the_right_is_403() {
    let (addr, mut api, stop) = start(true).await;
    assert_eq!(curl(addr, None, "/metrics").await, (401, "Unauthorized\n".into()), "no API call without a token");

    let scrape = tokio::spawn(async move { curl(addr, Some("expired"), "/metrics").await });
    api_call(&mut api, token_review(false)).await;
    assert_eq!(scrape.await.unwrap(), (401, "Unauthorized\n".into()));

    let scrape = tokio::spawn(async move { curl(addr, Some("good-token"), "/metrics").await });
    api_call(&mut api, token_review(true)).await;
    api_call(&mut api, access_review(false)).await;
    assert_eq!(
        scrape.await.unwrap(),
        (403, "Authorization denied for user system:serviceaccount:monitoring:prometheus\n".into())
    );
    stop.trigger();
}

#[tokio::test]
async fn without_auth_the_https_endpoint_answers_anyone_and_plain_http_is_refused() {
    let (addr, _api, stop) = start(false).await;
    let (status, body) = curl(addr, None, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("leader_election_master_status"), "{body}");
    assert_eq!(curl(addr, None, "/other").await.0, 404);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{addr}/metrics")])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000", "no answer in clear text on the HTTPS port");
    stop.trigger();
}
