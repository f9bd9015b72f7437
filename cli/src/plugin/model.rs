//! `kubectl fedsky model list|download`: the client of the operator's model API, an
//! aggregated API (`models.fedsky.dev/v1alpha1`) behind the hub's API server. Requests go
//! through the API server with the user's own credentials, so `get` on `models` and
//! `models/content` in the job's namespace is what authorises a download; the plugin
//! never holds a secret of its own.
//!
//! A download streams to `FILE.tmp` while hashing, checks the sha256 against the
//! response's `X-Fedsky-Model-Sha256` (and against the job's `status.latestModel` when
//! that is the same version), and only then renames it to `FILE`: a failed or
//! interrupted download leaves nothing under `FILE`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fedsky_crds::federated_job::ModelVersion;
use http_body_util::BodyExt;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cluster::{self, Cluster, Refusal, get_raw, temp_path, valid_name};
use super::error::{Access, PluginError, VerifyError};
use super::text::{num, table};

/// API group of the model API.
pub const GROUP: &str = "models.fedsky.dev";
/// Its version.
pub const VERSION: &str = "v1alpha1";
/// Header naming the version a content response carries.
pub const VERSION_HEADER: &str = "x-fedsky-model-version";
/// Header with the sha256 (hex) of a content response's bytes.
pub const SHA256_HEADER: &str = "x-fedsky-model-sha256";

/// `GET .../models/{job}`: the versions the operator archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelList {
    /// The job's namespace.
    pub namespace: String,
    /// The job.
    pub job: String,
    /// Archived versions, ascending.
    #[serde(default)]
    pub versions: Vec<ModelEntry>,
}

/// One archived version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// Version number.
    pub version: i64,
    /// sha256 of the safetensors file (hex).
    pub sha256: String,
    /// Size of the file.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Round that produced it.
    #[serde(default)]
    pub round: Option<i64>,
    /// Metrics by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// The path of a job's model resource.
pub fn models_path(namespace: &str, job: &str) -> String {
    format!("/apis/{GROUP}/{VERSION}/namespaces/{namespace}/models/{job}")
}

/// The path (and query) of a job's model bytes: the latest, or `version`.
pub fn content_path(namespace: &str, job: &str, version: Option<u32>) -> String {
    let base = format!("{}/content", models_path(namespace, job));
    match version {
        Some(v) => format!("{base}?version={v}"),
        None => base,
    }
}

fn access(resource: &'static str, namespace: &str, job: &str) -> Access {
    Access {
        verb: "get",
        group: GROUP,
        resource,
        namespace: namespace.into(),
        name: job.into(),
    }
}

/// Names what the API server (or the model API behind it) refused.
fn refusal_error(
    access: Access,
    version: Option<u32>,
    Refusal { code, message }: Refusal,
) -> PluginError {
    match code {
        401 => PluginError::Unauthorized { access, message },
        403 => PluginError::Forbidden { access, message },
        404 => PluginError::NoRetainedModel {
            job: access.name.into(),
            namespace: access.namespace.into(),
            version,
            message,
        },
        503 => PluginError::ModelApiUnavailable { message },
        code => PluginError::Http {
            access,
            code,
            message,
        },
    }
}

/// `model list JOB`.
pub async fn list(cluster: &Cluster, job: &str) -> Result<ModelList, PluginError> {
    let job = valid_name("name", job)?;
    let access = access("models", &cluster.namespace, job);
    let response = match get_raw(
        cluster,
        &models_path(&cluster.namespace, job),
        "application/json",
        &access,
    )
    .await?
    {
        Ok(r) => r,
        Err(refusal) => return Err(refusal_error(access, None, refusal)),
    };
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| PluginError::Transport {
            access: access.clone(),
            source: Box::new(e),
        })?;
    serde_json::from_slice(&body).map_err(|source| PluginError::Decode { access, source })
}

/// The `model list` table.
pub fn render_list(list: &ModelList) -> String {
    if list.versions.is_empty() {
        return format!(
            "no retained model versions for {}/{}\n",
            list.namespace, list.job
        );
    }
    let rows: Vec<Vec<String>> = list
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.round.map_or("-".into(), |r| r.to_string()),
                v.size_bytes.map_or("-".into(), |s| s.to_string()),
                v.sha256.clone(),
                if v.metrics.is_empty() {
                    "-".into()
                } else {
                    v.metrics
                        .iter()
                        .map(|(k, m)| format!("{k}={}", num(Some(*m), 4)))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    table(&["VERSION", "ROUND", "BYTES", "SHA256", "METRICS"], &rows)
}

/// What the model API announced for the bytes it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// `X-Fedsky-Model-Version`.
    pub version: i64,
    /// `X-Fedsky-Model-Sha256`, lowercase hex.
    pub sha256: String,
}

