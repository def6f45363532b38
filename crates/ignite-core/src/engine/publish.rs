//! Publishing this node's own counters as signed, sealed deltas.

use super::Engine;
use crate::crypto::{self, domain};
use crate::ids::{FunctionId, GroupId, TenantTag, Tier, Timestamp};
use crate::profile::counter::CounterKey;
use crate::profile::{FunctionState, LaneId, StoredDelta};
use crate::tenancy::SignedCert;
use crate::wire::{self, Body, DeltaBatch, DeltaWire, Limits};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes of envelope, batch framing and one certificate, reserved when packing batches.
const BATCH_OVERHEAD: usize = 512;
/// Upper bound of the encoded size of a delta besides its entries.
const DELTA_OVERHEAD: usize = 112;
/// Upper bound of the encoded size of one counter entry.
const ENTRY_MAX: usize = 24;

/// A signed delta ready to be packed into a message.
pub(super) struct Outgoing {
    pub(super) cert: SignedCert,
    pub(super) lane: LaneId,
    pub(super) delta: StoredDelta,
}

/// Packs signed deltas into encoded bodies that each fit in one message.
pub(super) fn pack(items: &[Outgoing], limits: &Limits) -> Vec<Vec<u8>> {
    let budget = limits.max_message_bytes.saturating_sub(BATCH_OVERHEAD);
    let mut bodies = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut size = 0;
        let mut end = start;
        let mut certs: Vec<SignedCert> = Vec::new();
        let mut functions: Vec<FunctionId> = Vec::new();
        while end < items.len() && end - start < limits.max_deltas_per_message {
            let it = &items[end];
            let mut add = it.delta.entries.len() + DELTA_OVERHEAD;
            if !certs.iter().any(|c| c.cert.node == it.cert.cert.node) {
                add += 200;
            }
            if !functions.contains(&it.lane.function) {
                add += 56;
            }
            if end > start
                && (size + add > budget
                    || certs.len() >= limits.max_refs_per_message
                    || functions.len() >= limits.max_refs_per_message)
            {
                break;
            }
            if !certs.iter().any(|c| c.cert.node == it.cert.cert.node) {
                certs.push(it.cert);
            }
            if !functions.contains(&it.lane.function) {
                functions.push(it.lane.function);
            }
            size += add;
            end += 1;
        }
        let deltas = items[start..end]
            .iter()
            .map(|it| DeltaWire {
                signer: certs
                    .iter()
                    .position(|c| c.cert.node == it.cert.cert.node)
                    .expect("cert listed") as u16,
                function: functions
                    .iter()
                    .position(|f| *f == it.lane.function)
                    .expect("function listed") as u16,
                incarnation: it.lane.incarnation,
                group: it.lane.group,
                seq: it.delta.seq,
                issued_at: it.delta.issued_at,
                full: it.delta.full,
                entries: &it.delta.entries,
                signature: it.delta.signature,
            })
            .collect();
        bodies.push(
            Body::Deltas(DeltaBatch {
                certs,
                functions,
                deltas,
            })
            .encode(),
        );
        start = end;
    }
    bodies
}

/// Sorts `list` by key and sums the values of equal keys.
fn sum_sorted(list: &mut Vec<(CounterKey, u64)>) {
    list.sort_by_key(|e| e.0);
    list.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = kept.1.wrapping_add(next.1);
        }
        same
    });
}

/// The union of two lists sorted by key, with the value of `newer` where both hold a key.
fn union_sorted(older: &[(CounterKey, u64)], newer: &[(CounterKey, u64)]) -> Vec<(CounterKey, u64)> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        match older[i].0.cmp(&newer[j].0) {
            std::cmp::Ordering::Less => {
                out.push(older[i]);
                i += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(newer[j]);
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(newer[j]);
                j += 1;
            }
        }
    }
    out.extend_from_slice(&older[i..]);
    out.extend_from_slice(&newer[j..]);
    // Kept as the lane's published state: no spare capacity.
    out.shrink_to_fit();
    out
}

/// Whether no tier threshold reads counter `k` any more: it is not feedback, and every tier
/// above its own whose threshold exists has been reached on the merged counts of the method
/// whose thresholds open elections (see [`Config`](super::Config), "Settled counters").
fn settled(policy: &super::FunctionPolicy, state: Option<&FunctionState>, k: &CounterKey) -> bool {
    if k.counter.is_feedback() {
        return false;
    }
    let m = match policy.unit {
        super::CompileUnit::Whole(unit) => unit,
        super::CompileUnit::Method => k.method,
    };
    let fired = state.map_or(0, |s| s.fired_bits(m));
    (k.tier.0 + 1..=Tier::MAX.0)
        .filter(|tier| super::tier_threshold(&policy.thresholds, Tier(*tier)).is_some())
        .all(|tier| fired & (1 << tier) != 0)
}

