//! The FL initializer: cloud-init user data that sets up an aggregator VM.
//!
//! It writes the job file, the job token and the TLS files under `/etc/fedsky` (root,
//! mode 0600), downloads the aggregator binary from a configurable URL and installs it
//! only if its SHA-256 matches, and starts it as a systemd unit. The unit runs as a
//! dynamic (unprivileged) user and receives the files through systemd credentials
//! (`LoadCredential=`), so its command line holds paths only, never a secret.
//!
//! Rendering is pure and serialises with serde_yaml, so the result is always valid YAML.

use crate::secret::Sensitive;
use serde::Serialize;

/// Where the files go on the VM.
pub const CONFIG_DIR: &str = "/etc/fedsky";
/// Where the binary is installed.
pub const BINARY_PATH: &str = "/usr/local/bin/fedsky-aggregator";
/// The systemd unit.
pub const UNIT: &str = "fedsky-aggregator.service";

/// TLS files of the aggregator's gRPC server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert_pem: String,
    /// Server private key (PEM).
    pub key_pem: Sensitive,
    /// CA that signs participant certificates (PEM).
    pub client_ca_pem: String,
}

/// Where the aggregator on the VM keeps model versions (`spec.modelStore`).
#[derive(Debug, Clone, Default)]
pub struct VmStore {
    /// `keepVersions`: versions kept after each round; `None` keeps all.
    pub keep_versions: Option<u32>,
    /// An S3 bucket instead of the VM's disk.
    pub s3: Option<VmS3>,
}

/// An S3 model store and the keys the aggregator signs with.
#[derive(Debug, Clone)]
pub struct VmS3 {
    /// Endpoint URL; AWS's for the region if `None`.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Sensitive,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Sensitive,
    /// `AWS_SESSION_TOKEN` of temporary keys.
    pub session_token: Option<Sensitive>,
}

impl VmStore {
    /// The aggregator's environment for this store (its flags read these variables), as
    /// `(name, value)`; S3 keys are among them, so the file that holds them is 0600.
    fn environment(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(n) = self.keep_versions {
            env.push(("FEDSKY_KEEP_VERSIONS", n.to_string()));
        }
        if let Some(s3) = &self.s3 {
            env.push(("FEDSKY_S3_BUCKET", s3.bucket.clone()));
            for (name, v) in [
                ("FEDSKY_S3_ENDPOINT", &s3.endpoint),
                ("FEDSKY_S3_PREFIX", &s3.prefix),
                ("FEDSKY_S3_REGION", &s3.region),
            ] {
                if let Some(v) = v {
                    env.push((name, v.clone()));
                }
            }
            env.push(("AWS_ACCESS_KEY_ID", s3.access_key_id.expose().to_string()));
            env.push((
                "AWS_SECRET_ACCESS_KEY",
                s3.secret_access_key.expose().to_string(),
            ));
            if let Some(t) = &s3.session_token {
                env.push(("AWS_SESSION_TOKEN", t.expose().to_string()));
            }
        }
        env
    }
}

