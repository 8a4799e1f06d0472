use std::sync::Arc;
use std::time::Duration;

use http::header::ACCEPT;
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{Handle, Mock, mock, ok, route, routed, text};

const KEEP_ALIVE: &str = "    coldStart: {streamKeepAlive: {interval: 2s}}\n";

fn layered() -> (KeepAliveService<Mock>, Handle) {
    let (inner, handle) = mock();
    (KeepAliveLayer::new(ReadAhead::limit(1024)).layer(inner), handle)
}

/// A cold `POST /v1/chat/completions` on `route`, with the body fields the route layer would have read.
fn chat(route: &Arc<crate::routes::RouteState>, stream: bool) -> Request<()> {
    let mut req = routed(route, "/v1/chat/completions", ());
    *req.method_mut() = http::Method::POST;
    req.extensions_mut().insert(RequestFields { api: Api::OpenAi, model: Some("m".into()), stream });
    req
}

async fn next_text(body: &mut ProxyBody) -> Option<String> {
    let frame = body.frame().await?.unwrap();
    Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
}

/// A held streaming request: the stream after its first comment, and the inner
/// layers' answer to send.
async fn kept_alive() -> (ProxyBody, tower_test::mock::SendResponse<ProxyResponse>) {
    let route = route("127.0.0.1:1", KEEP_ALIVE);
    let (mut svc, mut handle) = layered();
    let answer = tokio::spawn(svc.ready().await.unwrap().call(chat(&route, true)));
    let (_, send) = handle.next_request().await.unwrap();
    let mut body = answer.await.unwrap().unwrap().into_body();
    assert_eq!(next_text(&mut body).await.unwrap(), ": waiting for model\n\n");
    (body, send)
}

#[tokio::test(start_paused = true)]
async fn a_held_stream_gets_the_head_at_once_then_comments_then_the_backends_stream() {
    let route = route("127.0.0.1:1", KEEP_ALIVE);
    let (mut svc, mut handle) = layered();
    let started = Instant::now();
    let answer = tokio::spawn(svc.ready().await.unwrap().call(chat(&route, true)));
    let (_, send) = handle.next_request().await.unwrap();
    let resp = answer.await.unwrap().unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "the head at once");
    assert_eq!(
        (resp.status(), &resp.headers()[CONTENT_TYPE]),
        (StatusCode::OK, &HeaderValue::from_static("text/event-stream"))
    );
    let mut body = resp.into_body();
    assert_eq!(next_text(&mut body).await.unwrap(), ": waiting for model\n\n");
    assert_eq!(started.elapsed(), Duration::ZERO, "the first comment with the head");
    assert_eq!(next_text(&mut body).await.unwrap(), ": waiting for model\n\n");
    assert_eq!(started.elapsed(), Duration::from_secs(2), "then one every interval");
    tokio::time::sleep(Duration::from_millis(500)).await;
    send.send_response(ok("data: {\"choices\":[]}\n\ndata: [DONE]\n\n"));
    assert_eq!(next_text(&mut body).await.unwrap(), "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", "spliced at once");
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
    assert!(body.frame().await.is_none(), "and the stream ends with the backend's");
}

#[tokio::test(start_paused = true)]
async fn a_failed_hold_ends_the_stream_with_an_error_event() {
    let (mut body, send) = kept_alive().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    send.send_error(ProxyError::ReadinessTimeout { upstream: "u".into(), timeout: Duration::from_secs(5) });
    let event = next_text(&mut body).await.unwrap();
    assert!(event.starts_with("event: error\ndata: {") && event.contains("\"code\":504"), "{event}");
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_backend_error_status_after_the_head_is_quoted_in_the_error_event() {
    let (mut body, send) = kept_alive().await;
    let mut failed = ok("model file not found\n");
    *failed.status_mut() = StatusCode::NOT_FOUND;
    send.send_response(failed);
    let event = next_text(&mut body).await.unwrap();
    assert!(
        event.contains("\"code\":404") && event.contains("the backend answered 404 Not Found: model file not found"),
        "{event}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hold_refused_at_once_keeps_its_status() {
    let route = route("127.0.0.1:1", KEEP_ALIVE);
    let key = route.route.key.clone();
    let refuse = tower::service_fn(move |_: Request<()>| {
        let key = key.clone();
        async move { Err::<ProxyResponse, _>(ProxyError::HoldQueueFull { route: key, max: 1 }) }
    });
    let mut svc = KeepAliveLayer::new(ReadAhead::limit(1024)).layer(refuse);
    let answer = svc.ready().await.unwrap().call(chat(&route, true)).await;
    assert!(matches!(answer, Err(ProxyError::HoldQueueFull { .. })), "a real 503, not a stream");
}

#[tokio::test(start_paused = true)]
async fn other_requests_pass_straight_on() {
    let keep = route("127.0.0.1:1", KEEP_ALIVE);
    let (mut svc, mut handle) = layered();
    let mut ollama = routed(&keep, "/api/chat", ());
    *ollama.method_mut() = http::Method::POST;
    ollama.headers_mut().insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let mut sse_get = routed(&keep, "/events", ());
    sse_get.headers_mut().insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let plain = route("127.0.0.1:2", "");
    let warm = route("127.0.0.1:3", KEEP_ALIVE);
    warm.gate.set_open(true);
    let cases = [
        ("not streaming", chat(&keep, false), false),
        ("Ollama's NDJSON", ollama, false),
        ("route without keep-alive", chat(&plain, true), false),
        ("warm backend", chat(&warm, true), false),
        ("any SSE request by its Accept header", sse_get, true),
    ];
    for (case, req, kept_alive) in cases {
        let answer = tokio::spawn(svc.ready().await.unwrap().call(req));
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(answer.is_finished(), kept_alive, "{case}: answered before the backend only if kept alive");
        if kept_alive {
            let mut body = answer.await.unwrap().unwrap().into_body();
            assert_eq!(next_text(&mut body).await.unwrap(), ": waiting for model\n\n", "{case}");
            send.send_response(ok("answer"));
            assert_eq!(next_text(&mut body).await.unwrap(), "answer", "{case}");
        } else {
            send.send_response(ok("answer"));
            assert_eq!(text(answer.await.unwrap().unwrap()).await, "answer", "{case}");
        }
    }
}
