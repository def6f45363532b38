//! Fixtures shared by the engine benchmarks: a tenant, its nodes, signed deltas and sealed
//! messages, all real bytes.
#![allow(dead_code, unused_imports, unreachable_pub)]

use criterion::{BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use ignite_core::crypto::{self, BatchItem};
use ignite_core::profile::StoredDelta;
use ignite_core::rng::SplitMix64;
use ignite_core::tenancy::SignedCert;
use ignite_core::wire::{self, Body, DeltaBatch, DeltaWire, Envelope, Limits, Sealer};
use ignite_core::{
    Accepted, Config, Counter, CounterKey, Engine, FunctionId, GroupId, Incarnation, Incoming, MethodId,
    MethodProfiler, MethodShape, NodeKey, Output, Peer, Roles, TenantCredentials, TenantRoot, TenantSecrets, Tier,
    Timestamp, TopicId,
};
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::Instant;

/// Start of virtual time.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);
/// One day in ms (certificate validity).
pub const DAY: u64 = 86_400_000;
/// The time receivers are told it is in the timed benches: deltas are signed at
/// `T0 + seq` ms, well before it, and certificates are valid.
pub const NOW: Timestamp = Timestamp(T0.0 + DAY / 2);

// ---------------------------------------------------------------------------------------
// Fixtures: a tenant, its nodes, signed deltas and sealed messages.
// ---------------------------------------------------------------------------------------

/// A tenant as its administrator holds it.
pub struct Tenant {
    pub root: TenantRoot,
    pub secrets: TenantSecrets,
    pub sealer: Sealer,
}

/// A node's certificate and signing key in the tenant.
pub struct Node {
    pub cert: SignedCert,
    pub key: SigningKey,
}

impl Tenant {
    pub fn new() -> Tenant {
        let secrets = TenantSecrets::from_seed(&[9; 32]);
        Tenant {
            root: TenantRoot::from_secret([7; 32]),
            sealer: Sealer::new(&secrets),
            secrets,
        }
    }

    /// Node `index`: a key derived from the index, certified by the root for a day.
    pub fn node(&self, index: u32) -> Node {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&index.to_le_bytes());
        let key = SigningKey::from_bytes(blake3::hash(&seed).as_bytes());
        let cert = self.root.issue(
            NodeKey(key.verifying_key().to_bytes()),
            Roles::PROFILE,
            T0,
            T0.plus_ms(DAY),
            u64::from(index),
        );
        Node { cert, key }
    }

    pub fn creds(&self, node: &Node) -> TenantCredentials {
        TenantCredentials::new(node.cert, node.key.to_bytes(), self.secrets.clone()).expect("matching credentials")
    }

    /// An engine that joined the tenant as a node that never publishes.
    pub fn receiver(&self) -> (Engine, TopicId) {
        let mut engine = Engine::new(Config::default(), Incarnation(1)).expect("default config is valid");
        let (_recorder, topic) = engine
            .join_tenant(T0, self.creds(&self.node(u32::MAX)))
            .expect("valid credentials");
        (engine, topic)
    }
}

pub fn bench_function_id() -> FunctionId {
    FunctionId::from_deployment("bench-fn", b"bench deployment v1")
}

/// A function id no delta refers to: added to a batch it changes the plaintext, hence the
/// envelope, without changing any delta.
pub fn filler_function(i: u64) -> FunctionId {
    let mut code = [0u8; 32];
    code[..8].copy_from_slice(&i.to_le_bytes());
    FunctionId { name: [0xEE; 16], code }
}

/// The first `n` methods (by id) that hash into `group`.
pub fn methods_in_group(group: GroupId, n: usize) -> Vec<MethodId> {
    let groups = Config::default().groups;
    assert!(
        group.0 < groups,
        "group {} does not exist with {groups} groups",
        group.0
    );
    (0u32..)
        .map(MethodId)
        .filter(|m| GroupId::of(*m, groups) == group)
        .take(n)
        .collect()
}

pub fn key(method: MethodId, counter: Counter) -> CounterKey {
    CounterKey {
        method,
        tier: Tier(0),
        counter,
    }
}

/// Invocation and back-edge counters at tier 0 of `methods`, sorted.
pub fn inv_backedge_keys(methods: &[MethodId]) -> Vec<CounterKey> {
    let mut keys: Vec<CounterKey> = methods
        .iter()
        .flat_map(|m| [key(*m, Counter::Invocations), key(*m, Counter::Backedges)])
        .collect();
    keys.sort();
    keys
}

/// The lane a delta belongs to, besides the signer.
#[derive(Clone, Copy)]
pub struct LaneSpec {
    pub function: FunctionId,
    pub incarnation: Incarnation,
    pub group: GroupId,
}

