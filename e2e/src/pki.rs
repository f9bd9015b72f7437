//! Per-run certificates: a CA, the API server's serving certificate, the
//! service-account signing key, and client certificates for node components.

use crate::error::{Error, io};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// Files written by [`Pki::generate`].
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub ca_pem: String,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    ca_key_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// The request-header CA and the client certificate the API server presents when it
    /// proxies to aggregated APIs (the operator's model API): a CA of its own, so that no
    /// user certificate can pass for the API server.
    pub front_proxy_ca: PathBuf,
    pub front_proxy_cert: PathBuf,
    pub front_proxy_key: PathBuf,
}

/// CN of the API server's front-proxy client certificate (`--requestheader-allowed-names`).
pub(crate) const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

impl Pki {
    /// `extra_names`: more names or IP addresses the API server answers on (the lab
    /// network's gateway and the `kubernetes` Service's cluster IP when nodes dial it).
    pub(crate) fn generate(dir: &Path, extra_names: &[String]) -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        names.extend_from_slice(extra_names);
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        let fp_params = named_ca_params("fedsky-e2e-front-proxy-ca")?;
        let fp_key = KeyPair::generate()?;
        let fp_ca = fp_params.self_signed(&fp_key)?;
        let fp_issuer = Issuer::new(fp_params, fp_key);
        let fp_client_key = KeyPair::generate()?;
        let mut fp_client = CertificateParams::new(Vec::<String>::new())?;
        fp_client
            .distinguished_name
            .push(DnType::CommonName, FRONT_PROXY_CLIENT);
        fp_client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let fp_client = fp_client.signed_by(&fp_client_key, &fp_issuer)?;

        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(io("write", &path))?;
            Ok(path)
        };
        Ok(Self {
            ca_cert: write("ca.crt", &ca_pem)?,
            ca_key: write("ca.key", &ca_key_pem)?,
            ca_key_pem,
            serving_cert: write("apiserver.crt", &serving_cert.pem())?,
            serving_key: write("apiserver.key", &serving_key.serialize_pem())?,
            sa_key: write("sa.key", &sa_key.serialize_pem())?,
            sa_pub: write("sa.pub", &sa_key.public_key_pem())?,
            front_proxy_ca: write("front-proxy-ca.crt", &fp_ca.pem())?,
            front_proxy_cert: write("front-proxy-client.crt", &fp_client.pem())?,
            front_proxy_key: write("front-proxy-client.key", &fp_client_key.serialize_pem())?,
            ca_pem,
        })
    }

    /// A client certificate and key (PEM) signed by the CA: the API server takes `cn` as
    /// the user name and `group` as its group (for example `system:node:<name>` in
    /// `system:nodes`, which the Node authorizer and the node RBAC roles recognise). One
    /// group only: rcgen keeps one value per subject attribute.
    pub(crate) fn client(&self, cn: &str, group: Option<&str>) -> Result<(String, String), Error> {
        let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&self.ca_key_pem)?);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(g) = group {
            params.distinguished_name.push(DnType::OrganizationName, g);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The CA's parameters; signing needs the same subject again, so it is built in one place.
fn ca_params() -> Result<CertificateParams, Error> {
    named_ca_params("fedsky-e2e-ca")
}

fn named_ca_params(cn: &str) -> Result<CertificateParams, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}
