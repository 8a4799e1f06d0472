use std::time::Duration;

use tokio::time::Instant;

use tower::{Layer, ServiceExt};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::*;
use crate::proxy::model::RequestFields;
use crate::proxy::peek::PeekBody;
use crate::proxy::testing::{HandleOf, MockOf, chunks, mock, mock_of, ok, routes};

const TWO_ROUTES: &str = "routes:\n  - {name: app, hosts: [app.local], upstream: '127.0.0.1:1'}\n  - {name: slow, hosts: [slow.local], upstream: '127.0.0.1:2', timeouts: {request: 500ms}}\n";

fn request(uri: &str, host: Option<&str>) -> Request<()> {
    let mut b = Request::get(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_are_routed_on_the_target_authority_else_the_host_header() {
    let (inner, mut handle) = mock();
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true, ReadAhead::limit(1024)).layer(inner);
    let slot = RouteSlot::default();
    let mut req = request("/x", Some("App.Local:8080"));
    req.extensions_mut().insert(slot.clone());
    let answer = svc.ready().await.unwrap().call(req);
    let (seen, send) = handle.next_request().await.unwrap();
    let routed = seen.extensions().get::<Routed>().unwrap();
    assert_eq!((routed.route.route.key.name.as_str(), routed.host.to_str().unwrap()), ("app", "App.Local:8080"));
    assert_eq!(slot.route().unwrap().route.key.name, "app", "the metrics layer learns the route");
    send.send_response(ok("ok"));
    assert!(answer.await.is_ok());

    // An absolute-form target names the host, whatever the Host header says.
    let answer = svc.ready().await.unwrap().call(request("http://slow.local/x", Some("app.local")));
    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, "slow");
    send.send_response(ok("ok"));
    assert!(answer.await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn unknown_hosts_connect_and_missing_hosts_fail_without_reaching_the_inner_layers() {
    let (inner, mut handle) = mock();
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true, ReadAhead::limit(1024)).layer(inner);
    let failure = svc.ready().await.unwrap().call(request("/", Some("evil.example"))).await.unwrap_err();
    assert!(matches!(failure.error, ProxyError::NoRoute { .. }) && failure.route.is_none());
    let failure = svc.ready().await.unwrap().call(request("/", None)).await.unwrap_err();
    assert!(matches!(failure.error, ProxyError::Target(TargetError::MissingHost)));
    let mut connect = request("/", Some("app.local"));
    *connect.method_mut() = Method::CONNECT;
    let failure = svc.ready().await.unwrap().call(connect).await.unwrap_err();
    assert!(matches!(failure.error, ProxyError::ConnectMethod));
    drop(svc);
    assert!(handle.next_request().await.is_none(), "nothing was passed on");
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_gives_504_at_the_deadline_naming_the_route() {
    let (inner, mut handle) = mock();
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true, ReadAhead::limit(1024)).layer(inner);
    let started = Instant::now();
    let answer = svc.ready().await.unwrap().call(request("/", Some("slow.local")));
    let _never_answered = handle.next_request().await.unwrap();
    let failure = answer.await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(500), "exactly the route's deadline");
    assert!(matches!(failure.error, ProxyError::RequestTimeout(t) if t == Duration::from_millis(500)));
    assert_eq!(failure.route.unwrap().to_string(), "default/slow");
}

#[tokio::test(start_paused = true)]
async fn an_inner_failure_leaves_tagged_with_its_route() {
    let (inner, mut handle) = mock();
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true, ReadAhead::limit(1024)).layer(inner);
    let answer = svc.ready().await.unwrap().call(request("/", Some("app.local")));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(ProxyError::ShuttingDown);
    let failure = answer.await.unwrap_err();
    assert!(matches!(failure.error, ProxyError::ShuttingDown));
    assert_eq!(failure.route.unwrap().to_string(), "default/app");
}

