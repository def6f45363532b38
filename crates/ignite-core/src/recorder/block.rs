//! The counter block of one method: `shards + 1` cache-line-aligned copies of its counters.

use super::ordinal::shard_ordinal;
use super::{MethodShape, RecorderConfig, RecorderError};
use crate::ids::{FunctionId, MethodId, Tier};
use crate::profile::counter::{Counter, CounterKey};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Registry key: (function, method, tier).
pub(super) type MethodIndex = (FunctionId, MethodId, Tier);

pub(super) const INVOCATIONS: usize = 0;
pub(super) const BACKEDGES: usize = 1;
pub(super) const DEOPTS: usize = 2;
pub(super) const BRANCHES: usize = 3;
/// Cells per 128-byte line.
pub(super) const LINE_CELLS: usize = 16;
pub(super) const LINE_BYTES: usize = 128;

/// Adds `n` to a cell only this thread writes: no read-modify-write instruction.
#[inline(always)]
fn bump_exclusive(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
}

/// The counters of one method at one tier, over all shards.
pub(super) struct MethodBlock {
    /// `base` padding cells, then `shards + 1` blocks of `stride` cells.
    pub(super) cells: Box<[AtomicU64]>,
    /// Index of the first cell of shard 0 (128-byte aligned).
    pub(super) base: usize,
    /// Cells per shard, a multiple of [`LINE_CELLS`].
    pub(super) stride: usize,
    /// Exclusive shards; the overflow shard is number `shards`.
    pub(super) shards: usize,
    /// Offset of call site 0's receiver cells inside a shard.
    pub(super) receivers: usize,
    /// Cells per call site: the total and `slots` (type, count) pairs.
    pub(super) site_stride: usize,
    pub(super) shape: MethodShape,
    pub(super) key: MethodIndex,
}

impl MethodBlock {
    pub(super) fn new(
        config: &RecorderConfig,
        key: MethodIndex,
        shape: MethodShape,
    ) -> Result<MethodBlock, RecorderError> {
        let site_stride = 1 + 2 * config.receiver_slots;
        let receivers = BRANCHES + 2 * usize::from(shape.branch_sites);
        let used = receivers + usize::from(shape.call_sites) * site_stride;
        let stride = used.div_ceil(LINE_CELLS) * LINE_CELLS;
        let needed = (config.shards + 1) * stride;
        if needed > RecorderConfig::MAX_METHOD_CELLS {
            return Err(RecorderError::ShapeTooLarge {
                shape,
                cells: needed,
                max: RecorderConfig::MAX_METHOD_CELLS,
            });
        }
        // One spare line so that shard 0 can start on a 128-byte boundary.
        let cells: Box<[AtomicU64]> = (0..needed + LINE_CELLS - 1).map(|_| AtomicU64::new(0)).collect();
        let base = match cells.as_ptr().align_offset(LINE_BYTES) {
            offset if offset < LINE_CELLS => offset,
            _ => 0,
        };
        Ok(MethodBlock {
            cells,
            base,
            stride,
            shards: config.shards,
            receivers,
            site_stride,
            shape,
            key,
        })
    }

    /// Index of the first cell of shard `shard` (`shards` = overflow).
    #[inline(always)]
    pub(super) fn shard_start(&self, shard: usize) -> usize {
        self.base + shard * self.stride
    }

    /// Adds `n` to the counter at `offset` of the calling thread's shard.
    #[inline(always)]
    pub(super) fn bump(&self, offset: usize, n: u64) {
        let ordinal = shard_ordinal();
        if ordinal < self.shards {
            bump_exclusive(&self.cells[self.shard_start(ordinal) + offset], n);
        } else {
            self.cells[self.shard_start(self.shards) + offset].fetch_add(n, Relaxed);
        }
    }

    #[inline(always)]
    pub(super) fn record_receiver(&self, site: u16, type_id: u32, n: u64) {
        if site >= self.shape.call_sites {
            return;
        }
        let tag = u64::from(type_id) + 1;
        let ordinal = shard_ordinal();
        let exclusive = ordinal < self.shards;
        let shard = if exclusive { ordinal } else { self.shards };
        let start = self.shard_start(shard) + self.receivers + usize::from(site) * self.site_stride;
        let Some((total, slots)) = self.cells[start..start + self.site_stride].split_first() else {
            return;
        };
        if exclusive {
            record_receiver_exclusive(total, slots, tag, n);
        } else {
            record_receiver_shared(total, slots, tag, n);
        }
    }