/// What the job's status says about the model, for the cross-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRecord {
    /// The job's `status.latestModel`.
    Latest {
        /// `namespace/name` of the job.
        job: String,
        /// Its version.
        version: i64,
        /// Its sha256.
        sha256: String,
    },
    /// The job exists but has recorded no model.
    NoModel,
    /// The job is gone (its model outlived it in the archive).
    Gone,
    /// The job could not be read; why.
    Unreadable(String),
}

impl JobRecord {
    fn from_status(job: &str, latest: Option<&ModelVersion>) -> Self {
        match latest {
            Some(m) => Self::Latest {
                job: job.to_string(),
                version: i64::from(m.version),
                sha256: m.sha256.to_ascii_lowercase(),
            },
            None => Self::NoModel,
        }
    }
}

/// Checks a download: `computed` (the bytes' sha256) must equal what the model API
/// announced, and when the job's status records the same version, its sha256 too. Pure,
/// so every mismatch is tested without a server.
pub fn verify(
    computed: &str,
    announced: &Announced,
    record: &JobRecord,
) -> Result<(), VerifyError> {
    check_record(announced, record)?;
    if !computed.eq_ignore_ascii_case(&announced.sha256) {
        return Err(VerifyError::Announced {
            version: announced.version,
            computed: computed.to_ascii_lowercase(),
            announced: announced.sha256.clone(),
        });
    }
    Ok(())
}

/// The announced sha256 against the job's record of the same version: checked before the
/// body is read, so a wrong archive is not downloaded at all.
fn check_record(announced: &Announced, record: &JobRecord) -> Result<(), VerifyError> {
    match record {
        JobRecord::Latest {
            job,
            version,
            sha256,
        } if *version == announced.version && !sha256.eq_ignore_ascii_case(&announced.sha256) => {
            Err(VerifyError::Recorded {
                job: job.clone(),
                version: *version,
                served: announced.sha256.clone(),
                recorded: sha256.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// What `verify` compared, in words for the report.
pub fn checked_against(announced: &Announced, record: &JobRecord) -> String {
    match record {
        JobRecord::Latest { job, version, .. } if *version == announced.version => format!(
            "matches the model API's X-Fedsky-Model-Sha256 and FederatedJob {job}'s \
             status.latestModel"
        ),
        JobRecord::Latest { job, version, .. } => format!(
            "matches the model API's X-Fedsky-Model-Sha256 (FederatedJob {job}'s latest \
             model is version {version}, so its status does not record this one)"
        ),
        JobRecord::NoModel => {
            "matches the model API's X-Fedsky-Model-Sha256 (the job records no model)".into()
        }
        JobRecord::Gone => "matches the model API's X-Fedsky-Model-Sha256 (the job no longer \
                            exists; the model was retained after it)"
            .into(),
        JobRecord::Unreadable(why) => format!(
            "matches the model API's X-Fedsky-Model-Sha256 (not checked against the job's \
             status: {why})"
        ),
    }
}

/// Reads the two headers; a missing or malformed one fails, since then nothing could be
/// verified.
pub fn announced(headers: &http::HeaderMap) -> Result<Announced, PluginError> {
    let text = |name: &'static str| -> Result<String, PluginError> {
        match headers.get(name) {
            None => Err(PluginError::BadHeader {
                header: header_name(name),
                found: "absent".into(),
            }),
            Some(v) => {
                v.to_str()
                    .map(|s| s.trim().to_string())
                    .map_err(|_| PluginError::BadHeader {
                        header: header_name(name),
                        found: "not text".into(),
                    })
            }
        }
    };
    let version_text = text(VERSION_HEADER)?;
    let version = version_text
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| PluginError::BadHeader {
            header: header_name(VERSION_HEADER),
            found: format!("`{version_text}`"),
        })?;
    let sha256 = text(SHA256_HEADER)?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PluginError::BadHeader {
            header: header_name(SHA256_HEADER),
            found: format!("`{sha256}`, not 64 hex digits"),
        });
    }
    Ok(Announced { version, sha256 })
}

/// The header as the contract spells it, for messages.
fn header_name(lower: &'static str) -> &'static str {
    match lower {
        VERSION_HEADER => "X-Fedsky-Model-Version",
        SHA256_HEADER => "X-Fedsky-Model-Sha256",
        other => other,
    }
}

/// A finished, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Where it was written.
    pub path: PathBuf,
    /// Its version.
    pub version: i64,
    /// Its sha256 (hex).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// What its sha256 was compared with.
    pub checked: String,
}

/// The download's report.
pub fn render_downloaded(job: &str, d: &Downloaded) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {job} version {} written to {}",
        d.version,
        d.path.display()
    );
    let _ = writeln!(out, "  sha256 {} ({})", d.sha256, d.checked);
    let _ = writeln!(out, "  size   {} bytes{}", d.size, human_size(d.size));
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    unit.map_or(String::new(), |u| format!(" ({v:.1} {u})"))
}

