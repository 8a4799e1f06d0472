use std::time::Duration;

use http::StatusCode;
use httpscale_core::gate::{Refusal, RefusalKind};
use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{Mock, mock, ok, route, routed, text};

struct Layered {
    svc: ColdStartService<Mock>,
    handle: crate::proxy::testing::Handle,
    params: Arc<ColdStartParams>,
}

fn layered() -> Layered {
    let (inner, handle) = mock();
    let params = Arc::new(ColdStartParams {
        header: true,
        stopping: Shutdown::new(),
        metrics: ColdStartMetrics::default(),
        bodies: None,
    });
    Layered { svc: ColdStartLayer::new(params.clone()).layer(inner), handle, params }
}

fn cold(resp: &ProxyResponse) -> &str {
    resp.headers()[COLD_START_HEADER].to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_warm_request_passes_at_once_and_a_cold_one_is_held_unsent_until_the_gate_opens() {
    let route = route("127.0.0.1:1", "");
    let mut l = layered();
    route.gate.set_open(true);
    let answer = l.svc.ready().await.unwrap().call(routed(&route, "/", ()));
    let (_, send) = l.handle.next_request().await.unwrap();
    send.send_response(ok("warm"));
    assert_eq!(cold(&answer.await.unwrap()), "false");

    route.gate.set_open(false);
    let started = Instant::now();
    let held = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!held.is_finished(), "held: no readiness timeout by default");
    assert_eq!(route.pending.load(Ordering::Acquire), 1, "one hold slot taken");
    route.gate.set_open(true);
    let (_, send) = l.handle.next_request().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3600), "sent when the gate opened, not before");
    send.send_response(ok("woke up"));
    let resp = held.await.unwrap().unwrap();
    assert_eq!(cold(&resp), "true");
    assert_eq!(text(resp).await, "woke up");
    assert_eq!(route.pending.load(Ordering::Acquire), 0);
}

#[tokio::test(start_paused = true)]
async fn the_readiness_timeout_gives_504_or_the_fallback() {
    let route = route("127.0.0.1:1", "    timeouts: {readiness: 2s}\n");
    let mut l = layered();
    let started = Instant::now();
    let e = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(matches!(e, ProxyError::ReadinessTimeout { timeout, .. } if timeout == Duration::from_secs(2)));

    let route = crate::proxy::testing::route(
        "127.0.0.1:1",
        "    timeouts: {readiness: 2s}\n    coldStart: {fallback: {upstream: '127.0.0.1:2'}}\n",
    );
    let answer = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    let (seen, send) = l.handle.next_request().await.unwrap();
    assert!(seen.extensions().get::<UseFallback>().is_some(), "sent to the fallback after the wait");
    send.send_response(ok("fallback"));
    let resp = answer.await.unwrap().unwrap();
    assert!(!resp.headers().contains_key(COLD_START_HEADER), "no cold-start header from the fallback, as upstream");
}