impl Engine {
    /// The publication interval of a tenant (see [`Config`](super::Config), "Publication rule").
    pub(super) fn publication_interval(&self, tag: TenantTag) -> u64 {
        let members = self.tenants[&tag].members();
        self.config
            .publish_floor_ms
            .max(members * 1000 / u64::from(self.config.max_deltas_per_s))
    }

    /// Collects this node's current counts per own lane (restored base plus recorder),
    /// each lane's counters sorted by key.
    fn current_counts(&self, tag: TenantTag) -> BTreeMap<(FunctionId, GroupId), Vec<(CounterKey, u64)>> {
        let t = &self.tenants[&tag];
        let groups = self.config.groups;
        let mut current: BTreeMap<(FunctionId, GroupId), Vec<(CounterKey, u64)>> = BTreeMap::new();
        // The recorder visits its methods in (function, method, tier) order and each
        // method's counters in key order, so every lane's list comes out sorted.
        t.recorder.visit(|f, k, v| {
            current
                .entry((f, GroupId::of(k.method, groups)))
                .or_default()
                .push((k, v));
        });
        for list in current.values_mut() {
            if !list.is_sorted_by(|a, b| a.0 < b.0) {
                sum_sorted(list);
            }
        }
        if !t.base.is_empty() {
            let mut base: BTreeMap<(FunctionId, GroupId), Vec<(CounterKey, u64)>> = BTreeMap::new();
            for ((f, k), v) in &t.base {
                base.entry((*f, GroupId::of(k.method, groups)))
                    .or_default()
                    .push((*k, *v));
            }
            for (lane, list) in base {
                let merged = current.entry(lane).or_default();
                merged.extend(list);
                sum_sorted(merged);
            }
        }
        current
    }

    /// Counts this node recorded in a tenant but has not signed yet, per (function,
    /// counter): what a crash now would lose unless the host snapshots first. Counters of
    /// tiers below the current compiled tier are not listed (they are never published).
    pub fn unpublished(&self, tenant: &crate::tenancy::TenantId) -> BTreeMap<(FunctionId, CounterKey), u64> {
        let mut out = BTreeMap::new();
        let Some(tag) = self.tag_of(tenant) else {
            return out;
        };
        let t = &self.tenants[&tag];
        for ((f, g), counts) in self.current_counts(tag) {
            let own = t.own.get(&(f, g));
            for (k, v) in counts {
                if !(k.counter.is_feedback() || t.compiled.get(&(f, k.method)).is_none_or(|ct| k.tier >= *ct)) {
                    continue;
                }
                let held = own
                    .and_then(|o| {
                        o.published
                            .binary_search_by(|(pk, _)| pk.cmp(&k))
                            .ok()
                            .map(|i| o.published[i].1)
                    })
                    .unwrap_or(0);
                if v > held {
                    out.insert((f, k), v - held);
                }
            }
        }
        out
    }

