//! A FederatedJob's model store as the aggregator gets it: a volume (a PersistentVolumeClaim
//! in the pod runtime, the job directory in the process runtime) or S3-compatible storage
//! signed with the keys of the Secret `spec.modelStore.s3.credentialsSecretRef` names, and
//! how many versions to keep. Pure: `dereference` reads the Secret, these functions check
//! the reference and take the keys from its data.

use super::job_secret::{self, RefError};
use super::validate::InvalidJob;
use crate::secret_scope::SecretScope;
use fedsky_crds::FederatedJob;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Key of the access key id in the credentials Secret (and the aggregator's variable).
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Key of the secret access key.
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Key of the session token of temporary credentials (optional).
pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The field that names the credentials Secret, for messages.
const FIELD: &str = "spec.modelStore.s3.credentialsSecretRef";
/// The volume size when `spec.modelStore.volume.size` is unset.
const DEFAULT_VOLUME_SIZE: &str = "1Gi";

/// Where an S3 store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Endpoint URL; AWS's for the region when unset.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Key prefix of the job's objects.
    pub prefix: Option<String>,
    /// Signing region; the aggregator's default (`us-east-1`) when unset.
    pub region: Option<String>,
}

/// S3 keys. Their `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// The Secret data the aggregator's pod reads them from (no empty session token).
    pub fn string_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            (ACCESS_KEY_ID.to_string(), self.access_key_id.clone()),
            (
                SECRET_ACCESS_KEY.to_string(),
                self.secret_access_key.clone(),
            ),
        ]);
        if let Some(t) = &self.session_token {
            data.insert(SESSION_TOKEN.to_string(), t.clone());
        }
        data
    }

    /// The aggregator process's environment: every variable set, the session token empty
    /// when there is none (so one the operator itself was started with never leaks in;
    /// the aggregator ignores empty values).
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            (ACCESS_KEY_ID, self.access_key_id.as_str()),
            (SECRET_ACCESS_KEY, self.secret_access_key.as_str()),
            (SESSION_TOKEN, self.session_token.as_deref().unwrap_or("")),
        ]
    }

    /// A short digest that changes with the keys, so the aggregator's pod restarts with
    /// rotated ones (a container reads `env.valueFrom` only when it starts).
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [
            self.access_key_id.as_str(),
            self.secret_access_key.as_str(),
            self.session_token.as_deref().unwrap_or(""),
        ] {
            ctx.update(part.as_bytes());
            ctx.update(&[0]);
        }
        ctx.finish()
            .as_ref()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where model versions go.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    /// A volume next to the aggregator.
    Volume {
        /// Size of the PersistentVolumeClaim.
        size: String,
        /// Its StorageClass; the cluster's default when unset.
        storage_class: Option<String>,
    },
    /// S3-compatible storage.
    S3 {
        /// Bucket, prefix, endpoint, region.
        location: S3Location,
        /// The keys from the credentials Secret.
        credentials: S3Credentials,
    },
}

/// The job's model store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    /// Where.
    pub kind: StoreKind,
    /// `--keep-versions`; `None` keeps every version.
    pub keep_versions: Option<u32>,
}

impl StoreSpec {
    /// The store of an aggregator VM: S3 with its keys, else the VM's own disk (a volume's
    /// size and class do not apply there); `keepVersions` either way.
    pub fn vm(&self) -> fedsky_clouds::initializer::VmStore {
        use fedsky_clouds::Sensitive;
        fedsky_clouds::initializer::VmStore {
            keep_versions: self.keep_versions,
            s3: self.s3().map(|(l, c)| fedsky_clouds::initializer::VmS3 {
                endpoint: l.endpoint.clone(),
                bucket: l.bucket.clone(),
                prefix: l.prefix.clone(),
                region: l.region.clone(),
                access_key_id: Sensitive::new(c.access_key_id.clone()),
                secret_access_key: Sensitive::new(c.secret_access_key.clone()),
                session_token: c.session_token.clone().map(Sensitive::new),
            }),
        }
    }

    /// The S3 location and keys, when the store is S3.
    pub fn s3(&self) -> Option<(&S3Location, &S3Credentials)> {
        match &self.kind {
            StoreKind::S3 {
                location,
                credentials,
            } => Some((location, credentials)),
            StoreKind::Volume { .. } => None,
        }
    }
}

