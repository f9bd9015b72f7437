//! Receive buffers for updates, and a pool that keeps them (and their
//! touched pages) between rounds.
//!
//! First-touching memory is slow on the VMs this was measured on: a fresh
//! 100 MB buffer costs ~80–140 ms of 4 KiB page faults, more than receiving
//! the bytes over loopback. A buffer that comes back from the pool costs
//! nothing, and one buffer is touched at start while participants train.
//! (Transparent huge pages were tried: usually ~20 ms, but on a host short of
//! free 2 MiB blocks a fault can stall for seconds in compaction.)

use std::ops::Deref;
use std::sync::Mutex;

/// Below this size a buffer is not worth keeping: the allocator recycles it.
const POOL_MIN: usize = 2 << 20;
/// Capacities are rounded up to this, so updates whose JSON headers differ by
/// a few bytes still fit each other's pooled buffers.
const ROUND_TO: usize = 1 << 20;

/// A fixed-capacity byte buffer filled front to back.
#[derive(Debug, Default)]
pub struct RecvBuf {
    bytes: Vec<u8>,
}

/// More bytes than the buffer was sized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {capacity} bytes cannot take {needed} bytes")]
pub struct BufferFull {
    /// Capacity of the buffer.
    pub capacity: usize,
    /// Length it would have needed.
    pub needed: usize,
}

impl RecvBuf {
    /// An empty buffer that holds at least `capacity` bytes (nothing is
    /// touched until written).
    pub fn with_capacity(capacity: usize) -> Self {
        let rounded = if capacity >= POOL_MIN {
            capacity.div_ceil(ROUND_TO).saturating_mul(ROUND_TO)
        } else {
            capacity
        };
        Self {
            bytes: Vec::with_capacity(rounded),
        }
    }

    /// Bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets the contents (keeps the memory).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Appends `data`, or refuses without writing if it would not fit (the
    /// buffer never reallocates, so a lying sender cannot make it grow).
    pub fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), BufferFull> {
        let needed = self.bytes.len().saturating_add(data.len());
        if needed > self.bytes.capacity() {
            return Err(BufferFull {
                capacity: self.bytes.capacity(),
                needed,
            });
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Writes every page of the capacity once, so later writes take no page
    /// faults; leaves the buffer empty.
    pub fn prefault(&mut self) {
        self.bytes.resize(self.bytes.capacity(), 0);
        self.bytes.clear();
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
}

impl Deref for RecvBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<Vec<u8>> for RecvBuf {
    fn from(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }
}

/// Buffers kept between uploads so warm rounds take no page faults.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<RecvBuf>>,
    max_buffers: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_buffers` idle buffers (the most updates
    /// a round holds at once, so the pool never outgrows a round's peak).
    pub fn new(max_buffers: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            max_buffers,
        }
    }

    /// An empty buffer of at least `capacity` bytes: the smallest idle one
    /// that fits, else a new one.
    pub fn take(&self, capacity: usize) -> RecvBuf {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        reused.unwrap_or_else(|| RecvBuf::with_capacity(capacity))
    }

    /// Returns a buffer for reuse (dropped if the pool is full or the buffer
    /// is small enough for the allocator to recycle anyway).
    pub fn give(&self, mut buf: RecvBuf) {
        if buf.capacity() < POOL_MIN {
            return;
        }
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.max_buffers {
            free.push(buf);
        }
    }

    /// Allocates and touches one buffer of `capacity` bytes and keeps it
    /// idle, so the first upload of a job takes no page faults. Meant for a
    /// blocking thread while participants train; small sizes are skipped.
    pub fn prewarm(&self, capacity: usize) {
        if capacity < POOL_MIN {
            return;
        }
        let mut buf = self.take(capacity);
        buf.prefault();
        self.give(buf);
    }

    /// Idle buffers held.
    pub fn idle(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_capacity_and_refuses_more() {
        for cap in [100, POOL_MIN + 1] {
            let mut b = RecvBuf::with_capacity(cap);
            assert!(b.capacity() >= cap);
            let chunk = vec![7u8; cap / 2 + 1];
            b.extend_from_slice(&chunk).expect("fits");
            let err = b
                .extend_from_slice(&vec![1u8; b.capacity()])
                .expect_err("too much");
            assert_eq!(err.needed, chunk.len() + b.capacity());
            assert_eq!(b.len(), chunk.len(), "a refused write changes nothing");
            assert_eq!(&b[..], &chunk[..]);
        }
    }

    #[test]
    fn pool_reuses_the_smallest_fitting_buffer() {
        let pool = BufferPool::new(2);
        let mut big = pool.take(3 * POOL_MIN);
        big.extend_from_slice(b"x").expect("fits");
        let small = pool.take(POOL_MIN);
        let (big_cap, small_cap) = (big.capacity(), small.capacity());
        pool.give(big);
        pool.give(small);
        pool.give(RecvBuf::with_capacity(POOL_MIN)); // over the bound of 2: dropped
        assert_eq!(pool.idle(), 2);
        let again = pool.take(POOL_MIN);
        assert_eq!(again.capacity(), small_cap);
        assert!(again.is_empty(), "reused buffers come back cleared");
        assert_eq!(pool.take(2 * POOL_MIN).capacity(), big_cap);
        pool.give(RecvBuf::with_capacity(10)); // small buffers are not pooled
        assert_eq!(pool.idle(), 0);
        pool.prewarm(POOL_MIN);
        pool.prewarm(100); // too small to keep: nothing pooled
        assert_eq!(pool.idle(), 1);
        assert!(pool.take(POOL_MIN).capacity() >= POOL_MIN);
    }
}
