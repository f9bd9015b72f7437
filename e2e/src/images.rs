//! fedsky's images as archives that [real nodes](crate::RealNode) load, as a registry
//! pull would: `make test-images` builds them with `images/build.sh` and writes one
//! `oci-archive` per image into `FEDSKY_IMAGE_ARCHIVES`.

use crate::error::Error;
use std::path::PathBuf;

/// The directory of the archives, from `FEDSKY_IMAGE_ARCHIVES`.
fn dir() -> Result<PathBuf, Error> {
    std::env::var_os("FEDSKY_IMAGE_ARCHIVES")
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Binaries(
                "FEDSKY_IMAGE_ARCHIVES is not set: run the tests with `make tests`, which builds \
                 the images with `make test-images` and points it at them"
                    .into(),
            )
        })
}

/// The archive of image `name` (`operator`, `aggregator`, `participant`, `pause`).
pub fn archive(name: &str) -> Result<PathBuf, Error> {
    let path = dir()?.join(format!("fedsky-{name}.tar"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Binaries(format!(
            "{} is missing: build it with `make test-images`",
            path.display()
        )))
    }
}

/// The reference an archive's image goes by once loaded: what `images/build.sh` tags.
pub fn reference(name: &str) -> Result<String, Error> {
    let path = dir()?.join(format!("fedsky-{name}.ref"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(crate::error::io("read", &path))
}

/// The pod sandbox image every node needs.
pub(crate) fn pause_archive() -> Result<PathBuf, Error> {
    archive("pause")
}
