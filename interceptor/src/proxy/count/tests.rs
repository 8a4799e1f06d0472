use std::time::Duration;

use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{mock, ok, route, routed};

#[tokio::test(start_paused = true)]
async fn a_request_is_counted_before_it_waits_and_until_its_body_ends() {
    let route = route("127.0.0.1:1", "");
    let (inner, mut handle) = mock();
    let mut svc = CountLayer.layer(inner);
    let answer = tokio::spawn(svc.ready().await.unwrap().call(routed(&route, "/", ())));
    let (_, send) = handle.next_request().await.unwrap();
    let counted = route.counters.snapshot();
    assert_eq!((counted.concurrency, counted.request_count), (1, 1), "counted before the inner layers answer");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(route.counters.snapshot().concurrency, 1, "still counted while held");
    send.send_response(ok("streamed"));
    let resp = answer.await.unwrap().unwrap();
    assert_eq!(route.counters.snapshot().concurrency, 1, "the answer's body has not ended yet");
    drop(resp);
    assert_eq!(route.counters.snapshot().concurrency, 0, "given back when the body ends or is dropped");
    assert_eq!(route.counters.snapshot().request_count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_abandoned_request_gives_its_count_back() {
    let route = route("127.0.0.1:1", "");
    let (inner, mut handle) = mock();
    let mut svc = CountLayer.layer(inner);
    let failed = svc.ready().await.unwrap().call(routed(&route, "/", ()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(ProxyError::ShuttingDown);
    assert!(matches!(failed.await, Err(ProxyError::ShuttingDown)));
    assert_eq!(route.counters.snapshot().concurrency, 0);

    let abandoned = svc.ready().await.unwrap().call(routed(&route, "/", ()));
    let _pending = handle.next_request().await.unwrap();
    assert_eq!(route.counters.snapshot().concurrency, 1);
    drop(abandoned);
    assert_eq!(route.counters.snapshot().concurrency, 0, "the client left: given back at once");
    assert_eq!(route.counters.snapshot().request_count, 2);
}

#[tokio::test(start_paused = true)]
async fn a_parked_request_keeps_the_count_it_was_given_on_arrival() {
    let route = route("127.0.0.1:1", "");
    let (inner, mut handle) = mock();
    let mut svc = CountLayer.layer(inner);
    let mut req = routed(&route, "/", ());
    req.extensions_mut().insert(Parked::new(tokio::time::Instant::now(), route.counters.begin()));
    let answer = svc.ready().await.unwrap().call(req);
    let (_, send) = handle.next_request().await.unwrap();
    let counted = route.counters.snapshot();
    assert_eq!((counted.concurrency, counted.request_count), (1, 1), "adopted, not begun twice");
    send.send_response(ok("served"));
    drop(answer.await.unwrap());
    assert_eq!(route.counters.snapshot().concurrency, 0);

    // Routed elsewhere since it parked (a reload): its count there is given back, and it is counted here.
    let other = super::super::testing::route("127.0.0.1:2", "");
    let mut req = routed(&route, "/", ());
    req.extensions_mut().insert(Parked::new(tokio::time::Instant::now(), other.counters.begin()));
    let answer = svc.ready().await.unwrap().call(req);
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!((route.counters.snapshot().concurrency, other.counters.snapshot().concurrency), (1, 0));
    send.send_response(ok("served"));
    drop(answer.await.unwrap());
}
