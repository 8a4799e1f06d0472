//! The httpscale operator: turns HTTPScaledObjects into KEDA ScaledObjects and reports InterceptorRoute
//! readiness. [`desired`] holds the pure part (what should exist), [`reconcile`] the API conversation,
//! [`leader`] the Lease-based leader election; [`run`] wires them to the shared shutdown signal.

pub mod config;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod metrics_auth;
pub mod metrics_server;
pub mod metrics_tls;
pub mod reconcile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use httpscale_core::Shutdown;
use httpscale_core::admin;
use httpscale_core::listener::{Gatekeeper, LimitsCollector, ListenerArgs};
use httpscale_core::spec::{HTTPScaledObject, InterceptorRoute, ScaledObject};
use httpscale_core::startup::{StartError, bind};
use httpscale_core::watch::api;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};

pub use config::Config;

use crate::config::Resolved;
use crate::leader::{LeaseSettings, LostLead};
use crate::metrics::Metrics;
use crate::metrics_auth::MetricsAuth;
use crate::reconcile::Context;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("leader election lost: {0}")]
    LostLead(#[from] LostLead),
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

/// The metrics and probe listeners' budgets and limits, each its own.
struct Gates {
    metrics: Arc<Gatekeeper>,
    probes: Arc<Gatekeeper>,
}

impl Gates {
    fn new(listen: &ListenerArgs) -> Self {
        Self { metrics: Gatekeeper::new("metrics", listen.admin()), probes: Gatekeeper::new("probes", listen.admin()) }
    }
}

/// Serves `/metrics` and the health probes (`/healthz`, `/readyz` once `ready`) until `shutdown`.
async fn serve_probes(
    resolved: &Resolved,
    gates: Gates,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
    client: &kube::Client,
    shutdown: &Shutdown,
) -> Result<(), StartError> {
    if let Some(addr) = resolved.metrics
        && (resolved.metrics_tls.is_some() || resolved.metrics_auth)
    {
        let (listener, _) = bind("metrics", addr).await?;
        let secured = metrics_server::Secured {
            tls: resolved.metrics_tls.clone(),
            auth: resolved.metrics_auth.then(|| MetricsAuth::new(client.clone())),
            metrics: metrics.clone(),
        };
        tokio::spawn(metrics_server::serve(listener, gates.metrics, secured, shutdown.clone()));
    } else if let Some(addr) = resolved.metrics {
        let (listener, _) = bind("metrics", addr).await?;
        let m = metrics.clone();
        tokio::spawn(admin::serve(
            listener,
            gates.metrics,
            move |req| match req.uri().path() {
                "/metrics" => admin::metrics(req.headers(), m.encode()),
                _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
            },
            shutdown.clone(),
        ));
    }
    if let Some(addr) = resolved.health {
        let (listener, _) = bind("health probes", addr).await?;
        let r = ready.clone();
        tokio::spawn(admin::serve(
            listener,
            gates.probes,
            move |req| match req.uri().path() {
                "/healthz" => admin::text(StatusCode::OK, "ok"),
                "/readyz" if r.load(Ordering::Relaxed) => admin::text(StatusCode::OK, "ok"),
                "/readyz" => admin::text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
                _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
            },
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// Holds the lead (or, without leader election, just waits) until `shutdown`, then stops the controllers.
fn hold_lead(
    config: &Config,
    api: Api<Lease>,
    lease: LeaseSettings,
    shutdown: Shutdown,
    stop_controllers: Shutdown,
) -> tokio::task::JoinHandle<Result<(), LostLead>> {
    let leader_elect = config.leader_elect;
    tokio::spawn(async move {
        let result = if leader_elect {
            leader::hold(&api, &lease, &shutdown).await
        } else {
            shutdown.triggered().await;
            Ok(())
        };
        stop_controllers.trigger();
        result
    })
}

/// Runs both controllers until `stop`; the HTTPScaledObject one once KEDA's CRD is there.
async fn run_controllers(client: &kube::Client, ns: Option<&str>, ctx: Arc<Context>, stop: &Shutdown) {
    let routes = Controller::new(api::<InterceptorRoute>(client, ns), watcher::Config::default())
        .graceful_shutdown_on(stop.clone().triggered_owned())
        .run(reconcile::interceptor_route, reconcile::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(cause = %e, "InterceptorRoute controller");
            }
        });
    let scaled = async move {
        if !wait_for_keda(client, ns, stop).await {
            return;
        }
        Controller::new(api::<HTTPScaledObject>(client, ns), watcher::Config::default())
            .owns(api::<ScaledObject>(client, ns), watcher::Config::default())
            .graceful_shutdown_on(stop.clone().triggered_owned())
            .run(reconcile::httpso, reconcile::error_policy, ctx)
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(cause = %e, "HTTPScaledObject controller");
                }
            })
            .await
    };
    tokio::join!(routes, scaled);
}

/// Runs the operator until `shutdown` fires (or the lead is lost).
pub async fn run(config: Config, resolved: Resolved, client: kube::Client, shutdown: Shutdown) -> Result<(), RunError> {
    let gates = Gates::new(&config.listen);
    let mut metrics = Metrics::new();
    let listeners = vec![gates.metrics.clone(), gates.probes.clone()];
    metrics.registry_mut().register_collector(Box::new(LimitsCollector(listeners)));
    let metrics = Arc::new(metrics);
    let ready = Arc::new(AtomicBool::new(false));
    serve_probes(&resolved, gates, &metrics, &ready, &client, &shutdown).await?;
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
    let holder = hold_lead(&config, lease_api, lease, shutdown, stop_controllers.clone());
    let reporter = Reporter { controller: "httpscale-operator".into(), instance: std::env::var("HOSTNAME").ok() };
    let recorder = Some(Recorder::new(client.clone(), reporter));
    let ctx = Arc::new(Context::new(client.clone(), resolved.scaler.clone(), metrics.clone(), recorder));
    run_controllers(&client, resolved.watch_namespace.as_deref(), ctx, &stop_controllers).await;
    metrics.leader.set(0);
    match holder.await {
        Ok(Err(lost)) => Err(RunError::LostLead(lost)),
        _ => Ok(()),
    }
}
