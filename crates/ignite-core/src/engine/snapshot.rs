//! Snapshot and restore of an engine's whole state.
//!
//! Format: `b"IGNSNAP3"`, then the blake3 hash of the payload (32 bytes), then the postcard
//! payload. Restore checks magic, hash and decoding before building anything, so a corrupt
//! snapshot gives a clear error and nothing half-loaded. A snapshot contains the node's
//! secret keys: store it like a private key.

use super::tenant::{OwnLane, TenantState};
use super::{Config, Engine, EngineError};
use crate::crypto::SeenCache;
use crate::ids::{FunctionId, GroupId, Incarnation, NodeKey, Peer, TenantTag, Timestamp};
use crate::profile::counter::CounterKey;
use crate::profile::{Evidence, FunctionState};
use crate::rng::SplitMix64;
use crate::tenancy::{Revocations, SignedCert, SignedRevocation, TenantCredentials};
use crate::wire::Sealer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const MAGIC: &[u8; 8] = b"IGNSNAP3";

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a snapshot of this format version.
    #[error("not an Ignite snapshot (bad magic or version)")]
    BadMagic,
    /// The payload hash does not match: the snapshot is corrupt or truncated.
    #[error("snapshot corrupt: checksum mismatch")]
    Checksum,
    /// The payload does not decode.
    #[error("snapshot does not decode: {0}")]
    Decode(#[from] postcard::Error),
    /// The snapshot's contents are inconsistent.
    #[error("snapshot invalid: {0}")]
    Invalid(String),
    /// The configuration given for the restored engine is invalid.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Serialize, Deserialize)]
struct TenantSnap {
    creds: Vec<u8>,
    functions: BTreeMap<FunctionId, FunctionState>,
    certs: BTreeMap<NodeKey, SignedCert>,
    revocations: Vec<SignedRevocation>,
    banned: BTreeSet<NodeKey>,
    evidence: Vec<Evidence>,
    own: BTreeMap<(FunctionId, GroupId), OwnLane>,
    counts: BTreeMap<(FunctionId, CounterKey), u64>,
    deployments: BTreeMap<[u8; 16], [u8; 32]>,
    peers: BTreeSet<Peer>,
    activity: BTreeMap<NodeKey, Timestamp>,
    tombstones: Vec<(FunctionId, u64)>,
    next_publish: Timestamp,
    next_sync: Timestamp,
    next_gc: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct Snap {
    incarnation: Incarnation,
    rng: SplitMix64,
    tenants: Vec<TenantSnap>,
}

impl Engine {
    /// Serializes the whole state: own counters (including those recorded but not yet
    /// published), merged state, stored signed deltas, evidence, revocations, credentials.
    pub fn snapshot(&self) -> Vec<u8> {
        let tenants = self
            .tenants
            .values()
            .map(|t| {
                let mut counts = t.base.clone();
                t.recorder.visit(|f, k, v| *counts.entry((f, k)).or_insert(0) += v);
                TenantSnap {
                    creds: t.creds.to_bytes(),
                    functions: t.functions.clone(),
                    certs: t.certs.clone(),
                    revocations: t.revocations.iter().copied().collect(),
                    banned: t.banned.clone(),
                    evidence: t.evidence.clone(),
                    own: t.own.clone(),
                    counts,
                    deployments: t.deployments.clone(),
                    peers: t.peers.clone(),
                    activity: t.activity.clone(),
                    tombstones: t.tombstone_order.iter().map(|f| (*f, t.tombstones[f])).collect(),
                    next_publish: t.next_publish,
                    next_sync: t.next_sync,
                    next_gc: t.next_gc,
                }
            })
            .collect();
        let snap = Snap {
            incarnation: self.incarnation,
            rng: self.rng.clone(),
            tenants,
        };
        let payload = postcard::to_allocvec(&snap).expect("snapshot encodes");
        let mut out = Vec::with_capacity(payload.len() + 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(blake3::hash(&payload).as_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Rebuilds an engine from a snapshot, in the same incarnation. Recorders are new:
    /// the host must fetch them again with [`Engine::recorder`]; counts recorded before the
    /// snapshot are kept and published as usual. Code is not part of a snapshot: the
    /// restored engine has nothing installed and no tier current, so the counts the host
    /// records at lower tiers after the restart are published until the fleet's code is
    /// installed again. Like a node that just joined, it claims no compile in its first
    /// `presence_interval_ms` (counted from its first input after the restore): it hears
    /// the members and their code first.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        if bytes.len() < 40 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let payload = &bytes[40..];
        if blake3::hash(payload).as_bytes() != &bytes[8..40] {
            return Err(SnapshotError::Checksum);
        }
        let snap: Snap = postcard::from_bytes(payload)?;
        let mut engine = Engine::new(config, snap.incarnation)?;
        engine.rng = snap.rng;
        let mut tenants = BTreeMap::new();
        let mut by_topic = BTreeMap::new();
        for ts in snap.tenants {
            let creds = TenantCredentials::from_bytes(&ts.creds).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
            let mut state = TenantState::new(&engine.config, creds, ts.next_sync).map_err(SnapshotError::Engine)?;
            let mut revocations = Revocations::default();
            for r in ts.revocations {
                r.verify(&state.tenant)
                    .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
                revocations.insert(r);
            }
            state.functions = ts.functions;
            for f in state.functions.values_mut() {
                f.check_restored().map_err(SnapshotError::Invalid)?;
            }
            state.certs = ts.certs;
            state.revocations = revocations;
            state.banned = ts.banned;
            state.evidence = ts.evidence;
            state.own = ts.own;
            state.base = ts.counts;
            state.deployments = ts.deployments;
            state.peers = ts.peers;
            state.activity = ts.activity;
            for (f, at) in ts.tombstones {
                if state.tombstones.insert(f, at).is_none() {
                    state.tombstone_order.push_back(f);
                }
            }
            state.next_publish = ts.next_publish;
            state.next_sync = ts.next_sync;
            state.next_gc = ts.next_gc;
            let tag: TenantTag = Sealer::tag(&state.sealer);
            if tenants.contains_key(&tag) {
                return Err(SnapshotError::Invalid("tenant listed twice".into()));
            }
            by_topic.insert(state.sealer.topic().clone(), tag);
            tenants.insert(tag, state);
        }
        engine.tenants = tenants;
        engine.by_topic = by_topic;
        engine.outputs = VecDeque::new();
        engine.seen_messages = SeenCache::new(engine.config.seen_cache);
        engine.restored = true;
        Ok(engine)
    }
}
