use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{mock, ok, route, routed, text};

const STATICS: &str = "    staticRoutes:\n      - rules: [{paths: [{value: /healthz}]}]\n        response: {body: healthy}\n      - rules: [{paths: [{value: /robots.txt}]}]\n        responseMode: Always\n        response: {body: 'User-agent: *'}\n";

#[tokio::test(start_paused = true)]
async fn static_answers_while_unavailable_always_answers_and_ready_traffic_skips_to_the_forwarder() {
    let route = route("127.0.0.1:1", STATICS);
    let (inner, mut inner_handle) = mock();
    let (forward, mut forward_handle) = mock();
    let mut svc = StaticLayer::new(None, forward).layer(inner);

    let resp = svc.ready().await.unwrap().call(routed(&route, "/healthz", ())).await.unwrap();
    assert_eq!(text(resp).await, "healthy", "answered while the backend is not ready");
    let resp = svc.ready().await.unwrap().call(routed(&route, "/robots.txt", ())).await.unwrap();
    assert_eq!(text(resp).await, "User-agent: *");

    route.gate.set_open(true);
    let answer = svc.ready().await.unwrap().call(routed(&route, "/healthz", ()));
    let (seen, send) = forward_handle.next_request().await.unwrap();
    assert_eq!(seen.uri().path(), "/healthz", "WhenUnavailable goes straight to the forwarder once ready");
    send.send_response(ok("from the app"));
    assert_eq!(text(answer.await.unwrap()).await, "from the app");
    let resp = svc.ready().await.unwrap().call(routed(&route, "/robots.txt", ())).await.unwrap();
    assert_eq!(text(resp).await, "User-agent: *", "Always answers even when ready");

    let answer = svc.ready().await.unwrap().call(routed(&route, "/other", ()));
    let (seen, send) = inner_handle.next_request().await.unwrap();
    assert_eq!(seen.uri().path(), "/other", "no static match: down the pipeline (counted, maybe held)");
    send.send_response(ok("app"));
    assert_eq!(text(answer.await.unwrap()).await, "app");
}
