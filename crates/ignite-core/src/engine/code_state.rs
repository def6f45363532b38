//! Per-tenant state of election and code distribution, and the queries on it that every
//! engine answers identically from the merged state.

use super::Thresholds;
use crate::code::assumption::Checker;
use crate::code::blobs::Transfer;
use crate::code::{
    AllHold, Assumption, Attestation, BlobStore, Claim, ClassId, CodeConfig, CodeKey, CompileId, Election, Manifest,
    Presence, Purpose, Signed, rules,
};
use crate::ids::{FunctionId, MethodId, NodeKey, Peer, Tier, Timestamp};
use crate::profile::FunctionState;
use crate::profile::counter::{Counter, CounterKey};
use crate::tenancy::Roles;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Thresholds, contributor requirement and compilation unit of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionPolicy {
    /// Tier thresholds on merged fleet-wide invocations.
    pub thresholds: Thresholds,
    /// Distinct nodes that must have contributed before a threshold counts.
    pub min_contributors: usize,
    /// What the runtime compiles as one unit.
    pub unit: CompileUnit,
}

/// What a runtime compiles as one unit, and so which thresholds open elections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompileUnit {
    /// Each method separately (a method JIT): every method's thresholds open elections.
    #[default]
    Method,
    /// The whole function at once (e.g. a Wasm module): only the thresholds of this method
    /// id, whose invocation counter the host records for every invocation, open elections.
    /// Other methods' counters are profile data.
    Whole(MethodId),
}

/// A member as known from its latest presence.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Shared by the engines of one process with [`SharedChecks`](crate::SharedChecks).
    pub(crate) presence: std::sync::Arc<Signed<Presence>>,
    pub(crate) heard_at: Timestamp,
    /// Live until then unless a newer presence arrives.
    pub(crate) live_until: Timestamp,
}

/// A compile the host was asked for and has not answered.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) election: Election,
    pub(crate) purpose: Purpose,
    pub(crate) lease_until: Timestamp,
    pub(crate) excluded: Vec<Assumption>,
    pub(crate) profile_digest: [u8; 32],
}

/// What is installed for one (function, method, tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) manifest: [u8; 32],
    pub(crate) class: ClassId,
    pub(crate) generation: u32,
    pub(crate) blob: [u8; 32],
    pub(crate) compiler: NodeKey,
    pub(crate) created_at: u64,
}

/// Manifests of one (key, class), by generation (the best manifest of each).
/// (Behind an `Arc`: a map node holds room for eleven values, and one generation per key is
/// the common case; shared by the engines of one process with
/// [`SharedChecks`](crate::SharedChecks).)
pub(crate) type Generations = BTreeMap<u32, std::sync::Arc<Signed<Manifest>>>;

/// What a code pass looks at: every key, or the given keys (and the open elections).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// Every key.
    All,
    /// These keys only.
    Keys(&'a BTreeSet<CodeKey>),
}

