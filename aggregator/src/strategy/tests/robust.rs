//! The robust rules: median, trimmed mean, Krum, their memory bound.

use super::*;

// ---- Robust rules.

#[test]
fn median_handles_odd_even_and_outlier() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    let updates: Vec<(Model, u64)> = [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [1000.0, 1e9]]
        .iter()
        .map(|v| (vector(v), 10))
        .collect();
    let out = run(&mut FedMedian::new(1 << 20), 1, &updates[0].0, &updates);
    // The byzantine 1000 / 1e9 does not move the median far.
    assert_eq!(out.to_flat_f32(), vec![2.5, -1.5]);
}

#[test]
fn trimmed_mean_cuts_beta_from_each_end() {
    assert_eq!(trimmed_mean(&mut [100.0, 2.0, 4.0, 3.0, 1.0], 1), 3.0);
    let updates: Vec<(Model, u64)> = [1.0, 2.0, 3.0, 4.0, -500.0]
        .iter()
        .map(|&v| (vector(&[v, v * 2.0]), 1))
        .collect();
    // beta 0.2 of 5 cuts one value from each end: mean(1, 2, 3) = 2.
    let mut s = TrimmedMean::new(0.2, 1 << 20).expect("valid beta");
    let out = run(&mut s, 1, &updates[0].0, &updates);
    assert_eq!(out.to_flat_f32(), vec![2.0, 4.0]);
    // beta 0 is the plain mean.
    let mut plain = TrimmedMean::new(0.0, 1 << 20).expect("valid beta");
    assert_eq!(
        run(&mut plain, 1, &updates[0].0, &updates).to_flat_f32(),
        vec![-98.0, -196.0]
    );
    assert!(TrimmedMean::new(0.5, 1).is_err());
}

#[test]
fn krum_scores_match_hand_computation() {
    // Points 0, 1, 3, 100 with f = 0: each score sums the 2 smallest squared
    // distances to the others.
    let updates: Vec<Vec<f32>> = [0.0, 1.0, 3.0, 100.0].iter().map(|&x| vec![x]).collect();
    let scores = krum_scores(&updates, 0);
    assert_eq!(
        scores,
        vec![1.0 + 9.0, 1.0 + 4.0, 4.0 + 9.0, 97.0 * 97.0 + 99.0 * 99.0]
    );
    assert_eq!(best_indices(&scores, 2), vec![1, 0]);
}

#[test]
fn krum_picks_central_update_and_ignores_byzantine() {
    let updates = vec![
        (vector(&[0.0, 0.0]), 1),
        (vector(&[1.0, 0.0]), 3),
        (vector(&[3.0, 0.0]), 1),
        (vector(&[100.0, -100.0]), 1000),
    ];
    let global = vector(&[0.0, 0.0]);
    let mut krum = Krum::new(0, 0, 1 << 20);
    assert_eq!(
        run(&mut krum, 1, &global, &updates).to_flat_f32(),
        vec![1.0, 0.0]
    );
    assert_eq!(krum.name(), "Krum");

    // Multi-Krum m = 2 averages the two best (1.0 with n=3, 0.0 with n=1).
    let mut multi = Krum::new(0, 2, 1 << 20);
    assert_eq!(
        run(&mut multi, 1, &global, &updates).to_flat_f32(),
        vec![0.75, 0.0]
    );

    // f = 1 with one honest cluster and one attacker still excludes the attacker.
    let mut robust = Krum::new(1, 3, 1 << 20);
    let out = run(&mut robust, 1, &global, &updates).to_flat_f32();
    assert!(
        out[0] < 3.0 && out[1] == 0.0,
        "byzantine update leaked in: {out:?}"
    );
}

#[test]
fn robust_rules_enforce_memory_bound() {
    let global = vector(&[0.0; 4]);
    let per_update = 4 * 4;
    let mut s = FedMedian::new(2 * per_update);
    s.begin_round(1, &global).expect("begin");
    assert_eq!(s.max_updates(), Some(2));
    s.accept(&vector(&[1.0; 4]).view(), 1).expect("first fits");
    s.accept(&vector(&[2.0; 4]).view(), 1).expect("second fits");
    let err = s
        .accept(&vector(&[3.0; 4]).view(), 1)
        .expect_err("third exceeds");
    assert!(
        matches!(
            err,
            StrategyError::MemoryBoundExceeded {
                needed: 48,
                limit: 32,
                buffered: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("maxBufferedBytes"));
    assert_eq!(s.accepted(), 2);
    assert_eq!(s.buffered_bytes(), 32);
    assert_eq!(
        s.finish().expect("two buffered").to_flat_f32(),
        vec![1.5; 4]
    );

    let mut k = Krum::new(0, 0, per_update - 1);
    k.begin_round(1, &global).expect("begin");
    assert!(matches!(
        k.accept(&global.view(), 1),
        Err(StrategyError::MemoryBoundExceeded { buffered: 0, .. })
    ));
}

#[test]
fn abort_discards_round() {
    let global = vector(&[0.0]);
    let mut s = AnyStrategy::from_config(&StrategyConfig::FedMedian {
        max_buffered_bytes: 1 << 10,
    })
    .expect("valid");
    s.begin_round(1, &global).expect("begin");
    s.accept(&vector(&[1.0]).view(), 1).expect("accept");
    s.abort_round();
    assert_eq!(s.accepted(), 0);
    assert!(matches!(s.finish(), Err(StrategyError::NoRound)));
}
