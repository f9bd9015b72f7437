//! The aggregator's job file for a FederatedJob: what the operator hands the aggregator,
//! as the contract's typed [`JobConfig`] (defaults come from the contract, once).

use fedsky_contract::{
    FedOptConfig, JobConfig, LimitsSpec, Optimizer, RoundsSpec, StrategyConfig, TrainingSpec,
};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{self as api, StrategyType};

/// Fraction trimmed from each end when the spec names none.
const DEFAULT_TRIM_FRACTION: f64 = 0.1;

/// A count from the API (whose schema sets its minimum) as the aggregator's unsigned type.
fn count<T: TryFrom<i64> + Default>(v: impl Into<i64>) -> T {
    T::try_from(v.into()).unwrap_or_default()
}

/// The aggregator's job file (see `aggregator/README.md`) for this job.
pub fn aggregator_job(job: &FederatedJob, reference: &str) -> JobConfig {
    let t = &job.spec.training;
    let p = &job.spec.participants;
    JobConfig {
        name: reference.to_string(),
        seed: count(t.seed.unwrap_or(0)),
        rounds: RoundsSpec::new(
            count(t.rounds),
            count(p.min_per_round),
            count(p.max_per_round),
            f64::from(p.round_timeout_seconds),
        ),
        strategy: strategy(job),
        training: TrainingSpec {
            local_epochs: count(t.local_epochs),
            batch_size: count(t.batch_size),
            learning_rate: t.learning_rate,
            optimizer: match t.optimizer {
                api::Optimizer::Sgd => Optimizer::Sgd,
                api::Optimizer::Adam => Optimizer::Adam,
            },
        },
        limits: LimitsSpec::default(),
        fold_order: Default::default(),
        participants: Vec::new(),
        token: None,
    }
}

/// The server-side rule: FedAvg with a proximal term is FedProx; FedOpt settings the spec
/// leaves out take Flower's defaults for that optimiser; the client rate is the job's.
fn strategy(job: &FederatedJob) -> StrategyConfig {
    let t = &job.spec.training;
    let st = &job.spec.strategy;
    let fedopt = |d: FedOptConfig| FedOptConfig {
        eta: st.server_learning_rate.unwrap_or(d.eta),
        eta_l: t.learning_rate,
        beta_1: st.beta1.unwrap_or(d.beta_1),
        beta_2: st.beta2.unwrap_or(d.beta_2),
        tau: st.tau.unwrap_or(d.tau),
    };
    let buffered = fedsky_contract::DEFAULT_MAX_BUFFERED_BYTES;
    match st.type_ {
        StrategyType::FedAvg if t.fedprox_mu > 0.0 => StrategyConfig::FedProx {
            proximal_mu: t.fedprox_mu,
        },
        StrategyType::FedAvg => StrategyConfig::FedAvg,
        StrategyType::FedAdam => StrategyConfig::FedAdam(fedopt(FedOptConfig::adam_default())),
        StrategyType::FedYogi => StrategyConfig::FedYogi(fedopt(FedOptConfig::yogi_default())),
        StrategyType::FedAdagrad => {
            StrategyConfig::FedAdagrad(fedopt(FedOptConfig::adagrad_default()))
        }
        StrategyType::FedMedian => StrategyConfig::FedMedian {
            max_buffered_bytes: buffered,
        },
        StrategyType::TrimmedMean => StrategyConfig::TrimmedMean {
            beta: st.trim_fraction.unwrap_or(DEFAULT_TRIM_FRACTION),
            max_buffered_bytes: buffered,
        },
        StrategyType::Krum => StrategyConfig::Krum {
            num_byzantine: count(st.byzantine.unwrap_or(0)),
            num_selected: 0,
            max_buffered_bytes: buffered,
        },
        StrategyType::MultiKrum => StrategyConfig::Krum {
            num_byzantine: count(st.byzantine.unwrap_or(0)),
            num_selected: count(st.multi_krum_select.unwrap_or(1)),
            max_buffered_bytes: buffered,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_with(strategy: serde_json::Value, training: &serde_json::Value) -> FederatedJob {
        let mut job = super::super::validate::tests::example_job();
        job.spec.strategy = serde_json::from_value(strategy).expect("strategy");
        let mut t = serde_json::to_value(&job.spec.training).expect("training");
        if let (Some(t), Some(extra)) = (t.as_object_mut(), training.as_object()) {
            t.extend(extra.clone());
        }
        job.spec.training = serde_json::from_value(t).expect("training");
        job
    }

    #[test]
    fn fedopt_defaults_are_flowers_and_the_client_rate_is_the_jobs() {
        let job = job_with(
            serde_json::json!({"type": "FedYogi", "tau": 0.002}),
            &serde_json::json!({"learningRate": 0.05, "fedproxMu": 0.0}),
        );
        let c = aggregator_job(&job, "ns/j");
        let d = FedOptConfig::yogi_default();
        assert_eq!(
            c.strategy,
            StrategyConfig::FedYogi(FedOptConfig {
                eta_l: 0.05,
                tau: 0.002,
                ..d
            })
        );
        assert_eq!(c.check_fields(), Ok(()));
    }

    #[test]
    fn robust_rules_and_fedprox_map_to_the_aggregators_kinds() {
        let multi = job_with(
            serde_json::json!({"type": "MultiKrum", "byzantine": 1, "multiKrumSelect": 3}),
            &serde_json::json!({}),
        );
        assert_eq!(
            aggregator_job(&multi, "ns/j").strategy,
            StrategyConfig::Krum {
                num_byzantine: 1,
                num_selected: 3,
                max_buffered_bytes: fedsky_contract::DEFAULT_MAX_BUFFERED_BYTES,
            }
        );
        let trimmed = job_with(
            serde_json::json!({"type": "TrimmedMean"}),
            &serde_json::json!({}),
        );
        assert!(matches!(
            aggregator_job(&trimmed, "ns/j").strategy,
            StrategyConfig::TrimmedMean { beta, .. } if beta == DEFAULT_TRIM_FRACTION
        ));
        let prox = job_with(
            serde_json::json!({"type": "FedAvg"}),
            &serde_json::json!({"fedproxMu": 0.2}),
        );
        assert_eq!(
            aggregator_job(&prox, "ns/j").strategy,
            StrategyConfig::FedProx { proximal_mu: 0.2 }
        );
    }

    #[test]
    fn the_rendered_file_carries_the_rounds_and_no_token() {
        let job = super::super::validate::tests::example_job();
        let c = aggregator_job(&job, "covid-xray/covid-xray");
        assert_eq!(c.rounds.total, 20);
        assert_eq!((c.rounds.min_per_round, c.rounds.max_per_round), (2, 3));
        let text = serde_json::to_string(&c).expect("serialises");
        assert!(!text.contains("token"), "{text}");
        let back: JobConfig = serde_json::from_str(&text).expect("the aggregator reads it");
        assert_eq!(back, c);
    }
}
