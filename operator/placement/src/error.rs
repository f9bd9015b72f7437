//! The one error type of this crate: every bad input is reported, none panics.

use thiserror::Error;

use crate::format::{count, space_size};

/// Why a problem, a setting or an indicator input was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlacementError {
    /// The problem declares no decision variables.
    #[error("the problem has no decision variables")]
    NoVariables,

    /// The problem declares no objectives.
    #[error("the problem has zero objectives; at least one is needed")]
    NoObjectives,

    /// A categorical variable has no choice, so the search space is empty.
    #[error("variable {index} has 0 choices, so the search space is empty")]
    EmptySpace {
        /// Position of the variable.
        index: usize,
    },

    /// A real variable's bounds are not finite or are reversed.
    #[error(
        "variable {index} has bounds [{lower}, {upper}]; bounds must be finite with lower <= upper"
    )]
    InvalidBounds {
        /// Position of the variable.
        index: usize,
        /// Declared lower bound.
        lower: f64,
        /// Declared upper bound.
        upper: f64,
    },

    /// The exact solver needs every variable to be categorical.
    #[error("the exact solver enumerates categorical variables only, but variable {index} is real")]
    NotCategorical {
        /// Position of the first real variable.
        index: usize,
    },

    /// The space has more candidates than the exact solver may enumerate.
    #[error(
        "the search space has {} candidates, more than the exact solver's limit of {}",
        space_size(*.candidates),
        count(u128::from(*.limit))
    )]
    SpaceTooLarge {
        /// Number of candidates, `None` when it overflows `u128`.
        candidates: Option<u128>,
        /// The limit that was exceeded.
        limit: u64,
    },

    /// An NSGA-II setting is out of its valid range.
    #[error("invalid NSGA-II setting `{field}` = {value}: {expected}")]
    InvalidSettings {
        /// Name of the field in [`crate::Nsga2Settings`].
        field: &'static str,
        /// The value given, as text.
        value: String,
        /// What the field must satisfy.
        expected: &'static str,
    },

    /// A point, front or reference point has the wrong number of coordinates.
    #[error("{what} has {got} coordinates, expected {expected}")]
    DimensionMismatch {
        /// Which input was wrong.
        what: &'static str,
        /// Its number of coordinates.
        got: usize,
        /// The number expected.
        expected: usize,
    },

    /// An indicator was given an empty set where it needs points.
    #[error("{what} is empty")]
    EmptySet {
        /// Which input was empty.
        what: &'static str,
    },

    /// Exact hypervolume is implemented for 1 to 3 objectives.
    #[error("exact hypervolume supports 1, 2 or 3 objectives, got {objectives}")]
    UnsupportedDimension {
        /// Number of objectives given.
        objectives: usize,
    },

    /// A test problem was asked for with dimensions it is not defined for.
    #[error("invalid test problem: {reason}")]
    InvalidTestProblem {
        /// What is wrong.
        reason: &'static str,
    },

    /// A value that must be a finite number was not.
    #[error("{what} contains a non-finite value")]
    NonFinite {
        /// Which input held it.
        what: &'static str,
    },
}
