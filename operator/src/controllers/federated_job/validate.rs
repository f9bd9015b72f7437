//! Validation of a FederatedJob against its pool into the plain struct every later step
//! builds from. Pure: no client, no clock.

use crate::capacity::Resources;
use crate::orchestrator::Policy;
use fedsky_crds::participant_pool::{SelectionPolicy, Site};
use fedsky_crds::{FederatedJob, ParticipantPool};
use kube::ResourceExt;

/// Why a job cannot run as specified (until the user changes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJob {
    /// The pool has no sites.
    #[error("ParticipantPool {0} has no sites")]
    EmptyPool(String),
    /// The participants cannot train what the job asks for.
    #[error("{0}")]
    Unsupported(String),
}

/// A job ready to act on.
#[derive(Debug, Clone)]
pub struct ValidJob {
    /// Stable short key (see `names::job_key`).
    pub key: String,
    /// `namespace/name`.
    pub reference: String,
    /// Rounds to run.
    pub rounds: i32,
    /// Quorum per round.
    pub min_per_round: usize,
    /// Participants started.
    pub max_per_round: usize,
    /// Free resources a participant node needs (the larger of pool and job minimums).
    pub need: Resources,
    /// The job token participants present (redacted in `Debug`).
    pub token: fedsky_clouds::Sensitive,
    /// The job's CA, which issues the aggregator's and the participants' certificates.
    pub ca: crate::pki::Ca,
    /// Configuration handed to the aggregator.
    pub aggregator_config: fedsky_contract::JobConfig,
    /// `aggregator_config` as the JSON file the aggregator reads.
    pub aggregator_file: String,
    /// Where model versions go, with the S3 keys if in S3, and how many are kept.
    pub store: super::model_store::StoreSpec,
    /// Sites of the pool.
    pub sites: Vec<Site>,
    /// Selection policy.
    pub policy: Policy,
    /// Replacements allowed over the job.
    pub max_replacements: u32,
    /// Command lines of the participant binary.
    pub workload: crate::workloads::command::Workload,
    /// The job's `spec.images`.
    pub image_overrides: Option<fedsky_crds::federated_job::JobImages>,
}

impl ValidJob {
    /// The site named `name`; callers only pass names taken from `sites`.
    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or(&self.sites[0])
    }
}

/// Checks the job against its pool without building anything: what placing a job needs
/// (its token and CA come later, with the first member-cluster work).
pub fn check(job: &FederatedJob, pool: &ParticipantPool) -> Result<(), InvalidJob> {
    if pool.spec.sites.is_empty() {
        return Err(InvalidJob::EmptyPool(pool.name_any()));
    }
    crate::workloads::command::Workload::for_job(job).map(|_| ())
}

