//! The merged profile state of one function in one tenant.

use super::lane::{ApplyOutcome, IdEntry, Lane, LaneId, StoredDelta};
use super::transition::{MergeContext, Transition};
use crate::ids::{FunctionId, GroupId, Incarnation, MethodId, NodeKey, Tier, Timestamp};
use crate::profile::counter::{Counter, CounterKey};
use crate::wire::Limits;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Bounds on how fast one node's counters may grow, so a compromised member cannot inflate
/// the fleet profile alone. Excess is clamped (not stored) and reported.
///
/// The defaults (10^10 per second, the order of a core's loop iterations, plus a burst of
/// 10^9) are above anything an honest runtime counts, so honest counts are never clamped.
/// When a cap does bind, the clamp depends on what the receiver held when the delta
/// arrived, so receivers of a misbehaving node's deltas may hold different values for it.
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
            max_increments_per_s: 10_000_000_000,
            burst: 1_000_000_000,
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

/// Hashes node keys for [`FunctionState::node_ids`]: a node key is an ed25519 public key
/// a tenant root certified, so its bytes are already spread; folding them in eight at a
/// time is enough, and the same on every run.
#[derive(Default)]
pub(crate) struct NodeKeyHasher(u64);

impl Hasher for NodeKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type NodeKeyHash = BuildHasherDefault<NodeKeyHasher>;

/// Key ids from here on are given in order of first sight; ids below are fixed by the key.
const DYNAMIC_IDS: u32 = 1 << 31;

/// Methods below this one have their `fired` bits in a table indexed by method.
const DENSE_FIRED: u32 = 4096;

/// Tiers whose invocation sums are also kept per method.
const INV_TIERS: usize = 4;

/// The fixed id of an invocation counter (method below 2^28, tier below 4): the id every
/// engine gives it.
fn fixed_id(k: &CounterKey) -> Option<u32> {
    (k.counter == Counter::Invocations && k.method.0 < 1 << 28 && k.tier.0 < 4)
        .then(|| k.method.0 << 2 | u32::from(k.tier.0))
}

/// The row of `method` in `rows` (sorted by method) as a binary search would give it, when
/// it is found by scanning at most 16 rows from `from`; `None` otherwise.
fn row_after<T>(rows: &[(MethodId, T)], from: usize, method: MethodId) -> Option<Result<usize, usize>> {
    let mut j = from.min(rows.len());
    if j > 0 && rows[j - 1].0 >= method {
        return None;
    }
    let end = rows.len().min(j + 16);
    while j < end && rows[j].0 < method {
        j += 1;
    }
    match rows.get(j) {
        Some((m, _)) if *m == method => Some(Ok(j)),
        Some((m, _)) if *m > method => Some(Err(j)),
        // Still below `method` after 16 rows.
        Some(_) => None,
        None => Some(Err(j)),
    }
}

/// Where an invocation counter's sum also goes in `FunctionState::invocations`.
fn inv_slot(k: &CounterKey) -> Option<usize> {
    (k.counter == Counter::Invocations && usize::from(k.tier.0) < INV_TIERS).then_some(usize::from(k.tier.0))
}

/// The key of a fixed id.
fn fixed_key(id: u32) -> Option<CounterKey> {
    (id < 1 << 30).then_some(CounterKey {
        method: MethodId(id >> 2),
        tier: Tier((id & 3) as u8),
        counter: Counter::Invocations,
    })
}

/// The key of `id`, given the table of keys without a fixed id.
fn key_of(keys: &[CounterKey], id: u32) -> Option<CounterKey> {
    match id.checked_sub(DYNAMIC_IDS) {
        Some(i) => keys.get(i as usize).copied(),
        None => fixed_key(id),
    }
}

/// One method's fleet-wide invocation sums by tier (see [`FunctionState::invocation_sums`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InvocationSums([u64; INV_TIERS]);

impl InvocationSums {
    /// Invocations at tiers below `tier` (every tier up to [`Tier::MAX`] is kept).
    pub(crate) fn below(&self, tier: Tier) -> u64 {
        const { assert!((Tier::MAX.0 as usize) < INV_TIERS) };
        self.0[..usize::from(tier.0).min(INV_TIERS)].iter().sum()
    }
}

/// What [`FunctionState::apply_verified`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Counters that rose.
    pub increments: usize,
    /// The delta conflicts with one held (its signer equivocated); nothing was applied.
    pub conflict: bool,
    /// The delta was already held, or everything it carries was superseded.
    pub duplicate: bool,
}

