//! A FedAvg round whose updates are all in memory, as Flower's `aggregate`
//! gets them (simulations, tools, the benchmark's side-by-side): every
//! update is validated and folded while reading it once.
//!
//! The streaming server checks each chunk as it lands because it must answer
//! the upload before folding; here nothing has to be answered early, so the
//! finiteness scan is replaced by a proof. NaN or ±inf in an update always
//! reaches the weighted mean (weights are finite and at least 1), so a mean
//! that comes out finite proves every update finite. Only when it does not
//! are the updates scanned one by one, the bad ones rejected with the same
//! precise reasons as [`validate_update`], and the mean rebuilt from the
//! others: the result is bit-identical to validating first.

use crate::model::{Model, ModelView};
use crate::strategy::{FedAvg, Strategy, StrategyError};
use crate::update::{
    UpdateHeader, UpdateLimits, UpdateRejection, validate_layout, validate_update, view_validated,
};

/// The outcome of [`fedavg_round`].
#[derive(Debug)]
pub struct InMemoryRound {
    /// The new global model.
    pub model: Model,
    /// Positions (in the input) of the updates refused, and why.
    pub rejected: Vec<(usize, UpdateRejection)>,
}

/// Why [`fedavg_round`] produced no model.
#[derive(Debug, thiserror::Error)]
pub enum InMemoryError {
    /// Every update was refused.
    #[error("round {round}: all {count} updates were rejected; first: {first}")]
    NoneAccepted {
        /// The round.
        round: u64,
        /// Updates given.
        count: usize,
        /// The first refusal.
        first: UpdateRejection,
    },
    /// The strategy refused (no updates, a layout from another model).
    #[error(transparent)]
    Strategy(#[from] StrategyError),
}

/// Runs FedAvg round `round` over `updates` (safetensors bytes, number of
/// examples) against `global`, recycling nothing: the caller may hand the
/// previous model back with [`Strategy::recycle`] before calling.
///
/// With a norm bound in `limits` each update is scanned first (the bound
/// needs its norm); without one, each is read once.
pub fn fedavg_round(
    strategy: &mut FedAvg,
    round: u64,
    global: &Model,
    updates: &[(&[u8], u64)],
    limits: &UpdateLimits,
) -> Result<InMemoryRound, InMemoryError> {
    strategy.begin_round(round, global)?;
    let scanned = limits.max_update_norm.is_some();
    let mut rejected = Vec::new();
    let mut laid_out: Vec<(usize, UpdateHeader)> = Vec::with_capacity(updates.len());
    for (i, (bytes, _)) in updates.iter().enumerate() {
        let checked = if scanned {
            validate_update(bytes, global, limits)
        } else {
            validate_layout(bytes, global, limits)
        };
        match checked {
            Ok(h) => laid_out.push((i, h)),
            Err(e) => rejected.push((i, e)),
        }
    }
    let views = |kept: &[(usize, UpdateHeader)]| -> Vec<(ModelView<'_>, u64)> {
        kept.iter()
            .filter_map(|(i, h)| {
                updates
                    .get(*i)
                    .map(|(b, n)| (view_validated(b, global, h), *n))
            })
            .collect()
    };
    if !scanned && !laid_out.is_empty() {
        let v = views(&laid_out);
        let pairs: Vec<(&ModelView<'_>, u64)> = v.iter().map(|(m, n)| (m, *n)).collect();
        if let Some(model) = strategy.finish_unscanned(&pairs)? {
            return Ok(InMemoryRound { model, rejected });
        }
        // Not proven finite: scan, and keep what passes.
        laid_out.retain(|(i, _)| {
            let Some((bytes, _)) = updates.get(*i) else {
                return false;
            };
            match validate_update(bytes, global, limits) {
                Ok(_) => true,
                Err(e) => {
                    rejected.push((*i, e));
                    false
                }
            }
        });
        rejected.sort_by_key(|(i, _)| *i);
    }
    if laid_out.is_empty() {
        strategy.abort_round();
        let count = updates.len();
        return Err(match rejected.into_iter().next() {
            Some((_, first)) => InMemoryError::NoneAccepted {
                round,
                count,
                first,
            },
            None => InMemoryError::Strategy(StrategyError::NoUpdates { round }),
        });
    }
    let v = views(&laid_out);
    let pairs: Vec<(&ModelView<'_>, u64)> = v.iter().map(|(m, n)| (m, *n)).collect();
    strategy.accept_batch(&pairs)?;
    let model = strategy.finish()?;
    Ok(InMemoryRound { model, rejected })
}

#[cfg(test)]
mod tests;
