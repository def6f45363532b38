//! Shared pieces of the property tests: a tenant world of real engines, random recordings,
//! publication rounds, and helpers to open, split and re-seal real messages.
#![allow(dead_code, unused_imports)]

use super::{T0, Totals, creds, function, merged, tenant};
use crdts::{CmRDT, CvRDT, Dot, GCounter};
use ignite::crypto::SigBytes;
use ignite::profile::CapConfig;
use ignite::rng::SplitMix64;
use ignite::tenancy::SignedCert;
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Envelope, Limits, Sealer};
use ignite::{
    Config, Counter, CounterKey, Engine, FunctionId, GroupId, Incarnation, Incoming, MethodId, MethodShape, NodeKey,
    Output, Peer, Recorder, Roles, TenantId, TenantRoot, TenantSecrets, Tier, Timestamp, TopicId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

/// Shape of every method registered by these tests.
pub const SHAPE: MethodShape = MethodShape {
    branch_sites: 2,
    call_sites: 2,
};

/// Time at which receivers handle messages (every delta is signed before it).
pub const NOW: Timestamp = Timestamp(T0.0 + 60_000);

/// A proptest configuration with `cases` cases unless `PROPTEST_CASES` says otherwise, and
/// no failure files.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

pub fn add(totals: &mut Totals, function: FunctionId, key: CounterKey, n: u64) {
    if n > 0 {
        *totals.entry((function, key)).or_insert(0) += n;
    }
}

/// The first `n` method ids of method group `group` (default number of groups).
pub fn methods_of_group(group: u16, n: usize) -> Vec<MethodId> {
    let groups = Config::default().groups;
    (0..)
        .map(MethodId)
        .filter(|m| GroupId::of(*m, groups) == GroupId(group))
        .take(n)
        .collect()
}

/// Fisher-Yates with a seeded generator.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut rng = SplitMix64::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Published and sent messages waiting in an engine.
pub fn drain(engine: &mut Engine) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(o) = engine.poll_output() {
        match o {
            Output::Publish { bytes, .. } | Output::Send { bytes, .. } => out.push(bytes),
            _ => {}
        }
    }
    out
}

/// Opens a sealed message with the tenant's secrets.
pub fn open(secrets: &TenantSecrets, bytes: &[u8]) -> Vec<u8> {
    let env = Envelope::decode(bytes, &Limits::default()).expect("a real envelope decodes");
    Sealer::new(secrets).open(&env).expect("a real message opens")
}

/// One signed delta, owned, with its signer's certificate and function spelled out.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedDelta {
    pub cert: SignedCert,
    pub function: FunctionId,
    pub incarnation: Incarnation,
    pub group: GroupId,
    pub seq: u32,
    pub issued_at: u64,
    pub full: bool,
    pub entries: Vec<u8>,
    pub signature: SigBytes,
}

/// The signed deltas of a sealed message (none for other bodies).
pub fn deltas_of(secrets: &TenantSecrets, bytes: &[u8]) -> Vec<OwnedDelta> {
    owned_deltas(&open(secrets, bytes)).expect("a real body decodes")
}

