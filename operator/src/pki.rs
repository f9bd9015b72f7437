//! The per-job PKI that secures participant ↔ aggregator traffic with mutual TLS: one CA
//! per job, the aggregator's server certificate and one client certificate per
//! participant, whose CN is the identity the aggregator knows it by. Pure.
//!
//! Leaf certificates are a function of the CA and the name: the key is derived from the
//! CA key with HMAC-SHA256, Ed25519 signatures are deterministic, the serial is a hash of
//! the public key and the validity is the CA's. Building a job's objects again therefore
//! yields the same bytes, so applying them changes nothing and no certificate churns.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, PublicKeyData,
};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a job's CA (and so every certificate of the job) is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Back-dating of `notBefore`, for clocks a little behind the operator's.
const SKEW: Duration = Duration::from_secs(3600);

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("issuing the {what} certificate: {source}")]
    Issue {
        /// Which certificate.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The stored CA is not a certificate and key that belong together.
    #[error(
        "the job's CA in Secret {secret} cannot be used ({detail}); delete the Secret to issue a new CA, which re-issues every certificate of the job"
    )]
    BadCa {
        /// The hub Secret holding it.
        secret: String,
        /// What is wrong.
        detail: String,
    },
}

/// A job's certificate authority.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    /// Certificate (PEM), given to both sides as the trust anchor.
    pub cert_pem: String,
    key_pem: String,
    /// The CA's subject CN, the issuer of every leaf.
    subject: String,
    /// `notBefore`/`notAfter` of the CA, reused for every leaf.
    not_before: i64,
    not_after: i64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate with its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn issue_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Issue {
        what: what.to_string(),
        source,
    }
}

/// Unix seconds as a certificate time; out-of-range values (far outside any clock) clamp.
fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(if unix < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 8000)
    })
}

impl Ca {
    /// A new CA for the job `reference` (`namespace/name`), valid from `now` for
    /// [`VALIDITY`].
    pub fn generate(reference: &str, now_unix: i64) -> Result<Self, PkiError> {
        let what = "CA";
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(issue_err(what))?;
        let not_before = now_unix.saturating_sub(SKEW.as_secs().cast_signed());
        let not_after = now_unix.saturating_add(VALIDITY.as_secs().cast_signed());
        let subject = format!("fedsky job {reference}");
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue_err(what))?;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, subject.as_str());
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = datetime(not_before);
        params.not_after = datetime(not_after);
        let cert = params.self_signed(&key).map_err(issue_err(what))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            subject,
            not_before,
            not_after,
        })
    }

    /// The CA stored in the hub Secret `secret`.
    pub fn from_pem(cert_pem: &str, key_pem: &str, secret: &str) -> Result<Self, PkiError> {
        let bad = |detail: String| PkiError::BadCa {
            secret: secret.to_string(),
            detail,
        };
        let der = pem_der(cert_pem).ok_or_else(|| bad("ca.crt is not a PEM certificate".into()))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(format!("ca.crt: {e}")))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("ca.key: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(bad("ca.key does not belong to ca.crt".into()));
        }
        let subject = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .ok_or_else(|| bad("ca.crt has no CN".into()))?
            .to_string();
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            subject,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The CA's private key (PEM), for the hub Secret only.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-256 of the CA certificate (DER, hex): what tells one CA from another, for
    /// caching what was built from it.
    pub fn fingerprint(&self) -> String {
        let der = pem_der(&self.cert_pem).unwrap_or_else(|| self.cert_pem.as_bytes().to_vec());
        ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// When the CA and every certificate of the job expire (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The aggregator's server certificate, valid for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[String]) -> Result<Leaf, PkiError> {
        self.leaf(
            "server",
            names.first().map_or("", String::as_str),
            names,
            |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            },
        )
    }

    /// The client certificate of participant `name` (its CN, which the aggregator takes as
    /// its identity).
    pub fn client(&self, name: &str) -> Result<Leaf, PkiError> {
        self.leaf("client", name, &[], |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        })
    }

    fn leaf(
        &self,
        kind: &str,
        cn: &str,
        sans: &[String],
        usage: impl FnOnce(&mut CertificateParams),
    ) -> Result<Leaf, PkiError> {
        let what = format!("{kind} {cn}");
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(issue_err(&what))?;
        // The issuer as the CA was made: its name and key usages (see `generate`).
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, self.subject.as_str());
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = Issuer::new(ca_params, &ca_key);
        let key = derived_key(&ca_key, kind, cn).map_err(issue_err(&what))?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(issue_err(&what))?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = datetime(self.not_before);
        params.not_after = datetime(self.not_after);
        params.use_authority_key_identifier_extension = true;
        usage(&mut params);
        let cert = params.signed_by(&key, &issuer).map_err(issue_err(&what))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// An Ed25519 key whose seed is HMAC-SHA256(CA key, kind ‖ name): the same name gets the
