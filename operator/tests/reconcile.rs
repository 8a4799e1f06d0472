//! The reconcilers' API conversations, scripted with kube's tower-test mock: every request the operator makes
//! is checked (method, path, body) and answered as the API server would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use httpscale_core::spec::{HTTPScaledObject, HttpScaledObjectSpec, InterceptorRoute, InterceptorRouteSpec};
use httpscale_operator::desired::ScalerAddress;
use httpscale_operator::metrics::Metrics;
use httpscale_operator::reconcile::{self, Context, Error};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

struct Call {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
    respond: SendResponse<Response<Body>>,
}

impl Call {
    fn reply(self, status: u16, body: Value) {
        let resp = Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap();
        self.respond.send_response(resp);
    }
}

async fn next(api: &mut ApiHandle) -> Call {
    let (req, respond) =
        tokio::time::timeout(Duration::from_secs(5), api.next_request()).await.expect("a request").expect("open");
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Call {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        body: if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() },
        respond,
    }
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn httpso(extra: &str) -> HTTPScaledObject {
    let spec: HttpScaledObjectSpec = serde_yaml::from_str(&format!(
        "hosts: [ollama.ollama]\nscaleTargetRef: {{name: ollama, kind: Deployment, apiVersion: apps/v1, service: ollama, port: 11434}}\nreplicas: {{min: 0, max: 2}}\nscalingMetric: {{requestRate: {{targetValue: 20}}}}\n{extra}"
    ))
    .unwrap();
    let mut o = HTTPScaledObject::new("ollama", spec);
    o.metadata.namespace = Some("ollama".into());
    o.metadata.uid = Some("uid-1".into());
    o.metadata.generation = Some(3);
    o.metadata.finalizers = Some(vec!["httpscaledobject.http.keda.sh".into()]);
    o
}

fn context(with_events: bool) -> (Arc<Context>, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let recorder = with_events
        .then(|| Recorder::new(client.clone(), Reporter { controller: "httpscale-operator".into(), instance: None }));
    let scaler =
        ScalerAddress { service: "keda-add-ons-http-external-scaler".into(), namespace: "keda".into(), port: 9090 };
    (Arc::new(Context::new(client, scaler, Arc::new(Metrics::new()), recorder)), handle)
}

/// The ScaledObject this HTTPScaledObject owns, as the API server returns it.
fn our_scaled_object() -> Value {
    json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "ollama", "namespace": "ollama",
        "ownerReferences": [{"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject", "name": "ollama", "uid": "uid-1", "controller": true}]},
        "spec": {"scaleTargetRef": {"name": "ollama"}, "triggers": []}})
}

fn ready_of(status_patch: &Value) -> &Value {
    &status_patch["status"]["conditions"][0]
}