#[tokio::test(start_paused = true)]
async fn over_the_cap_requests_are_refused_and_a_client_that_leaves_frees_its_place() {
    let route = route("127.0.0.1:1", "    coldStart: {maxPendingRequests: 1}\n");
    let mut l = layered();
    let held = l.svc.ready().await.unwrap().call(routed(&route, "/", ()));
    let held = tokio::spawn(held);
    tokio::task::yield_now().await;
    let e = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap_err();
    assert!(matches!(e, ProxyError::HoldQueueFull { max: 1, .. }));
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(l.params.metrics.rejections.get_or_create(&route.labels).get(), 1);

    held.abort();
    let _ = held.await;
    assert_eq!(route.pending.load(Ordering::Acquire), 0, "the client left: its place is free");
    let next = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::task::yield_now().await;
    assert_eq!(route.pending.load(Ordering::Acquire), 1, "held, not refused");
    route.gate.set_open(true);
    let (_, send) = l.handle.next_request().await.unwrap();
    send.send_response(ok("ok"));
    assert!(next.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_placeholder_answers_at_once_and_wakes_the_readiness_source() {
    let route = route(
        "127.0.0.1:1",
        "    coldStart: {placeholder: {response: {statusCode: 418, body: warming up}}, fallback: {upstream: '127.0.0.1:2'}}\n",
    );
    let mut l = layered();
    let woken = {
        let gate = route.gate.clone();
        tokio::spawn(async move { gate.demanded().await })
    };
    tokio::task::yield_now().await;
    let resp = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT, "the placeholder wins over the fallback, as upstream");
    assert_eq!(text(resp).await, "warming up");
    woken.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn held_requests_get_503_on_shutdown_and_the_reason_when_the_source_refuses() {
    let route = route("127.0.0.1:1", "");
    let mut l = layered();
    let held = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::task::yield_now().await;
    route.gate.refuse(Refusal { kind: RefusalKind::Failed, reason: "exited with status 3".into() });
    let e = held.await.unwrap().unwrap_err();
    assert_eq!((e.status(), e.to_string()), (StatusCode::BAD_GATEWAY, "exited with status 3".to_string()));

    route.gate.clear_refusal();
    let held = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::time::sleep(Duration::from_secs(5)).await;
    l.params.stopping.trigger();
    assert!(matches!(held.await.unwrap(), Err(ProxyError::ShuttingDown)));
}

#[tokio::test(start_paused = true)]
async fn with_a_per_pod_limit_a_ready_backend_gets_one_request_at_a_time_per_pod() {
    let route = route("127.0.0.1:1", "    coldStart: {maxConcurrentPerPod: 1}\n");
    route.gate.set_open(true);
    let mut l = layered();
    let first = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/1", ())));
    let (_, send_first) = l.handle.next_request().await.unwrap();
    let second = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/2", ())));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!second.is_finished(), "waits for a place");
    send_first.send_response(ok("one"));
    let first = first.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!second.is_finished(), "the place is held until the first answer's body ends");
    drop(first);
    let (seen, send) = l.handle.next_request().await.unwrap();
    assert_eq!(seen.uri().path(), "/2");
    send.send_response(ok("two"));
    assert_eq!(cold(&second.await.unwrap().unwrap()), "false");
}

/// Upstream 0.16 (PR #1733): a placeholder, the route's own `maxPendingRequests` and `overflow: Placeholder`
/// together hold requests up to the limit and give the placeholder only to the overflow. Before, every
/// request got the placeholder at once and the limit could never be reached.
#[tokio::test(start_paused = true)]
async fn with_its_own_limit_and_overflow_placeholder_a_route_holds_up_to_the_limit_then_serves_the_placeholder() {
    let route = route(
        "127.0.0.1:1",
        "    coldStart: {placeholder: {response: {body: warming up}}, maxPendingRequests: 2, overflow: Placeholder}\n",
    );
    let mut l = layered();
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, &format!("/{i}"), ()))));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(route.pending.load(Ordering::Acquire), 2, "both held, not answered with the placeholder");
    assert!(held.iter().all(|h| !h.is_finished()));

    let overflow = l.svc.ready().await.unwrap().call(routed(&route, "/2", ())).await.unwrap();
    assert_eq!(overflow.status(), StatusCode::SERVICE_UNAVAILABLE, "the placeholder's default status");
    assert_eq!(text(overflow).await, "warming up");
    assert_eq!(l.params.metrics.rejections.get_or_create(&route.labels).get(), 1, "the overflow is counted");

    route.gate.set_open(true);
    for _ in 0..2 {
        let (_, send) = l.handle.next_request().await.unwrap();
        send.send_response(ok("real"));
    }
    for h in held {
        let resp = h.await.unwrap().unwrap();
        assert_eq!(cold(&resp), "true");
        assert_eq!(text(resp).await, "real");
    }
}

/// As upstream: holding is opt-in. A placeholder with a limit but `overflow: Reject` (the default), or with
/// `overflow: Placeholder` but only the global limit, still answers every cold request at once.
#[tokio::test(start_paused = true)]
async fn without_both_its_own_limit_and_overflow_placeholder_the_placeholder_answers_at_once() {
    for cold_start in [
        "{placeholder: {response: {body: p}}, maxPendingRequests: 5}",
        "{placeholder: {response: {body: p}}, maxPendingRequests: 5, overflow: Reject}",
        "{placeholder: {response: {body: p}}, overflow: Placeholder}",
    ] {
        let route = route("127.0.0.1:1", &format!("    coldStart: {cold_start}\n"));
        let mut l = layered();
        let resp = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap();
        assert_eq!(text(resp).await, "p", "{cold_start}");
        assert_eq!(route.pending.load(Ordering::Acquire), 0, "{cold_start}: nothing held");
    }
}

/// The count of `interceptor_cold_start_duration_seconds` for one outcome, and its sum.
fn waits(l: &Layered, route: &RouteState, outcome: Outcome) -> (u64, f64) {
    let mut r = prometheus_client::registry::Registry::default();
    r.register("d", "", l.params.metrics.duration.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    let labels = format!(
        "{{route_name=\"{}\",route_namespace=\"{}\",outcome=\"{}\"}}",
        route.route.key.name,
        route.route.key.namespace,
        outcome.as_str()
    );
    let value = |suffix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("d_{suffix}{labels} ")))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    (value("count") as u64, value("sum"))
}