/// What anti-entropy compares about a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LaneSummary {
    /// Every seq up to this one is held or superseded.
    pub(crate) have: u32,
    /// Highest seq applied.
    pub(crate) max: u32,
    /// Hash of the lane's values.
    pub(crate) vhash: u64,
}

/// Merged state of one function: every lane, and the per-counter sums over lanes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FunctionState {
    /// Lanes by (node index in `nodes`, incarnation, group).
    pub(crate) lanes: BTreeMap<(u32, Incarnation, GroupId), Lane>,
    /// Node table: lanes refer to nodes by a 4-byte index.
    pub(crate) nodes: Vec<NodeKey>,
    /// Index of each node in `nodes` (looked up for every delta; never iterated); derived,
    /// rebuilt on restore.
    #[serde(skip)]
    pub(crate) node_ids: HashMap<NodeKey, u32, NodeKeyHash>,
    /// Sums over lanes of every counter but the invocation counters kept in `invocations`
    /// (zero sums are not kept).
    pub(crate) sums: BTreeMap<CounterKey, u64>,
    /// Key table: lanes store 4-byte key ids instead of 16-byte keys. An invocation counter's
    /// id is fixed by its key ([`fixed_id`]), so the lanes of engines holding the same values
    /// hold identical cells (shared between the engines of one process, see
    /// [`SharedChecks`](crate::SharedChecks)); other keys get ids from [`DYNAMIC_IDS`] on in
    /// the order they are first seen, listed in `keys`.
    pub(crate) ids: BTreeMap<CounterKey, u32>,
    pub(crate) keys: Vec<CounterKey>,
    /// Per method, a bit per tier whose threshold event was emitted. Set through
    /// [`Self::set_fired`], read through [`Self::fired_bits`].
    pub(crate) fired: BTreeMap<MethodId, u8>,
    /// `fired` of the methods below [`DENSE_FIRED`], indexed by method: read for every
    /// increment a merge makes; derived, rebuilt on restore.
    #[serde(skip)]
    fired_dense: Vec<u8>,
    /// Whether `node_ids` and `fired_dense` were built from `nodes` and `fired` (false in
    /// a state just deserialized, until [`Self::check_restored`] or the first merge).
    #[serde(skip)]
    derived: bool,
    /// Per method, sorted by method, the sums of its invocation counters at tiers 0 to 3
    /// (the counts threshold checks read: one search of a contiguous table per method, where
    /// a merge updates them); derived, rebuilt on restore.
    #[serde(skip)]
    pub(crate) invocations: Vec<(MethodId, [u64; INV_TIERS])>,
    /// Last time a delta for this function was accepted or recorded locally.
    pub(crate) last_seen: Timestamp,
}

impl FunctionState {
    /// Merged (fleet-wide) value of one counter.
    pub fn merged(&self, key: &CounterKey) -> u64 {
        match inv_slot(key) {
            Some(slot) => self.invocation_row(key.method).map_or(0, |per| per[slot]),
            None => self.sums.get(key).copied().unwrap_or(0),
        }
    }