#[tokio::test(start_paused = true)]
async fn invalid_targets_fail_with_400_before_any_lookup() {
    let (inner, mut handle) = mock();
    let catch_all = "routes:\n  - {name: all, upstream: '127.0.0.1:1'}\n";
    let mut svc = RouteLayer::new(routes(catch_all), true, ReadAhead::limit(1024)).layer(inner);
    let mut two_hosts = request("/", Some("app.local"));
    two_hosts.headers_mut().append("host", HeaderValue::from_static("evil.example"));
    let mut star = request("/", Some("app.local"));
    *star.uri_mut() = Uri::from_static("*");
    for req in [
        two_hosts,
        request("/", Some("a b")),
        request("/", Some("app.local:99999")),
        star,
        request("/../etc", Some("a")),
    ] {
        let failure = svc.ready().await.unwrap().call(req).await.unwrap_err();
        assert_eq!(failure.error.status(), http::StatusCode::BAD_REQUEST, "{:?}", failure.error);
    }
    drop(svc);
    assert!(handle.next_request().await.is_none(), "nothing was passed on, even with a catch-all route");
}

#[tokio::test(start_paused = true)]
async fn options_asterisk_is_answered_here() {
    let (inner, mut handle) = mock();
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true, ReadAhead::limit(1024)).layer(inner);
    let mut req = request("/", Some("app.local"));
    *req.method_mut() = Method::OPTIONS;
    *req.uri_mut() = Uri::from_static("*");
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    drop(svc);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn dot_segments_are_removed_before_matching_unless_turned_off() {
    let api = "routes:\n  - {name: root, hosts: [h], upstream: '127.0.0.1:1'}\n  - {name: api, hosts: [h], pathPrefixes: [/api], upstream: '127.0.0.1:2'}\n";
    for (normalize, route, uri) in [(true, "root", "/secret?x=1"), (false, "api", "/api/%2e%2e/secret?x=1")] {
        let (inner, mut handle) = mock();
        let mut svc = RouteLayer::new(routes(api), normalize, ReadAhead::limit(1024)).layer(inner);
        let answer = svc.ready().await.unwrap().call(request("/api/%2e%2e/secret?x=1", Some("h")));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, route);
        assert_eq!(seen.uri(), uri, "forwarded as matched");
        send.send_response(ok("ok"));
        assert!(answer.await.is_ok());
    }
}

const MODELS: &str = "routes:
  - {name: catch-all, hosts: [m.local], upstream: '127.0.0.1:1'}
  - {name: llama, hosts: [m.local], models: [llama3*], upstream: '127.0.0.1:2'}
  - {name: qwen, hosts: [m.local], models: ['qwen2.5:7b'], upstream: '127.0.0.1:3'}
  - {name: plain, hosts: [p.local], upstream: '127.0.0.1:4'}
";

type Streamed = PeekBody<crate::proxy::testing::Chunks>;

fn post(host: &str, path: &str, parts: &[&[u8]]) -> Request<Streamed> {
    Request::post(path).header("host", host).body(PeekBody::new(chunks(parts, None))).unwrap()
}

fn model_layer(limit: usize) -> (RouteService<MockOf<Streamed>>, HandleOf<Streamed>) {
    let (inner, handle) = mock_of::<Streamed>();
    (RouteLayer::new(routes(MODELS), true, ReadAhead::limit(limit)).layer(inner), handle)
}

