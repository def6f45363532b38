//! Anti-entropy: catching up with one peer using only signed data.
//!
//! 1. A → B `SyncDigest`: a hash over every (lane, hash of the lane's values) A holds,
//!    and a digest of A's revocations. Two engines holding the same values for every lane
//!    have the same digest even if one of them missed deltas that were superseded.
//! 2. B, if its revocations differ, sends all of them (root-signed); if the lane hash
//!    differs, sends the first page of its lanes ordered by lane hash.
//! 3. A compares the page with its lanes in the same hash range: it sends B the stored
//!    signed deltas B lacks, asks B (`SyncWant`) for the lanes where B holds more, and asks
//!    for the next page (`SyncMore`) until the last.
//!
//! Catching up: a node that joined, restored a snapshot, or learned from a page that it is
//! at least two deltas behind on a lane (the peer's newest delta is two or more past its
//! own) opens its next [`CATCH_UP_ROUNDS`] rounds `sync_catch_up_ms` apart instead of
//! `sync_interval_ms` apart (after joining or restoring, the first of them at once). One
//! delta behind is what a delta still in flight looks like; two means one was lost. Under
//! loss a round repairs only part of a large gap (any of its messages may be lost), so
//! rounds must come often until the gap is closed; while nothing is missing they stay rare.
//!
//! Only signed deltas change state; digests and pages are hints, so a lying peer can at
//! worst make us send or ask for data in vain, or open rounds at the catch-up pace.

use super::Engine;
use super::publish::{Outgoing, pack};
use crate::ids::{Peer, TenantTag, Timestamp};
use crate::profile::{LaneId, LaneSummary};
use crate::wire::Body;
use std::collections::BTreeMap;

/// Lanes and their summaries by lane hash.
type LaneIndex = BTreeMap<u64, (LaneId, LaneSummary)>;

/// Rounds opened at the catch-up interval after a sign of a gap (see the module docs).
pub const CATCH_UP_ROUNDS: u32 = 5;

/// Encoded size bound of one page entry.
const PAGE_ENTRY_MAX: usize = 30;

impl Engine {
    fn lane_index(&self, tag: TenantTag) -> LaneIndex {
        let t = &self.tenants[&tag];
        let mut idx = BTreeMap::new();
        for (f, state) in &t.functions {
            for (lane, summary) in state.lane_seqs(*f) {
                idx.insert(lane.hash64(), (lane, summary));
            }
        }
        idx
    }