/// One `NAME="value"` line of a systemd `EnvironmentFile=`: inside double quotes a
/// backslash escapes `"`, `\`, `$` and `` ` ``; a control character cannot be written.
fn env_line(name: &'static str, value: &str) -> Result<String, InitError> {
    if value.chars().any(char::is_control) {
        return Err(InitError::EnvValue(name));
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    Ok(format!("{name}=\"{quoted}\"\n"))
}

/// What the VM needs to run one job's aggregator.
#[derive(Debug, Clone)]
pub struct InitSpec {
    /// `http(s)://` URL of the `fedsky-aggregator` binary (Linux, the VM's architecture).
    pub binary_url: String,
    /// Its SHA-256, 64 hex digits.
    pub binary_sha256: String,
    /// The aggregator's job file (JSON).
    pub job_json: String,
    /// The job token participants present.
    pub token: Sensitive,
    /// mTLS files; `None` serves plaintext gRPC (development only).
    pub tls: Option<TlsFiles>,
    /// gRPC port.
    pub grpc_port: u16,
    /// Model manager HTTP port.
    pub http_port: u16,
    /// Where model versions go.
    pub store: VmStore,
}

/// Why user data cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// The binary URL is not a plain http(s) URL.
    #[error("binary URL `{0}` must start with https:// or http:// and hold no quotes or spaces")]
    BinaryUrl(String),
    /// The checksum is not 64 hex digits.
    #[error("binary SHA-256 must be 64 hex digits, got {0} characters")]
    Sha256(usize),
    /// A store setting holds a control character, which an environment file cannot carry.
    #[error("{0} holds a control character (a newline?); the aggregator VM cannot be given it")]
    EnvValue(&'static str),
    /// serde_yaml failed (a bug).
    #[error("rendering cloud-init YAML: {0}")]
    Yaml(String),
}

#[derive(Serialize)]
struct CloudConfig {
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    permissions: &'static str,
    owner: &'static str,
    content: String,
}

fn file(path: &str, permissions: &'static str, content: impl Into<String>) -> WriteFile {
    WriteFile {
        path: path.to_string(),
        permissions,
        owner: "root:root",
        content: content.into(),
    }
}

/// The `#cloud-config` user data for `spec`.
pub fn render(spec: &InitSpec) -> Result<String, InitError> {
    let url = &spec.binary_url;
    let plain = |c: char| !(c.is_whitespace() || c == '\'' || c == '"' || c == '\\');
    if !(url.starts_with("https://") || url.starts_with("http://")) || !url.chars().all(plain) {
        return Err(InitError::BinaryUrl(url.clone()));
    }
    let sha = spec.binary_sha256.to_ascii_lowercase();
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(InitError::Sha256(spec.binary_sha256.len()));
    }
    let d = CONFIG_DIR;
    let mut files = vec![
        file(&format!("{d}/job.json"), "0600", spec.job_json.clone()),
        file(&format!("{d}/token"), "0600", spec.token.expose()),
    ];
    let mut creds = vec!["job.json", "token"];
    let tls_args = match &spec.tls {
        Some(t) => {
            files.push(file(&format!("{d}/tls.crt"), "0600", t.cert_pem.clone()));
            files.push(file(&format!("{d}/tls.key"), "0600", t.key_pem.expose()));
            files.push(file(
                &format!("{d}/client-ca.crt"),
                "0600",
                t.client_ca_pem.clone(),
            ));
            creds.extend(["tls.crt", "tls.key", "client-ca.crt"]);
            "--tls-cert %d/tls.crt --tls-key %d/tls.key --client-ca %d/client-ca.crt"
        }
        None => "--insecure-plaintext",
    };
    let load: String = creds
        .iter()
        .map(|c| format!("LoadCredential={c}:{d}/{c}\n"))
        .collect();
    // Store settings and S3 keys reach the aggregator as environment variables from a
    // root-only file that systemd reads before it drops privileges.
    let env = spec.store.environment();
    let env_file = if env.is_empty() {
        String::new()
    } else {
        let content = env
            .iter()
            .map(|(n, v)| env_line(n, v))
            .collect::<Result<String, _>>()?;
        files.push(file(&format!("{d}/aggregator.env"), "0600", content));
        format!("EnvironmentFile={d}/aggregator.env\n")
    };
    let store_dir = if spec.store.s3.is_some() {
        ""
    } else {
        "--store-dir /var/lib/fedsky-aggregator "
    };
    let unit = format!(
        "[Unit]\n\
         Description=fedsky FL aggregator\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         DynamicUser=yes\n\
         StateDirectory=fedsky-aggregator\n\
         {load}\
         {env_file}\
         ExecStart={BINARY_PATH} --job %d/job.json --token-file %d/token \
         --grpc-listen 0.0.0.0:{grpc} --http-listen 0.0.0.0:{http} \
         {store_dir}{tls_args}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        grpc = spec.grpc_port,
        http = spec.http_port,
    );
    files.push(file(&format!("/etc/systemd/system/{UNIT}"), "0644", unit));
    // Download to a temporary name; install only after the checksum matches.
    let install = format!(
        "#!/bin/sh\n\
         set -eu\n\
         tmp={BINARY_PATH}.download\n\
         curl -fsSL --retry 5 --retry-delay 3 -o \"$tmp\" '{url}'\n\
         echo '{sha}  '\"$tmp\" | sha256sum -c -\n\
         install -m 0755 \"$tmp\" {BINARY_PATH}\n\
         rm -f \"$tmp\"\n\
         systemctl daemon-reload\n\
         systemctl enable --now {UNIT}\n"
    );
    let script = "/usr/local/lib/fedsky/install-aggregator.sh";
    files.push(file(script, "0700", install));
    let config = CloudConfig {
        write_files: files,
        runcmd: vec![vec!["sh".into(), script.into()]],
    };
    let yaml = serde_yaml::to_string(&config).map_err(|e| InitError::Yaml(e.to_string()))?;
    Ok(format!("#cloud-config\n{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tls: bool) -> InitSpec {
        InitSpec {
            binary_url: "https://downloads.example/fedsky-aggregator-0.1.0-x86_64".into(),
            binary_sha256: "ab".repeat(32),
            job_json: r#"{"name":"covid-xray","rounds":{"total":3}}"#.into(),
            token: Sensitive::new("job-token-123"),
            tls: tls.then(|| TlsFiles {
                cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                key_pem: Sensitive::new(
                    "-----BEGIN PRIVATE KEY-----\nKEYDATA\n-----END PRIVATE KEY-----\n",
                ),
                client_ca_pem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
                    .into(),
            }),
            grpc_port: 50051,
            http_port: 8081,
            store: VmStore::default(),
        }
    }

    fn parsed(s: &str) -> serde_yaml::Value {
        assert!(s.starts_with("#cloud-config\n"), "{s}");
        serde_yaml::from_str(s).expect("valid YAML")
    }

    fn files(v: &serde_yaml::Value) -> Vec<(String, String, String)> {
        v["write_files"]
            .as_sequence()
            .expect("write_files")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().expect("path").to_string(),
                    f["permissions"].as_str().expect("mode").to_string(),
                    f["content"].as_str().expect("content").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn secrets_are_in_0600_files_and_never_on_the_command_line() {
        let v = parsed(&render(&spec(true)).expect("renders"));
        let files = files(&v);
        for (path, mode, content) in &files {
            if path.starts_with(CONFIG_DIR) {
                assert_eq!(mode, "0600", "{path}");
            }
            if path.ends_with(".service") {
                assert!(!content.contains("job-token-123"), "{content}");
                assert!(!content.contains("KEYDATA"), "{content}");
                let exec = content
                    .lines()
                    .find(|l| l.starts_with("ExecStart="))
                    .expect("ExecStart");
                assert!(exec.contains("--token-file %d/token"), "{exec}");
                assert!(exec.contains("--tls-key %d/tls.key"), "{exec}");
                assert!(exec.contains("--grpc-listen 0.0.0.0:50051"), "{exec}");
                assert!(content.contains("DynamicUser=yes"));
                assert!(content.contains("LoadCredential=token:/etc/fedsky/token"));
            }
        }
        let token = files
            .iter()
            .find(|f| f.0 == "/etc/fedsky/token")
            .expect("token file");
        assert_eq!(token.2, "job-token-123");
        assert!(
            files
                .iter()
                .any(|f| f.0 == "/etc/fedsky/tls.key" && f.1 == "0600")
        );
        let runcmd = serde_yaml::to_string(&v["runcmd"]).expect("yaml");
        assert!(!runcmd.contains("job-token-123"));
    }

    #[test]
    fn binary_is_installed_only_after_its_checksum_matches() {
        let v = parsed(&render(&spec(false)).expect("renders"));
        let files = files(&v);
        let script = &files
            .iter()
            .find(|f| f.0.ends_with("install-aggregator.sh"))
            .expect("script")
            .2;
        let check = script.find("sha256sum -c").expect("checksum");
        let install = script.find("install -m 0755").expect("install");
        let start = script.find("systemctl enable --now").expect("start");
        assert!(check < install && install < start, "{script}");
        assert!(script.contains(&"ab".repeat(32)));
        assert!(script.contains("set -eu"));
        let unit = &files.iter().find(|f| f.0.ends_with(UNIT)).expect("unit").2;
        assert!(unit.contains("--insecure-plaintext"));
        assert!(!files.iter().any(|f| f.0.ends_with("tls.key")));
    }

    #[test]
    fn an_s3_store_and_keep_versions_reach_the_aggregator_through_a_root_only_file() {
        let mut s = spec(true);
        s.store = VmStore {
            keep_versions: Some(3),
            s3: Some(VmS3 {
                endpoint: Some("https://s3.example".into()),
                bucket: "models".into(),
                prefix: Some(r#"jobs/"x"$y"#.into()),
                region: None,
                access_key_id: Sensitive::new("AKID"),
                secret_access_key: Sensitive::new("s3-secret-123"),
                session_token: None,
            }),
        };
        let written = files(&parsed(&render(&s).expect("renders")));
        let env = written
            .iter()
            .find(|f| f.0 == "/etc/fedsky/aggregator.env")
            .expect("env file");
        assert_eq!(env.1, "0600");
        assert_eq!(
            env.2,
            "FEDSKY_KEEP_VERSIONS=\"3\"\nFEDSKY_S3_BUCKET=\"models\"\n\
             FEDSKY_S3_ENDPOINT=\"https://s3.example\"\nFEDSKY_S3_PREFIX=\"jobs/\\\"x\\\"\\$y\"\n\
             AWS_ACCESS_KEY_ID=\"AKID\"\nAWS_SECRET_ACCESS_KEY=\"s3-secret-123\"\n"
        );
        let unit = &written
            .iter()
            .find(|f| f.0.ends_with(UNIT))
            .expect("unit")
            .2;
        assert!(unit.contains("EnvironmentFile=/etc/fedsky/aggregator.env"));
        // The bucket replaces the disk (the aggregator refuses both).
        assert!(!unit.contains("--store-dir"), "{unit}");
        assert!(!unit.contains("s3-secret-123"), "{unit}");

        let mut disk = spec(true);
        disk.store.keep_versions = Some(2);
        let written = files(&parsed(&render(&disk).expect("renders")));
        let unit = &written
            .iter()
            .find(|f| f.0.ends_with(UNIT))
            .expect("unit")
            .2;
        assert!(
            unit.contains("--store-dir /var/lib/fedsky-aggregator"),
            "{unit}"
        );

        let mut bad = s;
        if let Some(s3) = bad.store.s3.as_mut() {
            s3.prefix = Some("a\nEXTRA=1".into());
        }
        assert_eq!(render(&bad), Err(InitError::EnvValue("FEDSKY_S3_PREFIX")));
    }

    #[test]
    fn rejects_unsafe_urls_and_bad_checksums() {
        let mut s = spec(false);
        s.binary_url = "https://x/a'; rm -rf /".into();
        assert!(matches!(render(&s), Err(InitError::BinaryUrl(_))));
        s.binary_url = "ftp://x/a".into();
        assert!(matches!(render(&s), Err(InitError::BinaryUrl(_))));
        let mut s = spec(false);
        s.binary_sha256 = "xyz".into();
        assert_eq!(render(&s), Err(InitError::Sha256(3)));
    }
}
