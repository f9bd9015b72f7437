//! Standard Kubernetes conditions and the pure helper that keeps their transition times right.
//!
//! Condition types and reasons are CamelCase; every kind reports `Ready`, plus
//! `Reconciling` / `Stalled` in the kstatus sense so Flux reads health (Argo CD through
//! the Lua checks in `charts/fedsky/argocd/`).

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The object is fully reconciled and serving its purpose.
pub const READY: &str = "Ready";
/// The controller is working towards the desired state (kstatus).
pub const RECONCILING: &str = "Reconciling";
/// The controller cannot make progress without a change from the user (kstatus).
pub const STALLED: &str = "Stalled";

/// Status of a condition, as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell yet.
    Unknown,
}

impl ConditionStatus {
    /// `"True"`, `"False"` or `"Unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// A condition to set: type, status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// CamelCase condition type, for example `Ready`.
    pub type_: &'a str,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: String,
}

/// Sets `new` in `conditions`, keeping the list sorted by type.
///
/// `lastTransitionTime` changes only when the status changes, so that repeated reconciles
/// of an unchanged object do not make its status flap.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    new: NewCondition<'_>,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let status = new.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
                existing.status = status.to_string();
            }
            existing.reason = new.reason.to_string();
            existing.message = new.message;
            existing.observed_generation = observed_generation;
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_string(),
                status: status.to_string(),
                reason: new.reason.to_string(),
                message: new.message,
                observed_generation,
                last_transition_time: Time(now),
            });
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
    }
}

/// Sets the conditions of one object in one reconcile: every condition written through it
/// carries the same `observedGeneration` and, where its status changes, the same
/// `lastTransitionTime` (see [`set_condition`]).
#[derive(Debug)]
pub struct Setter<'a> {
    conditions: &'a mut Vec<Condition>,
    observed_generation: Option<i64>,
    now: Timestamp,
}

impl<'a> Setter<'a> {
    /// A setter writing into `conditions` for the object's `observed_generation` at `now`.
    pub fn new(
        conditions: &'a mut Vec<Condition>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> Self {
        Self {
            conditions,
            observed_generation,
            now,
        }
    }

    /// Sets condition `type_`; `status` is a [`ConditionStatus`] or a `bool`.
    pub fn set(
        &mut self,
        type_: &str,
        status: impl Into<ConditionStatus>,
        reason: &str,
        message: impl Into<String>,
    ) -> &mut Self {
        self.apply(NewCondition {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
        })
    }

    /// Sets a condition decided elsewhere.
    pub fn apply(&mut self, new: NewCondition<'_>) -> &mut Self {
        set_condition(self.conditions, new, self.observed_generation, self.now);
        self
    }

    /// Removes condition `type_` (it no longer applies).
    pub fn remove(&mut self, type_: &str) -> &mut Self {
        self.conditions.retain(|c| c.type_ != type_);
        self
    }
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    fn ready(status: ConditionStatus, reason: &'static str) -> NewCondition<'static> {
        NewCondition {
            type_: READY,
            status,
            reason,
            message: format!("{reason} happened"),
        }
    }

    /// Sets `Ready` with `status` and `reason` at generation `generation`, time `at`.
    fn set_ready(
        c: &mut Vec<Condition>,
        status: ConditionStatus,
        reason: &'static str,
        generation: i64,
        at: i64,
    ) {
        set_condition(c, ready(status, reason), Some(generation), t(at));
    }

    #[test]
    fn adds_condition_with_transition_time() {
        let mut c = Vec::new();
        set_ready(&mut c, ConditionStatus::False, "Pending", 1, 10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(c[0].observed_generation, Some(1));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_reason() {
        let mut c = Vec::new();
        set_ready(&mut c, ConditionStatus::False, "Pending", 1, 10);
        set_ready(&mut c, ConditionStatus::False, "StillPending", 2, 20);
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(c[0].reason, "StillPending");
        assert_eq!(c[0].observed_generation, Some(2));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut c = Vec::new();
        set_ready(&mut c, ConditionStatus::False, "Pending", 1, 10);
        set_ready(&mut c, ConditionStatus::True, "Ready", 1, 30);
        assert_eq!(c[0].last_transition_time, Time(t(30)));
        assert!(is_true(&c, READY));
    }

    #[test]
    fn keeps_types_sorted_and_unique() {
        let mut c = Vec::new();
        for ty in [STALLED, READY, RECONCILING, READY] {
            let new = NewCondition {
                type_: ty,
                status: ConditionStatus::Unknown,
                reason: "X",
                message: String::new(),
            };
            set_condition(&mut c, new, None, t(1));
        }
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED]);
        assert!(!is_true(&c, READY));
        assert!(find(&c, "Missing").is_none());
    }

    #[test]
    fn setter_shares_generation_and_time_and_keeps_unchanged_transitions() {
        let mut c = Vec::new();
        Setter::new(&mut c, Some(1), t(10))
            .set(READY, false, "Pending", "waiting")
            .set(STALLED, ConditionStatus::False, "NotStalled", String::new());
        Setter::new(&mut c, Some(2), t(20))
            .set(READY, true, "Ready", "serving")
            .set(STALLED, false, "StillNotStalled", "");
        let ready = find(&c, READY).expect("Ready");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("True", "Ready", "serving")
        );
        assert_eq!(ready.last_transition_time, Time(t(20)), "status changed");
        let stalled = find(&c, STALLED).expect("Stalled");
        assert_eq!(stalled.last_transition_time, Time(t(10)), "status held");
        assert_eq!(stalled.reason, "StillNotStalled");
        assert!(c.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn setter_removes_a_condition() {
        let mut c = Vec::new();
        let mut set = Setter::new(&mut c, None, t(1));
        set.set(READY, true, "Ready", "")
            .set(STALLED, false, "No", "");
        set.remove(STALLED).remove("Missing");
        set.apply(ready(ConditionStatus::False, "Pending"));
        assert_eq!(c[0].reason, "Pending");
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY]);
    }
}
