//! Batches assembled on a worker thread, handed over through a bounded
//! channel: decoding runs ahead of the training step by `prefetch` batches
//! and stops when the consumer stops.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{DataError, SharedDataset};

/// One batch, as flat host memory (turned into tensors by the consumer, on
/// its own device).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `len x sample numel` values.
    pub xs: Vec<f32>,
    /// `len` labels.
    pub ys: Vec<i64>,
}

impl Batch {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.ys.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ys.is_empty()
    }
}

/// Iterates a subset of a dataset in batches.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: SharedDataset,
    indices: Vec<usize>,
    batch_size: usize,
    shuffle: bool,
    prefetch: usize,
}

impl Loader {
    /// A loader over `indices` of `dataset`; with `shuffle` every epoch has
    /// its own order drawn from the seed given to [`Loader::epoch`]
    /// (without: index order, for evaluation).
    pub fn new(
        dataset: SharedDataset,
        indices: Vec<usize>,
        batch_size: usize,
        shuffle: bool,
    ) -> Self {
        Self {
            dataset,
            indices,
            batch_size: batch_size.max(1),
            shuffle,
            prefetch: 4,
        }
    }

    /// The same samples in batches of `batch_size`.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Batches decoded ahead of the consumer (default 4).
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Samples per epoch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The dataset.
    pub fn dataset(&self) -> &SharedDataset {
        &self.dataset
    }

    /// The sample indices.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The order of one epoch.
    pub fn epoch_order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut order = self.indices.clone();
        if self.shuffle {
            // Distinct, reproducible order per epoch.
            let s = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(s));
        }
        order
    }

    /// Starts the worker for one epoch of a run seeded with `seed`.
    pub fn epoch(&self, seed: u64, epoch: u64) -> BatchIter {
        let order = self.epoch_order(seed, epoch);
        let (tx, rx) = sync_channel(self.prefetch);
        let dataset = self.dataset.clone();
        let batch_size = self.batch_size;
        let worker = std::thread::Builder::new()
            .name("fedsky-loader".into())
            .spawn(move || produce(&*dataset, &order, batch_size, &tx));
        match worker {
            Ok(handle) => BatchIter {
                rx: Some(rx),
                worker: Some(handle),
                failed: false,
            },
            Err(_) => BatchIter {
                rx: None,
                worker: None,
                failed: false,
            },
        }
    }
}

fn produce(
    dataset: &dyn super::Dataset,
    order: &[usize],
    batch_size: usize,
    tx: &SyncSender<Result<Batch, DataError>>,
) {
    for chunk in order.chunks(batch_size) {
        let mut batch = Batch {
            xs: Vec::new(),
            ys: Vec::with_capacity(chunk.len()),
        };
        for &i in chunk {
            match dataset.load(i) {
                Ok((x, y)) => {
                    batch.xs.extend_from_slice(&x);
                    batch.ys.push(y);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        // A send error means the consumer stopped early: nothing to do.
        if tx.send(Ok(batch)).is_err() {
            return;
        }
    }
}

/// The batches of one epoch. Dropping it stops the worker.
#[derive(Debug)]
pub struct BatchIter {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    worker: Option<JoinHandle<()>>,
    failed: bool,
}

impl Iterator for BatchIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let Some(rx) = &self.rx else {
            self.failed = true;
            return Some(Err(DataError::WorkerGone));
        };
        match rx.recv() {
            Ok(Ok(b)) => Some(Ok(b)),
            Ok(Err(e)) => {
                self.failed = true;
                Some(Err(e))
            }
            Err(_) => {
                // Channel closed: the epoch is over, unless the worker panicked.
                let panicked = self
                    .worker
                    .take()
                    .map(|h| h.join().is_err())
                    .unwrap_or(false);
                self.failed = true;
                panicked.then_some(Err(DataError::WorkerGone))
            }
        }
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the receiver first unblocks a worker waiting to send.
        drop(self.rx.take());
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}
