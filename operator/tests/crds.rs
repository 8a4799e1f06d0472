//! The CRDs: the YAML committed in the chart is what the Rust types generate, every example of the upstream
//! reference (and the tutorial's manifest) is accepted by both the typed API and the CRDs' CEL rules, and
//! manifests that must be rejected are, with upstream's messages. JSON-schema validation of the same fixtures
//! (strict, as the API server prunes) runs in `charts/test.sh`.
//! Regenerate the chart's CRDs with: `cargo run -p httpscale-operator -- crds > charts/keda-add-ons-http/files/crds.yaml`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute};
use kube::core::cel::Validator;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The openAPIV3Schema of the CRD for `kind`, from the chart.
fn schema(kind: &str) -> Value {
    let crds = docs("charts/keda-add-ons-http/files/crds.yaml");
    let crd = crds.iter().find(|c| c["spec"]["names"]["kind"] == kind).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The typed decode error and the CEL errors for one custom resource (empty if it is valid).
fn problems(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap();
    let mut out = Vec::new();
    let typed = match kind {
        "HTTPScaledObject" => serde_json::from_value::<HTTPScaledObject>(doc.clone()).err(),
        "InterceptorRoute" => serde_json::from_value::<InterceptorRoute>(doc.clone()).err(),
        other => panic!("unexpected kind {other}"),
    };
    out.extend(typed.map(|e| format!("typed: {e}")));
    if let Err(errors) = Validator::new().validate(&schema(kind), doc, None) {
        out.push(format!("cel: {errors:?}"));
    }
    out
}

fn ours(all: &[Value]) -> Vec<&Value> {
    all.iter().filter(|d| d["apiVersion"].as_str().unwrap_or("").starts_with("http.keda.sh/")).collect()
}

#[test]
fn the_chart_crds_are_what_the_types_generate() {
    let generated = httpscale_core::spec::crds_yaml().unwrap();
    let committed = std::fs::read_to_string(repo().join("charts/keda-add-ons-http/files/crds.yaml")).unwrap();
    assert!(
        generated == committed,
        "charts/keda-add-ons-http/files/crds.yaml drifted from core/src/spec.rs; run: cargo run -p httpscale-operator -- crds > charts/keda-add-ons-http/files/crds.yaml"
    );
}

#[test]
fn the_tutorial_and_every_reference_example_are_accepted() {
    let mut all = docs("charts/tests/fixtures/tutorial-httpscaledobject.yaml");
    all.extend(docs("charts/tests/fixtures/custom-resources.yaml"));
    let ours = ours(&all);
    assert!(ours.len() >= 3, "tutorial, HTTPSO full example, InterceptorRoute example");
    for doc in ours {
        assert_eq!(problems(doc), Vec::<String>::new(), "{}", doc["metadata"]["name"]);
    }
}

#[test]
fn invalid_manifests_are_rejected_and_cel_says_what_upstream_says() {
    let invalid = docs("charts/tests/fixtures/invalid-custom-resources.yaml");
    let ours = ours(&invalid);
    assert!(ours.len() >= 8);
    // Bounds such as a port above 65535 are the JSON schema's job (checked strictly in charts/test.sh);
    // everything else is caught by the typed API or by CEL.
    let schema_only = ["port-out-of-range", "status-code-below-100"];
    for doc in ours.iter().filter(|d| !schema_only.contains(&d["metadata"]["name"].as_str().unwrap())) {
        assert!(!problems(doc).is_empty(), "{} must be rejected", doc["metadata"]["name"]);
    }
    let says = |name: &str, message: &str| {
        let doc = ours.iter().find(|d| d["metadata"]["name"] == name).unwrap();
        let e = Validator::new().validate(&schema(doc["kind"].as_str().unwrap()), doc, None).unwrap_err();
        let e = format!("{e:?}");
        assert!(e.contains(message), "{name}: {e}");
    };
    says("port-and-port-name", "must define either the 'portName' or the 'port'");
    says("failover-without-port", "must define either the 'portName' or the 'port'");
    says("empty-scaling-metric", "at least one of 'concurrency' or 'requestRate' must be set");
    says("body-and-configmap", "at most one of 'body' or 'bodyFromConfigMap' may be set");
    says("overflow-placeholder-without-placeholder", "'placeholder' must be set when 'overflow' is 'Placeholder'");
}
