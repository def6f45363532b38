//! Lane merges shared by the engines of one process.
//!
//! Merging a delta into a lane is deterministic: two engines that hold the same lane state
//! and apply the same delta under the same caps and limits reach the same new state and
//! the same increments. In a simulator every engine applies every delta, nearly always to
//! the same state as the engines before it (each lane's deltas arrive in seq order). The
//! first engine to merge a delta records the [`Transition`] in
//! [`SharedChecks`](crate::SharedChecks); an engine whose lane state equals the recorded
//! one in full takes the new state from it instead of merging again. Any difference (a
//! delta missed, another incarnation of the caps) makes it merge itself.
//!
//! Counters other than invocations have key ids given in the order each engine met the
//! keys: a merge is taken only by an engine that gave the delta's keys the same ids.

use super::counter::CounterKey;
use super::lane::Lane;
use super::state::CapConfig;
use crate::wire::Limits;

/// What besides the lane state decides a merge: the delta and the caps it is merged under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MergeContext {
    /// The delta's hash (it covers the lane and the signed entries).
    pub(crate) delta: [u8; 32],
    /// Increment caps of the merging engine.
    pub(crate) cap: CapConfig,
    /// Time since the signer's certificate became valid, at the delta's signing.
    pub(crate) lifetime_ms: u64,
    /// Limits of the merging engine.
    pub(crate) limits: Limits,
}

/// A lane's change by one delta, recorded by the first engine that merged it.
#[derive(Debug)]
pub(crate) struct Transition {
    pub(crate) context: MergeContext,
    /// The lane state the delta was merged into.
    pub(crate) before: Lane,
    /// The lane state it gave.
    pub(crate) after: Lane,
    /// Counters that rose, with the increase.
    pub(crate) increments: Vec<(CounterKey, u64)>,
    /// Sum of increases removed by the caps.
    pub(crate) clamped: u64,
    /// Keys (with their fixed ids) the lane did not hold before: each engine lists them
    /// in its key table.
    pub(crate) fresh: Vec<(CounterKey, u32)>,
    /// The delta's keys without a fixed id, with the ids the recording engine gave them.
    pub(crate) dynamic: Vec<(CounterKey, u32)>,
}

impl Transition {
    /// Whether merging under `context` into `lane` gives this transition's result.
    pub(crate) fn applies_to(&self, lane: &Lane, context: &MergeContext) -> bool {
        self.context == *context && lane.same_state(&self.before)
    }
}
