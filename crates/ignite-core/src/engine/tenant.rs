//! Per-tenant state held by an engine.

use super::{Config, EngineError};
use crate::ids::{FunctionId, GroupId, MethodId, NodeKey, Peer, Tier, Timestamp};
use crate::profile::counter::CounterKey;
use crate::profile::{Evidence, FunctionState};
use crate::recorder::Recorder;
use crate::tenancy::{Revocations, SignedCert, TenantCredentials, TenantId};
use crate::wire::Sealer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What this node last published in one of its own lanes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct OwnLane {
    pub(crate) seq: u32,
    /// Values last published, sorted by key.
    pub(crate) published: Vec<(CounterKey, u64)>,
    /// Deltas since the last full one.
    pub(crate) since_full: u32,
    /// When the lane last published its settled changes (not in snapshots: a restored
    /// lane publishes them at once).
    #[serde(skip)]
    pub(crate) settled_at: Timestamp,
    /// Sum of the lane's current counts at the previous publication round, to tell a quiet
    /// lane from a busy one (not in snapshots).
    #[serde(skip)]
    pub(crate) round_sum: Option<u64>,
}

/// Who made a tier current: the engine's install (applies only while that code is still
/// installed) or the host ([`Engine::set_code_current`](super::Engine::set_code_current)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    Install,
    Host,
}

#[derive(Debug)]
pub(crate) struct TenantState {
    pub(crate) tenant: TenantId,
    pub(crate) node: NodeKey,
    pub(crate) creds: TenantCredentials,
    pub(crate) sealer: Sealer,
    pub(crate) recorder: Recorder,
    pub(crate) functions: BTreeMap<FunctionId, FunctionState>,
    /// Latest valid certificate seen per node (forwarded with its deltas).
    pub(crate) certs: BTreeMap<NodeKey, SignedCert>,
    pub(crate) revocations: Revocations,
    pub(crate) banned: BTreeSet<NodeKey>,
    pub(crate) evidence: Vec<Evidence>,
    pub(crate) own: BTreeMap<(FunctionId, GroupId), OwnLane>,
    /// Own counts restored from a snapshot, added to the recorder's.
    pub(crate) base: BTreeMap<(FunctionId, CounterKey), u64>,
    pub(crate) compiled: BTreeMap<(FunctionId, MethodId), Tier>,
    /// Code installed or declared current by the host since the last publication: its tier
    /// becomes `compiled` right after the next publication, so the lower-tier counts
    /// recorded until then are published.
    pub(crate) compiled_pending: Vec<(FunctionId, MethodId, Tier, Declared)>,
    pub(crate) deployments: BTreeMap<[u8; 16], [u8; 32]>,
    pub(crate) peers: BTreeSet<Peer>,
    pub(crate) activity: BTreeMap<NodeKey, Timestamp>,
    /// Anti-entropy rounds this node opened (it answers pages only for these).
    pub(crate) opened_rounds: Rounds,
    /// Anti-entropy rounds this node serves (it answers wants and page requests only for these).
    pub(crate) served_rounds: Rounds,
    /// Expired functions: newest signing time seen before they were dropped.
    pub(crate) tombstones: BTreeMap<FunctionId, u64>,
    pub(crate) tombstone_order: std::collections::VecDeque<FunctionId>,
    pub(crate) next_publish: Timestamp,
    /// When this node last published in the tenant.
    pub(crate) last_publish: Timestamp,
    /// The next prediction pass (see [`Engine::predict`](super::Engine)).
    pub(crate) next_predict: Timestamp,
    /// Per open threshold, the samples its fleet rate is measured between.
    pub(crate) samples: BTreeMap<(FunctionId, MethodId, Tier), super::predict::Samples>,
    pub(crate) next_sync: Timestamp,
    /// Anti-entropy rounds still to open at the catch-up interval.
    pub(crate) catch_up: u32,
    pub(crate) next_gc: Timestamp,
    /// Election and code distribution.
    pub(crate) code: super::code_state::CodeState,
}

