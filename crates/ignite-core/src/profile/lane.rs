//! One lane: the signed counters of one (node, incarnation, function, group).

use crate::crypto::SigBytes;
use crate::ids::{FunctionId, GroupId, Incarnation, NodeKey};
use crate::profile::counter::CounterKey;
use crate::tenancy::TenantId;
use crate::wire::{self, Limits};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Identifies a lane inside a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LaneId {
    /// The function.
    pub function: FunctionId,
    /// The signing node.
    pub node: NodeKey,
    /// The node's incarnation.
    pub incarnation: Incarnation,
    /// The method group.
    pub group: GroupId,
}

impl LaneId {
    /// A 64-bit hash of the lane id, used to page anti-entropy digests.
    pub fn hash64(&self) -> u64 {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 lane hash");
        h.update(&postcard::to_allocvec(self).expect("lane id encodes"));
        let b = h.finalize();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"))
    }
}

/// A signed delta as stored for forwarding and as evidence: enough to re-verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelta {
    /// Sequence number in the lane.
    pub seq: u32,
    /// Signer's time at signing.
    pub issued_at: u64,
    /// Whether it holds every counter of the lane.
    pub full: bool,
    /// Encoded entries, exactly as signed (shared, not copied, when the delta is cloned
    /// for forwarding; engines of one process with [`SharedChecks`](crate::SharedChecks)
    /// also share one copy per unique delta).
    pub entries: Arc<[u8]>,
    /// The node's signature.
    pub signature: SigBytes,
}

impl StoredDelta {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self, tenant: &TenantId, lane: &LaneId) -> Vec<u8> {
        wire::signed_delta_bytes(
            &tenant.0,
            &lane.node.0,
            &lane.function,
            lane.incarnation,
            lane.group,
            self.seq,
            self.issued_at,
            self.full,
            &self.entries,
        )
    }

    /// Hash identifying this exact signed delta.
    pub fn hash(&self, tenant: &TenantId, lane: &LaneId) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.signed_bytes(tenant, lane));
        h.update(&self.signature.to_bytes());
        *h.finalize().as_bytes()
    }
}

/// Proof that a node signed two conflicting states of one lane: both signed messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The tenant.
    pub tenant: TenantId,
    /// The lane (names the node).
    pub lane: LaneId,
    /// One signed delta.
    pub first: StoredDelta,
    /// A conflicting signed delta.
    pub second: StoredDelta,
}

impl Evidence {
    /// Checks that both messages are validly signed by the lane's node and really conflict
    /// (same seq with different bodies, or a lower value at a higher seq).
    pub fn verify(&self, limits: &Limits) -> bool {
        let sig_ok = |d: &StoredDelta| {
            crate::crypto::verify(
                &self.lane.node.0,
                &[],
                &d.signed_bytes(&self.tenant, &self.lane),
                &d.signature,
            )
            .is_ok()
        };
        if !sig_ok(&self.first) || !sig_ok(&self.second) {
            return false;
        }
        if self.first.seq == self.second.seq {
            let body = |d: &StoredDelta| (d.issued_at, d.full, d.entries.clone());
            return body(&self.first) != body(&self.second);
        }
        let (lo, hi) = if self.first.seq < self.second.seq {
            (&self.first, &self.second)
        } else {
            (&self.second, &self.first)
        };
        let (Ok(a), Ok(b)) = (
            wire::decode_entries(&lo.entries, limits),
            wire::decode_entries(&hi.entries, limits),
        ) else {
            return false;
        };
        conflicts(&a, &b, hi.full)
    }
}

/// Whether the entries `lo` signed at a lower seq conflict with `hi` signed at a higher seq
/// of the same lane: a counter lower in `hi`, or, when `hi` is full (every counter of the
/// lane), a counter of `lo` missing from `hi`.
fn conflicts(lo: &[(CounterKey, u64)], hi: &[(CounterKey, u64)], hi_full: bool) -> bool {
    lo.iter().any(|(k, v)| match hi.binary_search_by(|(hk, _)| hk.cmp(k)) {
        Ok(i) => hi[i].1 < *v,
        Err(_) => hi_full,
    })
}

