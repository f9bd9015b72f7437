//! Where global models and round checkpoints live: a flat key → bytes
//! interface ([`ObjectStore`]) with a directory and an S3-compatible
//! implementation, and the checkpoint layout on top of it ([`Checkpoints`]).
//!
//! Every `put` is atomic (a reader sees the old bytes or the new, never a
//! mix): the directory store writes a temporary file, fsyncs it and renames
//! it; an S3 PUT is atomic by itself. A round is committed by writing
//! `checkpoint.json` last, after the blobs it names (with their sha256), so
//! a crash at any point leaves the previous complete round in place.
//!
//! With a retention limit ([`Checkpoints::with_keep_versions`]) older model
//! versions are deleted after each commit ([`retention`]).

mod checkpoint;
mod dir;
pub mod retention;
mod s3;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub use checkpoint::{
    CHECKPOINT_KEY, CheckpointRecord, Checkpoints, GlobalModel, Resumed, VersionInfo,
};
pub use dir::DirStore;
pub use retention::best_version;
pub use s3::{S3Settings, S3Store};

/// A boxed future of a store operation (boxed so stores can be used as
/// `dyn ObjectStore`, picked at run time from the command line).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Errors of the model store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key that could escape the store's root or is not portable.
    #[error(
        "invalid store key {key:?}: use '/'-separated names of letters, digits, '.', '_' and '-'"
    )]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An S3 request failed.
    #[error("S3 {op} of {key:?} in bucket {bucket:?} failed")]
    S3 {
        /// Operation (PutObject, GetObject, ...).
        op: &'static str,
        /// Bucket.
        bucket: String,
        /// Object key (with prefix).
        key: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored object is not what its record says (hash, size or format).
    #[error("stored object {key:?} is corrupt: {detail}")]
    Corrupt {
        /// Key of the object.
        key: String,
        /// What does not match.
        detail: String,
    },
    /// A record cannot be written as JSON, or a stored one cannot be read.
    #[error("JSON of stored object {key:?} cannot be {action}")]
    Json {
        /// Key of the object.
        key: String,
        /// `encoded` or `decoded`.
        action: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The optimiser state cannot be encoded as safetensors.
    #[error("the optimizer state cannot be encoded")]
    EncodeState(#[source] crate::model::ModelError),
    /// A stored model failed validation.
    #[error("stored model {key:?} is not a valid safetensors model")]
    InvalidModel {
        /// Key of the object.
        key: String,
        /// Why.
        #[source]
        source: crate::update::UpdateRejection,
    },
    /// The checkpoint cannot be used with this job (other model or strategy).
    #[error("checkpoint does not fit this job: {detail}")]
    Incompatible {
        /// What differs.
        detail: String,
    },
    /// A blocking task was cancelled or panicked.
    #[error("store task did not finish")]
    Join(#[source] tokio::task::JoinError),
}

impl StoreError {
    /// Stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::InvalidKey { .. } => "invalid_key",
            StoreError::Io { .. } => "io",
            StoreError::S3 { .. } => "s3",
            StoreError::Corrupt { .. } | StoreError::Json { .. } | StoreError::EncodeState(_) => {
                "corrupt"
            }
            StoreError::InvalidModel { .. } => "invalid_model",
            StoreError::Incompatible { .. } => "incompatible",
            StoreError::Join(_) => "internal",
        }
    }
}

/// A flat key → bytes store with atomic puts.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` under `key`, replacing any previous value atomically.
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> StoreFuture<'a, ()>;
    /// Reads `key`; `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;
    /// Keys under `prefix` (which ends with '/' or is empty), sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
    /// Where the store points, for logs (`dir:/data`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// Checks that a key is relative, has no `.`/`..` parts and only portable characters.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey { key: key.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/abs", "a/../b", "a//b", "./a", "a b", "a/"] {
            assert!(check_key(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["checkpoint.json", "models/v000001.safetensors", "a-b_c.d"] {
            assert!(check_key(good).is_ok(), "{good:?} must be accepted");
        }
    }
}
