//! Seeded participant sampling: the same seed, round, attempt and candidate
//! set always give the same sample, so a resumed run matches a no-fault run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::ParticipantId;

/// SplitMix64 finaliser: spreads (seed, round, attempt) over the whole seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks up to `max` of `candidates` (given in sorted order); returns them sorted.
pub(crate) fn sample(
    candidates: &[&ParticipantId],
    max: usize,
    seed: u64,
    round: u64,
    attempt: u32,
) -> Vec<ParticipantId> {
    let amount = max.min(candidates.len());
    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed ^ mix(round)) ^ u64::from(attempt)));
    let mut picked: Vec<usize> =
        rand::seq::index::sample(&mut rng, candidates.len(), amount).into_vec();
    picked.sort_unstable();
    picked
        .into_iter()
        .filter_map(|i| candidates.get(i).map(|id| (*id).clone()))
        .collect()
}