/// Checks the job against its pool; `s3` are the keys of the job's S3 credentials Secret,
/// if it names one.
pub fn validate(
    job: &FederatedJob,
    pool: &ParticipantPool,
    token: &str,
    ca: &crate::pki::Ca,
    s3: Option<super::model_store::S3Credentials>,
) -> Result<ValidJob, InvalidJob> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let p = &job.spec.participants;
    check(job, pool)?;
    let need_pool = pool
        .spec
        .min_spec
        .as_ref()
        .map(Resources::from_amounts)
        .unwrap_or_default();
    let need_job = p
        .min_resources
        .as_ref()
        .map(Resources::from_amounts)
        .unwrap_or_default();
    let sel = &pool.spec.selection;
    let policy = match sel.policy {
        SelectionPolicy::ResourceAware => Policy::ResourceAware {
            max_failures: sel
                .max_failures_per_node
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(1),
            cooldown_secs: i64::from(sel.failure_cooldown_seconds.unwrap_or(600)),
        },
        SelectionPolicy::RoundRobin => Policy::RoundRobin,
        SelectionPolicy::Random => Policy::Random {
            seed: job
                .spec
                .training
                .seed
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
        },
    };
    let t = &job.spec.training;
    let workload = crate::workloads::command::Workload::for_job(job)?;
    let aggregator_config = super::aggregator_config::aggregator_job(job, &format!("{ns}/{name}"));
    // serde_json fails only on maps with non-string keys, which the job file has none of.
    let aggregator_file = serde_json::to_string(&aggregator_config).map_err(|e| {
        InvalidJob::Unsupported(format!("cannot render the aggregator's job file: {e}"))
    })?;
    Ok(ValidJob {
        key: crate::names::job_key(&ns, &name),
        reference: format!("{ns}/{name}"),
        rounds: t.rounds,
        min_per_round: usize::try_from(p.min_per_round).unwrap_or(1),
        max_per_round: usize::try_from(p.max_per_round).unwrap_or(1),
        need: need_pool.max_each(&need_job),
        token: fedsky_clouds::Sensitive::new(token),
        ca: ca.clone(),
        aggregator_file,
        aggregator_config,
        store: super::model_store::store_spec(job, s3)?,
        sites: pool.spec.sites.clone(),
        policy,
        max_replacements: p
            .max_replacements
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(5),
        workload,
        image_overrides: job.spec.images.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// A CA for tests (generating an Ed25519 CA is cheap).
    pub(crate) fn test_ca() -> crate::pki::Ca {
        crate::pki::Ca::generate("covid/xray", 1_790_000_000).expect("CA")
    }

    fn example<T: serde::de::DeserializeOwned>(file: &str, kind: &str) -> T {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/covid-xray")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("example");
        for doc in text.split("\n---\n") {
            if doc.contains(&format!("kind: {kind}")) {
                return serde_yaml_from_str(doc);
            }
        }
        panic!("{kind} not in {file}");
    }

    fn serde_yaml_from_str<T: serde::de::DeserializeOwned>(doc: &str) -> T {
        serde_yaml::from_str(doc).expect("example parses")
    }

    pub(crate) fn example_pool() -> ParticipantPool {
        let mut pool: ParticipantPool = example("participant-pool.yaml", "ParticipantPool");
        // Short site names keep the test expectations readable.
        for (s, n) in pool.spec.sites.iter_mut().zip(["eu", "asia", "us"]) {
            s.name = n.into();
        }
        pool
    }

    pub(crate) fn example_job() -> FederatedJob {
        example("federated-job.yaml", "FederatedJob")
    }

    pub(crate) fn valid_job() -> ValidJob {
        validate(&example_job(), &example_pool(), "tok", &test_ca(), None).expect("valid")
    }

    #[test]
    fn example_job_validates_with_pool_minimums() {
        let v = valid_job();
        assert_eq!(v.key, "covid-xray-covid-xray");
        assert_eq!(v.reference, "covid-xray/covid-xray");
        assert_eq!((v.min_per_round, v.max_per_round), (2, 3));
        assert_eq!(
            v.need,
            Resources {
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
                gpus: 0
            }
        );
        assert_eq!(
            v.policy,
            Policy::ResourceAware {
                max_failures: 2,
                cooldown_secs: 600
            }
        );
        assert_eq!(v.max_replacements, 5);
        assert_eq!(v.aggregator_config.rounds.total, 20);
        // fedproxMu 0.01 with FedAvg is FedProx on the server.
        assert_eq!(
            v.aggregator_config.strategy,
            fedsky_contract::StrategyConfig::FedProx { proximal_mu: 0.01 }
        );
        assert_eq!(
            v.aggregator_config.training.optimizer,
            fedsky_contract::Optimizer::Sgd
        );
    }

    #[test]
    fn empty_pool_is_invalid() {
        let mut pool = example_pool();
        pool.spec.sites.clear();
        assert_eq!(
            validate(&example_job(), &pool, "t", &test_ca(), None).err(),
            Some(InvalidJob::EmptyPool("hospitals".into()))
        );
        assert_eq!(
            check(&example_job(), &pool).err(),
            Some(InvalidJob::EmptyPool("hospitals".into()))
        );
        assert_eq!(check(&example_job(), &example_pool()), Ok(()));
    }
}
