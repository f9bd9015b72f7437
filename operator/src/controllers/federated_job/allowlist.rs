//! Revocation: the job's aggregator admits only the participants the operator runs.
//!
//! A participant's certificate (CN = its name, see [`super::build::participant_secret`])
//! and the job token stay valid after the operator replaces it, so a replaced participant
//! that is still up — a node that came back, a copy of its Secret — could go on taking
//! part. The operator therefore tells the aggregator the names it runs or keeps
//! (`PUT {model_url}/v1/participants`, with its own certificate, the only one the
//! aggregator takes there); the aggregator removes anyone else from the round at once and
//! answers their every call `PERMISSION_DENIED`.
//!
//! The list is sent when it changed and checked with a `GET` at most every
//! [`RECHECK`] otherwise: the aggregator keeps it in memory only, so a restarted one is
//! open to every certificate of the job's CA until the check finds it out and sends the
//! list again. A failed request is logged and tried again the next reconcile; it never
//! fails the job.

use super::context::JobContext;
use crate::clusters::MEMBER_TIMEOUT;
use fedsky_crds::federated_job::{ParticipantPhase, ParticipantState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The aggregator's route for the list.
pub const PATH: &str = "/v1/participants";
/// How long a list confirmed on an aggregator is trusted before it is read back: bounds
/// how long a restarted aggregator goes without the list.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The body of `PUT /v1/participants` and the answer to `GET` (`null`: no list set, as on
/// a fresh or restarted aggregator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantList {
    /// Participant names (certificate CNs).
    pub participants: Option<BTreeSet<String>>,
}

/// What an aggregator was last known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The model manager it was sent to (a moved aggregator is a new one).
    pub model_url: String,
    /// The list.
    pub names: BTreeSet<String>,
    /// When it was sent or read back.
    pub at: Instant,
}

/// What to do this reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The aggregator holds the list, as confirmed less than [`RECHECK`] ago.
    Nothing,
    /// The list has not changed: read it back, send it only if the aggregator lost it.
    Verify,
    /// The list changed (or this aggregator never got it): send it.
    Push,
}

/// The names the aggregator must admit: every participant the operator runs or keeps
/// (pending, running, completed, failed and not replaced), none it replaced.
pub fn allowed(states: &[ParticipantState]) -> BTreeSet<String> {
    states
        .iter()
        .filter(|p| p.state != ParticipantPhase::Replaced)
        .map(|p| p.name.clone())
        .collect()
}

/// The step for list `want` on the aggregator at `model_url`, given what was `last` sent.
pub fn next_step(
    last: Option<&Pushed>,
    model_url: &str,
    want: &BTreeSet<String>,
    now: Instant,
) -> Step {
    match last {
        Some(p) if p.model_url == model_url && &p.names == want => {
            if now.saturating_duration_since(p.at) < RECHECK {
                Step::Nothing
            } else {
                Step::Verify
            }
        }
        _ => Step::Push,
    }
}