/// The signed deltas of a plaintext body, or `None` if it does not decode.
pub fn owned_deltas(plain: &[u8]) -> Option<Vec<OwnedDelta>> {
    Some(match Body::decode(plain, &Limits::default()).ok()? {
        Body::Deltas(b) => b
            .deltas
            .iter()
            .map(|d| OwnedDelta {
                cert: b.certs[d.signer as usize],
                function: b.functions[d.function as usize],
                incarnation: d.incarnation,
                group: d.group,
                seq: d.seq,
                issued_at: d.issued_at,
                full: d.full,
                entries: d.entries.to_vec(),
                signature: d.signature,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// Packs owned deltas into one batch body (certificates and functions by index) and seals it.
pub fn seal_batch(secrets: &TenantSecrets, deltas: &[OwnedDelta]) -> Vec<u8> {
    let mut certs: Vec<SignedCert> = Vec::new();
    let mut functions: Vec<FunctionId> = Vec::new();
    let mut wires = Vec::new();
    for d in deltas {
        let signer = certs.iter().position(|c| c == &d.cert).unwrap_or_else(|| {
            certs.push(d.cert);
            certs.len() - 1
        });
        let function = functions.iter().position(|f| f == &d.function).unwrap_or_else(|| {
            functions.push(d.function);
            functions.len() - 1
        });
        wires.push(DeltaWire {
            signer: signer as u16,
            function: function as u16,
            incarnation: d.incarnation,
            group: d.group,
            seq: d.seq,
            issued_at: d.issued_at,
            full: d.full,
            entries: &d.entries,
            signature: d.signature,
        });
    }
    let body = Body::Deltas(DeltaBatch {
        certs,
        functions,
        deltas: wires,
    });
    Sealer::new(secrets).seal(&body.encode())
}

// ---------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------

/// One recording operation of the host.
#[derive(Clone, Debug)]
pub enum Op {
    Invoke(u64),
    Backedges(u64),
    Branch { site: u16, taken: bool, n: u64 },
    Receiver { site: u16, type_id: u32, n: u64 },
    Deopt(u64),
}

/// An operation on one method: function 0 has three methods (group 0), function 1 two
/// (group 1), so a node has at most two lanes (signatures are slow in debug builds).
#[derive(Clone, Debug)]
pub struct Rec {
    pub function: usize,
    pub method: usize,
    pub tier: u8,
    pub op: Op,
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..40u64).prop_map(Op::Invoke),
        2 => (1..500u64).prop_map(Op::Backedges),
        // Values beyond 32 bits, and around the 32-bit boundary.
        1 => ((1u64 << 31)..(1u64 << 42)).prop_map(Op::Backedges),
        1 => prop::sample::select(vec![u64::from(u32::MAX) - 1, u64::from(u32::MAX), u64::from(u32::MAX) + 1])
            .prop_map(Op::Backedges),
        2 => (0..2u16, any::<bool>(), 1..30u64).prop_map(|(site, taken, n)| Op::Branch { site, taken, n }),
        2 => (0..2u16, 0..4u32, 1..20u64).prop_map(|(site, type_id, n)| Op::Receiver { site, type_id, n }),
        1 => (1..4u64).prop_map(Op::Deopt),
    ]
}

pub fn rec_strategy() -> impl Strategy<Value = Rec> {
    (0..2usize, 0..3usize, 0..2u8, op_strategy()).prop_map(|(function, method, tier, op)| Rec {
        function,
        method: if function == 1 { method % 2 } else { method },
        tier,
        op,
    })
}

/// The fixed world of these tests: one tenant, two functions and their methods.
pub struct World {
    pub root: TenantRoot,
    pub secrets: TenantSecrets,
    pub tenant: TenantId,
    pub functions: [FunctionId; 2],
    pub methods: [Vec<MethodId>; 2],
}

pub fn world() -> World {
    let (root, secrets) = tenant(11);
    World {
        tenant: root.id(),
        root,
        secrets,
        functions: [function("checkout"), function("thumbnail")],
        methods: [methods_of_group(0, 3), methods_of_group(1, 2)],
    }
}

impl World {
    /// Applies a recording operation to `recorder` and adds it to `totals`.
    pub fn record(&self, recorder: &Recorder, r: &Rec, totals: &mut Totals) {
        let f = self.functions[r.function];
        let method = self.methods[r.function][r.method];
        let tier = Tier(r.tier);
        let p = recorder.method(f, method, tier, SHAPE).expect("register method");
        let key = |counter| CounterKey { method, tier, counter };
        match r.op {
            Op::Invoke(n) => {
                for _ in 0..n {
                    p.record_invocation();
                }
                add(totals, f, key(Counter::Invocations), n);
            }
            Op::Backedges(n) => {
                p.record_backedges(n);
                add(totals, f, key(Counter::Backedges), n);
            }
            Op::Branch { site, taken, n } => {
                for _ in 0..n {
                    p.record_branch(site, taken);
                }
                add(totals, f, key(Counter::Branch { site, taken }), n);
            }
            Op::Receiver { site, type_id, n } => {
                for _ in 0..n {
                    p.record_receiver(site, type_id);
                }
                add(totals, f, key(Counter::ReceiverTotal { site }), n);
                add(totals, f, key(Counter::Receiver { site, type_id }), n);
            }
            Op::Deopt(n) => {
                for _ in 0..n {
                    p.record_deopt();
                }
                add(totals, f, key(Counter::Deopts), n);
            }
        }
    }

    /// The configuration of every engine here: increment caps high enough for the large
    /// values the strategies record within seconds.
    pub fn config(seed: u64, full_every: u32) -> Config {
        Config {
            seed,
            full_every,
            cap: CapConfig {
                max_increments_per_s: 1 << 50,
                burst: 1 << 50,
            },
            ..Config::default()
        }
    }

    /// A node engine (node byte `node`) with `full_every`, joined at T0.
    pub fn node(&self, node: u8, full_every: u32) -> (Engine, Recorder, TopicId) {
        let mut e = Engine::new(Self::config(u64::from(node), full_every), Incarnation(1)).expect("valid config");
        let (rec, topic) = e
            .join_tenant(T0, creds(&self.root, &self.secrets, node, Roles::ALL))
            .expect("join");
        (e, rec, topic)
    }

    /// A fresh receiver engine (node byte `node`) that records nothing.
    pub fn receiver(&self, node: u8) -> Engine {
        self.node(node, 16).0
    }
}

/// Messages published by real nodes over several rounds, and the totals they recorded.
pub struct Fleet {
    pub topic: TopicId,
    pub messages: Vec<Vec<u8>>,
    pub totals: Totals,
}

/// Node `i` runs `nodes[i]`: in round `r` it records `nodes[i][r]`, then flushes.
pub fn publish_rounds(w: &World, nodes: &[Vec<Vec<Rec>>], full_every: u32) -> Fleet {
    let mut engines: Vec<(Engine, Recorder)> = Vec::new();
    let mut topic = None;
    for i in 0..nodes.len() {
        let (e, rec, t) = w.node(i as u8 + 1, full_every);
        engines.push((e, rec));
        topic = Some(t);
    }
    let mut totals = Totals::new();
    let mut messages = Vec::new();
    let rounds = nodes.iter().map(Vec::len).max().unwrap_or(0);
    for r in 0..rounds {
        for (i, (e, rec)) in engines.iter_mut().enumerate() {
            let Some(ops) = nodes[i].get(r) else { continue };
            for op in ops {
                w.record(rec, op, &mut totals);
            }
            e.flush(T0.plus_ms(1_000 * (r as u64 + 1) + i as u64));
            messages.extend(drain(e));
        }
    }
    Fleet {
        topic: topic.expect("at least one node"),
        messages,
        totals,
    }
}

/// Delivers messages one by one on the topic; each must be accepted.
pub fn deliver(e: &mut Engine, topic: &TopicId, msgs: &[Vec<u8>]) -> Result<(), TestCaseError> {
    for (i, m) in msgs.iter().enumerate() {
        let r = e.handle_message(NOW, Peer(7), Some(topic), m);
        prop_assert!(r.is_ok(), "message {} of {} rejected: {:?}", i, msgs.len(), r);
    }
    Ok(())
}

/// Delivers messages through `handle_messages` in chunks of sizes drawn from `seed`.
pub fn deliver_chunked(e: &mut Engine, topic: &TopicId, msgs: &[Vec<u8>], seed: u64) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::new(seed);
    let mut rest = msgs;
    while !rest.is_empty() {
        let n = (1 + rng.below(4) as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let incoming: Vec<Incoming<'_>> = chunk.iter().map(|m| Incoming::new(Peer(9), Some(topic), m)).collect();
        for r in e.handle_messages(NOW, &incoming) {
            prop_assert!(r.is_ok(), "batched message rejected: {:?}", r);
        }
        rest = tail;
    }
    Ok(())
}

pub fn fleet_strategy() -> impl Strategy<Value = Vec<Vec<Vec<Rec>>>> {
    let round = prop::collection::vec(rec_strategy(), 0..5);
    let node = prop::collection::vec(round, 1..=3);
    prop::collection::vec(node, 2..=4)
}