#[derive(Debug)]
pub(crate) struct CodeState {
    pub(crate) members: BTreeMap<NodeKey, Member>,
    pub(crate) presence_seq: u64,
    pub(crate) next_presence: Timestamp,
    /// When this node last announced its presence.
    pub(crate) last_presence: Timestamp,
    /// The presence interval in force at the last announcement (it grows with the fleet).
    pub(crate) presence_every: u64,
    pub(crate) next_tick: Timestamp,
    /// When the engine joined the tenant: it claims nothing before it has heard one round of
    /// presences, so that it does not rank itself first in a fleet it cannot see yet.
    pub(crate) joined_at: Timestamp,
    /// Every member with the compile role whose delta was accepted had a live presence
    /// here at some point after joining (claims are then allowed; see
    /// `CodeConfig::claim_after_join_ms`).
    pub(crate) roster_known: bool,
    pub(crate) claims: BTreeMap<(Election, NodeKey), Signed<Claim>>,
    pub(crate) manifests: BTreeMap<(CodeKey, ClassId), Generations>,
    /// Manifest hash -> (key, class, generation) of every held manifest.
    pub(crate) by_hash: BTreeMap<[u8; 32], (CodeKey, ClassId, u32)>,
    pub(crate) attestations: BTreeMap<[u8; 32], BTreeMap<NodeKey, Signed<Attestation>>>,
    /// [`Self::digest`] of the manifests and attestations held; `None` once either changes.
    pub(crate) digest_memo: Option<[u8; 32]>,
    /// When this engine first saw each open election (its rank's turn counts from there).
    pub(crate) turns: BTreeMap<Election, Timestamp>,
    /// This node's rank position per open election (as far as counted; `None` when not
    /// eligible), with the digest of the eligible set it was computed from.
    pub(crate) positions: BTreeMap<Election, ([u8; 32], Option<super::positions::Position>)>,
    /// Elections whose compile failed here: not claimed again before the time.
    pub(crate) failed: BTreeMap<Election, Timestamp>,
    pub(crate) pending: BTreeMap<CompileId, Pending>,
    /// Manifests this node attested (or is attesting).
    pub(crate) attested: BTreeSet<[u8; 32]>,
    pub(crate) installed: BTreeMap<(FunctionId, MethodId, Tier), Installed>,
    /// Something every key's elections or installs depend on changed (a blob or a member's
    /// classes arrived, the assumption check changed): the next pass looks at every key,
    /// not only the open elections.
    pub(crate) dirty: bool,
    /// Keys whose elections or installs depend on something that changed (a threshold
    /// fired, a manifest, claim or attestation arrived): the next pass looks at them
    /// besides the open elections.
    pub(crate) dirty_keys: BTreeSet<CodeKey>,
    /// When the next pass looks at every key anyway (what changes with time alone: expiry,
    /// retirement by merged deopt counts, re-promotion, backoffs).
    pub(crate) next_sweep: Timestamp,
    /// When the first held claim or failed election is due to be dropped.
    pub(crate) next_prune: Timestamp,
    /// Changes of `installed` so far (blob pins are recomputed only after one).
    pub(crate) installs_version: u64,
    /// (manifest hash, refusal kind) already reported.
    pub(crate) reported: BTreeSet<([u8; 32], &'static str)>,
    pub(crate) blobs: BlobStore,
    pub(crate) transfers: BTreeMap<[u8; 32], Transfer>,
    /// Peers that relayed a manifest, by blob hash: asked first for the blob.
    pub(crate) sources: BTreeMap<[u8; 32], Vec<Peer>>,
    /// Smoothed time from a blob request to its answer, ms (see
    /// [`CodeConfig::fetch_timeout_ms`](crate::code::CodeConfig::fetch_timeout_ms)).
    pub(crate) fetch_rtt_ms: Option<u64>,
    pub(crate) checker: Checker,
    pub(crate) policies: BTreeMap<FunctionId, FunctionPolicy>,
    /// Thresholds reached with too few contributors, already reported.
    pub(crate) withheld: BTreeSet<(FunctionId, MethodId, Tier)>,
    /// Keys the host asked for whatever the thresholds ([`Engine::want_code`](super::Engine::want_code)).
    pub(crate) wanted: BTreeSet<CodeKey>,
    /// Changes of the set of live members or of their classes or roles (see [`Roster`]).
    pub(crate) members_version: u64,
    /// Eligible compilers and needed classes, kept while the membership is the same.
    pub(crate) roster: Option<Arc<Roster>>,
    /// The roster the cached `positions` were computed against at the last pass: when a
    /// class's eligible set changes, positions move by what was added and removed.
    pub(crate) ranked_at: Option<Arc<Roster>>,
}

/// Who may compile for which class and which (tier, class) pairs need code, computed from
/// the live members and kept until the membership changes: a member joins, comes back after
/// expiring, changes classes or roles, one is banned or revoked, or the first live member
/// expires. Elections look at it every tick; recomputing it means walking and hashing every
/// member, which in a large fleet costs more than the elections themselves.
#[derive(Debug)]
pub(crate) struct Roster {
    /// `members_version` it was computed at.
    version: u64,
    /// Banned and revoked nodes counted when it was computed (both sets only grow).
    excluded: (usize, usize),
    /// When it was computed, and the earliest expiry of a member live then.
    from: Timestamp,
    until: Timestamp,
    /// Live members allowed to compile, per class they run (strictly ascending).
    pub(crate) eligible: BTreeMap<ClassId, Vec<NodeKey>>,
    /// Digest of each class's eligible set (rank positions are cached per digest).
    pub(crate) digests: BTreeMap<ClassId, [u8; 32]>,
    /// (tier, class) pairs code is needed for.
    pub(crate) needed: BTreeSet<(Tier, ClassId)>,
}

impl CodeState {
    /// Holds a claim, to be dropped `keep_ms` after its lease lapses.
    pub(crate) fn put_claim(&mut self, slot: (Election, NodeKey), claim: Signed<Claim>, keep_ms: u64) {
        self.next_prune = self.next_prune.min(claim.statement.lease_until.plus_ms(keep_ms));
        self.claims.insert(slot, claim);
    }

