//! Mutation fuzzing of the safetensors header parser against the reference `safetensors`
//! crate ([`header_oracle`]): valid updates in several spellings, edited one to three
//! times each (JSON characters, large numbers, repeated spans, lying length prefixes,
//! truncation, splices, flipped bits), with a fixed seed so a failure replays. Longer runs
//! with coverage guidance: `aggregator/fuzz/` (cargo-fuzz on nightly).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod header_oracle;

use rand::SeedableRng;

/// Mutants per run: about three seconds in a debug build.
const CASES: usize = 400_000;

#[test]
fn whatever_the_parser_accepts_the_reference_reads_the_same() {
    let global = header_oracle::global();
    let limits = header_oracle::limits(&global);
    let seeds = header_oracle::seeds(&global);
    // The starting corpus of the coverage-guided fuzzer (aggregator/fuzz/README.md).
    if let Some(dir) = std::env::var_os("FEDSKY_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("seed dir");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("seed");
        }
    }
    for seed in &seeds {
        assert!(
            header_oracle::check(seed, &global, &limits),
            "a valid seed was refused: {seed:?}"
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5afe_7e45);
    let (mut accepted, mut must) = (0usize, 0usize);
    for i in 0..CASES {
        let seed = &seeds[i % seeds.len()];
        let other = &seeds[(i / seeds.len()) % seeds.len()];
        // Every third case from a random well-formed header, the rest byte edits.
        let (mutant, must_accept) = if i % 3 == 0 {
            header_oracle::structured(&mut rng)
        } else {
            (header_oracle::mutate(&mut rng, seed, other), false)
        };
        let ok = header_oracle::check(&mutant, &global, &limits);
        assert!(ok || !must_accept, "a valid update was refused: {mutant:?}");
        accepted += usize::from(ok);
        must += usize::from(must_accept);
    }
    eprintln!(
        "{CASES} mutants: {accepted} accepted ({must} valid by construction), {} refused",
        CASES - accepted
    );
    // Both sides must be reached, or the mutations say nothing.
    assert!(
        must > 1000 && accepted < CASES / 2,
        "{accepted} of {CASES} accepted, {must} valid"
    );
}