/// same key, and nobody without the CA key can compute it.
fn derived_key(ca_key: &KeyPair, kind: &str, name: &str) -> Result<KeyPair, rcgen::Error> {
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &ca_key.serialize_der());
    let mut msg = b"fedsky leaf key v1\0".to_vec();
    msg.extend_from_slice(kind.as_bytes());
    msg.push(0);
    msg.extend_from_slice(name.as_bytes());
    let seed = ring::hmac::sign(&mac_key, &msg);
    // PKCS#8 v1 of an Ed25519 private key (RFC 8410): a fixed prefix and the 32-byte seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed.as_ref());
    KeyPair::try_from(der)
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    const NOW: i64 = 1_790_000_000;

    fn parsed(pem: &str) -> Vec<u8> {
        pem_der(pem).expect("PEM")
    }

    #[test]
    fn leaves_are_signed_by_the_ca_and_name_their_holder() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let ca_der = parsed(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("CA parses");
        let names = vec!["agg.fedsky-system.svc".to_string(), "127.0.0.1".to_string()];
        let server = ca.server(&names).expect("server");
        let client = ca.client("xray-hospital-a-0").expect("client");
        for (leaf, cn) in [
            (&server, "agg.fedsky-system.svc"),
            (&client, "xray-hospital-a-0"),
        ] {
            let der = parsed(&leaf.cert_pem);
            let (_, cert) = X509Certificate::from_der(&der).expect("leaf parses");
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ED25519,
                &ca_cert.public_key().subject_public_key.data,
            )
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .expect("signed by the job's CA");
            assert_eq!(cert.issuer(), ca_cert.subject());
            let got = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok());
            assert_eq!(got, Some(cn));
            assert_eq!(cert.validity().not_after.timestamp(), ca.not_after());
        }
        let der = parsed(&server.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("server parses");
        let sans = cert
            .subject_alternative_name()
            .expect("SAN ext")
            .expect("has SANs");
        let dns: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(dns[0], "agg.fedsky-system.svc");
        assert_eq!(dns[1], "[127, 0, 0, 1]");
    }

    #[test]
    fn the_same_name_gets_the_same_bytes_and_other_names_other_keys() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        assert_eq!(ca.client("a").expect("a"), ca.client("a").expect("a again"));
        assert_ne!(
            ca.client("a").expect("a").key_pem,
            ca.client("b").expect("b").key_pem
        );
        // A server and a client of the same name do not share a key.
        assert_ne!(
            ca.client("a").expect("client").key_pem,
            ca.server(&["a".into()]).expect("server").key_pem
        );
        // Another job's CA derives other keys for the same name.
        let other = Ca::generate("covid/xray", NOW).expect("other CA");
        assert_ne!(
            ca.client("a").expect("a").key_pem,
            other.client("a").expect("a").key_pem
        );
    }

    #[test]
    fn a_stored_ca_reads_back_and_a_mismatched_key_is_refused() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let back = Ca::from_pem(&ca.cert_pem, ca.key_pem(), "covid/xray-fedsky-ca").expect("reads");
        assert_eq!(back, ca);
        assert_eq!(back.client("p").expect("p"), ca.client("p").expect("p"));
        let other = Ca::generate("covid/xray", NOW).expect("other");
        let err = Ca::from_pem(&ca.cert_pem, other.key_pem(), "covid/xray-fedsky-ca")
            .expect_err("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
        let err = Ca::from_pem("junk", ca.key_pem(), "covid/xray-fedsky-ca").expect_err("junk");
        assert!(err.to_string().contains("covid/xray-fedsky-ca"), "{err}");
    }

    #[test]
    fn fingerprints_tell_cas_apart_and_survive_a_round_trip() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let fp = ca.fingerprint();
        assert_eq!(fp.len(), 64);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
        let back = Ca::from_pem(&ca.cert_pem, ca.key_pem(), "s").expect("reads");
        assert_eq!(back.fingerprint(), fp);
        let other = Ca::generate("covid/xray", NOW).expect("other");
        assert_ne!(other.fingerprint(), fp);
    }

    #[test]
    fn keys_never_appear_in_debug_output() {
        let ca = Ca::generate("covid/xray", NOW).expect("CA");
        let leaf = ca.client("p").expect("p");
        for text in [format!("{ca:?}"), format!("{leaf:?}")] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
            assert!(text.contains("<redacted>"));
        }
    }
}
