//! Serving the model API to the hub's API server only. The API server authenticates and
//! authorises users, then proxies to us presenting its front-proxy client certificate
//! (`--proxy-client-cert-file`); we accept a connection only with a certificate that
//! chains to the request-header CA (`--requestheader-client-ca-file`) and, when the API
//! server names any, whose CN is one of `--requestheader-allowed-names`. Both come from
//! the ConfigMap `kube-system/extension-apiserver-authentication` that the API server
//! publishes, as for every aggregated API server. Nobody else gets past the handshake.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; past this the listener waits, so a flood of idle
/// connections costs bounded memory (only the API server gets past the handshake).
const MAX_CONNECTIONS: usize = 256;

/// Why the model API cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ConfigMap with the request-header CA could not be read.
    #[error(
        "reading ConfigMap kube-system/extension-apiserver-authentication (the operator needs the Role extension-apiserver-authentication-reader there): {0}"
    )]
    ReadAuthentication(#[source] kube::Error),
    /// The API server does not proxy with a client certificate.
    #[error(
        "ConfigMap kube-system/extension-apiserver-authentication has no requestheader-client-ca-file: start the API server with --requestheader-client-ca-file and --proxy-client-cert-file"
    )]
    NoRequestHeaderCa,
    /// PEM or certificate material was refused.
    #[error("{what}: {detail}")]
    Pem {
        /// Which material.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration of the model API is invalid: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the port failed.
    #[error("binding the model API to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Who may connect: the request-header CA and the names its certificates may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontProxy {
    /// PEM bundle of the request-header CA.
    pub ca_pem: String,
    /// Allowed CNs; empty allows any certificate of the CA.
    pub allowed_names: Vec<String>,
}

impl FrontProxy {
    /// From the data of `extension-apiserver-authentication`.
    pub fn from_config_map(
        data: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, ServeError> {
        let ca_pem = data
            .get("requestheader-client-ca-file")
            .filter(|s| !s.trim().is_empty())
            .ok_or(ServeError::NoRequestHeaderCa)?
            .clone();
        let allowed_names = match data.get("requestheader-allowed-names") {
            Some(s) if !s.trim().is_empty() => {
                serde_json::from_str(s).map_err(|e| ServeError::Pem {
                    what: "requestheader-allowed-names is not a JSON list of strings",
                    detail: e.to_string(),
                })?
            }
            _ => Vec::new(),
        };
        Ok(Self {
            ca_pem,
            allowed_names,
        })
    }

    /// Reads it from the hub.
    pub async fn read(client: kube::Client) -> Result<Self, ServeError> {
        let cm = Api::<ConfigMap>::namespaced(client, "kube-system")
            .get("extension-apiserver-authentication")
            .await
            .map_err(ServeError::ReadAuthentication)?;
        Self::from_config_map(&cm.data.unwrap_or_default())
    }

    /// Whether a verified client certificate may call us.
    pub fn admits(&self, der: &[u8]) -> bool {
        if self.allowed_names.is_empty() {
            return true;
        }
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return false;
        };
        cert.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .any(|cn| self.allowed_names.iter().any(|a| a == cn))
    }
}

/// The TLS configuration: our serving certificate, client certificates required and
/// verified against the request-header CA.
pub fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    proxy: &FrontProxy,
) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = |what: &'static str| {
        move |e: rustls::pki_types::pem::Error| ServeError::Pem {
            what,
            detail: e.to_string(),
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(pem("the model API's serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem("the model API's key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(proxy.ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(pem("the request-header CA"))?)
            .map_err(ServeError::Tls)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServeError::Pem {
        what: "the request-header CA",
        detail: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `addr`; serve the listener with [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `router` over TLS on `listener` until the task is dropped: one task per
/// connection, so a slow handshake holds up no one else.
pub async fn serve(
    listener: TcpListener,
    config: rustls::ServerConfig,
    proxy: FrontProxy,
    router: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let proxy = Arc::new(proxy);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "model API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let proxy = proxy.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "model API handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "model API handshake timed out");
                    return;
                }
            };
            let admitted = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| proxy.admits(c));
            if !admitted {
                tracing::warn!(%peer, "model API: client certificate not among requestheader-allowed-names");
                return;
            }
            let service = hyper_util::service::TowerToHyperService::new(router);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "model API connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_config_map_names_the_ca_and_the_allowed_names() {
        let data = BTreeMap::from([
            (
                "requestheader-client-ca-file".to_string(),
                "PEM".to_string(),
            ),
            (
                "requestheader-allowed-names".to_string(),
                r#"["front-proxy-client"]"#.to_string(),
            ),
        ]);
        let fp = FrontProxy::from_config_map(&data).expect("front proxy");
        assert_eq!(fp.allowed_names, ["front-proxy-client"]);
        assert!(matches!(
            FrontProxy::from_config_map(&BTreeMap::new()),
            Err(ServeError::NoRequestHeaderCa)
        ));
    }

    #[test]
    fn only_allowed_names_are_admitted() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "front-proxy-client");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let allowed = FrontProxy {
            ca_pem: String::new(),
            allowed_names: vec!["front-proxy-client".into()],
        };
        assert!(allowed.admits(cert.der()));
        let other = FrontProxy {
            allowed_names: vec!["someone-else".into()],
            ..allowed.clone()
        };
        assert!(!other.admits(cert.der()));
        let any = FrontProxy {
            allowed_names: Vec::new(),
            ..allowed
        };
        assert!(any.admits(cert.der()));
        assert!(!other.admits(b"not a certificate"));
    }
}
