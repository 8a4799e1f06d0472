use std::time::Duration;

use prometheus_client::registry::Registry;
use tower::{Layer, ServiceExt};

use super::*;
use crate::proxy::testing::{ok, route, text};
use crate::routes::RouteState;

fn exposition(m: &RequestMetrics) -> String {
    let mut r = Registry::default();
    r.register("requests", "", m.requests.clone());
    r.register("duration", "", m.duration.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    out
}

/// An inner pipeline that routes every request to `route` and answers after `after`.
fn answering(
    route: Arc<RouteState>,
    after: Duration,
) -> impl Service<Request<()>, Response = ProxyResponse, Error = Infallible, Future: Send + 'static> + Clone {
    tower::service_fn(move |req: Request<()>| {
        if let Some(slot) = req.extensions().get::<RouteSlot>() {
            slot.set_route(route.clone());
        }
        async move {
            tokio::time::sleep(after).await;
            Ok::<_, Infallible>(ok("answer"))
        }
    })
}

const LABELS: &str = r#"{code="200",method="GET",route_name="app",route_namespace="default"}"#;
const DURATION_LABELS: &str =
    r#"{code="200",method="GET",route_name="app",route_namespace="default",cold_start="false"}"#;

#[tokio::test(start_paused = true)]
async fn a_request_is_recorded_once_when_its_body_ends_with_its_route_and_full_duration() {
    let metrics = Arc::new(RequestMetrics::default());
    let mut svc = MetricsLayer::new(metrics.clone(), false, None)
        .layer(answering(route("127.0.0.1:1", ""), Duration::from_secs(2)));
    let resp = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
    assert!(!exposition(&metrics).contains("requests_total{"), "answered, but the body has not ended");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(text(resp).await, "answer");
    let m = exposition(&metrics);
    assert!(m.contains(&format!("requests_total{LABELS} 1")), "{m}");
    assert!(m.contains(&format!("duration_sum{DURATION_LABELS} 3.0")), "from arrival to the body's end: {m}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_before_the_answer_is_recorded_as_499_for_its_route() {
    let metrics = Arc::new(RequestMetrics::default());
    let mut svc = MetricsLayer::new(metrics.clone(), true, None)
        .layer(answering(route("127.0.0.1:1", ""), Duration::from_secs(60)));
    let answer = tokio::spawn(svc.ready().await.unwrap().call(Request::new(())));
    tokio::time::sleep(Duration::from_secs(5)).await;
    answer.abort();
    let _ = answer.await;
    let m = exposition(&metrics);
    assert!(
        m.contains(r#"requests_total{code="499",method="GET",route_name="app",route_namespace="default"} 1"#),
        "{m}"
    );
    assert!(!m.contains(r#"code="502""#));
}

#[tokio::test(start_paused = true)]
async fn a_request_the_cold_start_layer_held_is_labelled_cold_start_true_in_the_duration_only() {
    let metrics = Arc::new(RequestMetrics::default());
    let route = route("127.0.0.1:1", "");
    let held = tower::service_fn(move |req: Request<()>| {
        if let Some(slot) = req.extensions().get::<RouteSlot>() {
            slot.set_route(route.clone());
            slot.set_held(Duration::from_secs(40));
        }
        async move {
            tokio::time::sleep(Duration::from_secs(40)).await;
            Ok::<_, Infallible>(ok("answer"))
        }
    });
    let mut svc = MetricsLayer::new(metrics.clone(), false, None).layer(held);
    let resp = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
    assert_eq!(text(resp).await, "answer");
    let m = exposition(&metrics);
    assert!(m.contains(&format!("requests_total{LABELS} 1")), "the count has no cold_start label: {m}");
    let cold = DURATION_LABELS.replace("\"false\"", "\"true\"");
    assert!(m.contains(&format!("duration_count{cold} 1")), "{m}");
    for (le, n) in [("30.0", 0), ("60.0", 1)] {
        let bucket = cold.replace('{', &format!("{{le=\"{le}\","));
        assert!(m.contains(&format!("duration_bucket{bucket} {n}")), "40 s lands below 60 s, not in +Inf: {m}");
    }
}