/// What applying a delta to a lane did.
#[derive(Debug, Default)]
pub(crate) struct ApplyOutcome {
    /// Counters that rose, with the increase.
    pub(crate) increments: Vec<(CounterKey, u64)>,
    /// Sum of increases removed by the increment cap.
    pub(crate) clamped: u64,
    /// A stored delta that conflicts with the one applied (equivocation).
    pub(crate) conflict: Option<StoredDelta>,
    /// The exact same delta was already held.
    pub(crate) duplicate: bool,
    /// Methods whose invocations reached a watched threshold not yet fired (see
    /// [`FunctionState::apply_watched`](super::FunctionState::apply_watched)).
    pub(crate) crossed: Vec<crate::ids::MethodId>,
}

/// One counter of a lane: its id in the function's key table, the seq of the stored delta
/// its value comes from, and the value. 12 bytes: a value of `u32::MAX` or more is kept in
/// the lane's `big` map and the cell holds `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cell {
    pub(crate) id: u32,
    pub(crate) seq: u32,
    value: u32,
}

/// A 64-bit mix of a counter key and value, for [`Lane::vhash`] (not cryptographic: a
/// mismatch only triggers anti-entropy, a collision only delays it).
pub(crate) fn mix(key: &CounterKey, value: u64) -> u64 {
    let (kind, site, sub) = match key.counter {
        crate::profile::counter::Counter::Invocations => (1u64, 0u64, 0u64),
        crate::profile::counter::Counter::Backedges => (2, 0, 0),
        crate::profile::counter::Counter::Deopts => (3, 0, 0),
        crate::profile::counter::Counter::Branch { site, taken } => (4, u64::from(site), u64::from(taken)),
        crate::profile::counter::Counter::ReceiverTotal { site } => (5, u64::from(site), 0),
        crate::profile::counter::Counter::Receiver { site, type_id } => (6, u64::from(site), u64::from(type_id)),
        crate::profile::counter::Counter::AssumptionBroken { id } => (7, 0, u64::from(id)),
        crate::profile::counter::Counter::CodeInvocations { generation } => (8, 0, u64::from(generation)),
        crate::profile::counter::Counter::CodeLatency { generation, bucket } => {
            (9, u64::from(bucket), u64::from(generation))
        }
    };
    let mut z = u64::from(key.method.0) << 32 ^ u64::from(key.tier.0) << 24 ^ kind << 16 ^ site;
    for x in [sub, value] {
        z = (z ^ x).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// One entry of a delta being applied: key id, key, proposed value.
pub(crate) type IdEntry = (u32, CounterKey, u64);

/// State of one lane.
///
/// Each stored signed delta is kept only while some counter's current value comes from it
/// (`refs` counts them), so the signed data kept for forwarding is about one copy of the
/// lane's current values, however many deltas the node published.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Lane {
    /// Current values, sorted by key id. Copied on write: engines of one process holding
    /// the same values share one copy ([`SharedChecks`](crate::SharedChecks)).
    pub(crate) values: Arc<Vec<Cell>>,
    /// Highest seq applied.
    pub(crate) max_seq: u32,
    /// Every seq up to this one is held or superseded by a full delta.
    pub(crate) have: u32,
    /// `issued_at` of the highest seq applied.
    pub(crate) last_issued: u64,
    /// Stored signed deltas, by seq, each with how many current values come from it.
    pub(crate) stored: Vec<Held>,
    /// XOR over the lane's counters of `mix(key, value)`: equal on two engines exactly
    /// when (with overwhelming probability) they hold the same values. Kept incrementally.
    pub(crate) vhash: u64,
    /// Rarely used parts, allocated only when needed.
    rare: Option<Box<Rare>>,
}

/// A stored signed delta with the number of current values that come from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Held {
    /// Shared, not copied, with whatever else holds the same delta (the engines of one
    /// process with [`SharedChecks`](crate::SharedChecks)).
    pub(crate) delta: Arc<StoredDelta>,
    refs: u32,
}

