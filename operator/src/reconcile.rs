//! The reconcilers. Each one reads the object, compares with what should exist, writes the difference, and
//! records the outcome in the object's status (and an Event when something is wrong).
//!
//! HTTPScaledObject, in order: deletion (remove the finalizer; the ScaledObject goes by garbage collection
//! through its owner reference) → finalizer added → spec checked (a spec that cannot work gets
//! `Ready=False` with the reason and a Warning event, nothing else changes) → orphan annotation (drop our
//! owner reference) or else skip annotation (delete our ScaledObject), each only with the exact value `"true"`
//! as upstream → otherwise the ScaledObject is written by
//! server-side apply with a fixed field manager and `force`, so fields removed from the HTTPScaledObject
//! disappear and manual edits are reverted → status.
//!
//! InterceptorRoute: `Ready=True` when the spec converts into a route, else `False` with the reason.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use httpscale_core::route::{self, RouteKey};
use httpscale_core::spec::{Conditions, HTTPScaledObject, InterceptorRoute, ScaledObject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use crate::desired::{self, FINALIZER, ORPHAN_ANNOTATION, RECONCILED, SKIP_ANNOTATION, ScalerAddress};
use crate::metrics::Metrics;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "httpscale-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace")]
    NotNamespaced(String),
    #[error("KEDA's ScaledObject CRD (scaledobjects.keda.sh) is not installed; install KEDA first")]
    KedaMissing,
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The `kind` label of the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotNamespaced(_) => "not_namespaced",
            Error::KedaMissing => "keda_missing",
            Error::Kube(_) => "kube_api",
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    pub client: kube::Client,
    pub scaler: ScalerAddress,
    pub metrics: Arc<Metrics>,
    pub recorder: Option<Recorder>,
    keda_missing_said: AtomicBool,
    failures: Mutex<HashMap<String, u32>>,
    deprecation_warned: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(client: kube::Client, scaler: ScalerAddress, metrics: Arc<Metrics>, recorder: Option<Recorder>) -> Self {
        Self {
            client,
            scaler,
            metrics,
            recorder,
            keda_missing_said: AtomicBool::new(false),
            failures: Mutex::new(HashMap::new()),
            deprecation_warned: Mutex::new(HashSet::new()),
        }
    }

    async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let Some(recorder) = &self.recorder else { return };
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(cause = %e, "could not publish an event");
        }
    }

    /// Per-object exponential back-off: 1 s, 2 s … 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_owned()).or_insert(0);
        *n = (*n + 1).min(9);
        Duration::from_secs(1 << (*n - 1)).min(Duration::from_secs(300))
    }

    /// Once per HTTPScaledObject and process, as upstream: the kind is deprecated in favour of InterceptorRoute.
    fn warn_deprecated(&self, key: &str) {
        if self.deprecation_warned.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned()) {
            tracing::warn!(httpscaledobject = %key, "{DEPRECATION_WARNING}");
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn ready_of(conditions: Option<&Conditions>) -> Option<&Condition> {
    conditions.and_then(|c| c.0.iter().find(|c| c.type_ == desired::READY))
}

async fn set_httpso_status(
    api: &Api<HTTPScaledObject>,
    obj: &HTTPScaledObject,
    ready: bool,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let previous = obj.status.as_ref().and_then(|s| ready_of(s.conditions.as_ref()));
    let condition = desired::ready_condition(previous, ready, reason, message, obj.metadata.generation, now());
    let status = json!({"status": {
        "targetWorkload": desired::target_workload(obj),
        "targetService": desired::target_service(obj),
        "conditions": [condition],
    }});
    api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

fn owned_by(so: &ScaledObject, obj: &HTTPScaledObject) -> bool {
    let uid = obj.uid();
    so.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())
}

/// Reconciles one HTTPScaledObject (see the module docs).
/// Upstream's words, logged once per HTTPScaledObject.
pub const DEPRECATION_WARNING: &str = "WARNING: HTTPScaledObject is deprecated and will be removed in a future release, \
     migrate to InterceptorRoute + ScaledObject: \
     https://keda.sh/http-add-on/0.14/operations/migrate-httpscaledobject-to-interceptorroute/";

pub async fn httpso(obj: Arc<HTTPScaledObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_httpso(&obj, &ctx).await;
    ctx.metrics.observe("httpscaledobject", started.elapsed(), result.as_ref().err().map(Error::kind));
    result
}

async fn reconcile_httpso(obj: &HTTPScaledObject, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NotNamespaced(name.clone()))?;
    let key = format!("{ns}/{name}");
    let api: Api<HTTPScaledObject> = Api::namespaced(ctx.client.clone(), &ns);
    let finalizers = obj.finalizers();
    if obj.metadata.deletion_timestamp.is_some() {
        if finalizers.iter().any(|f| f == FINALIZER) {
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": kept}}))).await?;
        }
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    ctx.warn_deprecated(&key);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut all = finalizers.to_vec();
        all.push(FINALIZER.to_owned());
        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": all}}))).await?;
    }
    if let Some(problem) = desired::problem(obj) {
        let message = desired::create_error_message(&problem);
        tracing::warn!(httpscaledobject = %key, cause = %problem, "HTTPScaledObject cannot work");
        set_httpso_status(&api, obj, false, desired::CREATE_ERROR, &message).await?;
        ctx.event(obj, EventType::Warning, "InvalidSpec", message).await;
        return Ok(Action::await_change());
    }

    let so_api: Api<ScaledObject> = Api::namespaced(ctx.client.clone(), &ns);
    // As upstream: orphan first, so with both annotations the ScaledObject is kept, not deleted.
    if desired::annotated(obj, ORPHAN_ANNOTATION) {
        if let Some(so) = so_api.get_opt(&name).await?
            && owned_by(&so, obj)
        {
            let uid = obj.uid();
            let kept: Vec<_> = so.owner_references().iter().filter(|o| Some(&o.uid) != uid.as_ref()).cloned().collect();
            so_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"ownerReferences": kept}})))
                .await?;
            tracing::info!(httpscaledobject = %key, "orphaned the ScaledObject by annotation");
        }
        set_httpso_status(&api, obj, true, RECONCILED.0, "ScaledObject orphaned by annotation").await?;
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }

    if desired::annotated(obj, SKIP_ANNOTATION) {
        if let Some(so) = so_api.get_opt(&name).await?
            && owned_by(&so, obj)
        {
            so_api.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(httpscaledobject = %key, "deleted our ScaledObject: creation is skipped by annotation");
        }
        set_httpso_status(&api, obj, true, RECONCILED.0, "ScaledObject creation skipped by annotation").await?;
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    let desired = desired::scaled_object(obj, &ctx.scaler);
    match so_api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired)).await {
        Ok(_) => {
            ctx.keda_missing_said.store(false, Ordering::Relaxed);
            set_httpso_status(&api, obj, true, RECONCILED.0, RECONCILED.1).await?;
            ctx.succeeded(&key);
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            if !ctx.keda_missing_said.swap(true, Ordering::Relaxed) {
                tracing::error!("{}", Error::KedaMissing);
            }
            let message = desired::create_error_message(&Error::KedaMissing.to_string());
            set_httpso_status(&api, obj, false, desired::CREATE_ERROR, &message).await?;
            Err(Error::KedaMissing)
        }
        Err(e) => {
            let message = desired::create_error_message(&e.to_string());
            set_httpso_status(&api, obj, false, desired::CREATE_ERROR, &message).await?;
            ctx.event(obj, EventType::Warning, desired::CREATE_ERROR, message).await;
            Err(e.into())
        }
    }
}

