use std::time::Duration;

use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{mock, ok, routes};

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
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true).layer(inner);
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
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true).layer(inner);
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
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true).layer(inner);
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
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true).layer(inner);
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
    let mut svc = RouteLayer::new(routes(catch_all), true).layer(inner);
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
    let mut svc = RouteLayer::new(routes(TWO_ROUTES), true).layer(inner);
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
        let mut svc = RouteLayer::new(routes(api), normalize).layer(inner);
        let answer = svc.ready().await.unwrap().call(request("/api/%2e%2e/secret?x=1", Some("h")));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, route);
        assert_eq!(seen.uri(), uri, "forwarded as matched");
        send.send_response(ok("ok"));
        assert!(answer.await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn escaped_unreserved_characters_match_as_themselves_and_are_forwarded_as_received() {
    let api = "routes:\n  - {name: root, hosts: [h], upstream: '127.0.0.1:1'}\n  - {name: api, hosts: [h], pathPrefixes: [/api], upstream: '127.0.0.1:2'}\n";
    for (normalize, route, uri) in [(true, "api", "/%61pi/x"), (true, "root", "/a%2Fpi"), (false, "root", "/%61pi/x")] {
        let (inner, mut handle) = mock();
        let mut svc = RouteLayer::new(routes(api), normalize).layer(inner);
        let answer = svc.ready().await.unwrap().call(request(uri, Some("h")));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(seen.extensions().get::<Routed>().unwrap().route.route.key.name, route, "{uri}");
        assert_eq!(seen.uri(), uri, "forwarded as received");
        send.send_response(ok("ok"));
        assert!(answer.await.is_ok());
    }
}