    fn lanes_root(idx: &LaneIndex) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 lanes root");
        for (hash, (_, sum)) in idx {
            h.update(&hash.to_le_bytes());
            h.update(&sum.vhash.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    fn seal_to(&mut self, tag: TenantTag, peer: Peer, body: &Body<'_>) {
        let bytes = self.tenants[&tag].sealer.seal(&body.encode());
        self.push_send(peer, bytes);
    }

    /// Interval between rounds while catching up (never longer than the normal interval).
    fn catch_up_ms(&self) -> u64 {
        self.config.sync_catch_up_ms.min(self.config.sync_interval_ms)
    }

    /// Opens an anti-entropy round with one random peer of the tenant.
    pub(super) fn start_sync(&mut self, now: Timestamp, tag: TenantTag) {
        let catch_up = self.catch_up_ms();
        let peers: Vec<Peer> = self.tenants[&tag].peers.iter().copied().collect();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if peers.is_empty() {
            // Nobody to ask yet: look again soon, without spending a catch-up round.
            t.next_sync = now.plus_ms(catch_up);
            return;
        }
        // This round is one of the catch-up rounds, if any are left; the next comes at the
        // catch-up pace only if it is one too.
        t.catch_up = t.catch_up.saturating_sub(1);
        t.next_sync = now.plus_ms(if t.catch_up > 0 {
            catch_up
        } else {
            self.config.sync_interval_ms
        });
        let peer = peers[self.rng.below(peers.len() as u64) as usize];
        let idx = self.lane_index(tag);
        let round = self.rng.next_u64();
        self.tenants
            .get_mut(&tag)
            .expect("tenant present")
            .opened_rounds
            .insert(peer, round);
        let body = Body::SyncDigest {
            round,
            lanes_root: Self::lanes_root(&idx),
            revocations: self.tenants[&tag].revocations.digest(),
            banned: self.tenants[&tag].banned_digest(),
            code: self.tenants.get_mut(&tag).expect("tenant present").code.digest(),
        };
        self.seal_to(tag, peer, &body);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_sync_digest(
        &mut self,
        tag: TenantTag,
        from: Peer,
        round: u64,
        root: [u8; 32],
        revocations: [u8; 32],
        banned: [u8; 32],
        code: [u8; 32],
    ) {
        if code != self.tenants.get_mut(&tag).expect("tenant present").code.digest() {
            // Manifests are few and signed: send the current ones; the opener answers with
            // those this node did not send.
            self.send_code(tag, from, round, &std::collections::BTreeSet::new());
        }
        if banned != self.tenants[&tag].banned_digest() {
            // Evidence is small and rare: send all of it; the peer verifies each.
            let evidence = self.tenants[&tag].evidence.clone();
            for e in evidence {
                self.seal_to(tag, from, &Body::Evidence(Box::new(e)));
            }
        }
        if revocations != self.tenants[&tag].revocations.digest() {
            let revs: Vec<_> = self.tenants[&tag].revocations.iter().copied().collect();
            for chunk in revs.chunks(self.config.limits.max_refs_per_message.clamp(1, 256)) {
                self.seal_to(tag, from, &Body::Revocations(chunk.to_vec()));
            }
        }
        if root != Self::lanes_root(&self.lane_index(tag)) {
            self.tenants
                .get_mut(&tag)
                .expect("tenant present")
                .served_rounds
                .insert(from, round);
            self.send_page(tag, from, round, 0);
        }
    }

    fn page_size(&self) -> usize {
        let l = &self.config.limits;
        l.max_sync_entries
            .min(l.max_message_bytes.saturating_sub(512) / PAGE_ENTRY_MAX)
            .max(1)
    }

    /// Answers a request for the next page, only within a round this node serves.
    pub(super) fn on_sync_more(&mut self, tag: TenantTag, from: Peer, round: u64, start: u64) {
        if !self.tenants[&tag].served_rounds.contains(from, round) {
            self.stats.sync_ignored += 1;
            return;
        }
        self.send_page(tag, from, round, start);
    }

    pub(super) fn send_page(&mut self, tag: TenantTag, to: Peer, round: u64, start: u64) {
        let idx = self.lane_index(tag);
        let size = self.page_size();
        let lanes: Vec<(u64, u32, u32, u64)> = idx
            .range(start..)
            .take(size + 1)
            .map(|(h, (_, s))| (*h, s.have, s.max, s.vhash))
            .collect();
        let last = lanes.len() <= size;
        let lanes = lanes.into_iter().take(size).collect();
        self.seal_to(
            tag,
            to,
            &Body::SyncPage {
                round,
                start,
                last,
                lanes,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_sync_page(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        from: Peer,
        round: u64,
        start: u64,
        last: bool,
        lanes: &[(u64, u32, u32, u64)],
    ) {
        let end = if last {
            u64::MAX
        } else {
            lanes.last().map_or(u64::MAX, |l| l.0)
        };
        // Pages are answers: only to a round this node opened with that peer.
        if end < start || !self.tenants[&tag].opened_rounds.contains(from, round) {
            self.stats.sync_ignored += 1;
            return;
        }
        let idx = self.lane_index(tag);
        let theirs: BTreeMap<u64, LaneSummary> = lanes
            .iter()
            .map(|(h, have, max, vhash)| {
                (
                    *h,
                    LaneSummary {
                        have: *have,
                        max: *max,
                        vhash: *vhash,
                    },
                )
            })
            .collect();
        // Lanes whose values agree are in sync, whatever each side's seqs.
        let same = |a: &LaneSummary, b: &LaneSummary| a.vhash == b.vhash;
        let mut send: Vec<(LaneId, u32)> = Vec::new();
        for (h, (lane, mine)) in idx.range(start..=end) {
            match theirs.get(h) {
                None => send.push((*lane, 0)),
                Some(t) if !same(mine, t) && mine.max > t.have => send.push((*lane, t.have)),
                _ => {}
            }
        }
        let mut want: Vec<(u64, u32)> = Vec::new();
        let mut behind = false;
        for (h, t) in &theirs {
            if *h < start || *h > end {
                continue;
            }
            let (have, max) = match idx.get(h) {
                None => (0, 0),
                Some((_, mine)) if !same(mine, t) && t.max > mine.have => (mine.have, mine.max),
                _ => continue,
            };
            want.push((*h, have));
            // Their newest delta is two or more past ours: one of them was lost.
            behind |= t.max > max.saturating_add(1);
        }
        if behind {
            let catch_up = self.catch_up_ms();
            let t = self.tenants.get_mut(&tag).expect("tenant present");
            t.catch_up = CATCH_UP_ROUNDS;
            t.next_sync = t.next_sync.min(now.plus_ms(catch_up));
        }
        self.send_stored(tag, from, &send);
        for chunk in want.chunks(self.page_size()) {
            self.seal_to(
                tag,
                from,
                &Body::SyncWant {
                    round,
                    lanes: chunk.to_vec(),
                },
            );
        }
        if !last && end < u64::MAX {
            self.seal_to(tag, from, &Body::SyncMore { round, start: end + 1 });
        }
    }

    pub(super) fn on_sync_want(&mut self, tag: TenantTag, from: Peer, round: u64, lanes: &[(u64, u32)]) {
        if !self.tenants[&tag].served_rounds.contains(from, round) {
            self.stats.sync_ignored += 1;
            return;
        }
        let idx = self.lane_index(tag);
        // Each lane once, from the lowest seq asked for.
        let mut wanted: BTreeMap<u64, u32> = BTreeMap::new();
        for (h, have) in lanes {
            let e = wanted.entry(*h).or_insert(*have);
            *e = (*e).min(*have);
        }
        let send: Vec<(LaneId, u32)> = wanted
            .iter()
            .filter_map(|(h, have)| idx.get(h).map(|(l, _)| (*l, *have)))
            .collect();
        self.send_stored(tag, from, &send);
    }

    /// Sends the stored signed deltas of each lane with seq above the given one.
    fn send_stored(&mut self, tag: TenantTag, to: Peer, lanes: &[(LaneId, u32)]) {
        let t = &self.tenants[&tag];
        let mut items = Vec::new();
        for (lane, after) in lanes {
            let Some(cert) = t.certs.get(&lane.node) else { continue };
            let Some(l) = t
                .functions
                .get(&lane.function)
                .and_then(|f| f.lane(lane.node, lane.incarnation, lane.group))
            else {
                continue;
            };
            for d in l.stored.iter().map(|h| &h.delta).filter(|d| d.seq > *after) {
                items.push(Outgoing {
                    cert: *cert,
                    lane: *lane,
                    delta: crate::profile::StoredDelta::clone(d),
                });
            }
        }
        if items.is_empty() {
            return;
        }
        for body in pack(&items, &self.config.limits) {
            let bytes = self.tenants[&tag].sealer.seal(&body);
            self.push_send(to, bytes);
        }
    }
}
