//! What a participant keeps on disk to survive its own restart: the update
//! it trained for the open round, so a restarted participant uploads the
//! same bytes instead of training again (or uploading half an update).
//!
//! Files are written to a temporary name, synced and renamed, so a crash
//! leaves either the old file or the new one, never a mix; the update's
//! sha256 is kept beside it and checked on load, and an update is only
//! reused for the exact round, base model and seed it was trained for.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be written.
    #[error("writing participant state {path} failed")]
    Write {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding the metadata failed.
    #[error("encoding participant state failed")]
    Encode(#[source] serde_json::Error),
}

/// What a stored update was trained for, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// Round.
    pub round: u64,
    /// Global model version it started from.
    pub base_version: u64,
    /// sha256 of that global model.
    pub model_sha256: String,
    /// Training seed of the round.
    pub seed: u64,
    /// FedAvg weight.
    pub num_examples: u64,
    /// Training metrics.
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of the update bytes.
    pub update_sha256: String,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

const META: &str = "pending-update.json";
const DATA: &str = "pending-update.safetensors";

impl StateDir {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Stores a trained update (data first, then the metadata that makes it
    /// valid).
    pub fn save_pending(&self, meta: &PendingUpdate, bytes: &[u8]) -> Result<(), StateError> {
        write_atomic(&self.dir.join(DATA), bytes)?;
        let json = serde_json::to_vec_pretty(meta).map_err(StateError::Encode)?;
        write_atomic(&self.dir.join(META), &json)
    }

    /// The stored update for exactly this round, base model and seed, if
    /// intact.
    pub fn load_pending(
        &self,
        round: u64,
        base_version: u64,
        model_sha256: &str,
        seed: u64,
    ) -> Option<(PendingUpdate, Vec<u8>)> {
        let meta: PendingUpdate =
            serde_json::from_slice(&std::fs::read(self.dir.join(META)).ok()?).ok()?;
        if (meta.round, meta.base_version, meta.seed) != (round, base_version, seed)
            || meta.model_sha256 != model_sha256
        {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(DATA)).ok()?;
        (hex::encode(Sha256::digest(&bytes)) == meta.update_sha256).then_some((meta, bytes))
    }

    /// Forgets the stored update (its round is over).
    pub fn clear_pending(&self) {
        // Metadata first: without it the data file is never used.
        let _ = std::fs::remove_file(self.dir.join(META));
        let _ = std::fs::remove_file(self.dir.join(DATA));
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Makes the rename itself durable; best effort on file systems
        // that do not support syncing directories.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_update_survives_and_is_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = StateDir::open(tmp.path().join("state")).expect("open");
        let bytes = b"update".to_vec();
        let meta = PendingUpdate {
            round: 3,
            base_version: 2,
            model_sha256: "abc".into(),
            seed: 9,
            num_examples: 10,
            metrics: BTreeMap::new(),
            update_sha256: hex::encode(Sha256::digest(&bytes)),
        };
        s.save_pending(&meta, &bytes).expect("save");
        assert_eq!(s.load_pending(3, 2, "abc", 9).map(|p| p.1), Some(bytes));
        assert!(s.load_pending(4, 3, "abc", 9).is_none(), "other round");
        assert!(s.load_pending(3, 2, "def", 9).is_none(), "other base model");
        std::fs::write(tmp.path().join("state").join(DATA), b"corrupt").expect("write");
        assert!(s.load_pending(3, 2, "abc", 9).is_none(), "corrupt data");
        s.clear_pending();
        assert!(s.load_pending(3, 2, "abc", 9).is_none());
    }
}
