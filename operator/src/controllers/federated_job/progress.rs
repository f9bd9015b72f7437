//! Progress of a job as its aggregator reports it: `/v1/status` and `/v1/versions` of the
//! model manager, read over the job's mutual TLS, turned into the status's round history
//! and latest model.

use super::status::Progress;
use crate::clusters::MEMBER_TIMEOUT;
use fedsky_contract::{StatusView, VersionInfo};
use fedsky_crds::federated_job::{ModelVersion, RoundMetrics};

/// One history entry per model version: its participants' evaluation of it and the time
/// since the previous version (the round's duration), known only while the previous
/// version is listed too (`keepVersions` prunes old ones).
fn history(versions: &[VersionInfo]) -> Vec<RoundMetrics> {
    let mut sorted: Vec<&VersionInfo> = versions.iter().collect();
    sorted.sort_by_key(|v| v.version);
    let mut prev: Option<(u64, u64)> = None;
    sorted
        .into_iter()
        .map(|v| {
            let duration = prev
                .filter(|(pv, p)| pv + 1 == v.version && v.created_at_unix_ms >= *p)
                .map(|(_, p)| {
                    std::time::Duration::from_millis(v.created_at_unix_ms - p).as_secs_f64()
                });
            prev = Some((v.version, v.created_at_unix_ms));
            RoundMetrics {
                round: i32::try_from(v.version).unwrap_or(i32::MAX),
                participants: i32::try_from(v.contributors.len()).unwrap_or(i32::MAX),
                loss: v.metrics.get("eval_loss").copied(),
                accuracy: v.metrics.get("eval_accuracy").copied(),
                duration_seconds: duration,
            }
        })
        .collect()
}

/// Reads progress from the aggregator's model manager with `client` (the job's
/// [`super::JobContext::aggregator_client`]: HTTPS, the job's CA only, the operator's
/// certificate); `None` while it cannot be reached or does not prove to be the job's
/// aggregator.
pub async fn read_progress(client: &reqwest::Client, model_url: &str) -> Option<Progress> {
    let st: StatusView = client
        .get(format!("{model_url}/v1/status"))
        .timeout(MEMBER_TIMEOUT)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let round = i32::try_from(st.completed_rounds).unwrap_or(i32::MAX);
    let metric = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied();
    // Every version, so that no round is missed between two reconciles.
    let versions: Vec<VersionInfo> = match client
        .get(format!("{model_url}/v1/versions"))
        .timeout(MEMBER_TIMEOUT)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Some(Progress {
        phase: st.phase,
        completed_rounds: round,
        rounds: history(&versions),
        latest_model: st.latest_version.map(|v| ModelVersion {
            version: i32::try_from(v.version).unwrap_or(i32::MAX),
            uri: format!("{model_url}/v1/versions/{}/model", v.version),
            sha256: v.sha256,
            accuracy: metric(&v.metrics, "eval_accuracy"),
            loss: metric(&v.metrics, "eval_loss"),
            metrics: v.metrics,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_has_one_entry_per_version_with_round_durations() {
        let v: Vec<VersionInfo> = serde_json::from_value(serde_json::json!([
            {"version": 1, "sha256": "b", "size": 8, "createdAtUnixMs": 4000, "contributors": ["a", "b"],
             "metrics": {"eval_accuracy": 0.6, "eval_loss": 0.9}},
            {"version": 0, "sha256": "a", "size": 8, "createdAtUnixMs": 1000, "metrics": {"eval_accuracy": 0.3}},
            {"version": 2, "sha256": "c", "size": 8, "createdAtUnixMs": 6500}
        ]))
        .expect("versions");
        let h = history(&v);
        let rounds: Vec<i32> = h.iter().map(|r| r.round).collect();
        assert_eq!(rounds, [0, 1, 2]);
        assert_eq!(h[0].accuracy, Some(0.3));
        assert_eq!(h[0].duration_seconds, None);
        assert_eq!((h[1].participants, h[1].duration_seconds), (2, Some(3.0)));
        assert_eq!((h[2].accuracy, h[2].duration_seconds), (None, Some(2.5)));
    }

    #[test]
    fn a_gap_left_by_pruning_has_no_duration() {
        // Version 0 kept as the best, 1 and 2 pruned.
        let v: Vec<VersionInfo> = serde_json::from_value(serde_json::json!([
            {"version": 0, "sha256": "a", "size": 8, "createdAtUnixMs": 1000},
            {"version": 3, "sha256": "d", "size": 8, "createdAtUnixMs": 9000},
            {"version": 4, "sha256": "e", "size": 8, "createdAtUnixMs": 9500}
        ]))
        .expect("versions");
        let durations: Vec<Option<f64>> = history(&v).iter().map(|r| r.duration_seconds).collect();
        assert_eq!(durations, [None, None, Some(0.5)]);
    }
}