    /// Records that this node's compile for an election failed: not claimed again before `until`.
    pub(crate) fn put_failed(&mut self, election: Election, until: Timestamp) {
        self.next_prune = self.next_prune.min(until);
        self.failed.insert(election, until);
    }

    /// How long a blob request waits for its answer: four times the smoothed round trip
    /// of this tenant's answered requests, between a twentieth of `max_ms` and `max_ms`;
    /// `max_ms` until a request was answered.
    pub(crate) fn fetch_timeout(&self, max_ms: u64) -> u64 {
        self.fetch_rtt_ms
            .map_or(max_ms, |rtt| rtt.saturating_mul(4).clamp((max_ms / 20).max(1), max_ms))
    }

    /// Takes the round trip of an answered blob request into the smoothed value.
    pub(crate) fn fetch_answered(&mut self, rtt_ms: u64) {
        self.fetch_rtt_ms = Some(match self.fetch_rtt_ms {
            None => rtt_ms,
            Some(s) => (s.saturating_mul(7).saturating_add(rtt_ms)) / 8,
        });
    }

    /// Records a member's latest presence, noting whether the membership the roster
    /// depends on changed.
    pub(crate) fn put_member(&mut self, node: NodeKey, member: Member, now: Timestamp) {
        let changed = self.members.get(&node).is_none_or(|old| {
            now > old.live_until
                || old.presence.statement.classes != member.presence.statement.classes
                || old.presence.cert.cert.roles != member.presence.cert.cert.roles
        });
        if changed {
            self.members_version += 1;
        }
        self.members.insert(node, member);
    }

    /// The roster at `now`, recomputed only when the membership changed.
    pub(crate) fn roster(
        &mut self,
        now: Timestamp,
        excluded: (usize, usize),
        is_excluded: &dyn Fn(&NodeKey) -> bool,
    ) -> Arc<Roster> {
        if let Some(r) = &self.roster
            && r.version == self.members_version
            && r.excluded == excluded
            && now >= r.from
            && now <= r.until
        {
            return r.clone();
        }
        let eligible = self.eligible(now, is_excluded);
        let needed = self.needed_classes(now, &eligible);
        let digests = eligible.iter().map(|(c, m)| (*c, eligible_digest(m))).collect();
        let until = self
            .live(now)
            .map(|(_, m)| m.live_until)
            .min()
            .unwrap_or(Timestamp(u64::MAX));
        let r = Arc::new(Roster {
            version: self.members_version,
            excluded,
            from: now,
            until,
            eligible,
            digests,
            needed,
        });
        self.roster = Some(r.clone());
        r
    }

    /// Asks for a full code pass at `at` at the latest.
    pub(crate) fn wake(&mut self, at: Timestamp) {
        self.dirty = true;
        self.next_tick = self.next_tick.min(at);
    }