/// Why the S3 credentials cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Not in the job's namespace, not readable, or not text.
    #[error(transparent)]
    Ref(#[from] RefError),
    /// The Secret does not exist.
    #[error("spec.modelStore.s3.credentialsSecretRef: Secret {secret} not found")]
    NotFound {
        /// `namespace/name`.
        secret: String,
    },
    /// A required key is missing or empty.
    #[error(
        "spec.modelStore.s3.credentialsSecretRef: Secret {secret} has no key {key} (or it is empty)"
    )]
    MissingKey {
        /// `namespace/name`.
        secret: String,
        /// The key.
        key: &'static str,
    },
}

/// The name of the credentials Secret to read (in the job's namespace), `None` when the
/// job does not use S3 or names no Secret (which [`store_spec`] then refuses).
pub fn credentials_secret(
    job: &FederatedJob,
    scope: &SecretScope,
) -> Result<Option<String>, CredentialsError> {
    let Some(r) = job
        .spec
        .model_store
        .s3
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let ns = job.namespace().unwrap_or_default();
    Ok(Some(job_secret::secret_name(FIELD, &ns, r, scope)?))
}

/// The keys in the data of Secret `secret` (`namespace/name`, for messages). Surrounding
/// whitespace (a newline from `echo`) is dropped; keys never contain any.
pub fn credentials(
    secret: &str,
    data: &BTreeMap<String, ByteString>,
) -> Result<S3Credentials, CredentialsError> {
    let read = |key| job_secret::text(FIELD, secret, data, key);
    let required = |key: &'static str| {
        read(key)?.ok_or_else(|| CredentialsError::MissingKey {
            secret: secret.to_string(),
            key,
        })
    };
    Ok(S3Credentials {
        access_key_id: required(ACCESS_KEY_ID)?,
        secret_access_key: required(SECRET_ACCESS_KEY)?,
        session_token: read(SESSION_TOKEN)?,
    })
}