#[tokio::test]
async fn a_new_httpscaledobject_gets_a_finalizer_a_scaled_object_by_server_side_apply_and_ready_status() {
    let (ctx, mut api) = context(false);
    let mut obj = httpso("");
    obj.metadata.finalizers = None;
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));

    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::PATCH, "/apis/http.keda.sh/v1alpha1/namespaces/ollama/httpscaledobjects/ollama")
    );
    assert_eq!(c.body, json!({"metadata": {"finalizers": ["httpscaledobject.http.keda.sh"]}}));
    c.reply(200, serde_json::to_value(&obj).unwrap());

    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::PATCH, "/apis/keda.sh/v1alpha1/namespaces/ollama/scaledobjects/ollama")
    );
    assert_eq!(c.content_type, "application/apply-patch+yaml");
    assert!(c.query.contains("fieldManager=httpscale-operator") && c.query.contains("force=true"), "{}", c.query);
    let so = c.body.clone();
    assert_eq!((so["apiVersion"].as_str(), so["kind"].as_str()), (Some("keda.sh/v1alpha1"), Some("ScaledObject")));
    assert_eq!(so["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(so["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(so["spec"]["scaleTargetRef"], json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "ollama"}));
    assert_eq!((so["spec"]["minReplicaCount"].clone(), so["spec"]["maxReplicaCount"].clone()), (json!(0), json!(2)));
    assert_eq!(so["spec"]["pollingInterval"], 15);
    assert_eq!(so["spec"]["advanced"], json!({"restoreToOriginalReplicaCount": true}));
    assert_eq!(
        so["spec"]["triggers"],
        json!([{"type": "external-push", "metadata": {"scalerAddress": "keda-add-ons-http-external-scaler.keda:9090", "httpScaledObject": "ollama"}}])
    );
    // Fields the HTTPScaledObject does not set are absent from the apply, so server-side apply removes them.
    assert!(so["spec"].get("cooldownPeriod").is_none() && so["spec"].get("initialCooldownPeriod").is_none());
    c.reply(201, so);

    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::PATCH, "/apis/http.keda.sh/v1alpha1/namespaces/ollama/httpscaledobjects/ollama/status")
    );
    assert_eq!(c.body["status"]["targetWorkload"], "apps/v1/Deployment/ollama");
    assert_eq!(c.body["status"]["targetService"], "ollama:11434");
    let ready = ready_of(&c.body);
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("True")));
    assert_eq!(
        (ready["reason"].as_str(), ready["message"].as_str()),
        (Some("Reconciled"), Some("ScaledObject created and configured"))
    );
    assert_eq!(ready["observedGeneration"], 3);
    c.reply(200, serde_json::to_value(&obj).unwrap());

    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_deleted_httpscaledobject_only_loses_its_finalizer() {
    let (ctx, mut api) = context(false);
    let mut obj = httpso("");
    obj.metadata.finalizers = Some(vec!["other.io/keep".into(), "httpscaledobject.http.keda.sh".into()]);
    obj.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));
    let c = next(&mut api).await;
    assert_eq!(c.method, Method::PATCH);
    assert_eq!(
        c.body,
        json!({"metadata": {"finalizers": ["other.io/keep"]}}),
        "the ScaledObject goes by garbage collection"
    );
    c.reply(200, serde_json::to_value(&obj).unwrap());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_skip_annotation_deletes_our_scaled_object_and_creates_none() {
    let (ctx, mut api) = context(false);
    let mut obj = httpso("");
    obj.metadata.annotations =
        Some([("httpscaledobject.keda.sh/skip-scaledobject-creation".to_string(), "true".to_string())].into());
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));
    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::GET, "/apis/keda.sh/v1alpha1/namespaces/ollama/scaledobjects/ollama")
    );
    c.reply(200, our_scaled_object());
    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::DELETE, "/apis/keda.sh/v1alpha1/namespaces/ollama/scaledobjects/ollama")
    );
    c.reply(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let c = next(&mut api).await;
    assert!(c.path.ends_with("/status"));
    assert_eq!(ready_of(&c.body)["status"], "True");
    c.reply(200, serde_json::to_value(&obj).unwrap());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_orphan_annotation_drops_our_owner_reference_and_keeps_the_scaled_object() {
    let (ctx, mut api) = context(false);
    let mut obj = httpso("");
    obj.metadata.annotations =
        Some([("httpscaledobject.keda.sh/orphan-scaledobject".to_string(), "true".to_string())].into());
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));
    let c = next(&mut api).await;
    assert_eq!(c.method, Method::GET);
    c.reply(
        200,
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "ollama", "namespace": "ollama",
            "ownerReferences": [{"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject", "name": "ollama", "uid": "uid-1", "controller": true},
                                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "uid-9"}]},
            "spec": {"scaleTargetRef": {"name": "ollama"}, "triggers": []}}),
    );
    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::PATCH, "/apis/keda.sh/v1alpha1/namespaces/ollama/scaledobjects/ollama")
    );
    assert_eq!(c.body["metadata"]["ownerReferences"].as_array().unwrap().len(), 1);
    assert_eq!(c.body["metadata"]["ownerReferences"][0]["uid"], "uid-9");
    c.reply(
        200,
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "ollama", "namespace": "ollama",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "uid-9"}]},
            "spec": {"scaleTargetRef": {"name": "ollama"}, "triggers": []}}),
    );
    let c = next(&mut api).await;
    assert!(c.path.ends_with("/status"));
    c.reply(200, serde_json::to_value(&obj).unwrap());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_spec_that_cannot_work_gets_ready_false_and_an_event_and_no_scaled_object() {
    let (ctx, mut api) = context(true);
    let obj = httpso("");
    let mut bad = obj.clone();
    bad.spec.scaling_metric.as_mut().unwrap().concurrency =
        Some(httpscale_core::spec::ConcurrencyMetric { target_value: 5 });
    let task = tokio::spawn(reconcile::httpso(Arc::new(bad.clone()), ctx));
    let c = next(&mut api).await;
    assert!(c.path.ends_with("/httpscaledobjects/ollama/status"), "{}", c.path);
    let ready = ready_of(&c.body);
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("CreateError")));
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("Failed to create scaled objects: ")
            && message.contains("concurrency and requestRate are mutually exclusive"),
        "{message}"
    );
    c.reply(200, serde_json::to_value(&bad).unwrap());
    let c = next(&mut api).await;
    assert_eq!((c.method.clone(), c.path.as_str()), (Method::POST, "/apis/events.k8s.io/v1/namespaces/ollama/events"));
    assert_eq!((c.body["type"].as_str(), c.body["reason"].as_str()), (Some("Warning"), Some("InvalidSpec")));
    assert_eq!(c.body["regarding"]["name"], "ollama");
    let echo = c.body.clone();
    c.reply(201, echo);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_keda_crd_is_reported_in_status_and_retried() {
    let (ctx, mut api) = context(false);
    let obj = httpso("");
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx.clone()));
    let c = next(&mut api).await;
    assert!(c.path.ends_with("/scaledobjects/ollama"));
    c.reply(404, not_found());
    let c = next(&mut api).await;
    let message = ready_of(&c.body)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("scaledobjects.keda.sh") && message.contains("install KEDA"), "{message}");
    c.reply(200, serde_json::to_value(&obj).unwrap());
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::KedaMissing));
    let first = reconcile::error_policy(Arc::new(obj.clone()), &err, ctx.clone());
    let second = reconcile::error_policy(Arc::new(obj), &err, ctx);
    assert_eq!(
        (first, second),
        (Action::requeue(Duration::from_secs(1)), Action::requeue(Duration::from_secs(2))),
        "backs off"
    );
}

