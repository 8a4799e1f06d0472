//! What the operator wants to exist, as pure functions of an HTTPScaledObject (reference §5.2): the KEDA
//! ScaledObject, the status fields, and the `Ready` condition. Unit-tested field by field.

use std::collections::BTreeMap;

use httpscale_core::route::{self, RouteKey};
use httpscale_core::spec::{
    HTTPScaledObject, ScaleTrigger, ScaledObject, ScaledObjectAdvanced, ScaledObjectSpec, ScaledObjectTarget,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

pub const FINALIZER: &str = "httpscaledobject.http.keda.sh";
pub const SKIP_ANNOTATION: &str = "httpscaledobject.keda.sh/skip-scaledobject-creation";
pub const ORPHAN_ANNOTATION: &str = "httpscaledobject.keda.sh/orphan-scaledobject";
pub const READY: &str = "Ready";

/// Where KEDA reaches the scaler: `<service>.<namespace>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerAddress {
    pub service: String,
    pub namespace: String,
    pub port: u16,
}

impl std::fmt::Display for ScalerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}:{}", self.service, self.namespace, self.port)
    }
}

/// Whether an annotation is set to a true value.
pub fn annotated(obj: &HTTPScaledObject, key: &str) -> bool {
    obj.annotations().get(key).is_some_and(|v| v == "true")
}

/// The controller owner reference the ScaledObject carries (blocking the owner's deletion until the
/// ScaledObject is gone, as controller-runtime sets it).
pub fn owner_reference(obj: &HTTPScaledObject) -> Option<OwnerReference> {
    obj.controller_owner_ref(&()).map(|o| OwnerReference { block_owner_deletion: Some(true), ..o })
}

/// The ScaledObject for an HTTPScaledObject: same name and namespace, labels and annotations copied,
/// controller owner reference, `external-push` trigger naming the HTTPScaledObject.
pub fn scaled_object(obj: &HTTPScaledObject, scaler: &ScalerAddress) -> ScaledObject {
    let spec = &obj.spec;
    let target = &spec.scale_target_ref;
    let mut metadata = BTreeMap::new();
    metadata.insert("scalerAddress".to_owned(), scaler.to_string());
    metadata.insert("httpScaledObject".to_owned(), obj.name_any());
    let nonempty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    ScaledObject {
        metadata: ObjectMeta {
            name: Some(obj.name_any()),
            namespace: obj.namespace(),
            labels: nonempty(obj.labels()),
            annotations: nonempty(obj.annotations()),
            owner_references: owner_reference(obj).map(|o| vec![o]),
            ..Default::default()
        },
        spec: ScaledObjectSpec {
            scale_target_ref: ScaledObjectTarget {
                api_version: target.api_version.clone(),
                kind: target.kind.clone(),
                name: target.name.clone().unwrap_or_default(),
            },
            polling_interval: Some(15),
            cooldown_period: spec.scaledown_period,
            initial_cooldown_period: spec.initial_cooldown_period,
            min_replica_count: spec.replicas.as_ref().and_then(|r| r.min),
            max_replica_count: spec.replicas.as_ref().and_then(|r| r.max),
            advanced: Some(ScaledObjectAdvanced { restore_to_original_replica_count: Some(true) }),
            triggers: vec![ScaleTrigger { type_: "external-push".into(), metadata }],
        },
    }
}

/// `status.targetWorkload`: `<apiVersion>/<kind>/<name>`.
pub fn target_workload(obj: &HTTPScaledObject) -> String {
    let t = &obj.spec.scale_target_ref;
    format!(
        "{}/{}/{}",
        t.api_version.as_deref().unwrap_or(""),
        t.kind.as_deref().unwrap_or(""),
        t.name.as_deref().unwrap_or("")
    )
}

/// `status.targetService`: `<service>:<port>` (0 when the port is given by name, as upstream).
pub fn target_service(obj: &HTTPScaledObject) -> String {
    let t = &obj.spec.scale_target_ref;
    format!("{}:{}", t.service, t.port.unwrap_or(0))
}

/// Why an HTTPScaledObject cannot work, in words a user can act on; `None` if it can.
pub fn problem(obj: &HTTPScaledObject) -> Option<String> {
    let key = RouteKey::new(obj.namespace().unwrap_or_default(), obj.name_any());
    route::from_http_scaled_object(key, &obj.spec, 0).err().map(|e| e.to_string())
}

/// The `Ready` condition, keeping the transition time when the status does not change.
pub fn ready_condition(
    previous: Option<&Condition>,
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now,
    };
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Upstream's condition texts.
pub const RECONCILED: (&str, &str) = ("Reconciled", "ScaledObject created and configured");
pub const CREATE_ERROR: &str = "CreateError";

