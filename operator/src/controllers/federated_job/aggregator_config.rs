//! The aggregator's job file for a FederatedJob: what the operator hands the aggregator.

use fedsky_crds::FederatedJob;

/// The aggregator's job file (see `aggregator/README.md`) for this job.
pub fn aggregator_job(job: &FederatedJob, reference: &str) -> serde_json::Value {
    use fedsky_crds::federated_job::{Optimizer, StrategyType};
    let t = &job.spec.training;
    let p = &job.spec.participants;
    let st = &job.spec.strategy;
    // Flower's FedOpt defaults, which the aggregator also uses.
    let fedopt = |eta: f64, tau: f64| {
        serde_json::json!({
            "eta": st.server_learning_rate.unwrap_or(eta),
            "etaL": t.learning_rate,
            "beta1": st.beta1.unwrap_or(0.9),
            "beta2": st.beta2.unwrap_or(0.99),
            "tau": st.tau.unwrap_or(tau),
        })
    };
    let with_kind = |kind: &str, mut v: serde_json::Value| {
        v["kind"] = serde_json::json!(kind);
        v
    };
    let strategy = match st.type_ {
        StrategyType::FedAvg if t.fedprox_mu > 0.0 => {
            serde_json::json!({ "kind": "FedProx", "proximalMu": t.fedprox_mu })
        }
        StrategyType::FedAvg => serde_json::json!({ "kind": "FedAvg" }),
        StrategyType::FedAdam => with_kind("FedAdam", fedopt(0.1, 1e-9)),
        StrategyType::FedYogi => with_kind("FedYogi", fedopt(0.01, 1e-3)),
        StrategyType::FedAdagrad => with_kind("FedAdagrad", fedopt(0.1, 1e-9)),
        StrategyType::FedMedian => serde_json::json!({ "kind": "FedMedian" }),
        StrategyType::TrimmedMean => {
            serde_json::json!({ "kind": "TrimmedMean", "beta": st.trim_fraction.unwrap_or(0.1) })
        }
        StrategyType::Krum => {
            serde_json::json!({ "kind": "Krum", "numByzantine": st.byzantine.unwrap_or(0) })
        }
        StrategyType::MultiKrum => serde_json::json!({
            "kind": "Krum",
            "numByzantine": st.byzantine.unwrap_or(0),
            "numSelected": st.multi_krum_select.unwrap_or(1),
        }),
    };
    serde_json::json!({
        "name": reference,
        "seed": t.seed.unwrap_or(0),
        "rounds": {
            "total": t.rounds,
            "minPerRound": p.min_per_round,
            "maxPerRound": p.max_per_round,
            "roundTimeoutSeconds": p.round_timeout_seconds,
        },
        "strategy": strategy,
        "training": {
            "localEpochs": t.local_epochs,
            "batchSize": t.batch_size,
            "learningRate": t.learning_rate,
            "optimizer": match t.optimizer { Optimizer::Sgd => "sgd", Optimizer::Adam => "adam" },
        },
    })
}