/// Signs a delta exactly as a publishing engine does.
pub fn sign_delta(
    tenant: &Tenant,
    node: &Node,
    lane: LaneSpec,
    seq: u32,
    issued_at: Timestamp,
    full: bool,
    entries: &[(CounterKey, u64)],
) -> StoredDelta {
    let entries = wire::encode_entries(entries);
    let signed = wire::signed_delta_bytes(
        &tenant.root.id().0,
        &node.cert.cert.node.0,
        &lane.function,
        lane.incarnation,
        lane.group,
        seq,
        issued_at.as_millis(),
        full,
        &entries,
    );
    StoredDelta {
        seq,
        issued_at: issued_at.as_millis(),
        full,
        signature: crypto::sign(&node.key, &[], &signed),
        entries: entries.into(),
    }
}

/// Packs signed deltas (with their signers' certificates) into one body and seals it.
/// `filler` adds unused function ids to make the envelope unique.
pub fn seal_batch(
    tenant: &Tenant,
    items: &[(&SignedCert, LaneSpec, &StoredDelta)],
    filler: Option<FunctionId>,
) -> Vec<u8> {
    let mut certs: Vec<SignedCert> = Vec::new();
    let mut functions: Vec<FunctionId> = Vec::new();
    let mut deltas = Vec::with_capacity(items.len());
    for (cert, lane, delta) in items {
        let signer = match certs.iter().position(|c| c.cert.node == cert.cert.node) {
            Some(i) => i,
            None => {
                certs.push(**cert);
                certs.len() - 1
            }
        };
        let function = match functions.iter().position(|f| *f == lane.function) {
            Some(i) => i,
            None => {
                functions.push(lane.function);
                functions.len() - 1
            }
        };
        deltas.push(DeltaWire {
            signer: signer as u16,
            function: function as u16,
            incarnation: lane.incarnation,
            group: lane.group,
            seq: delta.seq,
            issued_at: delta.issued_at,
            full: delta.full,
            entries: &delta.entries,
            signature: delta.signature,
        });
    }
    functions.extend(filler);
    let body = Body::Deltas(DeltaBatch {
        certs,
        functions,
        deltas,
    });
    let bytes = tenant.sealer.seal(&body.encode());
    assert!(bytes.len() <= Limits::default().max_message_bytes, "message too large");
    bytes
}

/// One node's lane, publishing a delta with every counter raised at each step.
pub struct Stream {
    pub node: Node,
    pub lane: LaneSpec,
    pub keys: Vec<CounterKey>,
    pub seq: u32,
    pub last: Option<StoredDelta>,
}

impl Stream {
    pub fn new(tenant: &Tenant, node_index: u32, group: GroupId, entries: usize) -> Stream {
        let methods = methods_in_group(group, entries.div_ceil(2));
        let mut keys = inv_backedge_keys(&methods);
        keys.truncate(entries);
        Stream {
            node: tenant.node(node_index),
            lane: LaneSpec {
                function: bench_function_id(),
                incarnation: Incarnation(1),
                group,
            },
            keys,
            seq: 0,
            last: None,
        }
    }

    /// The next signed delta: in order, every counter higher than before, every 16th full
    /// (like a publishing engine's default `full_every`).
    pub fn next_delta(&mut self, tenant: &Tenant) -> &StoredDelta {
        self.seq += 1;
        let seq = u64::from(self.seq);
        let entries: Vec<(CounterKey, u64)> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, 1_000 + i as u64 + seq * (1 + i as u64 % 7)))
            .collect();
        let full = self.seq % 16 == 1;
        let delta = sign_delta(tenant, &self.node, self.lane, self.seq, T0.plus_ms(seq), full, &entries);
        self.last.insert(delta)
    }

    pub fn last(&self) -> &StoredDelta {
        self.last.as_ref().expect("a delta was made")
    }
}

/// The next message of a stream: one new delta.
pub fn next_message(tenant: &Tenant, s: &mut Stream) -> Vec<u8> {
    s.next_delta(tenant);
    seal_batch(tenant, &[(&s.node.cert, s.lane, s.last())], None)
}

/// The latest delta of each stream in one message (re-sealed with `filler` if given).
pub fn batch_message(tenant: &Tenant, streams: &[Stream], filler: Option<FunctionId>) -> Vec<u8> {
    let items: Vec<(&SignedCert, LaneSpec, &StoredDelta)> =
        streams.iter().map(|s| (&s.node.cert, s.lane, s.last())).collect();
    seal_batch(tenant, &items, filler)
}

/// Hands a message to the engine and drains what it wants done, like a driver.
pub fn deliver(engine: &mut Engine, topic: &TopicId, now: Timestamp, bytes: &[u8]) -> Accepted {
    let accepted = engine
        .handle_message(now, Peer(1), Some(topic), bytes)
        .expect("message accepted");
    while engine.poll_output().is_some() {}
    accepted
}
