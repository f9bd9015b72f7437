//! FedOpt: the server optimisers against Flower's formulas, checkpoints.

use super::*;

// ---- FedOpt: Flower's FedAdagrad / FedAdam / FedYogi formulas, computed by
// hand (in f64) for x = [0, 1, -0.5] and updates ([1, .5, -.5], n=1),
// ([.5, 1.5, .5], n=3), so avg = [.625, 1.25, .25], over two rounds.

fn fedopt_rounds(strategy: &mut dyn Strategy) -> (Model, Model) {
    let updates = vec![
        (vector(&[1.0, 0.5, -0.5]), 1),
        (vector(&[0.5, 1.5, 0.5]), 3),
    ];
    let x1 = run(strategy, 1, &vector(&[0.0, 1.0, -0.5]), &updates);
    let x2 = run(strategy, 2, &x1, &updates);
    (x1, x2)
}

#[test]
fn fedadagrad_matches_flower_formulas() {
    let mut s =
        FedOpt::new(ServerOptimizer::Adagrad, FedOptConfig::adagrad_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    assert_close(
        &x1.to_flat_f32(),
        &[0.09999999984, 1.0999999996, -0.4000000001333333],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[0.16431920841502085, 1.1514495750671636, -0.334506946349867],
        1e-6,
    );
    let v = s.state().v_t.clone().expect("state after two rounds");
    assert_close(
        &v,
        &[0.6662500001680001, 0.08500000011999999, 0.9850000001733332],
        1e-6,
    );
}

#[test]
fn fedadam_matches_flower_formulas() {
    let mut s = FedOpt::new(ServerOptimizer::Adam, FedOptConfig::adam_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    // Round 1 by hand: m = 0.1Δ, v = 0.01Δ², so m/√v = sign(Δ) and the step is
    // η·√(1−0.99²)/(1−0.9²) = 0.0742459776… per coordinate.
    assert_close(
        &x1.to_flat_f32(),
        &[
            0.07424597765241114,
            1.0742459758705079,
            -0.42575402214959956,
        ],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[0.1594716876971007, 1.1579224308226357, -0.34042894880686725],
        1e-6,
    );
    let st = s.state();
    assert_eq!(st.last_round, Some(2));
    assert_close(
        st.m_t.as_deref().expect("m"),
        &[
            0.11132540223475887,
            0.040075402412949206,
            0.13507540221495995,
        ],
        1e-6,
    );
    assert_close(
        st.v_t.as_deref().expect("v"),
        &[
            0.00690048743132049,
            0.0009276447699771019,
            0.010135184984513625,
        ],
        1e-5,
    );
}

#[test]
fn fedyogi_matches_flower_formulas() {
    let mut s = FedOpt::new(ServerOptimizer::Yogi, FedOptConfig::yogi_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    assert_close(
        &x1.to_flat_f32(),
        &[
            0.009842519685039365,
            1.0096153846153846,
            -0.4901315789473684,
        ],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[
            0.023120107440394014,
            1.0226579100195727,
            -0.47682778469823645,
        ],
        1e-6,
    );
    assert_close(
        s.state().v_t.as_deref().expect("v"),
        &[
            0.007690437255874519,
            0.001202847633136096,
            0.011102947541551255,
        ],
        1e-5,
    );
}

#[test]
fn fedopt_checkpoint_resume_is_bitwise_equal() {
    let config = StrategyConfig::FedAdam(FedOptConfig::adam_default());
    let updates = random_models(3, 64, 6);
    let global = updates[0].0.clone();

    let mut straight = config.build().expect("valid");
    let r1 = run(&mut straight, 1, &global, &updates);
    let r2 = run(&mut straight, 2, &r1, &updates);

    let mut first = config.build().expect("valid");
    let r1b = run(&mut first, 1, &global, &updates);
    let json = serde_json::to_string(&first.checkpoint()).expect("serialise");
    let checkpoint: StrategyCheckpoint = serde_json::from_str(&json).expect("deserialise");
    let mut resumed = AnyStrategy::restore(&checkpoint).expect("restore");
    let r2b = run(&mut resumed, 2, &r1b, &updates);
    assert_eq!(r2, r2b);
    assert_eq!(resumed.name(), "FedAdam");
}

#[test]
fn fedopt_rejects_state_of_another_model() {
    let state = FedOptState {
        last_round: Some(1),
        m_t: Some(vec![0.0; 5]),
        v_t: Some(vec![0.0; 5]),
    };
    let mut s = FedOpt::with_state(ServerOptimizer::Yogi, FedOptConfig::yogi_default(), state)
        .expect("valid");
    let err = s.begin_round(2, &vector(&[1.0, 2.0])).expect_err("5 != 2");
    assert!(
        matches!(
            err,
            StrategyError::StateMismatch {
                expected: 2,
                got: 5
            }
        ),
        "{err}"
    );
}
