//! Why a placement input cannot be modelled.

use thiserror::Error;

use crate::error::PlacementError;

/// A placement input that cannot be turned into a model, with the field
/// and the value at fault.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// No participant site was given.
    #[error("no participant sites: a placement needs at least one site")]
    NoSites,

    /// Two sites share a name.
    #[error("duplicate site name `{name}`")]
    DuplicateSite {
        /// The repeated name.
        name: String,
    },

    /// A number is out of its valid range.
    #[error("{field} is {value}; expected {expected}")]
    InvalidValue {
        /// The field, e.g. `workload.modelSizeMB`.
        field: String,
        /// The value given.
        value: f64,
        /// What it must satisfy.
        expected: &'static str,
    },

    /// A region is not in the catalog.
    #[error("unknown region `{region}` in {referenced_by}{}", hint(.suggestions))]
    UnknownRegion {
        /// The region as given.
        region: String,
        /// Where it was given.
        referenced_by: String,
        /// Catalog regions with a similar name.
        suggestions: Vec<String>,
    },

    /// A bare region name matches regions of several clouds.
    #[error("region `{region}` in {referenced_by} is ambiguous: it matches {}; write it as cloud:name", .matches.join(", "))]
    AmbiguousRegion {
        /// The name as given.
        region: String,
        /// Where it was given.
        referenced_by: String,
        /// The matching region keys.
        matches: Vec<String>,
    },

    /// A cloud is not in the catalog.
    #[error("unknown cloud `{cloud}` in {referenced_by}; the catalog has {}", .known.join(", "))]
    UnknownCloud {
        /// The cloud as given.
        cloud: String,
        /// Where it was given.
        referenced_by: String,
        /// The catalog's clouds.
        known: Vec<String>,
    },

    /// An instance type is not in the catalog.
    #[error("unknown instance type `{name}` in candidates.instanceTypes{}", hint(.suggestions))]
    UnknownInstanceType {
        /// The type as given.
        name: String,
        /// Catalog types with a similar name.
        suggestions: Vec<String>,
    },

    /// Filters leave no aggregator candidate; the message names the
    /// filter that removed the last ones.
    #[error("no aggregator candidate left: {reason}")]
    NoCandidates {
        /// Which filter emptied the set, and why.
        reason: String,
    },

    /// The solver refused its settings.
    #[error("solver: {0}")]
    Solver(#[from] PlacementError),
}

fn hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.join(", "))
    }
}