    /// Signs and publishes this node's changed counters in one tenant; settled ones only
    /// when due (see [`Config`](super::Config), "Settled counters") or `force`d.
    pub(super) fn publish(&mut self, now: Timestamp, tag: TenantTag, force: bool) {
        let current = self.current_counts(tag);
        let limits = self.config.limits;
        let full_every = self.config.full_every;
        let incarnation = self.incarnation;
        let per_chunk = limits
            .max_entries_per_delta
            .min(limits.max_message_bytes.saturating_sub(BATCH_OVERHEAD + DELTA_OVERHEAD) / ENTRY_MAX)
            .max(1);
        let settled_interval = self.config.settled_publish_ms.max(self.publication_interval(tag));
        let default_policy = self.default_policy();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let key = t.creds.signing_key().clone();
        let cert = *t.creds.cert();
        let tenant = t.tenant;
        let mut out: Vec<Outgoing> = Vec::new();
        let mut entries_total = 0u64;
        for ((f, g), counts) in current {
            let own = t.own.entry((f, g)).or_default();
            let compiled = &t.compiled;
            let publishable =
                |k: &CounterKey| k.counter.is_feedback() || compiled.get(&(f, k.method)).is_none_or(|ct| k.tier >= *ct);
            let held = |k: &CounterKey| {
                own.published
                    .binary_search_by(|(pk, _)| pk.cmp(k))
                    .map(|i| own.published[i].1)
                    .unwrap_or(0)
            };
            let changed: Vec<(CounterKey, u64)> = counts
                .iter()
                .filter(|(k, v)| *v > held(k) && publishable(k))
                .copied()
                .collect();
            let sum = counts.iter().fold(0u64, |a, (_, v)| a.wrapping_add(*v));
            let quiet = own.round_sum == Some(sum);
            own.round_sum = Some(sum);
            // Settled changes go out when the lane is quiet or has waited long enough;
            // until then a publication carries only the changes a threshold still reads
            // (and those of methods whose new tier becomes current after it).
            let flush = force || quiet || now >= own.settled_at.plus_ms(settled_interval);
            let policy = t.code.policies.get(&f).copied().unwrap_or(default_policy);
            let state = t.functions.get(&f);
            let pending = &t.compiled_pending;
            let before = changed.len();
            let changed: Vec<(CounterKey, u64)> = if flush {
                changed
            } else {
                changed
                    .into_iter()
                    .filter(|(k, _)| !settled(&policy, state, k) || pending.iter().any(|p| p.0 == f && p.1 == k.method))
                    .collect()
            };
            self.stats.deferred_entries += (before - changed.len()) as u64;
            if changed.is_empty() {
                continue;
            }
            if flush {
                own.settled_at = now;
            }
            // The union of what was published and what changes now: the lane's signed state.
            let all = union_sorted(&own.published, &changed);
            let want_full = own.seq == 0 || own.since_full + 1 >= full_every;
            // A full delta when the lane fits in one; otherwise every counter again in chunks,
            // which lets receivers drop older stored deltas all the same.
            let (entries, full) = if want_full {
                let fits = all.len() <= per_chunk;
                (all.clone(), fits)
            } else {
                (changed, false)
            };
            for chunk in entries.chunks(per_chunk) {
                entries_total += chunk.len() as u64;
                own.seq += 1;
                let lane = LaneId {
                    function: f,
                    node: t.node,
                    incarnation,
                    group: g,
                };
                let enc = wire::encode_entries(chunk);
                let signed = wire::signed_delta_bytes(
                    &tenant.0,
                    &t.node.0,
                    &f,
                    incarnation,
                    g,
                    own.seq,
                    now.as_millis(),
                    full,
                    &enc,
                );
                let signature = crypto::sign(&key, &[], &signed);
                debug_assert!(signed.starts_with(domain::DELTA));
                out.push(Outgoing {
                    cert,
                    lane,
                    delta: StoredDelta {
                        seq: own.seq,
                        issued_at: now.as_millis(),
                        full,
                        entries: enc.into(),
                        signature,
                    },
                });
            }
            own.since_full = if want_full { 0 } else { own.since_full + 1 };
            own.published = all;
        }
        // Apply our own deltas locally through the same path as everyone else's.
        let mut touched = Vec::new();
        for o in &out {
            if let Err(e) = self.apply_delta(
                now,
                tag,
                &o.cert,
                &o.lane,
                Arc::new(o.delta.clone()),
                None,
                &mut touched,
            ) {
                tracing::error!(reason = %e, "own delta not applied");
            }
        }
        self.check_thresholds(tag, &mut touched);
        let interval = self.publication_interval(tag);
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        // Tiers installed since the last publication become current now that the counts
        // recorded below them are out.
        for (f, m, tier, by) in std::mem::take(&mut t.compiled_pending) {
            if by == super::tenant::Declared::Host || t.code.installed.contains_key(&(f, m, tier)) {
                let e = t.compiled.entry((f, m)).or_insert(tier);
                *e = (*e).max(tier);
            }
        }
        t.next_publish = now.plus_ms(interval);
        t.last_publish = now;
        t.next_predict = t.next_predict.min(now.plus_ms(self.config.code.tick_ms));
        let bodies = pack(&out, &limits);
        let topic = t.sealer.topic().clone();
        let sealed: Vec<Vec<u8>> = bodies.iter().map(|b| t.sealer.seal(b)).collect();
        self.stats.published_entries += entries_total;
        for bytes in sealed {
            self.push_publish(topic.clone(), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MethodId;
    use crate::profile::counter::Counter;
    use proptest::prelude::*;

    fn key(method: u32, tier: u8, site: u16) -> CounterKey {
        CounterKey {
            method: MethodId(method),
            tier: Tier(tier),
            counter: if site == 0 {
                Counter::Invocations
            } else {
                Counter::Branch { site, taken: true }
            },
        }
    }

    fn entries() -> impl Strategy<Value = Vec<(CounterKey, u64)>> {
        proptest::collection::vec(((0..6u32, 0..3u8, 0..3u16), 0..100u64), 0..24)
            .prop_map(|v| v.into_iter().map(|((m, t, s), x)| (key(m, t, s), x)).collect())
    }

    proptest! {
        #[test]
        fn lists_merge_like_ordered_maps(older in entries(), newer in entries(), extra in entries()) {
            // Sorted, unique lists as the publication keeps them.
            let older: Vec<_> = older.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
            let newer: Vec<_> = newer.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
            let mut want: BTreeMap<CounterKey, u64> = older.iter().copied().collect();
            want.extend(newer.iter().copied());
            let got = union_sorted(&older, &newer);
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());

            // Unsorted lists with repeated keys sum per key.
            let mut sums: BTreeMap<CounterKey, u64> = BTreeMap::new();
            for (k, v) in &extra {
                *sums.entry(*k).or_default() += v;
            }
            let mut list = extra.clone();
            sum_sorted(&mut list);
            prop_assert_eq!(list, sums.into_iter().collect::<Vec<_>>());
        }
    }
}
