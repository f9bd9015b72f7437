//! The hub's model archive: the models of FederatedJobs kept past their aggregators, one
//! directory per job (`<root>/<namespace>/<name>/`) with an `index.json` and one
//! `<version>.safetensors` per archived version. Every file is written to a temporary name
//! and renamed into place, so a crash leaves the old index or the new one, never half a
//! file; a model file is renamed before the index names it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A namespace or job name that cannot name a directory.
    #[error("{what} {value:?} is not a valid Kubernetes name")]
    InvalidName {
        /// `namespace` or `job`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The bytes do not hash to the sha256 the aggregator announced.
    #[error("model version {version} has sha256 {actual}, but the aggregator announced {expected}")]
    Checksum {
        /// The version.
        version: u64,
        /// Announced.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The index is not what this version of the operator writes.
    #[error("the archive index {path} cannot be read: {source}")]
    Index {
        /// The file.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// One archived model version, as the model API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedVersion {
    /// Version number (the round that produced it).
    pub version: u64,
    /// Round that produced it.
    pub round: u64,
    /// sha256 of the safetensors file (hex).
    pub sha256: String,
    /// Size of the file.
    pub size_bytes: u64,
    /// The participants' evaluation of it, by metric name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// A job's entry in the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobIndex {
    /// The job's namespace.
    pub namespace: String,
    /// The job's name.
    pub job: String,
    /// The uid of the FederatedJob whose models these are (a job created again under the
    /// same name replaces them).
    pub uid: String,
    /// Archived versions, ascending.
    pub versions: Vec<ArchivedVersion>,
}

impl JobIndex {
    /// The version numbered `v`, or the newest when `v` is `None`.
    pub fn find(&self, v: Option<u64>) -> Option<&ArchivedVersion> {
        match v {
            Some(v) => self.versions.iter().find(|a| a.version == v),
            None => self.versions.last(),
        }
    }
}

/// The archive on disk.
#[derive(Debug, Clone)]
pub struct ModelArchive {
    root: PathBuf,
}

/// Kubernetes names (DNS labels and subdomains) are safe path components; checking keeps
/// names from a URL from ever leaving the archive.
fn checked<'a>(what: &'static str, value: &'a str) -> Result<&'a str, ArchiveError> {
    let ok = (1..=253).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !value.starts_with('.');
    if ok {
        Ok(value)
    } else {
        Err(ArchiveError::InvalidName {
            what,
            value: value.to_string(),
        })
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.display().to_string();
    move |source| ArchiveError::Io { op, path, source }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced before
/// the rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    tmp.write_all(bytes).map_err(io("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io("rename into place", path)(e.error))?;
    Ok(())
}

impl ModelArchive {
    /// The archive under `root` (created when missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ArchiveError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        Ok(Self { root })
    }

    fn job_dir(&self, namespace: &str, job: &str) -> Result<PathBuf, ArchiveError> {
        Ok(self
            .root
            .join(checked("namespace", namespace)?)
            .join(checked("job", job)?))
    }

    /// The job's index; `None` when nothing of it is archived.
    pub fn index(&self, namespace: &str, job: &str) -> Result<Option<JobIndex>, ArchiveError> {
        let path = self.job_dir(namespace, job)?.join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ArchiveError::Index {
                path: path.display().to_string(),
                source,
            })
    }

    /// Path of an archived version's file (which exists once the index names it).
    pub fn model_path(
        &self,
        namespace: &str,
        job: &str,
        version: u64,
    ) -> Result<PathBuf, ArchiveError> {
        Ok(self
            .job_dir(namespace, job)?
            .join(format!("{version}.safetensors")))
    }

    /// Archives `bytes` as `info.version` of the job `uid`, after checking them against
    /// `info.sha256`. Versions of another uid (an earlier job of the same name) are
    /// dropped; the job's other versions stay.
    pub fn put(
        &self,
        namespace: &str,
        job: &str,
        uid: &str,
        info: ArchivedVersion,
        bytes: &[u8],
    ) -> Result<JobIndex, ArchiveError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(&info.sha256) {
            return Err(ArchiveError::Checksum {
                version: info.version,
                expected: info.sha256,
                actual,
            });
        }
        let dir = self.job_dir(namespace, job)?;
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let previous = self.index(namespace, job)?.unwrap_or_default();
        let (mut versions, stale) = if previous.uid != uid {
            (Vec::new(), previous.versions)
        } else {
            (previous.versions, Vec::new())
        };
        write_atomic(&self.model_path(namespace, job, info.version)?, bytes)?;
        versions.retain(|v| v.version != info.version);
        versions.push(ArchivedVersion {
            size_bytes: bytes.len() as u64,
            ..info
        });
        versions.sort_by_key(|v| v.version);
        let index = JobIndex {
            namespace: namespace.to_string(),
            job: job.to_string(),
            uid: uid.to_string(),
            versions,
        };
        let json = serde_json::to_vec_pretty(&index).map_err(|source| ArchiveError::Index {
            path: dir.join("index.json").display().to_string(),
            source,
        })?;
        write_atomic(&dir.join("index.json"), &json)?;
        // Files of a replaced uid's versions that the new index does not name.
        for old in stale {
            if index.find(Some(old.version)).is_none() {
                let _ = std::fs::remove_file(self.model_path(namespace, job, old.version)?);
            }
        }
        Ok(index)
    }

    /// Deletes everything archived of the job (retention `Delete`); the index goes first,
    /// so a crash midway leaves unlisted files, never a listed file that is missing.
    pub fn remove(&self, namespace: &str, job: &str) -> Result<(), ArchiveError> {
        let dir = self.job_dir(namespace, job)?;
        match std::fs::remove_file(dir.join("index.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &dir.join("index.json"))(e)),
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: u64, bytes: &[u8]) -> ArchivedVersion {
        ArchivedVersion {
            version,
            round: version,
            sha256: hex::encode(Sha256::digest(bytes)),
            size_bytes: 0,
            metrics: BTreeMap::from([("eval_accuracy".into(), 0.5)]),
        }
    }

    #[test]
    fn put_lists_versions_ascending_and_keeps_the_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        assert_eq!(a.index("ns", "job").expect("index"), None);
        a.put("ns", "job", "u1", info(4, b"four"), b"four")
            .expect("put");
        let idx = a
            .put("ns", "job", "u1", info(2, b"two"), b"two")
            .expect("put");
        let versions: Vec<u64> = idx.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, [2, 4]);
        assert_eq!(idx.find(None).map(|v| v.version), Some(4));
        assert_eq!(idx.find(Some(2)).map(|v| v.size_bytes), Some(3));
        assert_eq!(a.index("ns", "job").expect("index"), Some(idx));
        let path = a.model_path("ns", "job", 4).expect("path");
        assert_eq!(std::fs::read(path).expect("read"), b"four");
    }

    #[test]
    fn a_wrong_checksum_archives_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        let err = a
            .put("ns", "job", "u1", info(1, b"announced"), b"received")
            .expect_err("mismatch");
        assert!(matches!(err, ArchiveError::Checksum { version: 1, .. }));
        assert_eq!(a.index("ns", "job").expect("index"), None);
        assert!(!a.model_path("ns", "job", 1).expect("path").exists());
    }

    #[test]
    fn a_new_job_of_the_same_name_replaces_the_old_ones_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        a.put("ns", "job", "old", info(7, b"old"), b"old")
            .expect("put");
        let idx = a
            .put("ns", "job", "new", info(3, b"new"), b"new")
            .expect("put");
        assert_eq!(idx.uid, "new");
        assert_eq!(idx.versions.len(), 1);
        assert!(!a.model_path("ns", "job", 7).expect("path").exists());
    }

    #[test]
    fn remove_forgets_the_job_and_tolerates_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        a.put("ns", "job", "u", info(1, b"m"), b"m").expect("put");
        a.remove("ns", "job").expect("remove");
        assert_eq!(a.index("ns", "job").expect("index"), None);
        a.remove("ns", "job").expect("removing twice is fine");
    }

    #[test]
    fn names_that_could_escape_the_archive_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        for (ns, job) in [
            ("..", "x"),
            ("ns", "../etc"),
            ("ns", "a/b"),
            ("", "x"),
            ("NS", "x"),
        ] {
            assert!(
                matches!(a.index(ns, job), Err(ArchiveError::InvalidName { .. })),
                "{ns}/{job}"
            );
        }
    }
}