/// A bounded set of (peer, round) pairs, oldest forgotten first.
#[derive(Debug)]
pub(crate) struct Rounds {
    set: BTreeSet<(Peer, u64)>,
    order: std::collections::VecDeque<(Peer, u64)>,
    cap: usize,
}

impl Rounds {
    pub(crate) fn new(cap: usize) -> Rounds {
        Rounds {
            set: BTreeSet::new(),
            order: std::collections::VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn insert(&mut self, peer: Peer, round: u64) {
        if self.set.insert((peer, round)) {
            self.order.push_back((peer, round));
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub(crate) fn contains(&self, peer: Peer, round: u64) -> bool {
        self.set.contains(&(peer, round))
    }
}

impl TenantState {
    pub(crate) fn new(config: &Config, creds: TenantCredentials, now: Timestamp) -> Result<TenantState, EngineError> {
        let sealer = Sealer::new(creds.secrets());
        let node = creds.node();
        let phase = u64::from_le_bytes(node.0[..8].try_into().expect("8 bytes")) % config.publish_floor_ms;
        let mut certs = BTreeMap::new();
        certs.insert(node, *creds.cert());
        Ok(TenantState {
            tenant: creds.tenant(),
            node,
            recorder: Recorder::new(config.recorder)?,
            sealer,
            creds,
            functions: BTreeMap::new(),
            certs,
            revocations: Revocations::default(),
            banned: BTreeSet::new(),
            evidence: Vec::new(),
            own: BTreeMap::new(),
            base: BTreeMap::new(),
            compiled: BTreeMap::new(),
            compiled_pending: Vec::new(),
            deployments: BTreeMap::new(),
            peers: BTreeSet::new(),
            activity: BTreeMap::new(),
            opened_rounds: Rounds::new(16),
            served_rounds: Rounds::new(64),
            tombstones: BTreeMap::new(),
            tombstone_order: std::collections::VecDeque::new(),
            next_publish: now.plus_ms(phase),
            last_publish: now,
            next_predict: now,
            samples: BTreeMap::new(),
            next_sync: now,
            // A node that joins or restores a snapshot has missed what happened before.
            catch_up: super::CATCH_UP_ROUNDS,
            next_gc: now.plus_ms(config.function_ttl_ms / 4),
            code: super::code_state::CodeState::new(&config.code, now),
        })
    }

    /// Drops a function's state. An expired function leaves a tombstone (the newest signing
    /// time it had) so that anti-entropy cannot bring it back with old deltas.
    pub(crate) fn drop_function(&mut self, f: &FunctionId, reason: super::DropReason, max_tombstones: usize) {
        let last = self.functions.remove(f).map_or(0, |s| s.last_seen.as_millis());
        self.recorder.forget_function(*f);
        self.compiled.retain(|(g, _), _| g != f);
        // Own lanes are never forgotten: published values become the base the recorder's new
        // counts add to, so if the function runs here again (after idling, or a rollback to
        // this deployment) its lanes continue instead of restarting at seq 1, which peers
        // would take for equivocation. They cost one entry per counter this node published.
        self.base.retain(|(g, _), _| g != f);
        for ((g, _), own) in self.own.iter().filter(|((g, _), _)| g == f) {
            for (k, v) in &own.published {
                self.base.insert((*g, *k), *v);
            }
        }
        if reason == super::DropReason::Expired {
            if self.tombstones.insert(*f, last).is_none() {
                self.tombstone_order.push_back(*f);
            }
            while self.tombstone_order.len() > max_tombstones {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
    }

    /// Digest of the banned set, compared by anti-entropy.
    pub(crate) fn banned_digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 banned digest");
        for n in &self.banned {
            h.update(&n.0);
        }
        *h.finalize().as_bytes()
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.functions.values().map(|f| f.heap_bytes()).sum::<usize>()
            + self
                .own
                .values()
                .map(|o| o.published.capacity() * 24 + 64)
                .sum::<usize>()
            + self.certs.len() * (std::mem::size_of::<SignedCert>() + 48)
    }

    /// Distinct members active within the window, this node included.
    pub(crate) fn members(&self) -> u64 {
        let others = self.activity.keys().filter(|n| **n != self.node).count() as u64;
        others + 1
    }
}
