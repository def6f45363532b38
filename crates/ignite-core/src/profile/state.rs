//! The merged profile state of one function in one tenant.

use super::lane::{ApplyOutcome, IdEntry, Lane, LaneId, StoredDelta};
use crate::ids::{FunctionId, GroupId, Incarnation, MethodId, NodeKey, Tier, Timestamp};
use crate::profile::counter::{Counter, CounterKey};
use crate::wire::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bounds on how fast one node's counters may grow, so a compromised member cannot inflate
/// the fleet profile alone. Excess is clamped (not stored) and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapConfig {
    /// Largest increase per second of one counter from one node.
    pub max_increments_per_s: u64,
    /// Increase allowed on top of the rate (bursts, first delta).
    pub burst: u64,
}

impl Default for CapConfig {
    fn default() -> CapConfig {
        CapConfig {
            max_increments_per_s: 10_000_000,
            burst: 1_000_000,
        }
    }
}

impl CapConfig {
    /// The largest value to keep for a counter at `held` that a delta proposes to raise to
    /// `proposed`, `interval_ms` after the lane's previous delta (`u64::MAX` when the delta
    /// arrived out of order) and `lifetime_ms` after the signer's certificate became valid.
    pub fn allowed(&self, held: u64, proposed: u64, interval_ms: u64, lifetime_ms: u64) -> u64 {
        let rate = |ms: u64| {
            self.max_increments_per_s
                .saturating_mul(ms / 1000 + 1)
                .saturating_add(self.burst)
        };
        let by_lifetime = rate(lifetime_ms);
        let by_interval = if interval_ms == u64::MAX {
            u64::MAX
        } else {
            held.saturating_add(rate(interval_ms))
        };
        proposed.min(by_lifetime).min(by_interval)
    }
}

/// Merged state of one function: every lane, and the per-counter sums over lanes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FunctionState {
    pub(crate) lanes: BTreeMap<(NodeKey, Incarnation, GroupId), Lane>,
    pub(crate) sums: BTreeMap<CounterKey, u64>,
    /// Key table: lanes store 4-byte key ids instead of 16-byte keys.
    pub(crate) ids: BTreeMap<CounterKey, u32>,
    pub(crate) keys: Vec<CounterKey>,
    /// Per method, a bit per tier whose threshold event was emitted.
    pub(crate) fired: BTreeMap<MethodId, u8>,
    /// Last time a delta for this function was accepted or recorded locally.
    pub(crate) last_seen: Timestamp,
}

impl FunctionState {
    /// Merged (fleet-wide) value of one counter.
    pub fn merged(&self, key: &CounterKey) -> u64 {
        self.sums.get(key).copied().unwrap_or(0)
    }

    /// Every merged counter, ordered.
    pub fn merged_counters(&self) -> &BTreeMap<CounterKey, u64> {
        &self.sums
    }

    /// Invocations of `method` at tiers below `tier`, fleet-wide.
    pub fn invocations_below(&self, method: MethodId, tier: Tier) -> u64 {
        (0..tier.0)
            .map(|t| {
                self.merged(&CounterKey {
                    method,
                    tier: Tier(t),
                    counter: Counter::Invocations,
                })
            })
            .sum()
    }

    /// Number of distinct nodes that contributed invocations of `method` below `tier`.
    pub fn contributors(&self, method: MethodId, tier: Tier) -> usize {
        let mut nodes: Vec<NodeKey> = self
            .lanes
            .iter()
            .filter(|(_, lane)| {
                (0..tier.0).any(|t| {
                    let key = CounterKey {
                        method,
                        tier: Tier(t),
                        counter: Counter::Invocations,
                    };
                    self.ids.get(&key).is_some_and(|id| lane.value_of(*id) > 0)
                })
            })
            .map(|((n, _, _), _)| *n)
            .collect();
        nodes.dedup();
        nodes.len()
    }

    /// Number of lanes.
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// Per-node values of one counter (summed over a node's incarnations), ordered by node.
    pub fn per_node(&self, key: &CounterKey) -> BTreeMap<NodeKey, u64> {
        let mut out = BTreeMap::new();
        let Some(id) = self.ids.get(key).copied() else {
            return out;
        };
        for ((n, _, _), lane) in &self.lanes {
            let v = lane.value_of(id);
            if v > 0 {
                *out.entry(*n).or_insert(0) += v;
            }
        }
        out
    }

    pub(crate) fn lane(&self, node: NodeKey, inc: Incarnation, group: GroupId) -> Option<&Lane> {
        self.lanes.get(&(node, inc, group))
    }

    pub(crate) fn lanes_of_node(&self, node: &NodeKey) -> usize {
        self.lanes
            .range((*node, Incarnation(0), GroupId(0))..=(*node, Incarnation(u64::MAX), GroupId(u16::MAX)))
            .count()
    }

    /// Applies a verified delta to its lane and the sums.
    pub(crate) fn apply(
        &mut self,
        lane: &LaneId,
        delta: &StoredDelta,
        entries: &[(CounterKey, u64)],
        limits: &Limits,
        cap: impl FnMut(&CounterKey, u64, u64, u64) -> u64,
    ) -> ApplyOutcome {
        let mut by_id: Vec<IdEntry> = entries
            .iter()
            .map(|(k, v)| {
                let id = match self.ids.get(k) {
                    Some(id) => *id,
                    None => {
                        let id = self.keys.len() as u32;
                        self.keys.push(*k);
                        self.ids.insert(*k, id);
                        id
                    }
                };
                (id, *k, *v)
            })
            .collect();
        if !by_id.is_sorted_by_key(|e| e.0) {
            by_id.sort_unstable_by_key(|e| e.0);
        }
        let l = self.lanes.entry((lane.node, lane.incarnation, lane.group)).or_default();
        let out = l.apply(delta, &by_id, entries, limits, cap);
        for (k, inc) in &out.increments {
            *self.sums.entry(*k).or_insert(0) += inc;
        }
        out
    }

    /// Removes every lane of `node` (revocation) and its contribution to the sums.
    pub(crate) fn remove_node(&mut self, node: &NodeKey) {
        let keys: Vec<_> = self.lanes.keys().filter(|(n, _, _)| n == node).copied().collect();
        for k in keys {
            if let Some(lane) = self.lanes.remove(&k) {
                for cell in lane.values {
                    let ck = self.keys[cell.id as usize];
                    if let Some(s) = self.sums.get_mut(&ck) {
                        *s -= cell.value;
                        if *s == 0 {
                            self.sums.remove(&ck);
                        }
                    }
                }
            }
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let lane_overhead = std::mem::size_of::<((NodeKey, Incarnation, GroupId), Lane)>() + 16;
        self.lanes
            .values()
            .map(|l| l.heap_bytes() + lane_overhead)
            .sum::<usize>()
            + self.sums.len() * (std::mem::size_of::<(CounterKey, u64)>() + 16)
            + self.ids.len() * (std::mem::size_of::<(CounterKey, u32)>() + 16)
            + self.keys.capacity() * std::mem::size_of::<CounterKey>()
            + self.fired.len() * 24
    }

    /// Lane ids of this function with their (have, max) seqs.
    pub(crate) fn lane_seqs(&self, function: FunctionId) -> impl Iterator<Item = (LaneId, u32, u32)> + '_ {
        self.lanes.iter().map(move |((node, incarnation, group), l)| {
            (
                LaneId {
                    function,
                    node: *node,
                    incarnation: *incarnation,
                    group: *group,
                },
                l.have,
                l.max_seq,
            )
        })
    }
}
