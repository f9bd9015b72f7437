//! Which model versions go when a job keeps only its newest ones
//! (`--keep-versions`): a pure decision over the versions in the store, and
//! the best version, which is kept in addition. Deleting is
//! [`super::Checkpoints::delete_version`]; the coordinator runs both after
//! each commit.

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use super::VersionInfo;

/// The metric by which the best version is kept (the model manager's default
/// for `best`), highest first.
pub const BEST_METRIC: &str = "eval_accuracy";

/// Versions that stay whatever their age.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    /// The current global model.
    pub latest: u64,
    /// The version `checkpoint.json` names.
    pub checkpointed: Option<u64>,
    /// Versions whose objects are being written now (an evaluation's metrics).
    pub writing: BTreeSet<u64>,
    /// The best version by [`BEST_METRIC`], if any version has the metric.
    pub best: Option<u64>,
}

impl Pinned {
    fn holds(&self, version: u64) -> bool {
        version == self.latest
            || self.checkpointed == Some(version)
            || self.best == Some(version)
            || self.writing.contains(&version)
    }
}

/// The versions of `stored` to delete, oldest first, so that the `keep`
/// newest versions remain (`latest` counts among them even when the listing
/// missed it) together with whatever `pinned` names.
pub fn to_prune(stored: &BTreeSet<u64>, keep: NonZeroU32, pinned: &Pinned) -> Vec<u64> {
    let keep = usize::try_from(keep.get()).unwrap_or(usize::MAX);
    let mut all = stored.clone();
    all.insert(pinned.latest);
    let newest: BTreeSet<u64> = all.iter().rev().take(keep).copied().collect();
    stored
        .iter()
        .copied()
        .filter(|v| !newest.contains(v) && !pinned.holds(*v))
        .collect()
}

/// The version with the best finite `metric` (highest when `maximise`, else
/// lowest); ties keep the earlier version, so the answer is stable.
pub fn best_version(versions: &[VersionInfo], metric: &str, maximise: bool) -> Option<VersionInfo> {
    versions
        .iter()
        .filter_map(|v| {
            v.metrics
                .get(metric)
                .filter(|x| x.is_finite())
                .map(|x| (*x, v))
        })
        .reduce(|best, cur| {
            let better = if maximise {
                cur.0 > best.0
            } else {
                cur.0 < best.0
            };
            if better { cur } else { best }
        })
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    fn set(vs: &[u64]) -> BTreeSet<u64> {
        vs.iter().copied().collect()
    }

    fn pinned(latest: u64) -> Pinned {
        Pinned {
            latest,
            checkpointed: Some(latest),
            ..Pinned::default()
        }
    }

    #[test]
    fn the_newest_versions_remain() {
        let stored = set(&[0, 1, 2, 3, 4]);
        assert_eq!(to_prune(&stored, keep(2), &pinned(4)), [0, 1, 2]);
        assert_eq!(to_prune(&stored, keep(1), &pinned(4)), [0, 1, 2, 3]);
        assert_eq!(to_prune(&stored, keep(5), &pinned(4)), Vec::<u64>::new());
        assert_eq!(to_prune(&stored, keep(9), &pinned(4)), Vec::<u64>::new());
        assert_eq!(to_prune(&set(&[]), keep(1), &pinned(0)), Vec::<u64>::new());
    }

    #[test]
    fn pinned_versions_stay_in_addition() {
        let stored = set(&[0, 1, 2, 3, 4]);
        let p = Pinned {
            latest: 4,
            checkpointed: Some(1),
            writing: set(&[2]),
            best: Some(0),
        };
        assert_eq!(to_prune(&stored, keep(1), &p), [3]);
        // The best among the newest costs nothing extra.
        let p = Pinned {
            best: Some(4),
            ..pinned(4)
        };
        assert_eq!(to_prune(&stored, keep(2), &p), [0, 1, 2]);
    }

    #[test]
    fn the_latest_counts_even_when_the_listing_missed_it() {
        // Version 5 was just committed but the listing does not show it yet.
        let stored = set(&[2, 3, 4]);
        assert_eq!(to_prune(&stored, keep(2), &pinned(5)), [2, 3]);
    }

    #[test]
    fn leftovers_of_earlier_failed_deletes_go_too() {
        // 1 could not be deleted two rounds ago; it is still listed.
        let stored = set(&[1, 5, 6, 7]);
        assert_eq!(to_prune(&stored, keep(3), &pinned(7)), [1]);
    }

    fn v(version: u64, acc: Option<f64>) -> VersionInfo {
        VersionInfo {
            version,
            sha256: String::new(),
            size: 0,
            created_at_unix_ms: 0,
            metrics: acc
                .map(|a| [(BEST_METRIC.to_string(), a)].into())
                .unwrap_or_default(),
            contributors: vec![],
        }
    }

    #[test]
    fn best_by_metric_skips_missing_and_non_finite_values() {
        let vs = [
            v(0, None),
            v(1, Some(0.5)),
            v(2, Some(f64::NAN)),
            v(3, Some(0.9)),
            v(4, Some(0.9)),
        ];
        let best = |max| best_version(&vs, BEST_METRIC, max).map(|i| i.version);
        assert_eq!(best(true), Some(3));
        assert_eq!(best(false), Some(1));
        assert!(best_version(&vs, "eval_loss", false).is_none());
    }
}
