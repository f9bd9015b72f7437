//! Command lines of a job's programs — the aggregator, the participant binary's `run` for
//! each participant and `init-model` for the aggregator's initial model — built once, so
//! pods and local processes start exactly the same programs. Pure.

use crate::controllers::federated_job::model_store::{S3Location, StoreKind, StoreSpec};
use crate::controllers::federated_job::validate::InvalidJob;
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{Architecture, DatasetFormat};

/// The job-wide flags of the participant binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `--arch … --init-seed …`, shared by `run` and `init-model`.
    model: Vec<String>,
    /// Data flags of `run` (format, classes, image size, channels, split).
    data: Vec<String>,
    /// Extra `init-model` flags (classes, image size, channels).
    init: Vec<String>,
    /// Dataset path inside the data volume.
    dataset_path: String,
}

/// Files of one side of the job's mutual TLS.
#[derive(Debug, Clone, Copy)]
pub struct TlsPaths<'a> {
    /// The job's CA certificate (the trust anchor of both sides).
    pub ca: &'a str,
    /// This side's certificate.
    pub cert: &'a str,
    /// Its private key.
    pub key: &'a str,
}

/// Where one participant finds what it needs.
#[derive(Debug, Clone, Copy)]
pub struct ParticipantIo<'a> {
    /// Its name, which is also its identity on the aggregator (its certificate's CN).
    pub name: &'a str,
    /// `host:port` of the aggregator's gRPC endpoint.
    pub endpoint: &'a str,
    /// The name in the aggregator's certificate (`names::aggregator_tls_name`).
    pub tls_domain: &'a str,
    /// Its certificate, key and the job's CA.
    pub tls: TlsPaths<'a>,
    /// Root of the site's data volume.
    pub data_root: &'a str,
    /// File holding the job token.
    pub token_file: &'a str,
    /// Directory that keeps an open round's update across restarts.
    pub state_dir: &'a str,
}

/// Where the aggregator finds and keeps what it needs.
#[derive(Debug, Clone, Copy)]
pub struct AggregatorIo<'a> {
    /// The aggregator's job file.
    pub job_file: &'a str,
    /// `addr:port` for gRPC.
    pub grpc_listen: &'a str,
    /// `addr:port` for the model manager (HTTPS with the same certificate as gRPC).
    pub http_listen: &'a str,
    /// File holding the job token.
    pub token_file: &'a str,
    /// Where model versions go.
    pub store: StoreArgs<'a>,
    /// Model versions to keep; `None`: all.
    pub keep_versions: Option<u32>,
    /// The initial global model.
    pub initial_model: &'a str,
    /// Its server certificate, key and the job's CA (which signs participants' certificates).
    pub tls: TlsPaths<'a>,
    /// File holding the token that opens `/metrics` to Prometheus (absent: no such token).
    pub metrics_token_file: Option<&'a str>,
}

