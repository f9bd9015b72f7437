//! Participant identity from its mTLS client certificate.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::round::ParticipantId;

/// Why no identity could be derived.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The peer presented no certificate.
    #[error("no client certificate was presented; the aggregator requires mTLS")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the client certificate cannot be parsed")]
    Parse(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Neither a CN nor a DNS/URI SAN.
    #[error("the client certificate names no participant (no CN and no DNS or URI SAN)")]
    NoName,
    /// A name with characters that cannot be an id.
    #[error(
        "participant name {0:?} is not valid: use 1-253 of letters, digits, '.', '_', ':', '@' and '-'"
    )]
    InvalidName(String),
    /// Plaintext mode and no `fedsky-participant` metadata.
    #[error("no fedsky-participant metadata (required in --insecure-plaintext mode)")]
    NoMetadata,
}

/// Checks that `name` can be used as a participant id (it appears in
/// metrics, logs and store records).
pub fn validate_id(name: &str) -> Result<ParticipantId, IdentityError> {
    let ok = (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    if ok {
        Ok(ParticipantId(name.to_string()))
    } else {
        Err(IdentityError::InvalidName(name.to_string()))
    }
}

/// The participant named by a DER certificate: its subject CN, else its
/// first DNS or URI subject alternative name.
pub fn participant_from_der(der: &[u8]) -> Result<ParticipantId, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(Box::new(e)))?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return validate_id(cn);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Parse(Box::new(e)))?;
    let name = san.and_then(|ext| {
        ext.value.general_names.iter().find_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) => Some(s.to_string()),
            _ => None,
        })
    });
    name.ok_or(IdentityError::NoName)
        .and_then(|n| validate_id(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, san: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(san.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn cn_first_then_san() {
        let id = participant_from_der(&cert(Some("hospital-eu"), &["x.example"])).expect("cn");
        assert_eq!(id.0, "hospital-eu");
        let id = participant_from_der(&cert(None, &["hospital-us.fl"])).expect("san");
        assert_eq!(id.0, "hospital-us.fl");
        assert!(matches!(
            participant_from_der(&cert(Some("bad name"), &[])),
            Err(IdentityError::InvalidName(_))
        ));
        assert!(matches!(
            participant_from_der(b"not a cert"),
            Err(IdentityError::Parse(_))
        ));
    }
}