/// Why the list could not be sent or read.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// The request failed (connection, TLS, timeout, body).
    #[error("{method} {url} failed")]
    Request {
        /// `GET` or `PUT`.
        method: &'static str,
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The aggregator answered with an error status.
    #[error("{method} {url} answered {status}")]
    Status {
        /// `GET` or `PUT`.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
}

async fn read(client: &reqwest::Client, url: &str) -> Result<ParticipantList, AllowlistError> {
    let err = |source| AllowlistError::Request {
        method: "GET",
        url: url.to_string(),
        source,
    };
    let resp = client
        .get(url)
        .timeout(MEMBER_TIMEOUT)
        .send()
        .await
        .map_err(err)?;
    if !resp.status().is_success() {
        return Err(AllowlistError::Status {
            method: "GET",
            url: url.to_string(),
            status: resp.status(),
        });
    }
    resp.json().await.map_err(err)
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    names: &BTreeSet<String>,
) -> Result<(), AllowlistError> {
    let body = ParticipantList {
        participants: Some(names.clone()),
    };
    let resp = client
        .put(url)
        .json(&body)
        .timeout(MEMBER_TIMEOUT)
        .send()
        .await
        .map_err(|source| AllowlistError::Request {
            method: "PUT",
            url: url.to_string(),
            source,
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(AllowlistError::Status {
            method: "PUT",
            url: url.to_string(),
            status: resp.status(),
        })
    }
}

/// Makes the aggregator of job `key` at `model_url` hold list `want` (see the module doc);
/// `client` is the job's [`JobContext::aggregator_client`]. Failures are logged only.
pub async fn sync(
    ctx: &JobContext,
    key: &str,
    client: &reqwest::Client,
    model_url: &str,
    want: BTreeSet<String>,
) {
    let url = format!("{model_url}{PATH}");
    let last = ctx.allowlists.get(key);
    let step = next_step(last.as_ref(), model_url, &want, Instant::now());
    let result = match step {
        Step::Nothing => return,
        Step::Verify => match read(client, &url).await {
            Ok(held) if held.participants.as_ref() == Some(&want) => Ok(()),
            Ok(held) => {
                tracing::info!(held = ?held.participants, "the aggregator lost the participant list (restarted?); sending it again");
                send(client, &url, &want).await
            }
            Err(e) => Err(e),
        },
        Step::Push => send(client, &url, &want).await,
    };
    match result {
        Ok(()) => {
            if step == Step::Push {
                tracing::info!(participants = ?want, "participant list sent to the aggregator");
            }
            ctx.allowlists.insert(
                key,
                Pushed {
                    model_url: model_url.to_string(),
                    names: want,
                    at: Instant::now(),
                },
            );
        }
        Err(e) => {
            // Until it lands, a replaced participant may still be admitted; the next
            // reconcile (seconds away while the job runs) tries again.
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            tracing::warn!(error = %e, ?cause, "could not give the aggregator the participant list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, s: ParticipantPhase) -> ParticipantState {
        ParticipantState {
            name: name.into(),
            site: "eu".into(),
            node: None,
            state: s,
            message: None,
            last_heartbeat: None,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_participant_but_the_replaced_is_allowed() {
        let states = [
            state("j-eu-0", ParticipantPhase::Replaced),
            state("j-eu-1", ParticipantPhase::Running),
            state("j-eu-2", ParticipantPhase::Pending),
            state("j-eu-3", ParticipantPhase::Completed),
            state("j-eu-4", ParticipantPhase::Failed),
        ];
        assert_eq!(
            allowed(&states),
            set(&["j-eu-1", "j-eu-2", "j-eu-3", "j-eu-4"])
        );
        // Nobody running: an empty list, which admits nobody (not "anyone").
        assert!(allowed(&[state("j-eu-0", ParticipantPhase::Replaced)]).is_empty());
    }

    #[test]
    fn a_change_is_pushed_and_an_unchanged_list_is_checked_now_and_then() {
        let t0 = Instant::now();
        let url = "https://agg:8080";
        let want = set(&["a", "b"]);
        assert_eq!(next_step(None, url, &want, t0), Step::Push);
        let last = Pushed {
            model_url: url.into(),
            names: want.clone(),
            at: t0,
        };
        assert_eq!(next_step(Some(&last), url, &want, t0), Step::Nothing);
        let later = t0 + RECHECK - Duration::from_millis(1);
        assert_eq!(next_step(Some(&last), url, &want, later), Step::Nothing);
        assert_eq!(
            next_step(Some(&last), url, &want, t0 + RECHECK),
            Step::Verify
        );
        // b replaced by c: sent at once, however recent the last push.
        assert_eq!(
            next_step(Some(&last), url, &set(&["a", "c"]), t0),
            Step::Push
        );
        // The aggregator moved: the new one has never had the list.
        assert_eq!(
            next_step(Some(&last), "https://other:8080", &want, t0),
            Step::Push
        );
    }

    #[test]
    fn the_wire_format_is_the_aggregators() {
        let body = ParticipantList {
            participants: Some(set(&["b", "a"])),
        };
        assert_eq!(
            serde_json::to_value(&body).expect("json"),
            serde_json::json!({ "participants": ["a", "b"] })
        );
        let open: ParticipantList =
            serde_json::from_str(r#"{"participants": null}"#).expect("null list");
        assert_eq!(open.participants, None);
    }
}
