//! OpenStack credentials: a Keystone v3 application credential, as `openstack
//! application credential create` prints it and `clouds.yaml` names it.
//!
//! Keys: `OS_AUTH_URL`, `OS_APPLICATION_CREDENTIAL_ID`, `OS_APPLICATION_CREDENTIAL_SECRET`;
//! optional `OS_REGION_NAME`, `OS_INTERFACE` (`public` by default) and `OS_CACERT` (PEM of
//! a private CA that signs the cloud's endpoints).

use super::{CredentialsError, Fields};
use crate::secret::Sensitive;

/// A Keystone v3 application credential.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenStackCredentials {
    /// Keystone's v3 base URL, always ending in `/v3`.
    pub auth_url: String,
    /// Application credential id.
    pub application_credential_id: String,
    /// Application credential secret.
    pub application_credential_secret: Sensitive,
    /// Region of the endpoints to use from the catalog.
    pub region: Option<String>,
    /// Endpoint interface from the catalog: `public`, `internal` or `admin`.
    pub interface: String,
    /// Extra CA certificate (PEM) to trust.
    pub ca_cert: Option<String>,
}

const HINT: &str = "create one with `openstack application credential create fedsky` and copy \
     OS_AUTH_URL, OS_APPLICATION_CREDENTIAL_ID and OS_APPLICATION_CREDENTIAL_SECRET";

pub(crate) fn parse(f: &Fields<'_>) -> Result<OpenStackCredentials, CredentialsError> {
    if f.text("OS_AUTH_URL")?.is_none() {
        return Err(CredentialsError::MissingKey {
            cloud: f.cloud,
            key: "OS_AUTH_URL",
            hint: HINT,
        });
    }
    let base = f.url("OS_AUTH_URL")?.unwrap_or_default();
    let auth_url = if base.ends_with("/v3") {
        base
    } else {
        format!("{base}/v3")
    };
    let interface = f
        .text("OS_INTERFACE")?
        .unwrap_or_else(|| "public".to_string());
    if !matches!(interface.as_str(), "public" | "internal" | "admin") {
        return Err(f.invalid("OS_INTERFACE", "expected public, internal or admin"));
    }
    let ca_cert = f.text("OS_CACERT")?;
    if let Some(pem) = &ca_cert
        && !pem.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(f.invalid("OS_CACERT", "expected a PEM certificate"));
    }
    Ok(OpenStackCredentials {
        auth_url,
        application_credential_id: f.required("OS_APPLICATION_CREDENTIAL_ID", HINT)?,
        application_credential_secret: Sensitive::new(
            f.required("OS_APPLICATION_CREDENTIAL_SECRET", HINT)?,
        ),
        region: f.text("OS_REGION_NAME")?,
        interface,
        ca_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::data;
    use super::super::{Credentials, parse};
    use super::*;
    use crate::Cloud;

    fn os(pairs: &[(&str, &str)]) -> Result<OpenStackCredentials, CredentialsError> {
        match parse(Cloud::OpenStack, &data(pairs))? {
            Credentials::OpenStack(o) => Ok(o),
            other => panic!("not OpenStack: {other:?}"),
        }
    }

    #[test]
    fn application_credential_with_normalised_auth_url() {
        for url in [
            "https://keystone.example:5000",
            "https://keystone.example:5000/",
            "https://keystone.example:5000/v3/",
        ] {
            let c = os(&[
                ("OS_AUTH_URL", url),
                ("OS_APPLICATION_CREDENTIAL_ID", "21dced0f"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "s3cr3t"),
                ("OS_REGION_NAME", "RegionOne"),
            ])
            .expect("parses");
            assert_eq!(c.auth_url, "https://keystone.example:5000/v3");
            assert_eq!(c.region.as_deref(), Some("RegionOne"));
            assert_eq!(c.interface, "public");
            assert!(!format!("{c:?}").contains("s3cr3t"));
        }
    }

    #[test]
    fn missing_keys_are_named() {
        let e = os(&[]).expect_err("empty");
        assert!(e.to_string().contains("`OS_AUTH_URL`"), "{e}");
        let e = os(&[
            ("OS_AUTH_URL", "https://k:5000"),
            ("OS_APPLICATION_CREDENTIAL_ID", "id"),
        ])
        .expect_err("no secret");
        assert!(
            e.to_string().contains("`OS_APPLICATION_CREDENTIAL_SECRET`"),
            "{e}"
        );
        let e = os(&[
            ("OS_AUTH_URL", "https://k:5000"),
            ("OS_APPLICATION_CREDENTIAL_ID", "id"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
            ("OS_INTERFACE", "private"),
        ])
        .expect_err("interface");
        assert!(e.to_string().contains("`OS_INTERFACE`"), "{e}");
    }
}