/// The aggregator's model store on its command line. S3 credentials are never here: they
/// reach the aggregator as `AWS_*` environment variables.
#[derive(Debug, Clone, Copy)]
pub enum StoreArgs<'a> {
    /// A directory (the volume's mount point, or the process runtime's job directory).
    Dir(&'a str),
    /// S3-compatible storage.
    S3(&'a S3Location),
}

impl<'a> StoreArgs<'a> {
    /// `store`'s arguments, with `dir` where a volume store is.
    pub fn of(store: &'a StoreSpec, dir: &'a str) -> Self {
        match &store.kind {
            StoreKind::Volume { .. } => Self::Dir(dir),
            StoreKind::S3 { location, .. } => Self::S3(location),
        }
    }
}

/// `fedsky-aggregator …` arguments (without the binary).
pub fn aggregator(io: &AggregatorIo<'_>) -> Vec<String> {
    let mut pairs: Vec<(&str, String)> = vec![
        ("--job", io.job_file.into()),
        ("--grpc-listen", io.grpc_listen.into()),
        ("--http-listen", io.http_listen.into()),
        ("--token-file", io.token_file.into()),
    ];
    match io.store {
        StoreArgs::Dir(dir) => pairs.push(("--store-dir", dir.into())),
        StoreArgs::S3(s3) => {
            pairs.push(("--s3-bucket", s3.bucket.clone()));
            let optional = [
                ("--s3-endpoint", &s3.endpoint),
                ("--s3-prefix", &s3.prefix),
                ("--s3-region", &s3.region),
            ];
            for (flag, value) in optional {
                if let Some(v) = value {
                    pairs.push((flag, v.clone()));
                }
            }
        }
    }
    if let Some(n) = io.keep_versions {
        pairs.push(("--keep-versions", n.to_string()));
    }
    if let Some(file) = io.metrics_token_file {
        pairs.push(("--metrics-token-file", file.into()));
    }
    pairs.extend([
        ("--initial-model", io.initial_model.into()),
        ("--tls-cert", io.tls.cert.into()),
        ("--tls-key", io.tls.key.into()),
        ("--client-ca", io.tls.ca.into()),
    ]);
    pairs
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
}

impl Workload {
    /// Flags for `job`, or why the participant cannot train it.
    pub fn for_job(job: &FederatedJob) -> Result<Self, InvalidJob> {
        let spec = &job.spec;
        let seed = spec.training.seed.unwrap_or(0).to_string();
        let Some(model) = &spec.model.builtin else {
            return Err(InvalidJob::Unsupported(
                "spec.model.torchScript: the aggregator needs an initial model built from the module, which the operator cannot read from the participants' data volumes yet; use spec.model.builtin".into(),
            ));
        };
        let arch = match model.architecture {
            Architecture::SmallCnn => "small-cnn",
            Architecture::ResNet18 => "resnet18",
        };
        let channels = match model.input_channels {
            1 => "gray",
            3 => "rgb",
            n => {
                return Err(InvalidJob::Unsupported(format!(
                    "spec.model.builtin.inputChannels: {n}; participants read images as 1 (grayscale) or 3 (RGB) channels"
                )));
            }
        };
        let size = model.image_size.to_string();
        let mut data = Vec::<String>::new();
        match spec.dataset.format {
            DatasetFormat::ImageFolder => data.extend(["--format".into(), "image-folder".into()]),
            DatasetFormat::Csv => {
                data.extend(["--format".into(), "csv".into()]);
                if let Some(col) = &spec.dataset.label_column {
                    data.extend(["--label-column".into(), col.clone()]);
                }
            }
        }
        if !spec.dataset.classes.is_empty() {
            data.extend(["--classes".into(), spec.dataset.classes.join(",")]);
        }
        data.extend([
            "--image-size".into(),
            size.clone(),
            "--channels".into(),
            channels.into(),
            "--val-fraction".into(),
            spec.dataset.validation_split.unwrap_or(0.1).to_string(),
            "--split-seed".into(),
            seed.clone(),
        ]);
        Ok(Self {
            model: vec!["--arch".into(), arch.into(), "--init-seed".into(), seed],
            data,
            init: vec![
                "--num-classes".into(),
                model.num_classes.to_string(),
                "--image-size".into(),
                size,
                "--channels".into(),
                model.input_channels.to_string(),
            ],
            dataset_path: spec.dataset.path.clone(),
        })
    }

    /// `fedsky-participant run …` arguments (without the binary).
    pub fn participant(&self, io: &ParticipantIo<'_>) -> Vec<String> {
        let data = format!(
            "{}/{}",
            io.data_root.trim_end_matches('/'),
            self.dataset_path
        );
        let mut args: Vec<String> = vec![
            "run".into(),
            "--aggregator".into(),
            format!("https://{}", io.endpoint),
            // The identity is the certificate's CN, which is `io.name`.
            "--ca".into(),
            io.tls.ca.into(),
            "--cert".into(),
            io.tls.cert.into(),
            "--key".into(),
            io.tls.key.into(),
            "--tls-domain".into(),
            io.tls_domain.into(),
            "--token-file".into(),
            io.token_file.into(),
            "--state-dir".into(),
            io.state_dir.into(),
            "--data".into(),
            data,
        ];
        args.extend(self.data.iter().cloned());
        args.extend(self.model.iter().cloned());
        args
    }

    /// `fedsky-participant init-model …` arguments, without `--out`.
    pub fn init_model(&self) -> Vec<String> {
        let mut args = vec!["init-model".to_string()];
        args.extend(self.init.iter().cloned());
        args.extend(self.model.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::federated_job::validate::tests::example_job;

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        args.windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].as_str())
    }

    #[test]
    fn participant_command_carries_model_data_and_identity() {
        let w = Workload::for_job(&example_job()).expect("workload");
        let args = w.participant(&ParticipantIo {
            name: "p-eu-0",
            endpoint: "agg:50051",
            tls_domain: "fedsky-agg-x.fedsky-aggregators.svc",
            tls: TlsPaths {
                ca: "/c/ca.crt",
                cert: "/c/tls.crt",
                key: "/c/tls.key",
            },
            data_root: "/data/",
            token_file: "/var/run/fedsky/token",
            state_dir: "/tmp/state",
        });
        assert_eq!(args[0], "run");
        assert_eq!(flag(&args, "--aggregator"), Some("https://agg:50051"));
        // Mutual TLS: no plaintext, and the identity comes from the certificate.
        assert!(!args.iter().any(|a| a == "--insecure-plaintext"));
        assert_eq!(flag(&args, "--participant-id"), None);
        assert_eq!(flag(&args, "--cert"), Some("/c/tls.crt"));
        assert_eq!(flag(&args, "--key"), Some("/c/tls.key"));
        assert_eq!(flag(&args, "--ca"), Some("/c/ca.crt"));
        assert_eq!(
            flag(&args, "--tls-domain"),
            Some("fedsky-agg-x.fedsky-aggregators.svc")
        );
        assert_eq!(flag(&args, "--data"), Some("/data/covid19-radiography"));
        assert_eq!(
            flag(&args, "--classes"),
            Some("Covid,Normal,Viral Pneumonia")
        );
        assert_eq!(flag(&args, "--arch"), Some("small-cnn"));
        assert_eq!(flag(&args, "--image-size"), Some("64"));
        assert_eq!(flag(&args, "--channels"), Some("gray"));
        assert_eq!(flag(&args, "--init-seed"), Some("7"));
        assert_eq!(flag(&args, "--split-seed"), Some("7"));
    }

    fn aggregator_io(store: StoreArgs<'_>, keep_versions: Option<u32>) -> Vec<String> {
        aggregator(&AggregatorIo {
            job_file: "/r/job.json",
            grpc_listen: "0.0.0.0:50051",
            http_listen: "0.0.0.0:8081",
            token_file: "/r/token",
            store,
            keep_versions,
            initial_model: "/models/initial.safetensors",
            tls: TlsPaths {
                ca: "/r/ca.crt",
                cert: "/r/tls.crt",
                key: "/r/tls.key",
            },
            metrics_token_file: Some("/m/token"),
        })
    }

    #[test]
    fn the_store_and_its_retention_are_flags_and_keys_are_not() {
        let dir = aggregator_io(StoreArgs::Dir("/models"), None);
        assert_eq!(flag(&dir, "--store-dir"), Some("/models"));
        assert_eq!(flag(&dir, "--keep-versions"), None);
        assert!(!dir.iter().any(|a| a.starts_with("--s3")), "{dir:?}");
        let location = S3Location {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: "models".into(),
            prefix: Some("jobs/x".into()),
            region: None,
        };
        let s3 = aggregator_io(StoreArgs::S3(&location), Some(2));
        assert_eq!(flag(&s3, "--s3-bucket"), Some("models"));
        assert_eq!(flag(&s3, "--s3-endpoint"), Some("http://127.0.0.1:9000"));
        assert_eq!(flag(&s3, "--s3-prefix"), Some("jobs/x"));
        assert_eq!(flag(&s3, "--s3-region"), None);
        assert_eq!(flag(&s3, "--keep-versions"), Some("2"));
        assert_eq!(flag(&s3, "--store-dir"), None);
        assert!(!s3.iter().any(|a| a.contains("AWS")), "{s3:?}");
    }

    #[test]
    fn aggregator_command_serves_mutual_tls() {
        let args = aggregator_io(StoreArgs::Dir("/models"), None);
        assert!(!args.iter().any(|a| a == "--insecure-plaintext"));
        assert_eq!(flag(&args, "--tls-cert"), Some("/r/tls.crt"));
        assert_eq!(flag(&args, "--tls-key"), Some("/r/tls.key"));
        assert_eq!(flag(&args, "--client-ca"), Some("/r/ca.crt"));
        assert_eq!(flag(&args, "--job"), Some("/r/job.json"));
        assert_eq!(flag(&args, "--metrics-token-file"), Some("/m/token"));
        assert_eq!(
            flag(&args, "--initial-model"),
            Some("/models/initial.safetensors")
        );
    }

    #[test]
    fn init_model_matches_the_participants_model() {
        let w = Workload::for_job(&example_job()).expect("workload");
        let args = w.init_model();
        assert_eq!(args[0], "init-model");
        assert_eq!(flag(&args, "--num-classes"), Some("3"));
        assert_eq!(flag(&args, "--channels"), Some("1"));
        assert_eq!(flag(&args, "--arch"), Some("small-cnn"));
        assert_eq!(flag(&args, "--init-seed"), Some("7"));
    }

    #[test]
    fn unsupported_models_are_named() {
        let mut job = example_job();
        if let Some(m) = job.spec.model.builtin.as_mut() {
            m.input_channels = 4;
        }
        let err = Workload::for_job(&job).expect_err("4 channels");
        assert!(err.to_string().contains("inputChannels"), "{err}");
        job.spec.model.builtin = None;
        job.spec.model.torch_script = Some(fedsky_crds::federated_job::TorchScriptModel {
            path: "model.pt".into(),
            sha256: None,
        });
        let err = Workload::for_job(&job).expect_err("torchscript");
        assert!(err.to_string().contains("torchScript"), "{err}");
    }
}