    /// Asks for a code pass over `key` (besides the open elections) at `at` at the latest.
    pub(crate) fn wake_key(&mut self, key: CodeKey, at: Timestamp) {
        self.dirty_keys.insert(key);
        self.next_tick = self.next_tick.min(at);
    }

    pub(crate) fn new(cfg: &CodeConfig, now: Timestamp) -> CodeState {
        CodeState {
            members: BTreeMap::new(),
            presence_seq: 0,
            next_presence: now,
            last_presence: Timestamp(0),
            presence_every: cfg.presence_interval_ms,
            next_tick: now,
            joined_at: now,
            roster_known: false,
            claims: BTreeMap::new(),
            manifests: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            attestations: BTreeMap::new(),
            digest_memo: None,
            turns: BTreeMap::new(),
            positions: BTreeMap::new(),
            failed: BTreeMap::new(),
            pending: BTreeMap::new(),
            attested: BTreeSet::new(),
            installed: BTreeMap::new(),
            installs_version: 0,
            dirty: true,
            dirty_keys: BTreeSet::new(),
            next_sweep: now,
            next_prune: Timestamp(u64::MAX),
            reported: BTreeSet::new(),
            blobs: BlobStore::new(cfg.blob_store_bytes, cfg.blob_store_count),
            transfers: BTreeMap::new(),
            sources: BTreeMap::new(),
            fetch_rtt_ms: None,
            checker: Checker(Box::new(AllHold)),
            policies: BTreeMap::new(),
            withheld: BTreeSet::new(),
            wanted: BTreeSet::new(),
            members_version: 0,
            roster: None,
            ranked_at: None,
        }
    }

    /// Live members.
    pub(crate) fn live(&self, now: Timestamp) -> impl Iterator<Item = (&NodeKey, &Member)> {
        self.members.iter().filter(move |(_, m)| now <= m.live_until)
    }

    /// Live members allowed to compile, per class they can run.
    pub(crate) fn eligible(
        &self,
        now: Timestamp,
        excluded: &dyn Fn(&NodeKey) -> bool,
    ) -> BTreeMap<ClassId, Vec<NodeKey>> {
        let mut out: BTreeMap<ClassId, Vec<NodeKey>> = BTreeMap::new();
        for (node, m) in self.live(now) {
            if excluded(node) || !m.presence.cert.cert.roles.contains(Roles::COMPILE) {
                continue;
            }
            for (c, _) in &m.presence.statement.classes {
                // Members come in key order: each class's list is strictly ascending.
                let list = out.entry(*c).or_default();
                if list.last() != Some(node) {
                    list.push(*node);
                }
            }
        }
        out
    }

    /// (tier, class) pairs code is needed for: for each live member and tier, the first
    /// class it lists that serves the tier and that some eligible node can compile.
    pub(crate) fn needed_classes(
        &self,
        now: Timestamp,
        eligible: &BTreeMap<ClassId, Vec<NodeKey>>,
    ) -> BTreeSet<(Tier, ClassId)> {
        let mut out = BTreeSet::new();
        for (_, m) in self.live(now) {
            for tier in 0..=Tier::MAX.0 {
                if let Some((c, _)) = m
                    .presence
                    .statement
                    .classes
                    .iter()
                    .find(|(c, tiers)| tiers & (1 << tier) != 0 && eligible.get(c).is_some_and(|e| !e.is_empty()))
                {
                    out.insert((Tier(tier), *c));
                }
            }
        }
        out
    }

    /// The current manifest of a (key, class).
    pub(crate) fn current(&self, key: &CodeKey, class: &ClassId) -> Option<&Signed<Manifest>> {
        self.manifests
            .get(&(*key, *class))
            .and_then(|g| g.last_key_value())
            .map(|(_, m)| &**m)
    }