    /// Sum of the counter at `offset` over every shard.
    fn sum(&self, offset: usize) -> u64 {
        (0..=self.shards)
            .map(|s| self.cells[self.shard_start(s) + offset].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Appends the current non-zero totals of every counter, in [`CounterKey`] order.
    pub(super) fn snapshot(&self, out: &mut Vec<(FunctionId, CounterKey, u64)>) {
        let (function, method, tier) = self.key;
        let mut push = |counter: Counter, value: u64| {
            if value != 0 {
                out.push((function, CounterKey { method, tier, counter }, value));
            }
        };
        push(Counter::Invocations, self.sum(INVOCATIONS));
        push(Counter::Backedges, self.sum(BACKEDGES));
        push(Counter::Deopts, self.sum(DEOPTS));
        for site in 0..self.shape.branch_sites {
            let offset = BRANCHES + 2 * usize::from(site);
            push(Counter::Branch { site, taken: false }, self.sum(offset));
            push(Counter::Branch { site, taken: true }, self.sum(offset + 1));
        }
        // `ReceiverTotal` sorts before every `Receiver`: all totals first, then the types.
        let mut types: Vec<(u16, u32, u64)> = Vec::new();
        let mut site_types: Vec<(u32, u64)> = Vec::new();
        for site in 0..self.shape.call_sites {
            let offset = self.receivers + usize::from(site) * self.site_stride;
            let total = self.sum(offset);
            site_types.clear();
            for shard in 0..=self.shards {
                let start = self.shard_start(shard) + offset;
                for pair in self.cells[start + 1..start + self.site_stride].chunks_exact(2) {
                    let tag = pair[0].load(Relaxed);
                    let count = pair[1].load(Relaxed);
                    if tag != 0 && count != 0 {
                        site_types.push(((tag - 1) as u32, count));
                    }
                }
            }
            site_types.sort_unstable_by_key(|&(type_id, _)| type_id);
            let mut tracked = 0u64;
            let mut i = 0;
            while i < site_types.len() {
                let type_id = site_types[i].0;
                let mut count = 0u64;
                while i < site_types.len() && site_types[i].0 == type_id {
                    count = count.wrapping_add(site_types[i].1);
                    i += 1;
                }
                tracked = tracked.wrapping_add(count);
                types.push((site, type_id, count));
            }
            // Relaxed loads may see a slot's count before the total it follows: never report
            // a total below its tracked types (both terms are monotone, so the max is too).
            push(Counter::ReceiverTotal { site }, total.max(tracked));
        }
        for (site, type_id, count) in types {
            push(Counter::Receiver { site, type_id }, count);
        }
    }
}

/// Records a receiver in a shard only the calling thread writes: plain loads and stores.
#[inline(always)]
fn record_receiver_exclusive(total: &AtomicU64, slots: &[AtomicU64], tag: u64, n: u64) {
    bump_exclusive(total, n);
    for pair in slots.chunks_exact(2) {
        let seen = pair[0].load(Relaxed);
        if seen == tag {
            bump_exclusive(&pair[1], n);
            return;
        }
        if seen == 0 {
            pair[0].store(tag, Relaxed);
            bump_exclusive(&pair[1], n);
            return;
        }
    }
    // Every slot holds another type: only the total counts this observation.
}

/// Records a receiver in the shared overflow shard: `fetch_add`, slots claimed by CAS.
#[cold]
#[inline(never)]
pub(super) fn record_receiver_shared(total: &AtomicU64, slots: &[AtomicU64], tag: u64, n: u64) {
    total.fetch_add(n, Relaxed);
    for pair in slots.chunks_exact(2) {
        let mut seen = pair[0].load(Relaxed);
        if seen == 0 {
            seen = match pair[0].compare_exchange(0, tag, Relaxed, Relaxed) {
                Ok(_) => tag,
                Err(actual) => actual,
            };
        }
        if seen == tag {
            pair[1].fetch_add(n, Relaxed);
            return;
        }
    }
}
