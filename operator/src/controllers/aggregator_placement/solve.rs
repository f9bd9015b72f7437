//! Running a solve and sorting its failures. A spec the user must change (it does not
//! convert, names an unknown region, leaves no candidate, asks the exact solver for too
//! large a space) is written to status and waits for the next change. Anything else — the
//! solver task panicked, the built-in catalog does not load, the solver refused a model
//! the conversion built — says nothing about the spec: it is a [`SolveFailure`], published
//! as a Warning Event and retried with exponential backoff per object.

use crate::{Context, Error};
use fedsky_crds::AggregatorPlacement;
use fedsky_placement::{CatalogError, ModelError, PlacementError, PlacementOutcome};
use fedsky_placement_spec::SolveError;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A solve that failed for a reason the spec does not explain; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SolveFailure {
    /// The catalog shipped with the operator does not load (a build defect).
    #[error("builtin catalog: {0}")]
    Catalog(#[source] CatalogError),
    /// The solver refused a model built from a valid spec (a defect, not the user's input).
    #[error("solver: {0}")]
    Solver(#[source] SolveError),
    /// The solver task panicked or was cancelled.
    #[error("solver task: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Event reason and metrics label of a [`SolveFailure`]: it names a failed solve, not an
/// invalid spec.
pub const SOLVE_FAILED: &str = "SolveFailed";

/// Longest wait between retries of a failing solve: the controller's periodic re-check.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// Whether a solve error is the spec's fault, so the user must change the spec; otherwise
/// it is a [`SolveFailure`]. Model errors are listed one by one so that a new one needs a
/// decision; of the solver's own refusals only those caused by spec settings (the exact
/// solver on too large a space, NSGA-II settings) are the spec's fault — the others mean
/// the conversion built a model it should not have.
pub fn is_spec_error(error: &SolveError) -> bool {
    match error {
        SolveError::Convert(_) => true,
        SolveError::Model(model) => match model {
            ModelError::NoSites
            | ModelError::DuplicateSite { .. }
            | ModelError::InvalidValue { .. }
            | ModelError::UnknownRegion { .. }
            | ModelError::AmbiguousRegion { .. }
            | ModelError::UnknownCloud { .. }
            | ModelError::UnknownInstanceType { .. }
            | ModelError::NoCandidates { .. } => true,
            ModelError::Solver(solver) => matches!(
                solver,
                PlacementError::SpaceTooLarge { .. } | PlacementError::InvalidSettings { .. }
            ),
        },
    }
}

/// Runs `solve` on the blocking pool (it is CPU-bound: NSGA-II on large spaces, so it
/// stays off the async workers). `Ok(Err(_))` is a spec error for status; `Err(_)` is a
/// failure to retry, a panic included.
pub async fn off_runtime<F>(solve: F) -> Result<Result<PlacementOutcome, SolveError>, SolveFailure>
where
    F: FnOnce() -> Result<PlacementOutcome, SolveError> + Send + 'static,
{
    match tokio::task::spawn_blocking(solve).await {
        Err(e) => Err(SolveFailure::Task(e)),
        Ok(Err(e)) if !is_spec_error(&e) => Err(SolveFailure::Solver(e)),
        Ok(outcome) => Ok(outcome),
    }
}

/// Publishes a Warning Event for a failed solve and returns the error to retry.
pub async fn failed(ctx: &Context, ap: &AggregatorPlacement, failure: SolveFailure) -> Error {
    let error = Error::Solve(failure);
    let event = Event {
        type_: EventType::Warning,
        reason: SOLVE_FAILED.into(),
        note: Some(format!("{error}; retrying")),
        action: "Solve".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ap.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
    error
}

/// Consecutive failed solves per placement. kube's `error_policy` is told no attempt
/// number, so the controller counts: each failure doubles the wait, a successful reconcile
/// resets it. Only [`Error::Solve`] counts; other transient errors keep their fixed delay.
#[derive(Debug, Clone, Default)]
pub struct Failures(Arc<Mutex<HashMap<ObjectRef<AggregatorPlacement>, u32>>>);

impl Failures {
    /// Counts one more failure of `key`; returns the count, 1 for the first.
    pub fn record(&self, key: ObjectRef<AggregatorPlacement>) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn reset(&self, key: &ObjectRef<AggregatorPlacement>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Wait before retrying after the `failures`-th consecutive failure: `first`, doubled per
/// further failure, at most [`MAX_RETRY`].
pub fn backoff(first: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_placement_spec::ConvertError;

    #[test]
    fn spec_faults_wait_for_a_change() {
        let spec_faults = [
            SolveError::Convert(ConvertError::NoParticipants),
            SolveError::Model(ModelError::UnknownRegion {
                region: "mars-north-1".into(),
                referenced_by: "site x".into(),
                suggestions: Vec::new(),
            }),
            SolveError::Model(ModelError::NoCandidates {
                reason: "maxMonthlyCost".into(),
            }),
            SolveError::Model(ModelError::Solver(PlacementError::SpaceTooLarge {
                candidates: Some(1 << 40),
                limit: 1 << 20,
            })),
            SolveError::Model(ModelError::Solver(PlacementError::InvalidSettings {
                field: "population",
                value: "3".into(),
                expected: "at least 4",
            })),
        ];
        for e in &spec_faults {
            assert!(is_spec_error(e), "{e}");
        }
    }

    #[test]
    fn solver_defects_are_retried() {
        for e in [
            PlacementError::NoObjectives,
            PlacementError::NonFinite { what: "objectives" },
            PlacementError::DimensionMismatch {
                what: "point",
                got: 1,
                expected: 2,
            },
        ] {
            let e = SolveError::Model(ModelError::Solver(e));
            assert!(!is_spec_error(&e), "{e}");
        }
    }

    #[tokio::test]
    async fn a_panicking_solve_is_a_failure_with_its_cause() {
        let failure = off_runtime(|| panic!("solver bug"))
            .await
            .expect_err("a panic is not an outcome");
        let SolveFailure::Task(join) = &failure else {
            panic!("expected a task failure, got {failure:?}");
        };
        assert!(join.is_panic());
        let error = Error::Solve(failure);
        assert_eq!(error.category(), SOLVE_FAILED);
        assert!(
            error.retry_after().is_some(),
            "retried, not left to a change"
        );
        assert!(
            std::error::Error::source(&error).is_some(),
            "the cause is kept"
        );
    }

    #[tokio::test]
    async fn spec_errors_and_defects_part_ways() {
        let invalid = off_runtime(|| Err(SolveError::Convert(ConvertError::EmptySites))).await;
        assert!(matches!(invalid, Ok(Err(SolveError::Convert(_)))));
        let defect = off_runtime(|| {
            Err(SolveError::Model(ModelError::Solver(
                PlacementError::NoObjectives,
            )))
        })
        .await;
        assert!(matches!(defect, Err(SolveFailure::Solver(_))));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let first = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(first, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(first, u32::MAX), MAX_RETRY);
    }

    #[test]
    fn failures_count_per_object_and_reset() {
        let failures = Failures::default();
        let a = ObjectRef::new("a").within("default");
        let b = ObjectRef::new("b").within("default");
        assert_eq!(failures.record(a.clone()), 1);
        assert_eq!(failures.record(a.clone()), 2);
        assert_eq!(failures.record(b), 1);
        failures.reset(&a);
        assert_eq!(failures.record(a), 1);
    }
}
