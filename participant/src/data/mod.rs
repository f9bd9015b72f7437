//! Local data: image folders and CSV tables under one data root, a seeded
//! train/validation split, and a loader that decodes batches on a worker
//! thread so the model never waits on the disk or the PNG decoder.
//!
//! Every path is resolved under the [`DataRoot`] and refused if it leaves
//! it (through `..` or a symlink): a participant reads only the volume the
//! operator mounted for it.

mod image_folder;
mod loader;
mod tabular;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use image_folder::{ChannelMode, IMAGE_EXTENSIONS, ImageFolder, ImageOptions};
pub use loader::{Batch, BatchIter, Loader};
pub use tabular::{CsvDataset, CsvOptions};

use crate::model::InputShape;

/// Errors finding, reading or decoding local data. Every variant names the
/// file or directory at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A path does not exist.
    #[error("{what} {path} does not exist")]
    NotFound {
        /// What was looked for (`data root`, `training split`, ...).
        what: &'static str,
        /// Path.
        path: PathBuf,
    },
    /// A path resolves outside the data root.
    #[error("{path} resolves outside the data root {root}")]
    OutsideRoot {
        /// Offending path.
        path: PathBuf,
        /// The data root.
        root: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("reading {path} failed")]
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A split directory has no class folders, or no images at all.
    #[error("{path} contains no {what}")]
    Empty {
        /// Directory.
        path: PathBuf,
        /// `class folders` or `images`.
        what: &'static str,
    },
    /// A class folder is not in the configured class list.
    #[error("class folder {path} is not one of the configured classes {classes:?}")]
    UnknownClass {
        /// Folder.
        path: PathBuf,
        /// Configured classes.
        classes: Vec<String>,
    },
    /// A file in a class folder is not a supported image.
    #[error("{path} is not a supported image (expected one of {expected})")]
    UnsupportedFile {
        /// File.
        path: PathBuf,
        /// Supported extensions.
        expected: String,
    },
    /// An image could not be decoded.
    #[error("image {path} is malformed")]
    Decode {
        /// File.
        path: PathBuf,
        /// Decoder error.
        #[source]
        source: image::ImageError,
    },
    /// A CSV file could not be parsed.
    #[error("CSV file {path} is malformed at line {line}: {problem}")]
    Csv {
        /// File.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// Options out of range.
    #[error("invalid data options: {0}")]
    Options(String),
    /// The loader's worker thread stopped unexpectedly.
    #[error("the data loader's worker thread stopped")]
    WorkerGone,
}

/// The directory a participant may read from.
#[derive(Debug, Clone)]
pub struct DataRoot {
    root: PathBuf,
}

impl DataRoot {
    /// Opens (and canonicalises) the data root.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        let canonical = root.canonicalize().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DataError::NotFound {
                    what: "data root",
                    path: root.to_path_buf(),
                }
            } else {
                DataError::Io {
                    path: root.to_path_buf(),
                    source,
                }
            }
        })?;
        Ok(Self { root: canonical })
    }

    /// The canonical root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` under the root; fails when it does not exist or
    /// escapes the root.
    pub fn resolve(&self, rel: impl AsRef<Path>, what: &'static str) -> Result<PathBuf, DataError> {
        let joined = self.root.join(rel.as_ref());
        let canonical = joined.canonicalize().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DataError::NotFound {
                    what,
                    path: joined.clone(),
                }
            } else {
                DataError::Io {
                    path: joined.clone(),
                    source,
                }
            }
        })?;
        self.contain(canonical, &joined)
    }

    /// Checks that an already canonical path lies under the root.
    fn contain(&self, canonical: PathBuf, shown: &Path) -> Result<PathBuf, DataError> {
        if canonical.starts_with(&self.root) {
            Ok(canonical)
        } else {
            Err(DataError::OutsideRoot {
                path: shown.to_path_buf(),
                root: self.root.clone(),
            })
        }
    }
}

/// A labelled dataset with random access. Implementations are shared with
/// the loader's worker thread.
pub trait Dataset: Send + Sync + std::fmt::Debug {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one sample.
    fn input_shape(&self) -> InputShape;
    /// Class names; label `i` is `classes()[i]`.
    fn classes(&self) -> &[String];
    /// Label of sample `index` (without decoding it).
    fn label(&self, index: usize) -> i64;
    /// Sample `index`: values (channels first for images) and label.
    fn load(&self, index: usize) -> Result<(Vec<f32>, i64), DataError>;
}

/// Splits `0..n` into (train, validation) index sets: a seeded shuffle, then
/// the first `val_fraction` of it. The same `(n, fraction, seed)` always
/// gives the same split, so validation data never leaks into training
/// between rounds or restarts.
pub fn split_indices(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let frac = val_fraction.clamp(0.0, 1.0);
    let n_val = ((n as f64) * frac).round() as usize;
    let n_val = if frac > 0.0 && n > 1 {
        n_val.clamp(1, n - 1)
    } else {
        n_val.min(n)
    };
    let val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    // Sorted so that the epoch shuffle alone decides the training order.
    train.sort_unstable();
    let mut val = val;
    val.sort_unstable();
    (train, val)
}

/// Samples per class among `indices`.
pub fn class_counts(ds: &dyn Dataset, indices: &[usize]) -> Vec<usize> {
    let mut counts = vec![0usize; ds.classes().len()];
    for &i in indices {
        if let Some(c) = usize::try_from(ds.label(i))
            .ok()
            .and_then(|l| counts.get_mut(l))
        {
            *c += 1;
        }
    }
    counts
}

/// A dataset shared with worker threads.
pub type SharedDataset = Arc<dyn Dataset>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_disjoint() {
        let (t1, v1) = split_indices(100, 0.2, 7);
        let (t2, v2) = split_indices(100, 0.2, 7);
        assert_eq!((&t1, &v1), (&t2, &v2));
        assert_eq!(v1.len(), 20);
        assert!(v1.iter().all(|i| !t1.contains(i)));
        let (_, v3) = split_indices(100, 0.2, 8);
        assert_ne!(v1, v3);
        assert_eq!(split_indices(5, 0.0, 1).1.len(), 0);
        assert_eq!(split_indices(2, 0.9, 1).0.len(), 1);
    }
}