#[tokio::test(start_paused = true)]
async fn every_wait_is_observed_once_with_how_it_ended_and_left_in_the_slot() {
    let route = route("127.0.0.1:1", "    timeouts: {readiness: 2s}\n    coldStart: {maxPendingRequests: 1}\n");
    let mut l = layered();
    let slot = RouteSlot::default();
    let mut req = routed(&route, "/", ());
    req.extensions_mut().insert(slot.clone());
    let held = tokio::spawn(l.svc.ready().await.unwrap().call(req));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap_err();
    assert_eq!(waits(&l, &route, Outcome::Overflow), (1, 0.0), "refused over the cap at once");
    route.gate.set_open(true);
    let (_, send) = l.handle.next_request().await.unwrap();
    send.send_response(ok("ok"));
    held.await.unwrap().unwrap();
    assert_eq!(waits(&l, &route, Outcome::Ready), (1, 1.5));
    assert_eq!(slot.held(), Some(Duration::from_millis(1500)), "the metrics layer labels it cold_start=true");

    route.gate.set_open(false);
    let _ = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap_err();
    assert_eq!(waits(&l, &route, Outcome::Timeout), (1, 2.0));

    let left = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    left.abort();
    let _ = left.await;
    assert_eq!(waits(&l, &route, Outcome::Canceled), (1, 0.5), "the client left while held");

    route.gate.refuse(Refusal { kind: RefusalKind::Failed, reason: "exited".into() });
    let _ = l.svc.ready().await.unwrap().call(routed(&route, "/", ())).await.unwrap_err();
    assert_eq!(waits(&l, &route, Outcome::Error).0, 1);
    route.gate.clear_refusal();

    let stopped = tokio::spawn(l.svc.ready().await.unwrap().call(routed(&route, "/", ())));
    tokio::task::yield_now().await;
    l.params.stopping.trigger();
    let _ = stopped.await;
    assert_eq!(waits(&l, &route, Outcome::Shutdown).0, 1);

    let warm = RouteSlot::default();
    route.gate.set_open(true);
    let mut req = routed(&route, "/", ());
    req.extensions_mut().insert(warm.clone());
    let answer = tokio::spawn(l.svc.ready().await.unwrap().call(req));
    let (_, send) = l.handle.next_request().await.unwrap();
    send.send_response(ok("ok"));
    answer.await.unwrap().unwrap();
    assert_eq!(warm.held(), None, "a warm request never waited: cold_start=false");
}

/// A held request keeps none of the connection's read buffer alive: its target, header values and routed
/// host are copies, equal to what was read.
#[test]
fn a_held_request_is_detached_from_the_read_buffer() {
    let buffer = bytes::Bytes::from_static(b"/models?x=1 a.local secret");
    let within = |p: *const u8| buffer.as_ptr_range().contains(&p);
    let mut auth = HeaderValue::from_maybe_shared(buffer.slice(20..26)).unwrap();
    auth.set_sensitive(true);
    let mut req = Request::builder()
        .uri(http::Uri::from_maybe_shared(buffer.slice(0..11)).unwrap())
        .header("host", HeaderValue::from_maybe_shared(buffer.slice(12..19)).unwrap())
        .header("authorization", auth)
        .body(())
        .unwrap();
    let host = HeaderValue::from_maybe_shared(buffer.slice(12..19)).unwrap();
    req.extensions_mut().insert(Routed { route: route("127.0.0.1:9", ""), host });
    assert!(within(req.headers()["host"].as_bytes().as_ptr()), "the test shares the buffer to begin with");

    let req = detached(req);
    assert_eq!(req.uri(), "/models?x=1");
    assert_eq!(req.headers()["host"], "a.local");
    assert_eq!(req.headers()["authorization"], "secret");
    assert!(req.headers()["authorization"].is_sensitive());
    let routed = req.extensions().get::<Routed>().unwrap();
    assert_eq!(routed.host, "a.local");
    for p in [req.uri().path().as_ptr(), req.headers()["host"].as_bytes().as_ptr(), routed.host.as_bytes().as_ptr()] {
        assert!(!within(p), "still in the read buffer");
    }
}

/// A request the server parked at `since`.
fn parked_at(route: &Arc<RouteState>, since: Instant) -> Request<()> {
    let mut req = routed(route, "/", ());
    req.extensions_mut().insert(Parked::new(since, route.counters.begin()));
    req
}

#[tokio::test(start_paused = true)]
async fn a_parked_request_is_cold_and_its_wait_counts_from_its_arrival() {
    let route = route("127.0.0.1:1", "    timeouts: {readiness: 5s}\n");
    let mut l = layered();
    let arrived = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The gate opened as the park ended.
    route.gate.set_open(true);
    let answer = tokio::spawn(l.svc.ready().await.unwrap().call(parked_at(&route, arrived)));
    let (_, send) = l.handle.next_request().await.unwrap();
    send.send_response(ok("served"));
    assert_eq!(cold(&answer.await.unwrap().unwrap()), "true", "cold although the gate is open now");
    assert_eq!(waits(&l, &route, Outcome::Ready), (1, 3.0));

    // Its readiness deadline runs from its arrival too: 5 s after it, not 5 s after the park ended.
    route.gate.set_open(false);
    let arrived = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let resumed = Instant::now();
    let e = l.svc.ready().await.unwrap().call(parked_at(&route, arrived)).await.unwrap_err();
    assert!(matches!(e, ProxyError::ReadinessTimeout { .. }));
    assert_eq!(resumed.elapsed(), Duration::from_secs(1));
    assert_eq!(waits(&l, &route, Outcome::Timeout), (1, 5.0));
}
