//! The host's hot path for recording JIT profile counts.
//!
//! A [`Recorder`] owns the counters of every method the host registers; a [`MethodProfiler`]
//! is the cheap, clonable handle through which the host's interpreter or baseline code bumps
//! one method's counters.
//!
//! # Design
//!
//! Recording must not execute a locked read-modify-write instruction, take a lock or
//! allocate. Every method's counters are therefore replicated into per-thread *shards*:
//!
//! * Each thread owns a small *shard ordinal*, taken on its first recording from a global
//!   free list (a `Mutex`, touched only when a thread first records and when it exits). The
//!   thread-local guard gives the ordinal back when the thread exits, so pools that recycle
//!   threads reuse low ordinals instead of growing them forever. The mutex hand-off orders
//!   the previous owner's last writes before the new owner's first read.
//! * A thread whose ordinal is below the recorder's shard count is the only writer of that
//!   shard, so it counts with a plain `load` + `store` (both `Relaxed`).
//! * Any other thread (ordinal too large, or recording while its thread-locals are being
//!   destroyed) counts in a shared *overflow* shard with `fetch_add`: correct, but slower.
//!
//! Readers ([`Recorder::visit`]) sum every shard plus the overflow shard. Every cell only
//! grows and has a single writer (or only atomic writers), so the sums are monotone and
//! nothing is lost or counted twice.
//!
//! # Memory layout
//!
//! Each method has one `Box<[AtomicU64]>`: `shards + 1` blocks (the last one is the overflow
//! shard), each starting on a 128-byte boundary and rounded up to 16 cells (128 bytes), so two
//! threads never write the same cache line (or adjacent-line prefetch pair). Inside a block:
//!
//! | cells                               | counter                                     |
//! |-------------------------------------|---------------------------------------------|
//! | `0`, `1`, `2`                       | invocations, back-edges, deopts             |
//! | `3 + 2 * site + taken`              | branch `site`, direction `taken`            |
//! | `recv + site * (1 + 2 * slots)`     | receiver total of call `site`               |
//! | `... + 1 + 2 * j`, `... + 2 + 2 * j`| slot `j`: `type_id + 1` (0 = empty), count  |
//!
//! Memory per method is `(shards + 1) * round_up(3 + 2 * branch_sites + call_sites *
//! (1 + 2 * receiver_slots), 16) * 8` bytes, allocated when the method is registered.

mod block;
mod ordinal;
#[cfg(test)]
mod tests;