/// Lane state that most lanes never need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Rare {
    /// Seqs above `have` that are held (non-empty only while deltas arrive out of order).
    above: BTreeSet<u32>,
    /// Values that do not fit in a cell's 32 bits, by key id.
    big: BTreeMap<u32, u64>,
}

impl Lane {
    /// Whether this lane holds exactly the state of `other`: the same values, seqs and
    /// stored deltas. Shared copies are compared by address first.
    pub(crate) fn same_state(&self, other: &Lane) -> bool {
        (Arc::ptr_eq(&self.values, &other.values) || self.values == other.values)
            && self.max_seq == other.max_seq
            && self.have == other.have
            && self.last_issued == other.last_issued
            && self.vhash == other.vhash
            && self.rare == other.rare
            && self.stored.len() == other.stored.len()
            && self
                .stored
                .iter()
                .zip(&other.stored)
                .all(|(a, b)| a.refs == b.refs && (Arc::ptr_eq(&a.delta, &b.delta) || a.delta == b.delta))
    }

    /// Value of the counter with key id `id`.
    pub(crate) fn value_of(&self, id: u32) -> u64 {
        self.values
            .binary_search_by(|c| c.id.cmp(&id))
            .map(|i| self.cell_value(&self.values[i]))
            .unwrap_or(0)
    }