#[tokio::test]
async fn interceptor_routes_get_ready_true_or_false_with_the_reason() {
    let (ctx, mut api) = context(false);
    let spec: InterceptorRouteSpec =
        serde_yaml::from_str("target: {service: app, port: 8080}\nrules: [{hosts: [a.local]}]\nscalingMetric: {concurrency: {targetValue: 10}}\n").unwrap();
    let mut ir = InterceptorRoute::new("app", spec);
    ir.metadata.namespace = Some("default".into());
    let task = tokio::spawn(reconcile::interceptor_route(Arc::new(ir.clone()), ctx.clone()));
    let c = next(&mut api).await;
    assert_eq!(
        (c.method.clone(), c.path.as_str()),
        (Method::PATCH, "/apis/http.keda.sh/v1beta1/namespaces/default/interceptorroutes/app/status")
    );
    let ready = ready_of(&c.body);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str(), ready["message"].as_str()),
        (Some("True"), Some("Reconciled"), Some("InterceptorRoute reconciled"))
    );
    c.reply(200, serde_json::to_value(&ir).unwrap());
    task.await.unwrap().unwrap();

    ir.spec.scaling_metric.request_rate = Some(httpscale_core::spec::RequestRateMetric {
        target_value: 1,
        window: "1m".parse().unwrap(),
        granularity: "100ms".parse().unwrap(),
    });
    let task = tokio::spawn(reconcile::interceptor_route(Arc::new(ir.clone()), ctx));
    let c = next(&mut api).await;
    let ready = ready_of(&c.body);
    assert_eq!(ready["status"], "False");
    assert!(ready["message"].as_str().unwrap().contains("granularity"), "{ready}");
    c.reply(200, serde_json::to_value(&ir).unwrap());
    task.await.unwrap().unwrap();
}

