//! Checking an update's data as it arrives.

use super::scan::{BLOCK, SCAN_CHUNK, Scan, scan_range};
use super::{UpdateHeader, UpdateLimits, UpdateRejection, check_norm, check_total, non_finite};
use crate::model::{Model, TensorData, TensorView};

/// The checks of [`validate_update`] that follow the header, run on the data
/// as it arrives, so each received chunk is checked while still in cache
/// instead of in a second pass over the whole update.
///
/// Elements are scanned in whole blocks laid out exactly as
/// [`validate_update`] lays them out, so the norm is the same number however
/// the network splits the stream. The first non-finite value reported is the
/// first in data order.
#[derive(Debug, Clone)]
pub struct DataCheck {
    header: UpdateHeader,
    max_update_norm: Option<f64>,
    /// `(spec position, begin, end)` of each tensor in data order.
    order: Vec<(usize, usize, usize)>,
    /// Tensor in `order` being scanned, and elements of it done.
    pos: usize,
    elem: usize,
    /// Norm partial of the current scan chunk and of the current tensor.
    chunk: Scan,
    tensor_sum: f64,
    /// Finished tensors' ‖t − global‖², by spec position.
    sums: Vec<f64>,
}

impl DataCheck {
    /// Starts checking the data of an update whose header passed
    /// [`parse_update_header`].
    pub fn new(header: UpdateHeader, limits: &UpdateLimits) -> Self {
        let mut order: Vec<(usize, usize, usize)> = header
            .spans
            .iter()
            .enumerate()
            .map(|(i, &(b, e))| (i, b, e))
            .collect();
        order.sort_by_key(|&(_, b, e)| (b, e));
        let sums = vec![0.0; header.spans.len()];
        Self {
            header,
            max_update_norm: limits.max_update_norm,
            order,
            pos: 0,
            elem: 0,
            chunk: Scan::default(),
            tensor_sum: 0.0,
            sums,
        }
    }

    /// The header the data is checked against.
    pub fn header(&self) -> &UpdateHeader {
        &self.header
    }

    /// Checks what arrived since the last call; `received` is the whole
    /// update so far (prefix and header included).
    pub fn feed(&mut self, received: &[u8], global: &Model) -> Result<(), UpdateRejection> {
        let data = received.get(self.header.data_start()..).unwrap_or(&[]);
        while let Some(&(idx, begin, end)) = self.order.get(self.pos) {
            let Some(spec) = global.spec().tensors().get(idx) else {
                break;
            };
            let size = spec.dtype.size();
            let numel = (end - begin) / size;
            let have = data.len().saturating_sub(begin).min(end - begin) / size;
            let bytes = data.get(begin..begin + have * size).unwrap_or(&[]);
            let t = TensorView::Bytes {
                dtype: spec.dtype,
                bytes,
            };
            let reference = self
                .max_update_norm
                .and_then(|_| global.data().get(idx))
                .map(TensorData::view);
            while self.elem < numel {
                let chunk_start = self.elem / SCAN_CHUNK * SCAN_CHUNK;
                let chunk_end = (chunk_start + SCAN_CHUNK).min(numel);
                // Whole blocks only (or the chunk's end), as scan_tensor cuts them.
                let target = if have >= chunk_end {
                    chunk_end
                } else {
                    chunk_start + (have.saturating_sub(chunk_start)) / BLOCK * BLOCK
                };
                if target <= self.elem {
                    return Ok(());
                }
                scan_range(&t, reference.as_ref(), self.elem, target, &mut self.chunk);
                if let Some((index, value)) = self.chunk.first_non_finite {
                    return Err(non_finite(global, idx, index, value));
                }
                self.elem = target;
                if target == chunk_end {
                    self.tensor_sum += self.chunk.sum_sq_diff;
                    self.chunk = Scan::default();
                }
            }
            if let Some(s) = self.sums.get_mut(idx) {
                *s = self.tensor_sum;
            }
            self.tensor_sum = 0.0;
            self.elem = 0;
            self.pos += 1;
        }
        Ok(())
    }

    /// Whether every tensor has been scanned.
    pub fn is_complete(&self) -> bool {
        self.pos >= self.order.len()
    }

    /// Final checks once the stream has ended: exact size, every element
    /// scanned, the norm bound. Returns the header for [`view_validated`].
    pub fn finish(
        mut self,
        received: &[u8],
        global: &Model,
    ) -> Result<UpdateHeader, UpdateRejection> {
        check_total(received.len(), self.header.total_len())?;
        self.feed(received, global)?;
        // Sum in spec order, as validate_update does.
        let sum_sq: f64 = self.sums.iter().sum();
        let limits = UpdateLimits {
            max_update_norm: self.max_update_norm,
            ..UpdateLimits::default()
        };
        check_norm(sum_sq, &limits)?;
        Ok(self.header)
    }
}
