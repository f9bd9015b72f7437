//! Why a catalog or an overlay was refused.

use std::sync::Arc;

use thiserror::Error;

/// A catalog that cannot be used, with the entry at fault named.
#[derive(Debug, Clone, Error)]
pub enum CatalogError {
    /// The JSON text does not parse into a catalog.
    #[error("malformed catalog JSON: {source}")]
    Json {
        /// The parser's error, with line and column. Shared so the error
        /// (and the cached built-in catalog's result) can be cloned.
        #[source]
        source: Arc<serde_json::Error>,
    },

    /// The YAML text does not parse into a catalog.
    #[error("malformed catalog YAML: {source}")]
    Yaml {
        /// The parser's error, with line and column.
        #[source]
        source: Arc<serde_yaml::Error>,
    },

    /// The catalog has no version string.
    #[error("the catalog has an empty `version`; every catalog must be versioned")]
    MissingVersion,

    /// The catalog lists no region.
    #[error("the catalog lists no regions")]
    NoRegions,

    /// A cloud, region or type name is empty or holds `:` or whitespace.
    #[error("invalid {what} name `{name}`: names must be non-empty, without `:` or spaces")]
    InvalidName {
        /// Which kind of entry.
        what: &'static str,
        /// The name as given.
        name: String,
    },

    /// Two entries share one key.
    #[error("duplicate {what} `{key}`")]
    Duplicate {
        /// Which kind of entry.
        what: &'static str,
        /// The repeated key.
        key: String,
    },

    /// An entry refers to a region the catalog does not define.
    #[error("unknown region `{region}` in {referenced_by}")]
    UnknownRegion {
        /// The region key (`cloud:name`) as referenced.
        region: String,
        /// Which entry refers to it.
        referenced_by: String,
    },

    /// A number is negative, zero where it must not be, or not finite.
    #[error("{what} is {value}; expected {expected}")]
    InvalidValue {
        /// The field and its entry.
        what: String,
        /// The value found.
        value: f64,
        /// What the value must satisfy.
        expected: &'static str,
    },

    /// A region borrows network entries from a region that borrows too.
    #[error(
        "region `{region}` has networkLike `{like}`, which is itself or borrows its network; \
         point networkLike at a region with measured entries"
    )]
    NetworkLikeChain {
        /// The borrowing region.
        region: String,
        /// The region it names.
        like: String,
    },

    /// A region that can host an aggregator has no network entry to a region.
    #[error(
        "no network entry between `{a}` and `{b}` ({missing} region pairs missing in all); \
         add a `network` entry or set `networkLike` on the user-declared region"
    )]
    MissingLink {
        /// A region that can host an aggregator.
        a: String,
        /// A region it cannot reach.
        b: String,
        /// Number of unordered pairs missing.
        missing: usize,
    },

    /// An overlay is not usable on the base catalog.
    #[error("invalid catalog overlay: {reason}")]
    InvalidOverlay {
        /// What is wrong.
        reason: String,
    },
}
