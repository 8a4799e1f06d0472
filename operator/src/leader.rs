//! Leader election over a `coordination.k8s.io/v1` Lease (`http-add-on.keda.sh` in the operator's namespace,
//! as upstream), so several operator replicas are safe: one reconciles, the others wait.
//!
//! A replica takes the Lease when it is free, expired (`renewTime + leaseDurationSeconds` in the past) or
//! already its own, writing with the Lease's resourceVersion so two replicas cannot both win. The leader
//! renews every retry period; if it cannot renew within the renew deadline it has lost the lead and must
//! stop. On shutdown it releases the Lease so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

pub const LEASE_NAME: &str = "http-add-on.keda.sh";

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Whether `spec`, seen at `now`, may be taken by `identity`.
pub fn may_take(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let Some(MicroTime(renewed)) = spec.renew_time else { return true };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed.checked_add(duration).map_or(true, |expiry| expiry < now)
}

/// One attempt to take or renew the Lease. Ok(true): this replica leads now.
pub async fn try_acquire(api: &Api<Lease>, s: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let duration_secs = s.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(LEASE_NAME.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if !may_take(&spec, &s.identity, now) {
        return Ok(false);
    }
    let ours = spec.holder_identity.as_deref() == Some(s.identity.as_str());
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(duration_secs),
        acquire_time: if ours { spec.acquire_time } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    match api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica leads (or `stop` fires: Ok(false)).
pub async fn acquire(api: &Api<Lease>, s: &LeaseSettings, stop: &httpscale_core::Shutdown) -> bool {
    let mut said = false;
    loop {
        match try_acquire(api, s).await {
            Ok(true) => {
                tracing::info!(identity = %s.identity, lease = LEASE_NAME, "became the leader");
                return true;
            }
            Ok(false) if !said => {
                tracing::info!(identity = %s.identity, lease = LEASE_NAME, "another replica leads; standing by");
                said = true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(cause = %e, "leader election: cannot read or write the Lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(s.retry_period) => {}
            _ = stop.triggered() => return false,
        }
    }
}

/// Why this replica stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostLead {
    #[error("another replica took the Lease")]
    Taken,
    #[error("could not renew the Lease within {0:?}")]
    NotRenewed(Duration),
}

/// Renews until `stop` fires (then releases, Ok) or renewal fails for the renew deadline (Err: lost).
pub async fn hold(api: &Api<Lease>, s: &LeaseSettings, stop: &httpscale_core::Shutdown) -> Result<(), LostLead> {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.retry_period) => {}
            _ = stop.triggered() => {
                release(api, s).await;
                return Ok(());
            }
        }
        match try_acquire(api, s).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => return Err(LostLead::Taken),
            Err(e) => tracing::warn!(cause = %e, "leader election: renewal failed"),
        }
        if renewed.elapsed() > s.renew_deadline {
            return Err(LostLead::NotRenewed(s.renew_deadline));
        }
    }
}

async fn release(api: &Api<Lease>, s: &LeaseSettings) {
    if let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(s.identity.as_str())
    {
        spec.holder_identity = None;
        if api.replace(LEASE_NAME, &PostParams::default(), &lease).await.is_ok() {
            tracing::info!("released the leader Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn free_own_or_expired_leases_may_be_taken_held_ones_not() {
        let now = Timestamp::from_second(100).unwrap();
        assert!(may_take(&spec(None, 99, 15), "me", now));
        assert!(may_take(&spec(Some(""), 99, 15), "me", now));
        assert!(may_take(&spec(Some("me"), 99, 15), "me", now));
        assert!(!may_take(&spec(Some("other"), 90, 15), "me", now), "held and fresh");
        assert!(may_take(&spec(Some("other"), 80, 15), "me", now), "expired");
    }
}