    /// Every merged counter with a non-zero sum, in key order.
    pub fn merged_counters(&self) -> impl Iterator<Item = (CounterKey, u64)> + '_ {
        let mut inv = self
            .invocations
            .iter()
            .flat_map(|(method, per)| {
                per.iter().enumerate().filter(|(_, v)| **v > 0).map(|(t, v)| {
                    let key = CounterKey {
                        method: *method,
                        tier: Tier(t as u8),
                        counter: Counter::Invocations,
                    };
                    (key, *v)
                })
            })
            .peekable();
        let mut other = self.sums.iter().map(|(k, v)| (*k, *v)).peekable();
        // A key is in one store only.
        std::iter::from_fn(move || match (inv.peek(), other.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => other.next(),
            (Some(_), _) => inv.next(),
            (None, _) => other.next(),
        })
    }

    /// Merged counters other than invocation counters at tiers 0 to 3, ordered.
    pub(crate) fn other_counters(&self) -> &BTreeMap<CounterKey, u64> {
        &self.sums
    }

    /// The invocation sums by tier of `method`, if any were counted.
    fn invocation_row(&self, method: MethodId) -> Option<&[u64; INV_TIERS]> {
        self.invocation_index(method).ok().map(|i| &self.invocations[i].1)
    }

    /// Where `method`'s row is in `invocations` (`Err`: where it would go).
    fn invocation_index(&self, method: MethodId) -> Result<usize, usize> {
        self.invocations.binary_search_by_key(&method, |(m, _)| *m)
    }

    /// Invocations of `method` at tiers below `tier`, fleet-wide.
    pub fn invocations_below(&self, method: MethodId, tier: Tier) -> u64 {
        if usize::from(tier.0) <= INV_TIERS {
            return self
                .invocation_row(method)
                .map_or(0, |v| v[..usize::from(tier.0)].iter().sum());
        }
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

    /// Per method with invocations counted, in method order, its invocation sums by tier.
    pub(crate) fn invocation_sums(&self) -> impl Iterator<Item = (MethodId, InvocationSums)> + '_ {
        self.invocations.iter().map(|(m, per)| (*m, InvocationSums(*per)))
    }

    /// Number of distinct nodes that contributed invocations of `method` below `tier`.
    pub fn contributors(&self, method: MethodId, tier: Tier) -> usize {
        self.contributors_up_to(method, tier, usize::MAX)
    }

    /// [`Self::contributors`], counting no further than `limit` (stops as soon as it is
    /// reached: a threshold check needs only to know whether enough nodes contributed).
    pub fn contributors_up_to(&self, method: MethodId, tier: Tier, limit: usize) -> usize {
        let ids: Vec<u32> = (0..tier.0)
            .filter_map(|t| {
                self.ids
                    .get(&CounterKey {
                        method,
                        tier: Tier(t),
                        counter: Counter::Invocations,
                    })
                    .copied()
            })
            .collect();
        if ids.is_empty() || limit == 0 {
            return 0;
        }
        // Lanes are ordered by node index: a node's lanes are adjacent.
        let mut count = 0;
        let mut last: Option<u32> = None;
        for ((n, _, _), lane) in &self.lanes {
            if last == Some(*n) {
                continue;
            }
            if ids.iter().any(|id| lane.value_of(*id) > 0) {
                last = Some(*n);
                count += 1;
                if count >= limit {
                    break;
                }
            }
        }
        count
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
                *out.entry(self.nodes[*n as usize]).or_insert(0) += v;
            }
        }
        out
    }

    /// The bits of the tiers whose threshold fired for a method.
    pub(crate) fn fired_bits(&self, method: MethodId) -> u8 {
        match self.fired_dense.get(method.0 as usize) {
            Some(bits) => *bits,
            None => self.fired.get(&method).copied().unwrap_or(0),
        }
    }

    /// Marks the threshold of `tier` fired for a method.
    pub(crate) fn set_fired(&mut self, method: MethodId, tier: Tier) {
        self.ensure_derived();
        let bits = self.fired.entry(method).or_insert(0);
        *bits |= 1 << tier.0;
        let bits = *bits;
        self.mirror_fired(method, bits);
    }

    /// Builds the derived node index and fired table if they are not built yet.
    fn ensure_derived(&mut self) {
        if self.derived {
            return;
        }
        self.derived = true;
        self.fired_dense.clear();
        let fired: Vec<(MethodId, u8)> = self.fired.iter().map(|(m, b)| (*m, *b)).collect();
        for (m, bits) in fired {
            self.mirror_fired(m, bits);
        }
        self.node_ids.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            self.node_ids.entry(*n).or_insert(i as u32);
        }
    }

    fn mirror_fired(&mut self, method: MethodId, bits: u8) {
        if method.0 < DENSE_FIRED {
            let i = method.0 as usize;
            if self.fired_dense.len() <= i {
                self.fired_dense.resize(i + 1, 0);
            }
            self.fired_dense[i] = bits;
        }
    }

    pub(crate) fn lane(&self, node: NodeKey, inc: Incarnation, group: GroupId) -> Option<&Lane> {
        self.lanes.get(&(*self.node_ids.get(&node)?, inc, group))
    }

    pub(crate) fn lanes_of_node(&self, node: &NodeKey) -> usize {
        let Some(n) = self.node_ids.get(node).copied() else {
            return 0;
        };
        self.lanes
            .range((n, Incarnation(0), GroupId(0))..=(n, Incarnation(u64::MAX), GroupId(u16::MAX)))
            .count()
    }

    /// Applies a delta whose signature and certificate were already checked, with no
    /// increment cap: for simulators that verify each message once for all the engines they
    /// run, and for benchmarks. `entries` must be the decoded `delta.entries`. Engines
    /// themselves go through [`Engine::handle_message`](crate::Engine::handle_message),
    /// which checks everything first.
    pub fn apply_verified(&mut self, lane: &LaneId, delta: &StoredDelta, entries: &[(CounterKey, u64)]) -> Applied {
        let delta = Arc::new(delta.clone());
        let out = self.apply(lane, &delta, entries, &Limits::default(), None, |_, _, proposed, _| {
            proposed
        });
        Applied {
            increments: out.increments.len(),
            conflict: out.conflict.is_some(),
            duplicate: out.duplicate,
        }
    }

    /// Applies a verified delta to its lane and the sums; with `shared`, the lane's new
    /// values are shared with the engines of the process that hold the same ones.
    pub(crate) fn apply(
        &mut self,
        lane: &LaneId,
        delta: &Arc<StoredDelta>,
        entries: &[(CounterKey, u64)],
        limits: &Limits,
        shared: Option<&crate::SharedChecks>,
        cap: impl FnMut(&CounterKey, u64, u64, u64) -> u64,
    ) -> ApplyOutcome {
        self.apply_watched(lane, delta, entries, limits, shared, None, &[], cap)
    }

    /// [`Self::apply`], also listing in [`ApplyOutcome::crossed`] every method whose
    /// invocations below a watched tier reach that tier's threshold (`watch`: tier and
    /// threshold) while the tier's bit in `fired` is clear: the methods a threshold check
    /// may act on after this delta, found while the sums are updated.
    ///
    /// With `shared` and a `merge` context, the lane's change is shared with the engines of
    /// the process that apply the same delta to the same lane state (see
    /// [`transition`](super::transition)); `cap` must then be
    /// `merge.cap.allowed(held, proposed, interval_ms, merge.lifetime_ms)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_watched(
        &mut self,
        lane: &LaneId,
        delta: &Arc<StoredDelta>,
        entries: &[(CounterKey, u64)],
        limits: &Limits,
        shared: Option<&crate::SharedChecks>,
        merge: Option<&MergeContext>,
        watch: &[(Tier, u64)],
        cap: impl FnMut(&CounterKey, u64, u64, u64) -> u64,
    ) -> ApplyOutcome {
        self.ensure_derived();
        let n = match self.node_ids.get(&lane.node) {
            Some(n) => *n,
            None => {
                let n = self.nodes.len() as u32;
                self.nodes.push(lane.node);
                self.node_ids.insert(lane.node, n);
                n
            }
        };
        let l = self.lanes.entry((n, lane.incarnation, lane.group)).or_default();
        let shared_merge = shared.zip(merge);
        // The other keys' ids depend on the order in which each engine met them: a merge
        // is taken only when this engine gave them the same ids.
        let ids = &self.ids;
        let recorded = shared_merge.and_then(|(s, m)| {
            s.transition(&m.delta)
                .filter(|t| t.applies_to(l, m) && t.dynamic.iter().all(|(k, id)| ids.get(k) == Some(id)))
        });
        let mut out = match recorded {
            Some(t) => {
                *l = t.after.clone();
                for (k, id) in &t.fresh {
                    self.ids.entry(*k).or_insert(*id);
                }
                if let Some((s, _)) = shared_merge {
                    s.transition_reused();
                }
                ApplyOutcome {
                    increments: t.increments.clone(),
                    clamped: t.clamped,
                    ..ApplyOutcome::default()
                }
            }
            None => {
                let before = shared_merge.map(|_| l.clone());
                let (mut fresh, mut dynamic) = (Vec::new(), Vec::new());
                let out = Self::merge_lane(
                    l,
                    (&mut self.ids, &mut self.keys),
                    lane,
                    delta,
                    entries,
                    limits,
                    shared,
                    &mut fresh,
                    &mut dynamic,
                    cap,
                );
                if let (Some((s, m)), Some(before)) = (shared_merge, before)
                    && out.conflict.is_none()
                    && !out.duplicate
                {
                    s.record_transition(Transition {
                        context: *m,
                        before,
                        after: l.clone(),
                        increments: out.increments.clone(),
                        clamped: out.clamped,
                        fresh,
                        dynamic,
                    });
                }
                out
            }
        };
        // Increments come in key order, so invocation counters in method order: each one's
        // row is looked for a few rows past the previous one before a binary search.
        let mut hint = 0usize;
        for (k, inc) in &out.increments {
            let Some(slot) = inv_slot(k) else {
                *self.sums.entry(*k).or_insert(0) += inc;
                continue;
            };
            let found = row_after(&self.invocations, hint, k.method).unwrap_or_else(|| self.invocation_index(k.method));
            hint = match found {
                Ok(i) | Err(i) => i,
            };
            let i = match found {
                Ok(i) => i,
                Err(i) => {
                    self.invocations.insert(i, (k.method, [0; INV_TIERS]));
                    i
                }
            };
            let per = &mut self.invocations[i].1;
            per[slot] += inc;
            // Checked after each increment, so the last one of a method sees its final
            // sums (a method listed twice is deduplicated by the threshold check).
            let sums = InvocationSums(*per);
            let reached = watch.iter().any(|(tier, limit)| sums.below(*tier) >= *limit);
            if reached && out.crossed.last() != Some(&k.method) {
                let fired = self.fired_bits(k.method);
                if watch
                    .iter()
                    .any(|(tier, limit)| fired & (1 << tier.0) == 0 && sums.below(*tier) >= *limit)
                {
                    out.crossed.push(k.method);
                }
            }
        }
        out
    }

    /// Merges a delta into lane `l`, interning new keys in the key table (`ids`, `keys`),
    /// listing in `fresh` the fixed-id keys the lane did not hold and in `dynamic` the
    /// delta's other keys with their ids.
    #[allow(clippy::too_many_arguments)]
    fn merge_lane(
        l: &mut Lane,
        (ids, keys): (&mut BTreeMap<CounterKey, u32>, &mut Vec<CounterKey>),
        lane: &LaneId,
        delta: &Arc<StoredDelta>,
        entries: &[(CounterKey, u64)],
        limits: &Limits,
        shared: Option<&crate::SharedChecks>,
        fresh: &mut Vec<(CounterKey, u32)>,
        dynamic: &mut Vec<(CounterKey, u32)>,
        cap: impl FnMut(&CounterKey, u64, u64, u64) -> u64,
    ) -> ApplyOutcome {
        // A key with a fixed id needs no look-up in the key table when the lane holds it
        // already (a lane holds only interned ids); the others are interned below.
        let mut by_id: Vec<IdEntry> = entries
            .iter()
            .map(|(k, v)| {
                let id = fixed_id(k).unwrap_or_else(|| {
                    let id = *ids.entry(*k).or_insert_with(|| {
                        keys.push(*k);
                        DYNAMIC_IDS + (keys.len() - 1) as u32
                    });
                    dynamic.push((*k, id));
                    id
                });
                (id, *k, *v)
            })
            .collect();
        if !by_id.is_sorted_by_key(|e| e.0) {
            by_id.sort_unstable_by_key(|e| e.0);
        }
        let held = &l.values;
        let mut i = 0;
        for (id, k, _) in &by_id {
            if *id >= DYNAMIC_IDS {
                break;
            }
            while i < held.len() && held[i].id < *id {
                i += 1;
            }
            if i == held.len() || held[i].id != *id {
                ids.entry(*k).or_insert(*id);
                fresh.push((*k, *id));
            }
        }
        let out = l.apply(delta, &by_id, entries, limits, cap);
        if let Some(shared) = shared
            && out.conflict.is_none()
            && !out.duplicate
        {
            let word = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let hint = word(&lane.node.0)
                ^ word(&lane.function.code).rotate_left(7)
                ^ lane.incarnation.0.rotate_left(17)
                ^ u64::from(lane.group.0).rotate_left(48);
            l.share_values(shared, hint);
        }
        out
    }

    /// Removes every lane of `node` (revocation) and its contribution to the sums.
    pub(crate) fn remove_node(&mut self, node: &NodeKey) {
        let Some(idx) = self.node_ids.get(node).copied() else {
            return;
        };
        let keys: Vec<_> = self.lanes.keys().filter(|(n, _, _)| *n == idx).copied().collect();
        for k in keys {
            if let Some(lane) = self.lanes.remove(&k) {
                for cell in lane.values.iter() {
                    let Some(ck) = self.key_of(cell.id) else { continue };
                    let v = lane.cell_value(cell);
                    if let Some(slot) = inv_slot(&ck) {
                        if let Ok(i) = self.invocation_index(ck.method) {
                            let per = &mut self.invocations[i].1;
                            per[slot] -= v;
                            if per.iter().all(|x| *x == 0) {
                                self.invocations.remove(i);
                            }
                        }
                    } else if let Some(s) = self.sums.get_mut(&ck) {
                        *s -= v;
                        if *s == 0 {
                            self.sums.remove(&ck);
                        }
                    }
                }
            }
        }
    }

    /// Checks a function state read from a snapshot: the node and key tables, every lane,
    /// and the sums, which are recomputed from the lanes. A snapshot whose checksum is valid
    /// but whose contents are inconsistent is refused here rather than trusted.
    pub(crate) fn check_restored(&mut self) -> Result<(), String> {
        if u32::try_from(self.nodes.len()).is_err() {
            return Err("node table too large".into());
        }
        self.derived = false;
        self.ensure_derived();
        if self.node_ids.len() != self.nodes.len() {
            return Err("node listed twice".into());
        }
        let listed = std::mem::take(&mut self.ids);
        if self.keys.len() >= (u32::MAX - DYNAMIC_IDS) as usize {
            return Err("key table too large".into());
        }
        for (i, k) in self.keys.iter().enumerate() {
            if fixed_id(k).is_some() {
                return Err("a key with a fixed id in the table of other keys".into());
            }
            if self.ids.insert(*k, DYNAMIC_IDS + i as u32).is_some() {
                return Err("counter key listed twice".into());
            }
        }
        for (k, id) in listed {
            match fixed_id(&k) {
                Some(f) if f == id => {
                    self.ids.insert(k, id);
                }
                None if self.ids.get(&k) == Some(&id) => {}
                _ => return Err(format!("counter key id {id} does not match its key")),
            }
        }
        let mut sums: BTreeMap<CounterKey, u64> = BTreeMap::new();
        let (keys, ids) = (&self.keys, &self.ids);
        let key_of = |id: u32| {
            let k = key_of(keys, id)?;
            (ids.get(&k) == Some(&id)).then_some(k)
        };
        for ((n, _, _), lane) in &mut self.lanes {
            if *n as usize >= self.nodes.len() {
                return Err(format!("lane refers to unknown node index {n}"));
            }
            for (key, v) in lane.check_restored(key_of)? {
                let s = sums.entry(key).or_insert(0);
                *s = s.checked_add(v).ok_or("counter sum overflows")?;
            }
        }
        sums.retain(|_, v| *v > 0);
        let mut invocations: BTreeMap<MethodId, [u64; INV_TIERS]> = BTreeMap::new();
        sums.retain(|k, v| match inv_slot(k) {
            Some(slot) => {
                invocations.entry(k.method).or_insert([0; INV_TIERS])[slot] += *v;
                false
            }
            None => true,
        });
        self.invocations = invocations.into_iter().collect();
        self.sums = sums;
        Ok(())
    }

    /// The key of an id.
    fn key_of(&self, id: u32) -> Option<CounterKey> {
        key_of(&self.keys, id)
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let lane_overhead = std::mem::size_of::<((u32, Incarnation, GroupId), Lane)>() + 16;
        self.lanes
            .values()
            .map(|l| l.heap_bytes() + lane_overhead)
            .sum::<usize>()
            + self.sums.len() * (std::mem::size_of::<(CounterKey, u64)>() + 16)
            + self.ids.len() * (std::mem::size_of::<(CounterKey, u32)>() + 16)
            + self.keys.capacity() * std::mem::size_of::<CounterKey>()
            + self.fired.len() * 24
            + self.fired_dense.capacity()
            + self.invocations.capacity() * std::mem::size_of::<(MethodId, [u64; INV_TIERS])>()
            + self.nodes.capacity() * 32
            + self.node_ids.capacity() * (32 + 4 + 1)
    }

    /// Lane ids of this function with their (have, max) seqs.
    pub(crate) fn lane_seqs(&self, function: FunctionId) -> impl Iterator<Item = (LaneId, LaneSummary)> + '_ {
        self.lanes.iter().map(move |((n, incarnation, group), l)| {
            let node = &self.nodes[*n as usize];
            (
                LaneId {
                    function,
                    node: *node,
                    incarnation: *incarnation,
                    group: *group,
                },
                LaneSummary {
                    have: l.have,
                    max: l.max_seq,
                    vhash: l.vhash,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests;