    /// The value a cell stands for.
    pub(crate) fn cell_value(&self, c: &Cell) -> u64 {
        if c.value == u32::MAX {
            self.rare
                .as_ref()
                .and_then(|r| r.big.get(&c.id).copied())
                .unwrap_or(u64::from(u32::MAX))
        } else {
            u64::from(c.value)
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn in_above(&self, seq: u32) -> bool {
        self.rare.as_ref().is_some_and(|r| r.above.contains(&seq))
    }

    fn make_cell(&mut self, id: u32, seq: u32, v: u64) -> Cell {
        let value = match u32::try_from(v) {
            Ok(small) if small != u32::MAX => small,
            _ => {
                self.rare_mut().big.insert(id, v);
                u32::MAX
            }
        };
        Cell { id, seq, value }
    }

    /// Finds a stored delta that conflicts with `entries` signed at `seq`.
    fn find_conflict(
        &self,
        seq: u32,
        full: bool,
        entries: &[(CounterKey, u64)],
        limits: &Limits,
    ) -> Option<StoredDelta> {
        for Held { delta: d, .. } in &self.stored {
            if d.seq == seq {
                continue;
            }
            let Ok(de) = wire::decode_entries(&d.entries, limits) else {
                continue;
            };
            let conflict = if d.seq < seq {
                conflicts(&de, entries, full)
            } else {
                conflicts(entries, &de, d.full)
            };
            if conflict {
                return Some(StoredDelta::clone(d));
            }
        }
        None
    }

    fn unref(&mut self, seq: u32) {
        if let Ok(i) = self.stored.binary_search_by(|h| h.delta.seq.cmp(&seq)) {
            self.stored[i].refs = self.stored[i].refs.saturating_sub(1);
        }
    }

    /// Applies a verified delta. `by_id` are its entries with key ids, sorted by id;
    /// `by_key` the same entries sorted by key (as signed). `cap(key, held, proposed,
    /// interval_ms)` returns the value to keep.
    pub(crate) fn apply(
        &mut self,
        delta: &Arc<StoredDelta>,
        by_id: &[IdEntry],
        by_key: &[(CounterKey, u64)],
        limits: &Limits,
        mut cap: impl FnMut(&CounterKey, u64, u64, u64) -> u64,
    ) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        if let Some(d) = self.stored.iter().map(|h| &h.delta).find(|d| d.seq == delta.seq) {
            if d.issued_at == delta.issued_at && d.full == delta.full && d.entries == delta.entries {
                // The same body (a second valid signature of it is no conflict).
                out.duplicate = true;
            } else {
                out.conflict = Some(StoredDelta::clone(d));
            }
            return out;
        }
        if delta.seq <= self.have || self.in_above(delta.seq) {
            // Held before and since dropped from storage because every value it carried was
            // superseded: nothing to apply, unless it conflicts with what is stored.
            if let Some(c) = self.find_conflict(delta.seq, delta.full, by_key, limits) {
                out.conflict = Some(c);
            } else {
                out.duplicate = true;
            }
            return out;
        }
        // One walk: how many keys are new, and does anything decrease?
        let (mut new_keys, mut decreases) = (0usize, false);
        let mut i = 0;
        for (id, _, v) in by_id {
            while i < self.values.len() && self.values[i].id < *id {
                i += 1;
            }
            if i < self.values.len() && self.values[i].id == *id {
                decreases |= *v < self.cell_value(&self.values[i]);
            } else {
                new_keys += 1;
            }
        }
        // Fast path: in order, nothing decreases, and a full delta covers every held
        // counter, so nothing stored can conflict.
        let in_order = delta.seq > self.max_seq;
        let full_misses_a_key = delta.full && by_id.len() - new_keys < self.values.len();
        if (!in_order || decreases || full_misses_a_key)
            && let Some(c) = self.find_conflict(delta.seq, delta.full, by_key, limits)
        {
            out.conflict = Some(c);
            return out;
        }
        let interval_ms = if in_order {
            delta.issued_at.saturating_sub(self.last_issued)
        } else {
            u64::MAX
        };
        let mut new_refs = 0u32;
        // Decides a counter's new cell: a higher value, or the same value now also carried by
        // this newer delta (the reference moves, so older stored deltas can be dropped).
        let mut decide = |lane: &mut Lane, k: &CounterKey, held: Option<Cell>, id: u32, v: u64| -> Option<Cell> {
            let (held_value, held_seq) = held.map_or((0, None), |c| (lane.cell_value(&c), Some(c.seq)));
            if v < held_value {
                return None;
            }
            if v == held_value {
                return match held_seq {
                    Some(s) if s < delta.seq && v > 0 => {
                        lane.unref(s);
                        new_refs += 1;
                        Some(lane.make_cell(id, delta.seq, v))
                    }
                    _ => None,
                };
            }
            let allowed = cap(k, held_value, v, interval_ms).max(held_value);
            out.clamped += v - allowed;
            if allowed == held_value {
                return None;
            }
            out.increments.push((*k, allowed - held_value));
            if held_value > 0 {
                lane.vhash ^= mix(k, held_value);
            }
            lane.vhash ^= mix(k, allowed);
            if let Some(s) = held_seq {
                lane.unref(s);
            }
            new_refs += 1;
            Some(lane.make_cell(id, delta.seq, allowed))
        };
        if new_keys == 0 {
            // Every key is known: update in place.
            let mut i = 0;
            for (id, k, v) in by_id {
                while self.values[i].id < *id {
                    i += 1;
                }
                let cell = self.values[i];
                if let Some(c) = decide(self, k, Some(cell), *id, *v) {
                    Arc::make_mut(&mut self.values)[i] = c;
                }
            }
        } else {
            let old = std::mem::take(&mut self.values);
            let mut merged = Vec::with_capacity(old.len() + new_keys);
            let mut i = 0;
            for (id, k, v) in by_id {
                while i < old.len() && old[i].id < *id {
                    merged.push(old[i]);
                    i += 1;
                }
                let held = (i < old.len() && old[i].id == *id).then(|| {
                    i += 1;
                    old[i - 1]
                });
                match (decide(self, k, held, *id, *v), held) {
                    (Some(c), _) => merged.push(c),
                    (None, Some(c)) => merged.push(c),
                    (None, None) => {}
                }
            }
            merged.extend_from_slice(&old[i..]);
            self.values = Arc::new(merged);
        }
        self.record_seq(delta);
        if new_refs > 0 {
            let pos = self.stored.partition_point(|h| h.delta.seq < delta.seq);
            // Most lanes hold one or two deltas: grow by exactly one.
            self.stored.reserve_exact(1);
            self.stored.insert(
                pos,
                Held {
                    delta: delta.clone(),
                    refs: new_refs,
                },
            );
        }
        self.drop_unreferenced();
        out
    }

    /// Drops stored deltas no current value comes from.
    fn drop_unreferenced(&mut self) {
        // Every stored delta holds at least one current value, so a lane never stores more
        // deltas than it has counters (bounded by `max_counters_per_function`).
        self.stored.retain(|h| h.refs > 0);
        if self.stored.capacity() > 2 * self.stored.len() + 2 {
            self.stored.shrink_to_fit();
        }
    }

    fn record_seq(&mut self, delta: &StoredDelta) {
        if delta.seq > self.max_seq {
            self.max_seq = delta.seq;
            self.last_issued = delta.issued_at;
        }
        if delta.full {
            if delta.seq > self.have {
                self.have = delta.seq;
                if let Some(r) = self.rare.as_mut() {
                    r.above.retain(|s| *s > delta.seq);
                }
            }
        } else if delta.seq == self.have + 1 {
            self.have += 1;
        } else if delta.seq > self.have {
            self.rare_mut().above.insert(delta.seq);
        }
        if let Some(r) = self.rare.as_mut() {
            while r.above.remove(&(self.have + 1)) {
                self.have += 1;
            }
            if r.above.is_empty() && r.big.is_empty() {
                self.rare = None;
            }
        }
    }

    /// Checks a lane read from a snapshot against the invariants the code relies on, and
    /// recomputes what is derived from its values (`refs`, `vhash`). `key_of` maps a key id
    /// to its key (`None`: no such id). Returns the lane's values by key id.
    pub(crate) fn check_restored(
        &mut self,
        key_of: impl Fn(u32) -> Option<CounterKey>,
    ) -> Result<Vec<(CounterKey, u64)>, String> {
        if self.max_seq == u32::MAX || self.have > self.max_seq {
            return Err(format!(
                "lane seqs out of range (have {}, max {})",
                self.have, self.max_seq
            ));
        }
        if !self.values.windows(2).all(|w| w[0].id < w[1].id) {
            return Err("lane values not sorted by key id".into());
        }
        if !self.stored.windows(2).all(|w| w[0].delta.seq < w[1].delta.seq) {
            return Err("lane stored deltas not sorted by seq".into());
        }
        if let Some(r) = &self.rare
            && r.above.iter().any(|s| *s <= self.have || *s > self.max_seq)
        {
            return Err("lane out-of-order seqs out of range".into());
        }
        for h in &mut self.stored {
            h.refs = 0;
        }
        let mut out = Vec::with_capacity(self.values.len());
        let mut vhash = 0;
        for c in self.values.iter() {
            let key = key_of(c.id).ok_or_else(|| format!("lane refers to unknown key id {}", c.id))?;
            let v = self.cell_value(c);
            vhash ^= mix(&key, v);
            if let Ok(i) = self.stored.binary_search_by(|h| h.delta.seq.cmp(&c.seq)) {
                self.stored[i].refs += 1;
            }
            out.push((key, v));
        }
        self.vhash = vhash;
        self.drop_unreferenced();
        Ok(out)
    }

    /// Shares this lane's values with the engines of the process that hold the same ones
    /// (the same lane at the same state).
    pub(crate) fn share_values(&mut self, shared: &crate::SharedChecks, lane: u64) {
        let hint = lane ^ self.vhash ^ u64::from(self.max_seq).rotate_left(32) ^ self.values.len() as u64;
        self.values = shared.intern_cells(hint, std::mem::take(&mut self.values));
    }

    /// Approximate heap bytes held (values and stored deltas counted in full, as if this
    /// engine held the only reference).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Cell>()
            + self.stored.capacity() * std::mem::size_of::<Held>()
            + self
                .stored
                .iter()
                .map(|h| 16 + std::mem::size_of::<StoredDelta>() + h.delta.entries.len())
                .sum::<usize>()
            + self.rare.as_ref().map_or(0, |r| {
                std::mem::size_of::<Rare>() + r.above.len() * 16 + r.big.len() * 32
            })
    }
}
