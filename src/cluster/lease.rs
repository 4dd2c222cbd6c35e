//! One writer among the replicas, by a `coordination.k8s.io/v1` Lease, as client-go's leader
//! election holds one (k8s.io/client-go `tools/leaderelection/leaderelection.go`
//! `tryAcquireOrRenew`, `resourcelock/leaselock.go`): a replica holds the Lease while it renews
//! it; another takes it over once it has seen no renewal for `leaseDurationSeconds` — by its own
//! clock, from when it saw the Lease change (client-go's `observedTime`: the holder's
//! `renewTime` is another node's clock, which may be off); every change is
//! an update at the Lease's resourceVersion, so of two replicas racing for it one wins and the
//! other sees a conflict. Used for the cluster writes only one replica may make (the identity
//! reports, the access bindings). Must not: decide anything but who writes.

use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;

/// How long a Lease is held without a renewal (client-go's default `LeaseDuration`).
pub const DURATION: Duration = Duration::from_secs(15);

/// One Lease, as this replica holds it or not.
pub struct Lease {
    api: Api<KubeLease>,
    name: String,
    /// This replica, as `holderIdentity` names it.
    me: String,
    /// The Lease's resourceVersion as last read, and when this replica first saw it.
    seen: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

impl Lease {
    /// The Lease `name` in `namespace`, for the replica `me`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, me: &str) -> Lease {
        Lease {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            me: me.into(),
            seen: std::sync::Mutex::new(None),
        }
    }

    /// The Lease `name` in scimgate's namespace (its service account's, as the API server names
    /// it; `default` outside a pod), for this process: `$HOSTNAME` (the pod) and a random part,
    /// so a restarted pod is a new holder.
    pub async fn for_this_replica(client: &kube::Client, name: &str) -> Result<Lease, kube::Error> {
        let me = super::whoami(client).await?.unwrap_or_default();
        let namespace = super::namespace_of(&me).unwrap_or("default");
        let holder = format!(
            "{}_{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "scimgate".into()),
            uuid::Uuid::new_v4()
        );
        Ok(Lease::new(client.clone(), namespace, name, &holder))
    }

    /// Take or renew the Lease `name` in `slot`, made for this replica at the first call that can
    /// (`for_this_replica`); whether this replica holds it. A failure is logged for `task` and is
    /// not holding it.
    pub async fn hold_lazily(client: &kube::Client, slot: &mut Option<Lease>, name: &str, task: &'static str) -> bool {
        if slot.is_none() {
            match Lease::for_this_replica(client, name).await {
                Ok(l) => *slot = Some(l),
                Err(e) => {
                    tracing::warn!(task, error = %e, "the API server did not say who scimgate is");
                    return false;
                }
            }
        }
        let Some(lease) = slot.as_ref() else { return false };
        lease.hold().await.unwrap_or_else(|e| {
            tracing::warn!(task, lease = name, error = %e, "the Lease could not be renewed");
            false
        })
    }

    /// Take or renew the Lease; whether this replica holds it now. A conflict (another replica
    /// changed it first) is not holding it.
    pub async fn hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = KubeLease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, now)),
            };
            return conflict_is_not_holding(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.me.as_str());
        let seconds = spec
            .lease_duration_seconds
            .map_or(DURATION.as_secs(), |s| s.max(0) as u64);
        let expired = self.unchanged_for(lease.metadata.resource_version.as_deref().unwrap_or_default())
            > Duration::from_secs(seconds);
        let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !mine && !expired && !vacant {
            return Ok(false);
        }
        let (acquired, transitions) = match (mine, spec.acquire_time) {
            (true, Some(t)) => (t.0, spec.lease_transitions.unwrap_or(0)),
            _ => (now, spec.lease_transitions.unwrap_or(0) + 1),
        };
        lease.spec = Some(self.spec(acquired, transitions, now));
        conflict_is_not_holding(self.api.replace(&self.name, &PostParams::default(), &lease).await)
    }

    /// How long the Lease has stood at `version`, by this replica's clock since it first read it.
    fn unchanged_for(&self, version: &str) -> Duration {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.as_ref() {
            Some((v, at)) if v == version => at.elapsed(),
            _ => {
                *seen = Some((version.to_string(), std::time::Instant::now()));
                Duration::ZERO
            }
        }
    }

    fn spec(&self, acquired: Timestamp, transitions: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

fn conflict_is_not_holding<T>(r: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
