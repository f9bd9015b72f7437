//! The operator's HTTPS client of one job's aggregator model manager (`/v1/status`,
//! `/v1/versions`, model downloads).
//!
//! The aggregator serves that port over TLS with its job certificate and admits a client
//! certificate from the job's CA (see the aggregator's `http_auth`). The operator holds the
//! CA, so it issues itself a client certificate, CN [`OPERATOR_CLIENT_CN`], and trusts that
//! CA alone — no public roots, which would let anyone with a certificate from a public CA
//! for the address stand in for the aggregator and forge the job's progress.
//!
//! The server name checked is the one in the aggregator's certificate,
//! [`names::aggregator_tls_name`], not the host of the URL dialled: that is a
//! LoadBalancer's address, a VM's or loopback, none of which the certificate can name
//! before the cloud assigns it (participants verify the same name the same way). A
//! certificate of the job's CA for that name is the aggregator's: only its server
//! certificate has it, and participants' certificates are for client authentication
//! only, which the check refuses for a server.

use crate::names::{self, OPERATOR_CLIENT_CN};
use crate::pki::{Ca, PkiError};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// How long connecting (TCP and TLS) to an aggregator may take; requests set their own
/// overall timeouts (a status read is short, a model download is not).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no client of a job's aggregator could be built.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorClientError {
    /// The operator's client certificate could not be issued.
    #[error("issuing the operator's client certificate")]
    Certificate(#[source] PkiError),
    /// A PEM document of the job's PKI could not be read.
    #[error("{what} is not valid PEM")]
    Pem {
        /// Which document.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The job's CA cannot be a trust anchor.
    #[error("the job's CA cannot be a trust anchor")]
    TrustAnchor(#[source] rustls::Error),
    /// The aggregator's certificate name is not a DNS name.
    #[error("{0:?} is not a DNS name")]
    ServerName(String),
    /// The server certificate verifier could not be built.
    #[error("building the server certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
    /// rustls refused the configuration (protocol versions, client key).
    #[error("the TLS client configuration is refused")]
    Tls(#[source] rustls::Error),
    /// reqwest refused the client.
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Verifies the aggregator's certificate against the job's CA for the name the certificate
/// carries, whatever host was dialled (see the module doc).
#[derive(Debug)]
struct JobAggregatorVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for JobAggregatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS configuration of a client of the aggregator of job `key` whose CA is `ca`:
/// trusts `ca` only, checks the name [`names::aggregator_tls_name`] of `key`, presents the
/// operator's certificate from `ca`. Ring is the provider: the job PKI is Ed25519.
pub fn tls_config(key: &str, ca: &Ca) -> Result<ClientConfig, AggregatorClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = |what: &'static str| move |source| AggregatorClientError::Pem { what, source };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots
            .add(cert.map_err(pem("the job's CA"))?)
            .map_err(AggregatorClientError::TrustAnchor)?;
    }
    let tls_name = names::aggregator_tls_name(key);
    let name = ServerName::try_from(tls_name.clone())
        .map_err(|_| AggregatorClientError::ServerName(tls_name))?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(AggregatorClientError::Verifier)?;
    let leaf = ca
        .client(OPERATOR_CLIENT_CN)
        .map_err(AggregatorClientError::Certificate)?;
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("the operator's certificate"))?;
    let key_der = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
        .map_err(pem("the operator's key"))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(AggregatorClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(JobAggregatorVerifier { inner, name }))
        .with_client_auth_cert(chain, key_der)
        .map_err(AggregatorClientError::Tls)?;
    // The model manager speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An HTTPS-only client of the aggregator of job `key` (see [`tls_config`]).
pub fn build(key: &str, ca: &Ca) -> Result<reqwest::Client, AggregatorClientError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(key, ca)?)
        // A model URL that says http:// is refused rather than read in the clear.
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(AggregatorClientError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Leaf;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConnection, ServerConfig, ServerConnection};
    use std::net::Ipv4Addr;

    const NOW: i64 = 1_790_000_000;
    const KEY: &str = "covid-xray";

    fn io(e: std::io::Error) -> rustls::Error {
        rustls::Error::Other(rustls::OtherError(Arc::new(e)))
    }

    /// A TLS handshake in memory between the operator's client of job [`KEY`] (CA
    /// `client_ca`), dialling an address no certificate names, and a server presenting
    /// `server` and requiring a client certificate from `server_ca`. Returns the client
    /// certificate the server saw.
    fn handshake(
        client_ca: &Ca,
        server: &Leaf,
        server_ca: &Ca,
    ) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_ca.cert_pem.as_bytes()) {
            roots.add(c.expect("CA PEM"))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("client verifier");
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server PEM");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("key PEM");
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        let client_config = tls_config(KEY, client_ca).expect("client config");
        let dialled = ServerName::IpAddress(Ipv4Addr::new(203, 0, 113, 7).into());
        let mut c = ClientConnection::new(Arc::new(client_config), dialled)?;
        let mut s = ServerConnection::new(Arc::new(server_config))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).map_err(io)?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).map_err(io)?;
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).map_err(io)?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).map_err(io)?;
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(s
                    .peer_certificates()
                    .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default());
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    #[test]
    fn the_aggregator_is_verified_by_its_certificate_name_whatever_address_is_dialled() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        // Only the Service name: no LoadBalancer address, no loopback.
        let server = ca
            .server(&[names::aggregator_tls_name(KEY)])
            .expect("server certificate");
        let presented = handshake(&ca, &server, &ca).expect("handshake");
        // The operator authenticated with its own certificate from the job's CA.
        let operator = ca.client(OPERATOR_CLIENT_CN).expect("operator certificate");
        let want = CertificateDer::from_pem_slice(operator.cert_pem.as_bytes()).expect("PEM");
        assert_eq!(presented, vec![want]);
    }

    #[test]
    fn anything_but_the_jobs_aggregator_certificate_is_refused() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let name = names::aggregator_tls_name(KEY);
        // Another job's aggregator: the same name, certified by another CA.
        let other_ca = Ca::generate("covid/xray", NOW).expect("other CA");
        let other = other_ca
            .server(std::slice::from_ref(&name))
            .expect("server");
        assert!(handshake(&ca, &other, &other_ca).is_err());
        // The job's CA, but for another name.
        let elsewhere = ca
            .server(&[names::aggregator_tls_name("covid-other")])
            .expect("server");
        assert!(handshake(&ca, &elsewhere, &ca).is_err());
        // A participant of the job posing as the aggregator: a client certificate.
        let participant = ca
            .client(&names::participant(KEY, "eu", 0))
            .expect("participant");
        assert!(handshake(&ca, &participant, &ca).is_err());
    }

    #[test]
    fn a_client_is_built_from_a_job_ca() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let config = tls_config(KEY, &ca).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // reqwest takes the configuration (the same rustls as ours).
        build(KEY, &ca).expect("client");
    }
}