    /// Digest of the current manifests and their attestations (anti-entropy); kept until
    /// either changes (whoever changes `manifests` or `attestations` clears `digest_memo`).
    pub(crate) fn digest(&mut self) -> [u8; 32] {
        if let Some(d) = self.digest_memo {
            // Tests run with debug assertions: every use checks that the memo is current.
            debug_assert_eq!(d, self.compute_digest(), "code digest memo not cleared");
            return d;
        }
        let d = self.compute_digest();
        self.digest_memo = Some(d);
        d
    }

    /// [`Self::digest`], computed from the manifests and attestations.
    pub(crate) fn compute_digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 code digest");
        for g in self.manifests.values() {
            if let Some((_, m)) = g.last_key_value() {
                let mh = m.hash();
                h.update(&mh);
                for a in self.attestations.get(&mh).into_iter().flat_map(|a| a.values()) {
                    h.update(&a.hash());
                }
            }
        }
        *h.finalize().as_bytes()
    }

    /// Distinct attesters other than the compiler whose attested hash equals the manifest's.
    pub(crate) fn agreeing_attestations(&self, m: &Signed<Manifest>) -> usize {
        let mh = m.hash();
        self.attestations.get(&mh).map_or(0, |a| {
            a.values()
                .filter(|s| {
                    s.statement.attester != m.statement.compiler && s.statement.blob_hash == m.statement.blob_hash
                })
                .count()
        })
    }
}

/// Distinct nodes that reported deopts of assumption `id` for a method at a tier.
pub(crate) fn deopt_nodes(state: Option<&FunctionState>, method: MethodId, tier: Tier, id: u32) -> usize {
    state.map_or(0, |s| {
        s.per_node(&CounterKey {
            method,
            tier,
            counter: Counter::AssumptionBroken { id },
        })
        .len()
    })
}

/// The first non-tolerated assumption of `m` that broke on at least `min_nodes` nodes.
pub(crate) fn retired_by(m: &Manifest, state: Option<&FunctionState>, min_nodes: usize) -> Option<(u32, usize)> {
    m.assumptions
        .iter()
        .map(Assumption::id)
        .filter(|id| !m.tolerated.contains(id))
        .map(|id| (id, deopt_nodes(state, m.key.method, m.key.tier, id)))
        .find(|(_, n)| *n >= min_nodes)
}

/// Latency histogram (bucket, count) of one generation of a key, merged fleet-wide.
pub(crate) fn latency_histogram(state: Option<&FunctionState>, key: &CodeKey, generation: u32) -> Vec<(u8, u64)> {
    let Some(s) = state else { return Vec::new() };
    s.other_counters()
        .iter()
        .filter_map(|(k, v)| match k.counter {
            Counter::CodeLatency { generation: g, bucket }
                if k.method == key.method && k.tier == key.tier && g == generation =>
            {
                Some((bucket, *v))
            }
            _ => None,
        })
        .collect()
}

/// The merged profile a compile of `key` uses: every non-feedback counter of the method at
/// the tiers below the key's tier.
pub(crate) fn compile_profile(state: Option<&FunctionState>, key: &CodeKey) -> Vec<(CounterKey, u64)> {
    let Some(s) = state else { return Vec::new() };
    s.merged_counters()
        .filter(|(k, _)| k.method == key.method && k.tier < key.tier.max(Tier(1)) && !k.counter.is_feedback())
        .collect()
}

/// Whether a manifest is past its expiry, or older than this node's `manifest_ttl_ms`
/// (so a compiler cannot publish code that never expires).
pub(crate) fn expired(m: &Manifest, now: Timestamp, ttl_ms: u64) -> bool {
    now >= m.expires_at || now >= m.created_at.plus_ms(ttl_ms)
}

/// `rules::rank` re-exported for the engine's election code.
pub(crate) use rules::rank;

/// Digest of one class's eligible set.
fn eligible_digest(members: &[NodeKey]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ignite v1 eligible set");
    for n in members {
        h.update(&n.0);
    }
    *h.finalize().as_bytes()
}
