//! The runtime's files: directories, atomic writes, credentials and ports.

use super::{CredentialFiles, Credentials, ProcessError};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ports {
    pub(super) grpc: u16,
    pub(super) http: u16,
}

/// Writes `creds` into `dir` (each file only when its content changed).
pub(super) fn write_credentials(
    dir: &Path,
    creds: &Credentials<'_>,
) -> Result<CredentialFiles, ProcessError> {
    let files = CredentialFiles {
        token: dir.join("token"),
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    write_if_changed(&files.token, creds.token.as_bytes(), 0o600)?;
    write_if_changed(&files.ca, creds.ca_pem.as_bytes(), 0o600)?;
    write_if_changed(&files.cert, creds.leaf.cert_pem.as_bytes(), 0o600)?;
    write_if_changed(&files.key, creds.leaf.key_pem.as_bytes(), 0o600)?;
    Ok(files)
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProcessError {
    let path = path.to_path_buf();
    move |source| ProcessError::Io { what, path, source }
}

pub(super) fn create_dir(dir: &Path) -> Result<(), ProcessError> {
    std::fs::create_dir_all(dir).map_err(io("directory", dir))
}

pub(super) fn remove_dir(dir: &Path) -> Result<(), ProcessError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("directory", dir)(e)),
        _ => Ok(()),
    }
}

/// Writes atomically (temporary file, then rename) unless the content is already there.
pub(super) fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProcessError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("file", &tmp))?;
        f.write_all(bytes).map_err(io("file", &tmp))?;
        f.sync_all().map_err(io("file", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("file", path))
}

/// Two free loopback ports, chosen once per job so that participants' endpoints stay
/// valid across aggregator and operator restarts.
pub(super) fn ports(path: &Path) -> Result<Ports, ProcessError> {
    if let Some(p) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Ports>(&b).ok())
    {
        return Ok(p);
    }
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io("free port", path))
    };
    let p = Ports {
        grpc: free()?,
        http: free()?,
    };
    let json = serde_json::to_vec(&p).unwrap_or_default();
    write_if_changed(path, &json, 0o644)?;
    Ok(p)
}