#[tokio::test(start_paused = true)]
async fn an_inference_request_goes_to_the_route_of_its_model_with_its_body_intact() {
    let (mut svc, mut handle) = model_layer(1024);
    let parts: [&[u8]; 3] = [b"{\"messages\": [], \"mod", b"el\": \"llama3.1:8b\",", b" \"stream\": true}"];
    let answer = tokio::spawn(svc.ready().await.unwrap().call(post("m.local", "/v1/chat/completions", &parts)));
    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, "llama");
    let fields = seen.extensions().get::<RequestFields>().unwrap();
    assert_eq!((fields.model.as_deref(), fields.stream), (Some("llama3.1:8b"), true));
    let body = seen.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, parts.concat(), "forwarded byte for byte");
    send.send_response(ok("ok"));
    assert!(answer.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_model_fall_through_to_the_other_rules() {
    let (mut svc, mut handle) = model_layer(1024);
    let cases = [
        post("m.local", "/api/chat", &[b"{\"messages\": []}"]),
        post("m.local", "/api/chat", &[b"not json"]),
        post("m.local", "/api/chat", &[]),
        post("m.local", "/api/version", &[b"{\"model\": \"qwen2.5:7b\"}"]),
        Request::get("/v1/chat/completions").header("host", "m.local").body(PeekBody::new(chunks(&[], None))).unwrap(),
    ];
    for req in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let answer = tokio::spawn(svc.ready().await.unwrap().call(req));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, "catch-all", "{what}");
        send.send_response(ok("ok"));
        assert!(answer.await.unwrap().is_ok());
    }
    let req = post("m.local", "/api/generate", &[b"{\"model\":\"qwen2.5:7b\"}"]);
    let answer = tokio::spawn(svc.ready().await.unwrap().call(req));
    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, "qwen");
    send.send_response(ok("ok"));
    assert!(answer.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_bound_is_413_and_an_unserved_model_is_404_neither_forwarded() {
    let (mut svc, mut handle) = model_layer(16);
    let failure =
        svc.ready().await.unwrap().call(post("m.local", "/v1/embeddings", &[b"{\"model\": ", b"\"qwen2.5:7b\"}"]));
    let failure = failure.await.unwrap_err();
    assert!(matches!(failure.error, ProxyError::BodyTooLarge { limit: 16 }), "{:?}", failure.error);
    let (mut svc2, _h) = model_layer(1024);
    let failure = svc2.ready().await.unwrap().call(post("x.local", "/v1/messages", &[b"{\"model\":\"m\"}"]));
    assert!(matches!(failure.await.unwrap_err().error, ProxyError::NoRoute { .. }));
    let routes = routes("routes:\n  - {name: only, hosts: [m.local], models: [a], upstream: '127.0.0.1:1'}\n");
    let (inner, _only) = mock_of::<Streamed>();
    let mut only = RouteLayer::new(routes, true, ReadAhead::limit(1024)).layer(inner);
    let failure = only.ready().await.unwrap().call(post("m.local", "/v1/completions", &[b"{\"model\":\"b\"}"]));
    let failure = failure.await.unwrap_err();
    assert!(matches!(&failure.error, ProxyError::NoModelRoute { model, .. } if model == "b"), "{:?}", failure.error);
    drop(svc);
    assert!(handle.next_request().await.is_none(), "nothing was passed on");
}

#[tokio::test(start_paused = true)]
async fn other_hosts_never_wait_for_their_body_and_model_lists_are_answered_here() {
    let (inner, mut handle) = mock_of::<
        PeekBody<StreamBody<futures_util::stream::Pending<Result<Frame<Bytes>, std::convert::Infallible>>>>,
    >();
    let mut svc = RouteLayer::new(routes(MODELS), true, ReadAhead::limit(1024)).layer(inner);
    let never_ends = PeekBody::new(StreamBody::new(futures_util::stream::pending()));
    let req = Request::post("/v1/chat/completions").header("host", "p.local").body(never_ends).unwrap();
    let answer = svc.ready().await.unwrap().call(req);
    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, "plain", "routed with its body unread");
    send.send_response(ok("ok"));
    assert!(answer.await.is_ok());

    let list = Request::get("/v1/models")
        .header("host", "m.local")
        .body(PeekBody::new(StreamBody::new(futures_util::stream::pending())))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(list).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&crate::proxy::testing::text(resp).await).unwrap();
    assert_eq!(v["data"][0]["id"], "qwen2.5:7b", "the exact names: {v}");
    drop(svc);
    assert!(handle.next_request().await.is_none(), "the list was not forwarded");
}

#[tokio::test(start_paused = true)]
async fn escaped_unreserved_characters_match_as_themselves_and_are_forwarded_as_received() {
    let api = "routes:\n  - {name: root, hosts: [h], upstream: '127.0.0.1:1'}\n  - {name: api, hosts: [h], pathPrefixes: [/api], upstream: '127.0.0.1:2'}\n";
    for (normalize, route, uri) in [(true, "api", "/%61pi/x"), (true, "root", "/a%2Fpi"), (false, "root", "/%61pi/x")] {
        let (inner, mut handle) = mock();
        let mut svc = RouteLayer::new(routes(api), normalize, ReadAhead::limit(1024)).layer(inner);
        let answer = svc.ready().await.unwrap().call(request(uri, Some("h")));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, route, "{uri}");
        assert_eq!(seen.uri(), uri, "forwarded as received");
        send.send_response(ok("ok"));
        assert!(answer.await.is_ok());
    }
}
