//! Strategy configuration: serde, validation, building every kind.

use super::*;

// ---- Configuration.

#[test]
fn config_serde_and_validation() {
    let json =
        r#"{"kind":"FedYogi","eta":0.01,"etaL":0.0316,"beta1":0.9,"beta2":0.99,"tau":0.001}"#;
    let cfg: StrategyConfig = serde_json::from_str(json).expect("parse");
    assert_eq!(cfg, StrategyConfig::FedYogi(FedOptConfig::yogi_default()));
    assert_eq!(cfg.client_hints().learning_rate, Some(0.0316));

    let krum: StrategyConfig =
        serde_json::from_str(r#"{"kind":"Krum","numByzantine":1}"#).expect("parse");
    assert_eq!(
        krum,
        StrategyConfig::Krum {
            num_byzantine: 1,
            num_selected: 0,
            max_buffered_bytes: 4 << 30
        }
    );

    let prox = StrategyConfig::FedProx { proximal_mu: 0.01 };
    assert_eq!(prox.client_hints().proximal_mu, Some(0.01));
    let built = prox.build().expect("valid");
    assert_eq!(built.name(), "FedProx");
    assert_eq!(built.checkpoint().config, prox);

    for (bad, field) in [
        (
            StrategyConfig::TrimmedMean {
                beta: 0.5,
                max_buffered_bytes: 1,
            },
            "beta",
        ),
        (StrategyConfig::FedProx { proximal_mu: -1.0 }, "proximalMu"),
        (
            StrategyConfig::FedAdam(FedOptConfig {
                tau: 0.0,
                ..FedOptConfig::adam_default()
            }),
            "tau",
        ),
        (
            StrategyConfig::FedAdam(FedOptConfig {
                beta_1: 1.0,
                ..FedOptConfig::adam_default()
            }),
            "beta1",
        ),
        (
            StrategyConfig::FedMedian {
                max_buffered_bytes: 0,
            },
            "maxBufferedBytes",
        ),
    ] {
        match bad.build() {
            Err(StrategyError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{bad:?} should be invalid, got {other:?}"),
        }
    }
}

#[test]
fn every_config_builds_and_aggregates() {
    let updates = random_models(5, 10, 7);
    let global = updates[0].0.clone();
    for cfg in [
        StrategyConfig::FedAvg,
        StrategyConfig::FedProx { proximal_mu: 0.1 },
        StrategyConfig::FedAdagrad(FedOptConfig::adagrad_default()),
        StrategyConfig::FedAdam(FedOptConfig::adam_default()),
        StrategyConfig::FedYogi(FedOptConfig::yogi_default()),
        StrategyConfig::FedMedian {
            max_buffered_bytes: 1 << 20,
        },
        StrategyConfig::TrimmedMean {
            beta: 0.2,
            max_buffered_bytes: 1 << 20,
        },
        StrategyConfig::Krum {
            num_byzantine: 1,
            num_selected: 2,
            max_buffered_bytes: 1 << 20,
        },
    ] {
        let mut s = cfg.build().expect("valid");
        let out = run(&mut s, 1, &global, &updates);
        assert_eq!(out.spec(), global.spec(), "{cfg:?}");
        assert!(out.to_flat_f32().iter().all(|x| x.is_finite()), "{cfg:?}");
        let back: StrategyCheckpoint =
            serde_json::from_str(&serde_json::to_string(&s.checkpoint()).expect("ser"))
                .expect("de");
        assert_eq!(back.config, cfg);
    }
}