pub fn create_error_message(cause: &str) -> String {
    format!("Failed to create scaled objects: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use httpscale_core::spec::HttpScaledObjectSpec;

    fn tutorial() -> HTTPScaledObject {
        let spec: HttpScaledObjectSpec = serde_yaml::from_str(
            "hosts: [ollama.ollama]\nscaleTargetRef: {name: ollama, kind: Deployment, apiVersion: apps/v1, service: ollama, port: 11434}\nreplicas: {min: 0, max: 2}\nscaledownPeriod: 3600\nscalingMetric:\n  requestRate: {targetValue: 20}\n",
        )
        .unwrap();
        let mut o = HTTPScaledObject::new("ollama", spec);
        o.metadata.namespace = Some("ollama".into());
        o.metadata.uid = Some("uid-1".into());
        o.metadata.labels = Some([("team".to_string(), "ai".to_string())].into());
        o.metadata.annotations = Some([("note".to_string(), "x".to_string())].into());
        o
    }

    fn scaler() -> ScalerAddress {
        ScalerAddress { service: "keda-add-ons-http-external-scaler".into(), namespace: "keda".into(), port: 9090 }
    }

    #[test]
    fn the_tutorial_scaled_object_field_by_field() {
        let so = scaled_object(&tutorial(), &scaler());
        assert_eq!(so.metadata.name.as_deref(), Some("ollama"));
        assert_eq!(so.metadata.namespace.as_deref(), Some("ollama"));
        assert_eq!(so.metadata.labels.as_ref().unwrap()["team"], "ai");
        assert_eq!(so.metadata.annotations.as_ref().unwrap()["note"], "x");
        let owner = &so.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("http.keda.sh/v1alpha1", "HTTPScaledObject", "ollama", "uid-1")
        );
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        let s = &so.spec;
        assert_eq!(
            s.scale_target_ref,
            ScaledObjectTarget {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: "ollama".into()
            }
        );
        assert_eq!((s.min_replica_count, s.max_replica_count, s.cooldown_period), (Some(0), Some(2), Some(3600)));
        assert_eq!((s.polling_interval, s.initial_cooldown_period), (Some(15), None));
        assert_eq!(s.advanced.as_ref().unwrap().restore_to_original_replica_count, Some(true));
        assert_eq!(s.triggers.len(), 1);
        assert_eq!(s.triggers[0].type_, "external-push");
        assert_eq!(s.triggers[0].metadata["scalerAddress"], "keda-add-ons-http-external-scaler.keda:9090");
        assert_eq!(s.triggers[0].metadata["httpScaledObject"], "ollama");
        assert_eq!(s.triggers[0].metadata.len(), 2);
    }

    #[test]
    fn unset_fields_are_omitted_not_zeroed() {
        let mut o = tutorial();
        o.spec.replicas = None;
        o.spec.scaledown_period = None;
        o.metadata.labels = None;
        let so = scaled_object(&o, &scaler());
        assert_eq!((so.spec.min_replica_count, so.spec.max_replica_count, so.spec.cooldown_period), (None, None, None));
        let json = serde_json::to_value(&so).unwrap();
        assert!(json["spec"].get("cooldownPeriod").is_none() && json["metadata"].get("labels").is_none());
    }

    #[test]
    fn status_fields_as_upstream() {
        let mut o = tutorial();
        assert_eq!(target_workload(&o), "apps/v1/Deployment/ollama");
        assert_eq!(target_service(&o), "ollama:11434");
        o.spec.scale_target_ref.port = None;
        o.spec.scale_target_ref.port_name = Some("http".into());
        assert_eq!(target_service(&o), "ollama:0");
    }

    #[test]
    fn problems_a_user_can_act_on() {
        let mut o = tutorial();
        assert_eq!(problem(&o), None);
        o.spec.scaling_metric.as_mut().unwrap().concurrency =
            Some(httpscale_core::spec::ConcurrencyMetric { target_value: 5 });
        assert!(problem(&o).unwrap().contains("concurrency and requestRate are mutually exclusive"));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2).unwrap());
        let c = ready_condition(None, true, "Reconciled", "ok", Some(1), t0.clone());
        assert_eq!(ready_condition(Some(&c), true, "Reconciled", "ok", Some(2), t1.clone()).last_transition_time, t0);
        assert_eq!(ready_condition(Some(&c), false, CREATE_ERROR, "x", Some(2), t1.clone()).last_transition_time, t1);
    }
}
