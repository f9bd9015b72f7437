//! Leader election with a `coordination.k8s.io` Lease, so that of several replicas only
//! one acts. The decision is a pure function; the loop around it does the I/O.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// What to do with the Lease this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take the Lease (free, expired, or never held).
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live Lease.
    Follow {
        /// Current holder.
        holder: String,
    },
}

/// Decides from the current Lease (if any) whether `me` may lead at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(renewed)
            if renewed
                .0
                .checked_add(duration)
                .is_ok_and(|expiry| expiry > now) =>
        {
            Decision::Follow { holder }
        }
        _ => Decision::Acquire,
    }
}

/// The Lease spec to write for a decision.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseSpec {
    let renewing = current.and_then(|c| c.holder_identity.as_deref()) == Some(me);
    let transitions = current.and_then(|c| c.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(15)),
        acquire_time: if renewing {
            current.and_then(|c| c.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewing || current.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (well under the duration).
    pub renew_every: Duration,
}

/// Runs the election forever, publishing leadership on the returned channel. A replica
/// that loses the Lease after holding it sends `false`; the caller should then exit so
/// that no two replicas ever act at once.
pub fn spawn(client: kube::Client, election: Election) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &election.namespace);
        loop {
            let leading = match try_lead(&api, &election).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %election.name, "leader election round failed");
                    // Without a successful renewal we must assume we lost it once the
                    // Lease could have expired; renewing often makes one failure harmless.
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(leading, identity = %election.identity, "leadership changed");
            }
            if tx.send(leading).is_err() {
                return;
            }
            tokio::time::sleep(election.renew_every).await;
        }
    });
    rx
}

async fn try_lead(api: &Api<Lease>, election: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&election.name).await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &election.identity,
        now,
    );
    if let Decision::Follow { .. } = decision {
        return Ok(false);
    }
    let spec = next_spec(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &election.identity,
        now,
        election.lease_duration,
    );
    let result = match current {
        // Replace with the resourceVersion we read: if another replica wrote in between,
        // the API server answers 409 and we stay a follower.
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&election.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(election.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            acquire_time: Some(MicroTime(t(renewed))),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn no_lease_is_acquired() {
        assert_eq!(decide(None, "a", t(100)), Decision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("a", 90)), "a", t(100)),
            Decision::Renew
        );
    }

    #[test]
    fn live_foreign_lease_is_followed() {
        assert_eq!(
            decide(Some(&held_by("b", 90)), "a", t(100)),
            Decision::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn expired_foreign_lease_is_taken() {
        assert_eq!(
            decide(Some(&held_by("b", 80)), "a", t(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let taken = next_spec(
            Some(&held_by("b", 80)),
            "a",
            t(100),
            Duration::from_secs(15),
        );
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(t(100))));
        let renewed = next_spec(
            Some(&held_by("a", 95)),
            "a",
            t(100),
            Duration::from_secs(15),
        );
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(t(95))));
        assert_eq!(renewed.renew_time, Some(MicroTime(t(100))));
    }
}