/// Answers the server-side apply and the status patch of one plain reconcile.
async fn answer_apply_and_status(api: &mut ApiHandle, obj: &HTTPScaledObject) {
    let c = next(api).await;
    assert_eq!(c.content_type, "application/apply-patch+yaml", "{} {}", c.method, c.path);
    let so = c.body.clone();
    c.reply(200, so);
    let c = next(api).await;
    assert!(c.path.ends_with("/status"), "{}", c.path);
    c.reply(200, serde_json::to_value(obj).unwrap());
}

/// Upstream (operator/controllers/http/app.go) checks the orphan annotation before the skip annotation: with
/// both set, the ScaledObject is orphaned and kept. httpscale used to check skip first and delete it.
#[tokio::test]
async fn with_both_annotations_the_scaled_object_is_orphaned_and_kept_not_deleted() {
    let (ctx, mut api) = context(false);
    let mut obj = httpso("");
    obj.metadata.annotations = Some(
        [
            ("httpscaledobject.keda.sh/skip-scaledobject-creation".to_string(), "true".to_string()),
            ("httpscaledobject.keda.sh/orphan-scaledobject".to_string(), "true".to_string()),
        ]
        .into(),
    );
    let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));
    let c = next(&mut api).await;
    assert_eq!(c.method, Method::GET);
    c.reply(200, our_scaled_object());
    let c = next(&mut api).await;
    assert_eq!(c.method, Method::PATCH, "orphaned, never deleted");
    assert_eq!(c.body["metadata"]["ownerReferences"], json!([]));
    c.reply(
        200,
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "ollama", "namespace": "ollama"},
            "spec": {"scaleTargetRef": {"name": "ollama"}, "triggers": []}}),
    );
    let c = next(&mut api).await;
    assert_eq!(ready_of(&c.body)["message"], "ScaledObject orphaned by annotation");
    c.reply(200, serde_json::to_value(&obj).unwrap());
    task.await.unwrap().unwrap();
}

/// As upstream, only the exact value `"true"` counts: `True` or `yes` leave the ScaledObject managed.
#[tokio::test]
async fn annotation_values_other_than_exactly_true_are_ignored() {
    for value in ["True", "TRUE", "yes", "1"] {
        let (ctx, mut api) = context(false);
        let mut obj = httpso("");
        obj.metadata.annotations = Some(
            [
                ("httpscaledobject.keda.sh/skip-scaledobject-creation".to_string(), value.to_string()),
                ("httpscaledobject.keda.sh/orphan-scaledobject".to_string(), value.to_string()),
            ]
            .into(),
        );
        let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx));
        answer_apply_and_status(&mut api, &obj).await;
        task.await.unwrap().unwrap();
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines of this test process. A global subscriber, not a thread-local one: tracing caches each
/// call site's interest, and a thread-local subscriber races with the other tests' threads over that cache.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

/// Upstream logs its deprecation warning once per HTTPScaledObject (a `sync.Map` keyed by namespace/name).
#[tokio::test]
async fn the_deprecation_warning_is_logged_once_per_httpscaledobject() {
    let logs = logs();
    let (ctx, mut api) = context(false);
    let mut first = httpso("");
    first.metadata.name = Some("deprecated-a".into());
    let mut second = httpso("");
    second.metadata.name = Some("deprecated-b".into());
    for obj in [&first, &first, &second, &first] {
        let task = tokio::spawn(reconcile::httpso(Arc::new(obj.clone()), ctx.clone()));
        answer_apply_and_status(&mut api, obj).await;
        task.await.unwrap().unwrap();
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> =
        text.lines().filter(|l| l.contains("HTTPScaledObject is deprecated") && l.contains("deprecated-")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("WARN") && lines[0].contains("ollama/deprecated-a"), "{}", lines[0]);
    assert!(lines[1].contains("ollama/deprecated-b"), "{}", lines[1]);
    assert!(lines[0].contains(reconcile::DEPRECATION_WARNING), "{}", lines[0]);
}
