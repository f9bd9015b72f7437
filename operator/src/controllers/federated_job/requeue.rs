//! When to look at a job again. Member clusters and the aggregator are polled, so a job is
//! requeued rather than left to wait for a change; but a fixed 5 s for every job made
//! 1,000 quiet jobs 200 reconciles a second, more than the operator and the API servers
//! could serve, and new jobs queued behind them (docs/operator-benchmark.md). A job whose
//! status changed is looked at again soon; one whose status has not changed for a while
//! less often, up to [`QUIET`]. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// Requeue after a change, and the shortest requeue.
pub const ACTIVE: Duration = Duration::from_secs(5);
/// Longest requeue of a job that is neither finished nor invalid.
pub const QUIET: Duration = Duration::from_secs(30);

/// The next requeue: [`ACTIVE`] while the status changes, then half the time it has been
/// unchanged, at most [`QUIET`].
pub fn after(unchanged_for: Duration) -> Duration {
    (unchanged_for / 2).clamp(ACTIVE, QUIET)
}

/// When `manager` last changed the object's status, from its managed fields. The API
/// server moves that time only when an apply changes something, so it survives operator
/// restarts where an in-memory clock would not.
pub fn last_status_change(
    entries: Option<&[ManagedFieldsEntry]>,
    manager: &str,
) -> Option<Timestamp> {
    entries?
        .iter()
        .filter(|e| {
            e.manager.as_deref() == Some(manager) && e.subresource.as_deref() == Some("status")
        })
        .filter_map(|e| e.time.as_ref().map(|t| t.0))
        .max()
}

/// How long the status has been unchanged at `now`; zero when unknown.
pub fn unchanged_for(last_change: Option<Timestamp>, now: Timestamp) -> Duration {
    last_change
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or_default()
}

/// Drops the field sets from an object's managed fields, keeping who applied what and
/// when ([`last_status_change`] needs no more). Applied to cached jobs: the field sets were
/// ~30 of the ~36 KB each cached FederatedJob took (heaptrack at 1,000 jobs).
pub fn keep_times_only(meta: &mut ObjectMeta) {
    for entry in meta.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn entry(manager: &str, subresource: Option<&str>, t: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            subresource: subresource.map(Into::into),
            time: Some(Time(at(t))),
            ..Default::default()
        }
    }

    #[test]
    fn quiet_jobs_are_looked_at_less_often_up_to_a_bound() {
        assert_eq!(after(Duration::ZERO), ACTIVE);
        assert_eq!(after(Duration::from_secs(8)), ACTIVE);
        assert_eq!(after(Duration::from_secs(24)), Duration::from_secs(12));
        assert_eq!(after(Duration::from_secs(3600)), QUIET);
    }

    #[test]
    fn the_last_change_is_the_operators_status_entry() {
        let entries = vec![
            entry("kubectl", None, 100),
            entry("fedsky-operator", None, 150),
            entry("fedsky-operator", Some("status"), 120),
            entry("someone-else", Some("status"), 190),
        ];
        let last = last_status_change(Some(&entries), "fedsky-operator");
        assert_eq!(last, Some(at(120)));
        assert_eq!(unchanged_for(last, at(140)), Duration::from_secs(20));
        assert_eq!(unchanged_for(None, at(140)), Duration::ZERO);
        // A clock behind the server's is "just changed", not an error.
        assert_eq!(unchanged_for(last, at(100)), Duration::ZERO);
        assert_eq!(last_status_change(None, "fedsky-operator"), None);
    }

    #[test]
    fn trimmed_managed_fields_keep_the_last_change() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
        let mut entries = vec![entry("fedsky-operator", Some("status"), 120)];
        entries[0].fields_v1 = Some(FieldsV1(serde_json::json!({ "f:status": {} })));
        let mut meta = ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        };
        keep_times_only(&mut meta);
        let entries = meta.managed_fields.as_deref();
        assert!(entries.into_iter().flatten().all(|e| e.fields_v1.is_none()));
        assert_eq!(
            last_status_change(entries, "fedsky-operator"),
            Some(at(120))
        );
    }
}