/// Retries a failed reconcile with a per-object back-off.
pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.meta().namespace.as_deref().unwrap_or(""), obj.meta().name.as_deref().unwrap_or(""));
    let wait = ctx.backoff(&key);
    if !matches!(error, Error::KedaMissing) {
        tracing::warn!(object = %key, cause = %error, retry_in = ?wait, "reconcile failed");
    }
    Action::requeue(wait)
}

/// Reconciles one InterceptorRoute: its `Ready` condition says whether it routes.
pub async fn interceptor_route(obj: Arc<InterceptorRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_ir(&obj, &ctx).await;
    ctx.metrics.observe("interceptorroute", started.elapsed(), result.as_ref().err().map(Error::kind));
    result
}

async fn reconcile_ir(obj: &InterceptorRoute, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NotNamespaced(name.clone()))?;
    let (ready, reason, message) =
        match route::from_interceptor_route(RouteKey::new(ns.as_str(), name.as_str()), &obj.spec, 0) {
            Ok(_) => (true, "Reconciled".to_owned(), "InterceptorRoute reconciled".to_owned()),
            Err(e) => (false, "InvalidSpec".to_owned(), e.to_string()),
        };
    let previous = obj.status.as_ref().and_then(|s| ready_of(s.conditions.as_ref()));
    let condition = desired::ready_condition(previous, ready, &reason, &message, obj.metadata.generation, now());
    let api: Api<InterceptorRoute> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [condition]}})))
        .await?;
    if !ready {
        ctx.event(obj, EventType::Warning, "InvalidSpec", message).await;
    }
    Ok(Action::await_change())
}
