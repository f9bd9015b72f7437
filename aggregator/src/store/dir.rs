//! A model store in a local directory (a PersistentVolume in the cluster).

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{ObjectStore, StoreError, StoreFuture, check_key};

/// Stores each key as a file below `root`.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    /// Makes temporary names unique within the process.
    counter: AtomicU64,
}

impl DirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            counter: AtomicU64::new(0),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { op, path, source }
}

/// Write-then-rename with fsync of the file and of its directory, so the
/// new name survives a power loss and never points at a partial file.
fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating directory", dir))?;
    let result = (|| {
        let mut f = File::create(tmp).map_err(io("creating", tmp))?;
        f.write_all(bytes).map_err(io("writing", tmp))?;
        f.sync_all().map_err(io("syncing", tmp))?;
        fs::rename(tmp, path).map_err(io("renaming into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))
    })();
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless but untidy.
        let _ = fs::remove_file(tmp);
    }
    result
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("listing", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("listing", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("reading type of", &path))?;
        if kind.is_dir() {
            list_files(root, &path, out)?;
        } else if kind.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            // Temporary files of an interrupted write are not objects.
            if !key.contains(".tmp-") {
                out.push(key);
            }
        }
    }
    Ok(())
}

impl ObjectStore for DirStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(key)?;
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let mut tmp = path.clone().into_os_string();
            tmp.push(format!(".tmp-{}-{n}", std::process::id()));
            let tmp = PathBuf::from(tmp);
            tokio::task::spawn_blocking(move || write_atomic(&path, &tmp, &bytes))
                .await
                .map_err(StoreError::Join)?
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::read(&path).await {
                Ok(b) => Ok(Some(Bytes::from(b))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io("reading", &path)(e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let root = self.root.clone();
            let start = match prefix.trim_end_matches('/') {
                "" => root.clone(),
                p => self.path(p)?,
            };
            let mut keys = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                list_files(&root, &start, &mut out).map(|()| out)
            })
            .await
            .map_err(StoreError::Join)??;
            keys.sort();
            Ok(keys)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("removing", &path)(e)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(tmp.path());
        assert_eq!(store.get("a/b.bin").await.expect("get"), None);
        store
            .put("a/b.bin", Bytes::from_static(b"one"))
            .await
            .expect("put");
        store
            .put("a/b.bin", Bytes::from_static(b"two"))
            .await
            .expect("overwrite");
        store
            .put("c.json", Bytes::from_static(b"{}"))
            .await
            .expect("put");
        assert_eq!(
            store.get("a/b.bin").await.expect("get").as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            store.list("").await.expect("list"),
            vec!["a/b.bin".to_string(), "c.json".to_string()]
        );
        assert_eq!(
            store.list("a/").await.expect("list"),
            vec!["a/b.bin".to_string()]
        );
        assert!(store.list("missing/").await.expect("list").is_empty());
        store.delete("a/b.bin").await.expect("delete");
        store.delete("a/b.bin").await.expect("delete twice");
        assert_eq!(store.get("a/b.bin").await.expect("get"), None);
        assert!(matches!(
            store.put("../x", Bytes::new()).await,
            Err(StoreError::InvalidKey { .. })
        ));
    }
}