use self::block::{BACKEDGES, BRANCHES, DEOPTS, INVOCATIONS, MethodBlock, MethodIndex};
use crate::ids::{FunctionId, MethodId, Tier};
use crate::profile::counter::CounterKey;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Configuration of a [`Recorder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecorderConfig {
    /// Number of single-writer shards per method, `1..=`[`RecorderConfig::MAX_SHARDS`].
    ///
    /// The first `shards` concurrently live recording threads (process-wide) count without
    /// atomic read-modify-write instructions; any further thread shares the overflow shard.
    /// Default 16.
    pub shards: usize,
    /// Receiver types tracked per call site per shard,
    /// `0..=`[`RecorderConfig::MAX_RECEIVER_SLOTS`].
    ///
    /// Types seen after the slots are full only count in the site total. Default 8.
    pub receiver_slots: usize,
}

impl RecorderConfig {
    /// The largest accepted [`RecorderConfig::shards`].
    pub const MAX_SHARDS: usize = 256;
    /// The largest accepted [`RecorderConfig::receiver_slots`].
    pub const MAX_RECEIVER_SLOTS: usize = 64;
    /// The largest number of counter cells (8 bytes each, all shards included) one method
    /// may occupy: 2^24 cells, 128 MiB.
    pub const MAX_METHOD_CELLS: usize = 1 << 24;

    /// Checks that every field is in range.
    pub fn validate(&self) -> Result<(), RecorderError> {
        if self.shards == 0 || self.shards > Self::MAX_SHARDS {
            return Err(RecorderError::InvalidShards {
                shards: self.shards,
                max: Self::MAX_SHARDS,
            });
        }
        if self.receiver_slots > Self::MAX_RECEIVER_SLOTS {
            return Err(RecorderError::InvalidReceiverSlots {
                slots: self.receiver_slots,
                max: Self::MAX_RECEIVER_SLOTS,
            });
        }
        Ok(())
    }
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            shards: 16,
            receiver_slots: 8,
        }
    }
}

/// The number of counter sites of one method at one tier, fixed when it is registered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodShape {
    /// Conditional branch sites, numbered `0..branch_sites`.
    pub branch_sites: u16,
    /// Call sites with receiver-type profiles, numbered `0..call_sites`.
    pub call_sites: u16,
}

/// Errors of the [`Recorder`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// [`RecorderConfig::shards`] is zero or above the maximum.
    #[error("recorder shard count {shards} is out of range 1..={max}")]
    InvalidShards {
        /// The rejected shard count.
        shards: usize,
        /// The largest accepted shard count.
        max: usize,
    },
    /// [`RecorderConfig::receiver_slots`] is above the maximum.
    #[error("recorder receiver slots {slots} is out of range 0..={max}")]
    InvalidReceiverSlots {
        /// The rejected number of slots.
        slots: usize,
        /// The largest accepted number of slots.
        max: usize,
    },
    /// The method was already registered at this tier with a different shape.
    #[error(
        "method {method:?} at tier {tier:?} of {function:?} is registered with shape \
         {registered:?}, not {requested:?}"
    )]
    ShapeMismatch {
        /// The function of the method.
        function: FunctionId,
        /// The method.
        method: MethodId,
        /// The tier.
        tier: Tier,
        /// The shape the method was first registered with.
        registered: MethodShape,
        /// The shape of the rejected registration.
        requested: MethodShape,
    },
    /// The method's counters would take more than [`RecorderConfig::MAX_METHOD_CELLS`] cells.
    #[error("method shape {shape:?} needs {cells} counter cells, more than {max}")]
    ShapeTooLarge {
        /// The rejected shape.
        shape: MethodShape,
        /// The cells it would need over all shards.
        cells: usize,
        /// The largest accepted number of cells.
        max: usize,
    },
}

struct Inner {
    config: RecorderConfig,
    methods: Mutex<BTreeMap<MethodIndex, Arc<MethodBlock>>>,
}

impl Inner {
    fn methods(&self) -> MutexGuard<'_, BTreeMap<MethodIndex, Arc<MethodBlock>>> {
        // Every registry operation leaves the map consistent; a panic elsewhere cannot break it.
        self.methods.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The per-method JIT profile counters of one host, recorded without contention.
///
/// Cloning is cheap (one `Arc`); all clones share the same counters. See the
/// [module documentation](crate::recorder) for the design.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Recorder {
    /// Creates an empty recorder, after validating `config`.
    pub fn new(config: RecorderConfig) -> Result<Recorder, RecorderError> {
        config.validate()?;
        Ok(Recorder {
            inner: Arc::new(Inner {
                config,
                methods: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The configuration the recorder was created with.
    pub fn config(&self) -> RecorderConfig {
        self.inner.config
    }

    /// Registers (or finds) the counters of `method` at `tier` in `function`.
    ///
    /// Idempotent: the same key returns a handle to the same counters. Registering the same
    /// key with a different shape returns [`RecorderError::ShapeMismatch`]; a shape needing
    /// more than [`RecorderConfig::MAX_METHOD_CELLS`] cells returns
    /// [`RecorderError::ShapeTooLarge`]. After [`Recorder::forget_function`], registering the
    /// key again creates fresh (zero) counters.
    pub fn method(
        &self,
        function: FunctionId,
        method: MethodId,
        tier: Tier,
        shape: MethodShape,
    ) -> Result<MethodProfiler, RecorderError> {
        let key = (function, method, tier);
        let mut methods = self.inner.methods();
        if let Some(block) = methods.get(&key) {
            if block.shape != shape {
                return Err(RecorderError::ShapeMismatch {
                    function,
                    method,
                    tier,
                    registered: block.shape,
                    requested: shape,
                });
            }
            return Ok(MethodProfiler {
                block: Arc::clone(block),
            });
        }
        let block = Arc::new(MethodBlock::new(&self.inner.config, key, shape)?);
        methods.insert(key, Arc::clone(&block));
        Ok(MethodProfiler { block })
    }

    /// Visits every registered (function, counter key, current total) in ascending
    /// (function, [`CounterKey`]) order; totals are sums over shards.
    ///
    /// Receiver counters: one [`Counter::ReceiverTotal`] per call site (all observations at
    /// the site, including ones whose type did not fit in a slot) and one
    /// [`Counter::Receiver`] per tracked type with its summed count. Zero-valued counters are
    /// skipped. Successive visits see every counter non-decreasing.
    ///
    /// The totals are read under the registry lock and `f` is called after it is released,
    /// so `f` may use the recorder.
    ///
    /// [`Counter::ReceiverTotal`]: crate::profile::counter::Counter::ReceiverTotal
    /// [`Counter::Receiver`]: crate::profile::counter::Counter::Receiver
    pub fn visit(&self, mut f: impl FnMut(FunctionId, CounterKey, u64)) {
        let mut values = Vec::new();
        {
            let methods = self.inner.methods();
            for block in methods.values() {
                block.snapshot(&mut values);
            }
        }
        for (function, key, value) in values {
            f(function, key, value);
        }
    }

    /// Number of registered (function, method, tier) entries.
    pub fn len(&self) -> usize {
        self.inner.methods().len()
    }

    /// Whether no method is registered.
    pub fn is_empty(&self) -> bool {
        self.inner.methods().is_empty()
    }

    /// Drops every method registered for `function` (garbage collection of an old
    /// deployment). Handles already given out keep working but are no longer visited.
    pub fn forget_function(&self, function: FunctionId) {
        let mut methods = self.inner.methods();
        let lo = (function, MethodId(0), Tier(0));
        let hi = (function, MethodId(u32::MAX), Tier(u8::MAX));
        let keys: Vec<MethodIndex> = methods.range(lo..=hi).map(|(key, _)| *key).collect();
        for key in keys {
            methods.remove(&key);
        }
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .field("methods", &self.len())
            .finish()
    }
}

/// The counters of one method at one tier: the handle the host records through.
///
/// Cloning is cheap (one `Arc`). Recording takes no lock, allocates nothing and, on a thread
/// owning one of the recorder's shards, executes no atomic read-modify-write instruction.
#[derive(Clone)]
pub struct MethodProfiler {
    block: Arc<MethodBlock>,
}

impl MethodProfiler {
    /// Counts one invocation of the method.
    #[inline]
    pub fn record_invocation(&self) {
        self.block.bump(INVOCATIONS, 1);
    }

    /// Counts one loop back-edge taken in the method.
    #[inline]
    pub fn record_backedge(&self) {
        self.block.bump(BACKEDGES, 1);
    }

    /// Counts `n` loop back-edges taken in the method (for hosts that batch them).
    #[inline]
    pub fn record_backedges(&self, n: u64) {
        if n != 0 {
            self.block.bump(BACKEDGES, n);
        }
    }

    /// Counts one execution of branch `site` in direction `taken`.
    ///
    /// A `site` outside the method's shape is ignored.
    #[inline]
    pub fn record_branch(&self, site: u16, taken: bool) {
        if site < self.block.shape.branch_sites {
            self.block
                .bump(BRANCHES + 2 * usize::from(site) + usize::from(taken), 1);
        }
    }

    /// Counts one receiver of type (or indirect-call target) `type_id` at call `site`.
    ///
    /// The observation always counts in the site's total; it counts for `type_id` if the
    /// type has, or can claim, one of the shard's receiver slots for the site. A `site`
    /// outside the method's shape is ignored.
    #[inline]
    pub fn record_receiver(&self, site: u16, type_id: u32) {
        self.block.record_receiver(site, type_id, 1);
    }

    /// Counts `n` invocations (for hosts that read counts in batches).
    #[inline]
    pub fn record_invocations(&self, n: u64) {
        if n != 0 {
            self.block.bump(INVOCATIONS, n);
        }
    }

    /// Counts `n` executions of branch `site` in direction `taken` (batched
    /// [`record_branch`](Self::record_branch)).
    #[inline]
    pub fn record_branches(&self, site: u16, taken: bool, n: u64) {
        if n != 0 && site < self.block.shape.branch_sites {
            self.block
                .bump(BRANCHES + 2 * usize::from(site) + usize::from(taken), n);
        }
    }

    /// Counts `n` receivers of type `type_id` at call `site` (batched
    /// [`record_receiver`](Self::record_receiver)).
    #[inline]
    pub fn record_receivers(&self, site: u16, type_id: u32, n: u64) {
        if n != 0 {
            self.block.record_receiver(site, type_id, n);
        }
    }

    /// Counts one deoptimization of code for the method.
    #[inline]
    pub fn record_deopt(&self) {
        self.block.bump(DEOPTS, 1);
    }

    /// The (function, method, tier) this handle counts for.
    pub fn key(&self) -> (FunctionId, MethodId, Tier) {
        self.block.key
    }

    /// The shape the method was registered with.
    pub fn shape(&self) -> MethodShape {
        self.block.shape
    }
}

impl fmt::Debug for MethodProfiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (function, method, tier) = self.block.key;
        f.debug_struct("MethodProfiler")
            .field("function", &function)
            .field("method", &method)
            .field("tier", &tier)
            .field("shape", &self.block.shape)
            .finish()
    }
}
