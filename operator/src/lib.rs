//! The httpscale operator: turns HTTPScaledObjects into KEDA ScaledObjects and reports InterceptorRoute
//! readiness. [`desired`] holds the pure part (what should exist), [`reconcile`] the API conversation,
//! [`leader`] the Lease-based leader election; [`run`] wires them to the shared shutdown signal.

pub mod config;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod reconcile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use httpscale_core::Shutdown;
use httpscale_core::admin;
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute, ScaledObject};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};

pub use config::Config;

use crate::config::Resolved;
use crate::leader::LeaseSettings;
use crate::metrics::Metrics;
use crate::reconcile::Context;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("leader election lost: {0}")]
    LostLead(String),
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Waits until KEDA's ScaledObject CRD answers, saying so once, retrying with back-off (not crash-looping).
async fn wait_for_keda(client: &kube::Client, namespace: Option<&str>, stop: &Shutdown) -> bool {
    let probe: Api<ScaledObject> = api(client, namespace);
    let mut wait = Duration::from_secs(1);
    let mut said = false;
    loop {
        match probe.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                if said {
                    tracing::info!("KEDA's ScaledObject CRD is installed now; reconciling HTTPScaledObjects");
                }
                return true;
            }
            Err(e) => {
                if !said {
                    tracing::error!(cause = %e, "KEDA's ScaledObject CRD (scaledobjects.keda.sh) is not available; install KEDA first. Retrying with back-off");
                    said = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.triggered() => return false,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Runs the operator until `shutdown` fires (or the lead is lost).
pub async fn run(config: Config, resolved: Resolved, client: kube::Client, shutdown: Shutdown) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = resolved.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| RunError::Bind { addr, source })?;
        let m = metrics.clone();
        tokio::spawn(admin::serve(
            listener,
            move |req| match req.uri().path() {
                "/metrics" => admin::metrics(m.encode()),
                _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
            },
            shutdown.clone(),
        ));
    }
    if let Some(addr) = resolved.health {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| RunError::Bind { addr, source })?;
        let r = ready.clone();
        tokio::spawn(admin::serve(
            listener,
            move |req| match req.uri().path() {
                "/healthz" => admin::text(StatusCode::OK, "ok"),
                "/readyz" if r.load(Ordering::Relaxed) => admin::text(StatusCode::OK, "ok"),
                "/readyz" => admin::text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
                _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
            },
            shutdown.clone(),
        ));
    }
    tracing::info!(scaler = %resolved.scaler, watch_namespace = resolved.watch_namespace.as_deref().unwrap_or("(all)"), "operator starting");

    // Leader election: a standby is ready (it serves probes) but does not reconcile.
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), &resolved.namespace);
    let identity =
        format!("{}_{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into()), std::process::id());
    let lease = LeaseSettings {
        identity,
        lease_duration: config.lease_duration,
        renew_deadline: config.renew_deadline,
        retry_period: config.retry_period,
    };
    ready.store(true, Ordering::Relaxed);
    if config.leader_elect && !leader::acquire(&lease_api, &lease, &shutdown).await {
        return Ok(());
    }
    metrics.leader.set(1);
    let stop_controllers = Shutdown::new();
    let holder = {
        let (api, lease, shutdown, stop) =
            (lease_api.clone(), lease.clone(), shutdown.clone(), stop_controllers.clone());
        tokio::spawn(async move {
            let result = if config.leader_elect {
                leader::hold(&api, &lease, &shutdown).await
            } else {
                shutdown.triggered().await;
                Ok(())
            };
            stop.trigger();
            result
        })
    };

    let ns = resolved.watch_namespace.as_deref();
    let reporter = Reporter { controller: "httpscale-operator".into(), instance: std::env::var("HOSTNAME").ok() };
    let ctx = Arc::new(Context::new(
        client.clone(),
        resolved.scaler.clone(),
        metrics.clone(),
        Some(Recorder::new(client.clone(), reporter)),
    ));

    let routes = Controller::new(api::<InterceptorRoute>(&client, ns), watcher::Config::default())
        .graceful_shutdown_on(stop_controllers.clone().triggered_owned())
        .run(reconcile::interceptor_route, reconcile::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(cause = %e, "InterceptorRoute controller");
            }
        });
    let scaled = {
        let (client, ctx, stop) = (client.clone(), ctx.clone(), stop_controllers.clone());
        async move {
            if !wait_for_keda(&client, ns, &stop).await {
                return;
            }
            Controller::new(api::<HTTPScaledObject>(&client, ns), watcher::Config::default())
                .owns(api::<ScaledObject>(&client, ns), watcher::Config::default())
                .graceful_shutdown_on(stop.clone().triggered_owned())
                .run(reconcile::httpso, reconcile::error_policy, ctx)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::debug!(cause = %e, "HTTPScaledObject controller");
                    }
                })
                .await
        }
    };
    tokio::join!(routes, scaled);
    metrics.leader.set(0);
    match holder.await {
        Ok(Err(lost)) => Err(RunError::LostLead(lost)),
        _ => Ok(()),
    }
}