/// Removes the temporary file unless the download was verified and renamed, whichever
/// way the download ends (an error, a panic, or Ctrl-C dropping the future).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `model download JOB [--version N] -o FILE`.
pub async fn download(
    cluster: &Cluster,
    job: &str,
    version: Option<u32>,
    output: &Path,
) -> Result<Downloaded, PluginError> {
    let job = valid_name("name", job)?;
    let namespace = cluster.namespace.as_str();
    // The job's record first: reading it is cheap, and a mismatch is then caught from
    // the response's headers before any of a large body is read.
    let record = match cluster::get_job(cluster, job).await {
        Ok(fj) => JobRecord::from_status(
            &format!("{namespace}/{}", fj.name_any()),
            fj.status.as_ref().and_then(|s| s.latest_model.as_ref()),
        ),
        Err(PluginError::NotFound { .. }) => JobRecord::Gone,
        // Reading models and reading jobs are separate grants; the download goes on.
        Err(PluginError::Forbidden { .. }) => {
            JobRecord::Unreadable("you may not get federatedjobs in this namespace".into())
        }
        Err(e) => JobRecord::Unreadable(e.to_string()),
    };
    let access = access("models/content", namespace, job);
    let response = match get_raw(
        cluster,
        &content_path(namespace, job, version),
        "application/octet-stream, application/json",
        &access,
    )
    .await?
    {
        Ok(r) => r,
        Err(refusal) => return Err(refusal_error(access, version, refusal)),
    };
    let announced = announced(response.headers())?;
    if let Some(asked) = version
        && i64::from(asked) != announced.version
    {
        return Err(PluginError::VersionMismatch {
            asked,
            served: announced.version,
        });
    }
    check_record(&announced, &record)?;
    let expected_len = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());

    let tmp = TempFile {
        path: temp_path(output),
        keep: false,
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PluginError::Io {
            action,
            path,
            source,
        }
    };
    // Plain blocking writes: the plugin runs one download on a current-thread runtime,
    // so nothing else waits on this thread, and tokio's async writes would only add a
    // copy per chunk.
    let mut file = std::fs::File::create(&tmp.path).map_err(io("create", &tmp.path))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PluginError::Transport {
            access: access.clone(),
            source: Box::new(e),
        })?;
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            file.write_all(&data).map_err(io("write", &tmp.path))?;
            size += data.len() as u64;
        }
    }
    if let Some(expected) = expected_len
        && expected != size
    {
        return Err(PluginError::Truncated {
            version: announced.version,
            received: size,
            expected,
        });
    }
    // On disk before the rename makes it visible under its final name.
    file.sync_all().map_err(io("sync", &tmp.path))?;
    drop(file);
    let computed = hex::encode(hasher.finalize());
    verify(&computed, &announced, &record)?;
    std::fs::rename(&tmp.path, output).map_err(io("rename the download to", output))?;
    let mut tmp = tmp;
    tmp.keep = true;
    Ok(Downloaded {
        path: output.to_path_buf(),
        version: announced.version,
        checked: checked_against(&announced, &record),
        sha256: computed,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const SHA_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn announced_a(version: i64) -> Announced {
        Announced {
            version,
            sha256: SHA_A.into(),
        }
    }

    fn latest(version: i64, sha256: &str) -> JobRecord {
        JobRecord::Latest {
            job: "ns/j".into(),
            version,
            sha256: sha256.into(),
        }
    }

    #[test]
    fn paths_follow_the_contract() {
        assert_eq!(
            content_path("ns", "j", None),
            "/apis/models.fedsky.dev/v1alpha1/namespaces/ns/models/j/content"
        );
        assert_eq!(
            content_path("ns", "j", Some(3)),
            "/apis/models.fedsky.dev/v1alpha1/namespaces/ns/models/j/content?version=3"
        );
    }

    #[test]
    fn verify_accepts_matching_hashes_in_any_case() {
        assert_eq!(verify(SHA_A, &announced_a(3), &latest(3, SHA_A)), Ok(()));
        assert_eq!(
            verify(&SHA_A.to_uppercase(), &announced_a(3), &JobRecord::Gone),
            Ok(())
        );
        // Another version in the status proves nothing about this one.
        assert_eq!(verify(SHA_A, &announced_a(3), &latest(4, SHA_B)), Ok(()));
    }

    #[test]
    fn verify_rejects_bytes_that_are_not_what_was_announced() {
        let e = verify(SHA_B, &announced_a(3), &JobRecord::NoModel).expect_err("mismatch");
        assert!(
            matches!(e, VerifyError::Announced { version: 3, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("the download hashes to 60303ae2"),
            "{e}"
        );
    }

    #[test]
    fn verify_rejects_an_archive_that_differs_from_the_jobs_record() {
        let e = verify(SHA_A, &announced_a(3), &latest(3, SHA_B)).expect_err("mismatch");
        assert_eq!(
            e,
            VerifyError::Recorded {
                job: "ns/j".into(),
                version: 3,
                served: SHA_A.into(),
                recorded: SHA_B.into(),
            }
        );
    }

    #[test]
    fn headers_must_carry_a_version_and_a_sha256() {
        let mut h = http::HeaderMap::new();
        assert!(matches!(
            announced(&h),
            Err(PluginError::BadHeader {
                header: "X-Fedsky-Model-Version",
                ..
            })
        ));
        h.insert(
            "X-Fedsky-Model-Version",
            http::HeaderValue::from_static("7"),
        );
        h.insert(
            "X-Fedsky-Model-Sha256",
            http::HeaderValue::from_static("abc"),
        );
        let e = announced(&h).expect_err("short sha");
        assert!(e.to_string().contains("not 64 hex digits"), "{e}");
        h.insert(
            "X-Fedsky-Model-Sha256",
            http::HeaderValue::from_str(&SHA_A.to_uppercase()).expect("header"),
        );
        assert_eq!(announced(&h).expect("headers"), announced_a(7));
    }

    #[test]
    fn list_parses_the_contract_and_renders_a_table() {
        let list: ModelList = serde_json::from_str(
            r#"{"namespace": "ns", "job": "j", "versions": [
                {"version": 3, "sha256": "aa", "sizeBytes": 1234, "round": 3, "metrics": {"eval_accuracy": 0.9}},
                {"version": 4, "sha256": "bb"}]}"#,
        )
        .expect("list");
        assert_eq!(list.versions[0].size_bytes, Some(1234));
        assert_eq!(
            render_list(&list),
            "VERSION  ROUND  BYTES  SHA256  METRICS\n      3      3   1234  aa      eval_accuracy=0.9000\n      4      -      -  bb      -\n"
        );
    }

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_size(512), "");
        assert_eq!(human_size(1536), " (1.5 KiB)");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), " (3.0 GiB)");
    }

    /// A one-route HTTP/1.1 server on loopback: every request gets `respond(path)`,
    /// then the connection closes. Enough to drive the real client through a download.
    mod server {
        use std::io::{BufRead, BufReader, Write};
        use std::net::TcpListener;

        pub struct Reply {
            pub status: &'static str,
            pub headers: Vec<(String, String)>,
            pub body: Vec<u8>,
        }

        pub fn start(respond: impl Fn(&str) -> Reply + Send + 'static) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        continue;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .to_string();
                    let reply = respond(&path);
                    let mut head = format!(
                        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&reply.body);
                }
            });
            format!("http://{addr}")
        }
    }

    const MODEL: &[u8] = b"safetensors bytes of version 7";

    fn model_sha() -> String {
        hex::encode(Sha256::digest(MODEL))
    }

    /// The model API and the job's record as a test server serves them; `header_sha` is
    /// what the model API announces, `status_sha` what the job recorded for version 7.
    fn serve(header_sha: String, status_sha: Option<String>) -> String {
        server::start(move |path| {
            if path.starts_with("/apis/fl.fedsky.dev/") {
                return match &status_sha {
                    Some(sha) => {
                        let mut job = crate::plugin::status::tests::job_json("ns");
                        job["status"] = serde_json::json!({
                            "latestModel": { "version": 7, "uri": "", "sha256": sha }
                        });
                        server::Reply {
                            status: "200 OK",
                            headers: vec![("Content-Type".into(), "application/json".into())],
                            body: job.to_string().into_bytes(),
                        }
                    }
                    None => server::Reply {
                        status: "404 Not Found",
                        headers: vec![("Content-Type".into(), "application/json".into())],
                        body: br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"federatedjobs.fl.fedsky.dev \"covid-xray\" not found","reason":"NotFound","details":{"name":"covid-xray","group":"fl.fedsky.dev","kind":"federatedjobs"},"code":404}"#.to_vec(),
                    },
                };
            }
            // Any version is answered with 7, so a test can ask for another one.
            assert!(
                path.starts_with(
                    "/apis/models.fedsky.dev/v1alpha1/namespaces/ns/models/covid-xray/content"
                ),
                "{path}"
            );
            server::Reply {
                status: "200 OK",
                headers: vec![
                    ("Content-Type".into(), "application/octet-stream".into()),
                    ("X-Fedsky-Model-Version".into(), "7".into()),
                    ("X-Fedsky-Model-Sha256".into(), header_sha.clone()),
                ],
                body: MODEL.to_vec(),
            }
        })
    }

    /// `download` through a client of the test server at `url` (a kube client must be
    /// built inside the runtime it runs on).
    fn download_from(
        url: &str,
        version: Option<u32>,
        out: &Path,
    ) -> Result<Downloaded, PluginError> {
        let config = kube::Config::new(url.parse().expect("url"));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let cluster = Cluster {
                    client: kube::Client::try_from(config).expect("client"),
                    namespace: "ns".into(),
                };
                download(&cluster, "covid-xray", version, out).await
            })
    }

    #[test]
    fn download_streams_verifies_and_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("model.safetensors");
        let url = serve(model_sha(), Some(model_sha()));
        let d = download_from(&url, None, &out).expect("download");
        assert_eq!(std::fs::read(&out).expect("file"), MODEL);
        assert_eq!(d.version, 7);
        assert_eq!(d.size, MODEL.len() as u64);
        assert_eq!(d.sha256, model_sha());
        assert!(d.checked.contains("status.latestModel"), "{}", d.checked);
        assert!(!temp_path(&out).exists());
        let text = render_downloaded("covid-xray", &d);
        assert!(
            text.contains("model covid-xray version 7 written to"),
            "{text}"
        );
    }

    #[test]
    fn a_corrupted_download_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("model.safetensors");
        // The job is gone: only the header can be checked, and the bytes do not match it.
        let url = serve("ab".repeat(32), None);
        let e = download_from(&url, None, &out).expect_err("mismatch");
        assert!(
            matches!(
                e,
                PluginError::Verify(VerifyError::Announced { version: 7, .. })
            ),
            "{e}"
        );
        assert!(!out.exists());
        assert!(!temp_path(&out).exists(), "temp file left behind");
    }

    #[test]
    fn an_archive_unlike_the_jobs_record_is_refused_before_download() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("model.safetensors");
        let url = serve(model_sha(), Some("cd".repeat(32)));
        let e = download_from(&url, None, &out).expect_err("mismatch");
        assert!(
            matches!(
                e,
                PluginError::Verify(VerifyError::Recorded { version: 7, .. })
            ),
            "{e}"
        );
        assert!(!out.exists());
        assert!(!temp_path(&out).exists());
    }

    #[test]
    fn a_version_other_than_asked_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("model.safetensors");
        let url = serve(model_sha(), None);
        let e = download_from(&url, Some(3), &out).expect_err("other version");
        assert!(
            matches!(
                e,
                PluginError::VersionMismatch {
                    asked: 3,
                    served: 7
                }
            ),
            "{e}"
        );
        assert!(!out.exists());
        assert!(!temp_path(&out).exists());
    }
}
