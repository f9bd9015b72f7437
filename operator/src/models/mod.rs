//! The hub's model manager: an archive of trained models that outlive their jobs
//! (`spec.modelStore.retain`) and the aggregated API (`models.fedsky.dev`) that serves them
//! to users authorised by their own RBAC (`kubectl fedsky model download`).

pub mod api;
pub mod archive;
pub mod server;

pub use archive::{ArchiveError, ArchivedVersion, JobIndex, ModelArchive};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the archive lives and how its API is served.
#[derive(Debug, Clone)]
pub struct ModelApiSettings {
    /// Address of the aggregated API (the APIService's Service points here).
    pub listen: SocketAddr,
    /// Serving certificate (PEM), signed by the CA in the APIService's `caBundle`.
    pub cert_pem: Vec<u8>,
    /// Its key (PEM).
    pub key_pem: Vec<u8>,
    /// Directory of the archive (a volume that outlives the operator's pod).
    pub archive_dir: PathBuf,
}

/// Why the model manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum ModelApiError {
    /// The archive directory is unusable.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The API could not be served.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// Opens the archive and serves its API in the background; returns the archive and the
/// bound address.
pub async fn start(
    client: kube::Client,
    settings: &ModelApiSettings,
) -> Result<(Arc<ModelArchive>, SocketAddr), ModelApiError> {
    let archive = Arc::new(ModelArchive::open(&settings.archive_dir)?);
    let proxy = server::FrontProxy::read(client).await?;
    let config = server::tls_config(&settings.cert_pem, &settings.key_pem, &proxy)?;
    let listener = server::bind(settings.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| server::ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let router = api::router(archive.clone());
    tokio::spawn(server::serve(listener, config, proxy, router));
    tracing::info!(%addr, dir = %settings.archive_dir.display(), "model API serving");
    Ok((archive, addr))
}
