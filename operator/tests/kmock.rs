//! End to end: the real operator binary against kmock's in-memory Kubernetes API server. Applying the
//! tutorial's Ollama HTTPScaledObject produces ScaledObject `ollama/ollama` and a Ready HTTPScaledObject;
//! editing and deleting it are reflected; an InterceptorRoute turns Ready; leader election holds a Lease.
//! (kmock has no garbage collector, so the ScaledObject's removal by owner reference is not observable here.)
//! Needs `scripts/setup-test-peers.sh` (the README's test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Duration;

use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute, ScaledObject};
use httpscale_testkit::{Killed, Kmock, eventually_some, repo};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

/// How long the operator may take to react.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_httpscaledobject_becomes_a_keda_scaled_object() {
    let apiserver = Kmock::start(&[
        "http.keda.sh/v1alpha1/httpscaledobjects=HTTPScaledObject",
        "http.keda.sh/v1beta1/interceptorroutes=InterceptorRoute",
        "keda.sh/v1alpha1/scaledobjects=ScaledObject",
        "coordination.k8s.io/v1/leases=Lease",
        "events.k8s.io/v1/events=Event",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = apiserver.kubeconfig(dir.path(), Some("keda"));
    let _operator = Killed(
        Command::new(env!("CARGO_BIN_EXE_operator"))
            .env("KUBECONFIG", &kubeconfig)
            .env("KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE", "keda-add-ons-http-external-scaler")
            .env("KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT", "9090")
            .env("KEDA_HTTP_OPERATOR_NAMESPACE", "keda")
            .args(["--metrics-bind-address=0", "--health-probe-bind-address=0", "--leader-elect"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = apiserver.client();

    let httpsos: Api<HTTPScaledObject> = Api::namespaced(client.clone(), "ollama");
    let tutorial =
        std::fs::read_to_string(repo().join("charts/tests/fixtures/tutorial-httpscaledobject.yaml")).unwrap();
    let obj: HTTPScaledObject = serde_yaml::from_str(&tutorial).unwrap();
    httpsos.create(&PostParams::default(), &obj).await.unwrap();

    let sos: Api<ScaledObject> = Api::namespaced(client.clone(), "ollama");
    let so =
        eventually_some(WAIT, "ScaledObject ollama/ollama", || async { sos.get_opt("ollama").await.ok().flatten() })
            .await;
    let s = &so.spec;
    assert_eq!(
        (
            s.scale_target_ref.api_version.as_deref(),
            s.scale_target_ref.kind.as_deref(),
            s.scale_target_ref.name.as_str()
        ),
        (Some("apps/v1"), Some("Deployment"), "ollama")
    );
    assert_eq!(
        (s.min_replica_count, s.max_replica_count, s.cooldown_period, s.polling_interval),
        (Some(0), Some(2), Some(3600), Some(15))
    );
    assert_eq!(s.triggers[0].type_, "external-push");
    assert_eq!(s.triggers[0].metadata["scalerAddress"], "keda-add-ons-http-external-scaler.keda:9090");
    assert_eq!(s.triggers[0].metadata["httpScaledObject"], "ollama");
    let owner = &so.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("HTTPScaledObject", "ollama", Some(true))
    );

    let ready = eventually_some(WAIT, "HTTPScaledObject Ready", || async {
        let o = httpsos.get("ollama").await.ok()?;
        let status = o.status?;
        let c = status.conditions?.0.into_iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
        Some((status.target_workload, status.target_service, c))
    })
    .await;
    assert_eq!(ready.0.as_deref(), Some("apps/v1/Deployment/ollama"));
    assert_eq!(ready.1.as_deref(), Some("ollama:11434"));
    assert_eq!(
        (ready.2.reason.as_str(), ready.2.message.as_str()),
        ("Reconciled", "ScaledObject created and configured")
    );
    let finalizers = httpsos.get("ollama").await.unwrap().metadata.finalizers.unwrap_or_default();
    assert!(finalizers.contains(&"httpscaledobject.http.keda.sh".to_string()));

    // An edit is reflected.
    httpsos
        .patch(
            "ollama",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scaledownPeriod": 600, "replicas": {"min": 0, "max": 4}}})),
        )
        .await
        .unwrap();
    eventually_some(WAIT, "edited ScaledObject", || async {
        let so = sos.get("ollama").await.ok()?;
        (so.spec.cooldown_period == Some(600) && so.spec.max_replica_count == Some(4)).then_some(())
    })
    .await;

    // A manual edit of the ScaledObject is reverted (the operator watches the ScaledObjects it owns).
    sos.patch("ollama", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"maxReplicaCount": 99}})))
        .await
        .unwrap();
    eventually_some(WAIT, "manual edit reverted", || async {
        let so = sos.get("ollama").await.ok()?;
        (so.spec.max_replica_count == Some(4)).then_some(())
    })
    .await;

    // An InterceptorRoute turns Ready.
    let irs: Api<InterceptorRoute> = Api::namespaced(client.clone(), "default");
    let ir: InterceptorRoute = serde_yaml::from_str(
        "apiVersion: http.keda.sh/v1beta1\nkind: InterceptorRoute\nmetadata: {name: my-app, namespace: default}\nspec:\n  target: {service: my-app-svc, port: 8080}\n  rules: [{hosts: [app.example.com]}]\n  scalingMetric: {concurrency: {targetValue: 100}}\n",
    )
    .unwrap();
    irs.create(&PostParams::default(), &ir).await.unwrap();
    eventually_some(WAIT, "InterceptorRoute Ready", || async {
        let status = irs.get("my-app").await.ok()?.status?;
        status.conditions?.0.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;

    // Leader election holds the Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "keda");
    let lease = leases.get("http-add-on.keda.sh").await.unwrap();
    assert!(lease.spec.unwrap().holder_identity.is_some_and(|h| !h.is_empty()));

    // Deleting it: the operator removes its finalizer and the object goes.
    httpsos.delete("ollama", &DeleteParams::default()).await.unwrap();
    eventually_some(WAIT, "HTTPScaledObject gone", || async {
        httpsos.get_opt("ollama").await.ok()?.is_none().then_some(())
    })
    .await;
}
