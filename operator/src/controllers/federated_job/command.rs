//! Command lines of the participant binary for a job — `run` for each participant and
//! `init-model` for the aggregator's initial model — built once, so pods and local
//! processes start exactly the same programs. Pure.

use super::validate::InvalidJob;
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

/// Where one participant finds what it needs.
#[derive(Debug, Clone, Copy)]
pub struct ParticipantIo<'a> {
    /// Its name, which is also its identity on the aggregator.
    pub name: &'a str,
    /// `http://host:port` of the aggregator's gRPC endpoint.
    pub aggregator_url: &'a str,
    /// Root of the site's data volume.
    pub data_root: &'a str,
    /// File holding the job token.
    pub token_file: &'a str,
    /// Directory that keeps an open round's update across restarts.
    pub state_dir: &'a str,
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
            io.aggregator_url.into(),
            // Plaintext until per-job certificates are issued; the token still gates entry.
            "--insecure-plaintext".into(),
            "--participant-id".into(),
            io.name.into(),
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
    use super::super::validate::tests::example_job;
    use super::*;

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
            aggregator_url: "http://agg:50051",
            data_root: "/data/",
            token_file: "/var/run/fedsky/token",
            state_dir: "/tmp/state",
        });
        assert_eq!(args[0], "run");
        assert_eq!(flag(&args, "--aggregator"), Some("http://agg:50051"));
        assert_eq!(flag(&args, "--participant-id"), Some("p-eu-0"));
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
