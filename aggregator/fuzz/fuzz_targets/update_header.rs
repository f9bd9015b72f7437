//! Every input as an update of the oracle's global model, and as the seed of a random
//! well-formed header: whatever the parser accepts, the `safetensors` crate must read as
//! the same tensors, a valid header must be accepted, and nothing may panic.

#![no_main]

#[path = "../../tests/header_oracle/mod.rs"]
mod header_oracle;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let global = header_oracle::global();
    let limits = header_oracle::limits(&global);
    header_oracle::check(data, &global, &limits);
    if let Some(seed) = data.first_chunk::<8>() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from_le_bytes(*seed));
        let (bytes, valid) = header_oracle::structured(&mut rng);
        let accepted = header_oracle::check(&bytes, &global, &limits);
        assert!(accepted || !valid, "a valid update was refused: {bytes:?}");
    }
});