/// The job's store; `s3` are the keys read from the credentials Secret (`None` when the
/// job names none).
pub fn store_spec(job: &FederatedJob, s3: Option<S3Credentials>) -> Result<StoreSpec, InvalidJob> {
    let spec = &job.spec.model_store;
    let keep_versions = match spec.keep_versions {
        None => None,
        Some(n) => Some(u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            InvalidJob::Unsupported(format!(
                "spec.modelStore.keepVersions: {n}; keep at least 1 version, or leave it unset to keep all"
            ))
        })?),
    };
    let kind = match (&spec.s3, s3) {
        (Some(store), Some(credentials)) => StoreKind::S3 {
            location: S3Location {
                endpoint: store.endpoint.clone(),
                bucket: store.bucket.clone(),
                prefix: store.prefix.clone().filter(|p| !p.is_empty()),
                region: store.region.clone().filter(|r| !r.is_empty()),
            },
            credentials,
        },
        (Some(_), None) => {
            return Err(InvalidJob::Unsupported(format!(
                "spec.modelStore.s3.credentialsSecretRef is required: the aggregator signs its S3 requests with the keys {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} of that Secret"
            )));
        }
        (None, _) => StoreKind::Volume {
            size: spec
                .volume
                .as_ref()
                .and_then(|v| v.size.as_ref())
                .map_or_else(|| DEFAULT_VOLUME_SIZE.to_string(), |q| q.0.clone()),
            storage_class: spec
                .volume
                .as_ref()
                .and_then(|v| v.storage_class_name.clone()),
        },
    };
    Ok(StoreSpec {
        kind,
        keep_versions,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::controllers::federated_job::validate::tests::example_job;

    /// The example job with `spec.modelStore` set to `store`.
    pub(crate) fn job_with_store(store: serde_json::Value) -> FederatedJob {
        let mut job = example_job();
        job.spec.model_store = serde_json::from_value(store).expect("model store");
        job
    }

    pub(crate) fn keys() -> S3Credentials {
        S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG".into(),
            session_token: None,
        }
    }

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn keys_come_from_the_secret_trimmed_and_the_token_is_optional() {
        let c = credentials(
            "ns/s3",
            &data(&[
                (ACCESS_KEY_ID, b"AKIDEXAMPLE\n"),
                (SECRET_ACCESS_KEY, b"wJalrXUtnFEMI/K7MDENG"),
                (SESSION_TOKEN, b""),
            ]),
        )
        .expect("credentials");
        assert_eq!(c, keys());
        let with_token = credentials(
            "ns/s3",
            &data(&[
                (ACCESS_KEY_ID, b"a"),
                (SECRET_ACCESS_KEY, b"b"),
                (SESSION_TOKEN, b"t"),
            ]),
        )
        .expect("credentials");
        assert_eq!(with_token.session_token.as_deref(), Some("t"));
        assert_eq!(with_token.string_data().len(), 3);
        assert_eq!(c.string_data().len(), 2);
        assert_eq!(c.env()[2], (SESSION_TOKEN, ""));
        assert_ne!(c.fingerprint(), with_token.fingerprint());
        // Nothing secret in logs.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("AKID") && !shown.contains("wJal"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_or_unreadable_key_is_named_with_its_secret() {
        let err = credentials("ns/s3", &data(&[(ACCESS_KEY_ID, b"a")])).expect_err("no secret key");
        assert_eq!(
            err.to_string(),
            "spec.modelStore.s3.credentialsSecretRef: Secret ns/s3 has no key AWS_SECRET_ACCESS_KEY (or it is empty)"
        );
        let err = credentials(
            "ns/s3",
            &data(&[(ACCESS_KEY_ID, b" "), (SECRET_ACCESS_KEY, b"b")]),
        )
        .expect_err("empty id");
        assert!(
            err.to_string().contains("no key AWS_ACCESS_KEY_ID"),
            "{err}"
        );
        let err = credentials(
            "ns/s3",
            &data(&[(ACCESS_KEY_ID, b"a"), (SECRET_ACCESS_KEY, &[0xff, 0xfe])]),
        )
        .expect_err("binary");
        assert!(
            err.to_string()
                .contains("key AWS_SECRET_ACCESS_KEY of Secret ns/s3 is not UTF-8 text"),
            "{err}"
        );
    }

    #[test]
    fn the_secret_must_be_in_the_jobs_namespace_and_readable() {
        let job = |r: serde_json::Value| {
            job_with_store(serde_json::json!({
                "s3": { "bucket": "models", "credentialsSecretRef": r }
            }))
        };
        let scope = SecretScope::new("fedsky-system", ["covid-xray".to_string()]);
        assert_eq!(
            credentials_secret(&job(serde_json::json!({"name": "s3"})), &scope),
            Ok(Some("s3".into()))
        );
        assert_eq!(
            credentials_secret(
                &job(serde_json::json!({"name": "s3", "namespace": "covid-xray"})),
                &scope
            ),
            Ok(Some("s3".into()))
        );
        let err = credentials_secret(
            &job(serde_json::json!({"name": "s3", "namespace": "fedsky-system"})),
            &scope,
        )
        .expect_err("other namespace");
        assert!(
            err.to_string()
                .contains("fedsky-system is not the job's namespace covid-xray"),
            "{err}"
        );
        let err = credentials_secret(
            &job(serde_json::json!({"name": "s3"})),
            &SecretScope::default(),
        )
        .expect_err("not readable");
        assert!(
            err.to_string()
                .contains("Secret covid-xray/s3 is in a namespace"),
            "{err}"
        );
        assert_eq!(credentials_secret(&example_job(), &scope), Ok(None));
    }

    #[test]
    fn the_store_is_a_volume_or_s3_with_keys() {
        let vol = store_spec(&example_job(), None).expect("volume");
        assert_eq!(
            vol.kind,
            StoreKind::Volume {
                size: "1Gi".into(),
                storage_class: None
            }
        );
        assert_eq!(vol.keep_versions, Some(10));
        assert!(vol.s3().is_none());
        let job = job_with_store(serde_json::json!({
            "s3": { "endpoint": "http://127.0.0.1:9000", "bucket": "models", "prefix": "jobs/x",
                    "credentialsSecretRef": { "name": "s3" } },
            "keepVersions": 2
        }));
        let s3 = store_spec(&job, Some(keys())).expect("s3");
        let (loc, creds) = s3.s3().expect("s3");
        assert_eq!(loc.bucket, "models");
        assert_eq!(loc.prefix.as_deref(), Some("jobs/x"));
        assert_eq!(loc.region, None);
        assert_eq!(creds, &keys());
        assert_eq!(s3.keep_versions, Some(2));
        // An aggregator VM gets the same store: the bucket and keys, or its own disk.
        let vm = s3.vm();
        let vm_s3 = vm.s3.expect("vm s3");
        assert_eq!(
            (vm_s3.bucket.as_str(), vm.keep_versions),
            ("models", Some(2))
        );
        assert_eq!(vm_s3.secret_access_key.expose(), keys().secret_access_key);
        assert!(vol.vm().s3.is_none() && vol.vm().keep_versions == Some(10));
        let err = store_spec(&job, None).expect_err("no keys");
        assert!(
            err.to_string()
                .contains("spec.modelStore.s3.credentialsSecretRef is required"),
            "{err}"
        );
        let mut zero = example_job();
        zero.spec.model_store.keep_versions = Some(0);
        let err = store_spec(&zero, None).expect_err("zero");
        assert!(
            err.to_string().contains("spec.modelStore.keepVersions: 0"),
            "{err}"
        );
    }
}
