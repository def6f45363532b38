//! Property tests of the engine over real signed, sealed messages:
//!
//! 1. CRDT laws at the engine level: delivery order, duplication, regrouping and the split of
//!    a message set do not change the merged counters, which equal the recorded totals.
//! 2. A lane is a compact `crdts::GCounter`: merged counts equal the model's reads after
//!    merging the same states in the same order.
//! 3. Decoders and `Engine::handle_message` never panic on arbitrary or mutated bytes, a
//!    rejected message changes nothing, and `Engine::restore` refuses corrupt snapshots.
//!
//! Case counts are modest by default (signature checks are slow in debug builds); set
//! `PROPTEST_CASES` to run more. Failures are not persisted to files: proptest prints the
//! minimal failing input instead.

mod common;

use common::{T0, Totals, creds, function, merged, tenant};
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
const SHAPE: MethodShape = MethodShape {
    branch_sites: 2,
    call_sites: 2,
};

/// Time at which receivers handle messages (every delta is signed before it).
const NOW: Timestamp = Timestamp(T0.0 + 60_000);

/// A proptest configuration with `cases` cases unless `PROPTEST_CASES` says otherwise, and
/// no failure files.
fn config(cases: u32) -> ProptestConfig {
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

fn add(totals: &mut Totals, function: FunctionId, key: CounterKey, n: u64) {
    if n > 0 {
        *totals.entry((function, key)).or_insert(0) += n;
    }
}

/// The first `n` method ids of method group `group` (default number of groups).
fn methods_of_group(group: u16, n: usize) -> Vec<MethodId> {
    let groups = Config::default().groups;
    (0..)
        .map(MethodId)
        .filter(|m| GroupId::of(*m, groups) == GroupId(group))
        .take(n)
        .collect()
}

/// Fisher-Yates with a seeded generator.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut rng = SplitMix64::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Published and sent messages waiting in an engine.
fn drain(engine: &mut Engine) -> Vec<Vec<u8>> {
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
fn open(secrets: &TenantSecrets, bytes: &[u8]) -> Vec<u8> {
    let env = Envelope::decode(bytes, &Limits::default()).expect("a real envelope decodes");
    Sealer::new(secrets).open(&env).expect("a real message opens")
}

/// One signed delta, owned, with its signer's certificate and function spelled out.
#[derive(Clone, Debug, PartialEq)]
struct OwnedDelta {
    cert: SignedCert,
    function: FunctionId,
    incarnation: Incarnation,
    group: GroupId,
    seq: u32,
    issued_at: u64,
    full: bool,
    entries: Vec<u8>,
    signature: SigBytes,
}

/// The signed deltas of a sealed message (none for other bodies).
fn deltas_of(secrets: &TenantSecrets, bytes: &[u8]) -> Vec<OwnedDelta> {
    owned_deltas(&open(secrets, bytes)).expect("a real body decodes")
}

/// The signed deltas of a plaintext body, or `None` if it does not decode.
fn owned_deltas(plain: &[u8]) -> Option<Vec<OwnedDelta>> {
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
fn seal_batch(secrets: &TenantSecrets, deltas: &[OwnedDelta]) -> Vec<u8> {
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
enum Op {
    Invoke(u64),
    Backedges(u64),
    Branch { site: u16, taken: bool, n: u64 },
    Receiver { site: u16, type_id: u32, n: u64 },
    Deopt(u64),
}

/// An operation on one method: function 0 has three methods (group 0), function 1 two
/// (group 1), so a node has at most two lanes (signatures are slow in debug builds).
#[derive(Clone, Debug)]
struct Rec {
    function: usize,
    method: usize,
    tier: u8,
    op: Op,
}

fn op_strategy() -> impl Strategy<Value = Op> {
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

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (0..2usize, 0..3usize, 0..2u8, op_strategy()).prop_map(|(function, method, tier, op)| Rec {
        function,
        method: if function == 1 { method % 2 } else { method },
        tier,
        op,
    })
}

/// The fixed world of these tests: one tenant, two functions and their methods.
struct World {
    root: TenantRoot,
    secrets: TenantSecrets,
    tenant: TenantId,
    functions: [FunctionId; 2],
    methods: [Vec<MethodId>; 2],
}

fn world() -> World {
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
    fn record(&self, recorder: &Recorder, r: &Rec, totals: &mut Totals) {
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
    fn config(seed: u64, full_every: u32) -> Config {
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
    fn node(&self, node: u8, full_every: u32) -> (Engine, Recorder, TopicId) {
        let mut e = Engine::new(Self::config(u64::from(node), full_every), Incarnation(1)).expect("valid config");
        let (rec, topic) = e
            .join_tenant(T0, creds(&self.root, &self.secrets, node, Roles::ALL))
            .expect("join");
        (e, rec, topic)
    }

    /// A fresh receiver engine (node byte `node`) that records nothing.
    fn receiver(&self, node: u8) -> Engine {
        self.node(node, 16).0
    }
}

/// Messages published by real nodes over several rounds, and the totals they recorded.
struct Fleet {
    topic: TopicId,
    messages: Vec<Vec<u8>>,
    totals: Totals,
}

/// Node `i` runs `nodes[i]`: in round `r` it records `nodes[i][r]`, then flushes.
fn publish_rounds(w: &World, nodes: &[Vec<Vec<Rec>>], full_every: u32) -> Fleet {
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
fn deliver(e: &mut Engine, topic: &TopicId, msgs: &[Vec<u8>]) -> Result<(), TestCaseError> {
    for (i, m) in msgs.iter().enumerate() {
        let r = e.handle_message(NOW, Peer(7), Some(topic), m);
        prop_assert!(r.is_ok(), "message {} of {} rejected: {:?}", i, msgs.len(), r);
    }
    Ok(())
}

/// Delivers messages through `handle_messages` in chunks of sizes drawn from `seed`.
fn deliver_chunked(e: &mut Engine, topic: &TopicId, msgs: &[Vec<u8>], seed: u64) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::new(seed);
    let mut rest = msgs;
    while !rest.is_empty() {
        let n = (1 + rng.below(4) as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let incoming: Vec<Incoming<'_>> = chunk
            .iter()
            .map(|m| Incoming {
                from: Peer(9),
                topic: Some(topic),
                bytes: m,
            })
            .collect();
        for r in e.handle_messages(NOW, &incoming) {
            prop_assert!(r.is_ok(), "batched message rejected: {:?}", r);
        }
        rest = tail;
    }
    Ok(())
}

fn fleet_strategy() -> impl Strategy<Value = Vec<Vec<Vec<Rec>>>> {
    let round = prop::collection::vec(rec_strategy(), 0..5);
    let node = prop::collection::vec(round, 1..=3);
    prop::collection::vec(node, 2..=4)
}

proptest! {
    #![proptest_config(config(16))]

    /// Commutativity, idempotence and associativity of merging real messages, and exact
    /// totals once every message is delivered.
    #[test]
    fn merge_is_commutative_idempotent_associative_and_exact(
        nodes in fleet_strategy(),
        full_every in prop::sample::select(vec![1u32, 2, 3, 16]),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
        split in any::<Index>(),
    ) {
        let w = world();
        let fleet = publish_rounds(&w, &nodes, full_every);
        let msgs = &fleet.messages;
        let topic = &fleet.topic;
        let (s1, s2) = {
            let order = shuffled(msgs, seed_a);
            let k = split.index(order.len() + 1);
            (order[..k].to_vec(), order[k..].to_vec())
        };

        // (a) order A (S1 then S2) vs order B (another permutation) — commutativity.
        let mut a = w.receiver(101);
        deliver(&mut a, topic, &s1)?;
        let after_s1 = merged(&a, &w.tenant);
        deliver(&mut a, topic, &s2)?;
        let merged_a = merged(&a, &w.tenant);
        prop_assert_eq!(&merged_a, &fleet.totals, "order A does not give the recorded totals");

        // (b) every message twice, in another order, the copies apart — idempotence.
        let mut b = w.receiver(102);
        let twice: Vec<Vec<u8>> = msgs.iter().chain(msgs.iter()).cloned().collect();
        deliver(&mut b, topic, &shuffled(&twice, seed_b))?;
        prop_assert_eq!(&merged(&b, &w.tenant), &merged_a, "duplicated delivery differs");
        prop_assert_eq!(b.stats().duplicate_messages, msgs.len() as u64);

        // (c) S2 then S1, and S1, S2 interleaved in batches — associativity.
        let mut c = w.receiver(103);
        deliver(&mut c, topic, &s2)?;
        deliver(&mut c, topic, &s1)?;
        prop_assert_eq!(&merged(&c, &w.tenant), &merged_a, "S2 then S1 differs from S1 then S2");
        let mut interleaved = Vec::new();
        let mut rng = SplitMix64::new(seed_b ^ 0x1234);
        let (mut i, mut j) = (0, 0);
        while i < s1.len() || j < s2.len() {
            if j >= s2.len() || (i < s1.len() && rng.below(2) == 0) {
                interleaved.push(s1[i].clone());
                i += 1;
            } else {
                interleaved.push(s2[j].clone());
                j += 1;
            }
        }
        let mut d = w.receiver(104);
        deliver_chunked(&mut d, topic, &interleaved, seed_a ^ 0x77)?;
        prop_assert_eq!(&merged(&d, &w.tenant), &merged_a, "interleaved batches differ");

        // Grouping: the same signed deltas regrouped into other messages, each delta twice
        // (the copies in different messages).
        let deltas: Vec<OwnedDelta> = msgs.iter().flat_map(|m| deltas_of(&w.secrets, m)).collect();
        let mut regrouped = Vec::new();
        // Deltas per distinct message: a regrouped message can be byte-identical to another
        // one (sealing is deterministic), and is then skipped as a whole.
        let mut distinct: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (n, s) in [(0, seed_a ^ 1), (1, seed_b ^ 2)] {
            let order = shuffled(&deltas, s);
            let mut rng = SplitMix64::new(s ^ n);
            let mut rest = &order[..];
            while !rest.is_empty() {
                let k = (1 + rng.below(4) as usize).min(rest.len());
                let m = seal_batch(&w.secrets, &rest[..k]);
                distinct.insert(m.clone(), k as u64);
                regrouped.push(m);
                rest = &rest[k..];
            }
        }
        let mut g = w.receiver(105);
        deliver(&mut g, topic, &shuffled(&regrouped, seed_a ^ seed_b))?;
        prop_assert_eq!(&merged(&g, &w.tenant), &merged_a, "regrouped deltas differ");
        // Every delivered delta is either applied or recognized as held or superseded (a
        // delta older than what the lane holds changes nothing and counts as a duplicate).
        // The second copy of a delta is always recognized (seen-delta cache).
        prop_assert!(g.stats().deltas_applied <= deltas.len() as u64);
        prop_assert_eq!(
            g.stats().deltas_applied + g.stats().deltas_duplicate,
            distinct.values().sum::<u64>()
        );

        // A prefix merges to a state between nothing and everything.
        for (k, v) in &after_s1 {
            prop_assert!(*v <= fleet.totals.get(k).copied().unwrap_or(0));
        }
        for e in [&a, &b, &c, &d, &g] {
            prop_assert!(e.evidence(&w.tenant).is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lanes vs crdts::GCounter
// ---------------------------------------------------------------------------------------

/// A step of the GCounter comparison: record on a node, or publish a node's counters.
#[derive(Clone, Debug)]
enum Step {
    Record(usize, Rec),
    Publish(usize),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, rec_strategy()).prop_map(|(n, r)| Step::Record(n, r)),
        2 => (0..3usize).prop_map(Step::Publish),
    ]
}

/// The model of one of a node's own lanes, as published.
#[derive(Default)]
struct LaneModel {
    seq: u32,
    since_full: u32,
    published: BTreeMap<CounterKey, u64>,
}

/// A GCounter actor: one lane (node, group) of one function's counter.
type Actor = (usize, u16);

/// The model's state of one message: one GCounter per counter it carries.
type ModelState = BTreeMap<(FunctionId, CounterKey), GCounter<Actor>>;

/// What a node's publication must carry, per lane (function, group): seq, full, entries.
type Predicted = BTreeMap<(FunctionId, GroupId), (u32, bool, Vec<(CounterKey, u64)>)>;

/// Predicts a node's next publication from its absolute values and what it published.
fn predict(values: &Totals, lanes: &mut BTreeMap<(FunctionId, GroupId), LaneModel>, full_every: u32) -> Predicted {
    let groups = Config::default().groups;
    let mut by_lane: BTreeMap<(FunctionId, GroupId), BTreeMap<CounterKey, u64>> = BTreeMap::new();
    for ((f, k), v) in values {
        by_lane
            .entry((*f, GroupId::of(k.method, groups)))
            .or_default()
            .insert(*k, *v);
    }
    let mut out = Predicted::new();
    for (lane, current) in by_lane {
        let m = lanes.entry(lane).or_default();
        let changed: Vec<(CounterKey, u64)> = current
            .iter()
            .filter(|(k, v)| **v > m.published.get(*k).copied().unwrap_or(0))
            .map(|(k, v)| (*k, *v))
            .collect();
        if changed.is_empty() {
            continue;
        }
        m.seq += 1;
        let full = m.seq == 1 || m.since_full + 1 >= full_every;
        let entries = if full {
            current.iter().map(|(k, v)| (*k, *v)).collect()
        } else {
            changed
        };
        m.since_full = if full { 0 } else { m.since_full + 1 };
        m.published = current;
        out.insert(lane, (m.seq, full, entries));
    }
    out
}

/// Decodes a real message into the same shape as [`Predicted`].
fn actual(secrets: &TenantSecrets, bytes: &[u8]) -> Predicted {
    deltas_of(secrets, bytes)
        .into_iter()
        .map(|d| {
            let entries = wire::decode_entries(&d.entries, &Limits::default()).expect("real entries decode");
            ((d.function, d.group), (d.seq, d.full, entries))
        })
        .collect()
}

fn read(g: &GCounter<Actor>) -> u64 {
    u64::try_from(&g.read()).expect("fits in u64")
}

proptest! {
    #![proptest_config(config(32))]

    /// For random per-node increments published as absolute values and delivered in random
    /// order with duplicates, the engine's merged counts equal `GCounter::read()` of a model
    /// where each (lane, counter) is one actor, after every single delivery.
    #[test]
    fn lanes_merge_like_gcounters(
        steps in prop::collection::vec(step_strategy(), 1..28),
        full_every in prop::sample::select(vec![1u32, 2, 3, 16]),
        deliveries in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let w = world();
        let mut nodes: Vec<(Engine, Recorder)> = Vec::new();
        let mut topic = None;
        for i in 0..3u8 {
            let (e, rec, t) = w.node(i + 1, full_every);
            nodes.push((e, rec));
            topic = Some(t);
        }
        let topic = topic.expect("topic");
        let groups = Config::default().groups;
        let mut values: Vec<Totals> = vec![Totals::new(); 3];
        let mut lanes: Vec<BTreeMap<(FunctionId, GroupId), LaneModel>> = (0..3).map(|_| BTreeMap::new()).collect();
        let mut published: Vec<(Vec<u8>, ModelState)> = Vec::new();
        for (t, step) in steps.iter().enumerate() {
            match step {
                Step::Record(n, r) => w.record(&nodes[*n].1, r, &mut values[*n]),
                Step::Publish(n) => {
                    let e = &mut nodes[*n].0;
                    e.flush(T0.plus_ms(100 * (t as u64 + 1)));
                    let msgs = drain(e);
                    let predicted = predict(&values[*n], &mut lanes[*n], full_every);
                    if predicted.is_empty() {
                        prop_assert!(msgs.is_empty(), "published although nothing changed");
                        continue;
                    }
                    prop_assert_eq!(msgs.len(), 1, "one message per publication");
                    prop_assert_eq!(&actual(&w.secrets, &msgs[0]), &predicted, "published deltas");
                    let mut state = ModelState::new();
                    for ((f, g), (_, _, entries)) in &predicted {
                        for (k, v) in entries {
                            prop_assert_eq!(GroupId::of(k.method, groups), *g);
                            let mut c = GCounter::new();
                            c.apply(Dot::new((*n, g.0), *v));
                            state.insert((*f, *k), c);
                        }
                    }
                    published.push((msgs[0].clone(), state));
                }
            }
        }
        prop_assume!(!published.is_empty());

        let mut receiver = w.receiver(100);
        let mut model: ModelState = ModelState::new();
        let order: Vec<usize> = deliveries
            .iter()
            .map(|ix| ix.index(published.len()))
            .chain(0..published.len())
            .collect();
        for (step, &i) in order.iter().enumerate() {
            let (bytes, state) = &published[i];
            let r = receiver.handle_message(NOW, Peer(1), Some(&topic), bytes);
            prop_assert!(r.is_ok(), "delivery {} rejected: {:?}", step, r);
            for (k, g) in state {
                model.entry(*k).or_default().merge(g.clone());
            }
            let engine = merged(&receiver, &w.tenant);
            let keys: BTreeSet<_> = engine.keys().chain(model.keys()).collect();
            for k in keys {
                let got = engine.get(k).copied().unwrap_or(0);
                let want = model.get(k).map_or(0, read);
                prop_assert_eq!(got, want, "counter {:?} after delivery {} (message {})", k, step, i);
            }
        }
        // Every message delivered: the model holds each node's last published values.
        let mut last = Totals::new();
        for ls in &lanes {
            for ((f, _), m) in ls {
                for (k, v) in &m.published {
                    add(&mut last, *f, *k, *v);
                }
            }
        }
        prop_assert_eq!(merged(&receiver, &w.tenant), last);
    }
}

// ---------------------------------------------------------------------------------------
// Decoding never panics
// ---------------------------------------------------------------------------------------

/// Real traffic of one tenant, built once: sealed messages of every kind, their plaintext
/// bodies, and snapshots of receivers holding all or part of it.
struct Corpus {
    world: World,
    topic: TopicId,
    /// Real sealed messages: delta publications, anti-entropy messages, a revocation.
    sealed: Vec<Vec<u8>>,
    /// Their plaintext bodies, as `Body::encode` gives them.
    plain: Vec<Vec<u8>>,
    /// Number of signed deltas in each message.
    delta_count: Vec<usize>,
    /// Encoded entries of every real delta.
    entries: Vec<Vec<u8>>,
    /// Totals of every delta message.
    totals: Totals,
    /// A receiver that holds every message.
    full: Vec<u8>,
    /// A receiver that holds about half of the delta messages.
    partial: Vec<u8>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let w = world();
        let mut totals = Totals::new();
        let (mut a, rec_a, topic) = w.node(1, 3);
        let (mut b, rec_b, _) = w.node(2, 3);
        let mut deltas = Vec::new();
        for round in 0..4u64 {
            for (i, (e, rec)) in [(&mut a, &rec_a), (&mut b, &rec_b)].into_iter().enumerate() {
                for k in 0..3u64 {
                    let r = Rec {
                        function: ((round + k) % 2) as usize,
                        method: ((round + k + i as u64) % 2) as usize,
                        tier: (k % 2) as u8,
                        op: match (round + k) % 5 {
                            0 => Op::Invoke(3 + k),
                            1 => Op::Backedges(40 + round),
                            2 => Op::Branch {
                                site: 1,
                                taken: k == 1,
                                n: 2,
                            },
                            3 => Op::Receiver {
                                site: 0,
                                type_id: k as u32,
                                n: 3,
                            },
                            _ => Op::Deopt(1),
                        },
                    };
                    w.record(rec, &r, &mut totals);
                }
                e.flush(T0.plus_ms(1_000 * (round + 1) + i as u64));
                deltas.extend(drain(e));
            }
        }
        // Anti-entropy between A (which got nothing from B) and B.
        a.peer_joined(Peer(1), &topic);
        b.peer_joined(Peer(0), &topic);
        let mut sync = Vec::new();
        a.handle_timeout(T0.plus_ms(20_000));
        let mut to_b = drain(&mut a);
        for _ in 0..4 {
            let mut to_a = Vec::new();
            for m in &to_b {
                let _ = b.handle_message(T0.plus_ms(20_001), Peer(0), None, m);
                to_a.extend(drain(&mut b));
            }
            sync.append(&mut to_b);
            for m in &to_a {
                let _ = a.handle_message(T0.plus_ms(20_002), Peer(1), None, m);
                to_b.extend(drain(&mut a));
            }
            sync.extend(to_a);
        }
        let rev = w.root.revoke(NodeKey([9; 32]), T0.plus_ms(5));
        a.revoke(T0.plus_ms(20_003), rev).expect("revocation applies");
        let revocation = drain(&mut a);

        let limits = Limits::default();
        let mut sealed = deltas.clone();
        sealed.extend(sync);
        sealed.extend(revocation);
        let mut plain = Vec::new();
        let mut delta_count = Vec::new();
        let mut entries = Vec::new();
        for m in &sealed {
            let p = open(&w.secrets, m);
            let body = Body::decode(&p, &limits).expect("real body");
            assert_eq!(body.encode(), p, "Body::encode round-trips");
            plain.push(body.encode());
            let ds = deltas_of(&w.secrets, m);
            delta_count.push(ds.len());
            entries.extend(ds.into_iter().map(|d| d.entries));
        }
        let mut full = w.receiver(100);
        for m in &sealed {
            let r = full.handle_message(NOW, Peer(3), None, m);
            assert!(r.is_ok(), "real message rejected: {r:?}");
        }
        drain(&mut full);
        assert_eq!(merged(&full, &w.tenant), totals);
        let mut partial = w.receiver(101);
        for m in deltas.iter().step_by(2) {
            partial.handle_message(NOW, Peer(3), None, m).expect("real message");
        }
        Corpus {
            topic,
            sealed,
            plain,
            delta_count,
            entries,
            totals,
            full: full.snapshot(),
            partial: partial.snapshot(),
            world: w,
        }
    })
}

/// A long-lived receiver holding every real message (restored once from the corpus).
fn full_receiver() -> &'static Mutex<Engine> {
    static FULL: OnceLock<Mutex<Engine>> = OnceLock::new();
    FULL.get_or_init(|| Mutex::new(Engine::restore(World::config(0, 16), &corpus().full).expect("restore")))
}

/// One byte-level mutation.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for m in ms {
        match m {
            Mutation::Flip(i, bit) if !v.is_empty() => {
                let i = i.index(v.len());
                v[i] ^= 1 << bit;
            }
            Mutation::Set(i, b) if !v.is_empty() => {
                let i = i.index(v.len());
                v[i] = *b;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(v.len() + 1);
                v.insert(i, *b);
            }
            Mutation::Delete(i) if !v.is_empty() => {
                let i = i.index(v.len());
                v.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = i.index(v.len() + 1);
                v.truncate(i);
            }
            _ => {}
        }
    }
    v
}

/// Feeds bytes to every decoder; none may panic.
fn decode_all(bytes: &[u8]) {
    let limits = Limits::default();
    let _ = Envelope::decode(bytes, &limits);
    let _ = Body::decode(bytes, &limits);
    let _ = wire::decode_entries(bytes, &limits);
}

/// An envelope for the corpus tenant around arbitrary ciphertext, so the bytes reach
/// decryption.
fn envelope_around(sealed: &[u8], epoch: u32, nonce: [u8; 24]) -> Vec<u8> {
    let c = corpus();
    let env = Envelope {
        version: wire::WIRE_VERSION,
        tenant: wire::tenant_tag(&c.world.secrets),
        epoch,
        nonce,
        sealed,
    };
    postcard::to_allocvec(&env).expect("envelope encodes")
}

/// Handles `bytes` on the full receiver: the merged counters must stay the totals.
fn check_full(bytes: &[u8], topic: Option<&TopicId>) -> Result<(), TestCaseError> {
    let c = corpus();
    let mut e = full_receiver().lock().unwrap_or_else(|p| p.into_inner());
    let _ = e.handle_message(NOW, Peer(5), topic, bytes);
    drain(&mut e);
    prop_assert_eq!(
        &merged(&e, &c.world.tenant),
        &c.totals,
        "a mutated message changed a full receiver"
    );
    Ok(())
}

/// Handles `bytes` on a receiver holding part of the traffic: a rejected message with at
/// most one delta changes nothing; anything else only adds real counts.
fn check_partial(bytes: &[u8], deltas: usize) -> Result<(), TestCaseError> {
    let c = corpus();
    let mut e = Engine::restore(World::config(0, 16), &c.partial).expect("restore");
    let before = merged(&e, &c.world.tenant);
    let r = e.handle_message(NOW, Peer(5), Some(&c.topic), bytes);
    let after = merged(&e, &c.world.tenant);
    if r.is_err() && deltas <= 1 {
        prop_assert_eq!(&after, &before, "rejected message changed the state: {:?}", r);
    }
    for (k, v) in &after {
        prop_assert!(*v >= before.get(k).copied().unwrap_or(0), "a counter decreased");
        prop_assert!(
            *v <= c.totals.get(k).copied().unwrap_or(0),
            "a counter exceeds the recorded total"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes: every decoder returns without panicking, and an engine rejects them.
    #[test]
    fn arbitrary_bytes_never_panic_and_are_rejected(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        epoch in 0..2u32,
        nonce in any::<[u8; 24]>(),
    ) {
        decode_all(&bytes);
        let c = corpus();
        let mut e = full_receiver().lock().unwrap_or_else(|p| p.into_inner());
        prop_assert!(e.handle_message(NOW, Peer(5), None, &bytes).is_err());
        prop_assert!(e.handle_message(NOW, Peer(5), Some(&c.topic), &bytes).is_err());
        // The same bytes as ciphertext in a well-formed envelope for the tenant.
        let env = envelope_around(&bytes, epoch, nonce);
        decode_all(&env);
        prop_assert!(e.handle_message(NOW, Peer(5), Some(&c.topic), &env).is_err());
        prop_assert_eq!(&merged(&e, &c.world.tenant), &c.totals);
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Mutated real messages (sealed bytes, and plaintext bodies re-sealed with the tenant's
    /// key so they pass decryption): no panic, and no change unless valid.
    #[test]
    fn mutated_messages_never_panic_and_change_nothing_when_rejected(
        which in any::<Index>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..4),
        plaintext in any::<bool>(),
    ) {
        let c = corpus();
        let i = which.index(c.sealed.len());
        let original = if plaintext { &c.plain[i] } else { &c.sealed[i] };
        let bytes = mutate(original, &mutations);
        prop_assume!(&bytes != original);
        decode_all(&bytes);
        let message = if plaintext {
            Sealer::new(&c.world.secrets).seal(&bytes)
        } else {
            bytes
        };
        decode_all(&message);
        check_full(&message, Some(&c.topic))?;
        check_partial(&message, c.delta_count[i])?;
    }

    /// Mutated real encoded entries never panic the entry decoder.
    #[test]
    fn mutated_entries_never_panic(
        which in any::<Index>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..6),
    ) {
        let c = corpus();
        let original = &c.entries[which.index(c.entries.len())];
        prop_assert!(wire::decode_entries(original, &Limits::default()).is_ok());
        let _ = wire::decode_entries(&mutate(original, &mutations), &Limits::default());
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Structured mutations of real delta batches, re-encoded and re-sealed so that they
    /// reach certificate checks, signature checks and the merge: every field of one delta,
    /// references out of range, certificates swapped or dropped, deltas duplicated.
    #[test]
    fn mutated_delta_fields_are_rejected_without_effect(
        which in any::<Index>(),
        target in any::<Index>(),
        field in 0..12u8,
        value in any::<u64>(),
        bytes in prop::collection::vec(mutation_strategy(), 1..3),
    ) {
        let c = corpus();
        let candidates: Vec<usize> = (0..c.sealed.len()).filter(|i| c.delta_count[*i] > 0).collect();
        let i = candidates[which.index(candidates.len())];
        let plain = &c.plain[i];
        let Body::Deltas(mut batch) = Body::decode(plain, &Limits::default()).expect("real body") else {
            unreachable!("a delta message");
        };
        let t = target.index(batch.deltas.len());
        let mutated_entries;
        {
            let d = &mut batch.deltas[t];
            match field {
                0 => d.seq = d.seq.wrapping_add(1 + (value % 3) as u32),
                1 => d.issued_at ^= 1 + value % 1_000_000,
                2 => d.full = !d.full,
                3 => d.group = GroupId((d.group.0 + 1 + (value % 3) as u16) % 4),
                4 => d.incarnation = Incarnation(d.incarnation.0 ^ (1 + value)),
                5 => {
                    mutated_entries = mutate(d.entries, &bytes);
                    prop_assume!(mutated_entries != d.entries);
                    d.entries = &mutated_entries;
                }
                6 => d.signature.1[(value % 32) as usize] ^= 1 << (value % 8),
                7 => d.signer = d.signer.wrapping_add(1 + (value % 2) as u16),
                8 => d.function = d.function.wrapping_add(1 + (value % 2) as u16),
                9 => {} // below: the delta twice, and a stranger's certificate
                10 => {
                    let cert = &mut batch.certs[0];
                    cert.cert.not_after = Timestamp(cert.cert.not_after.0 ^ (1 + value % 1000));
                }
                _ => batch.functions[d.function as usize].code[(value % 32) as usize] ^= 1,
            }
        }
        if field == 9 {
            // The same delta twice in one batch, and a foreign signer's certificate added.
            let d = batch.deltas[t].clone();
            batch.deltas.push(d);
            let stranger = *creds(&c.world.root, &c.world.secrets, 77, Roles::ALL).cert();
            batch.certs.push(stranger);
        }
        let body = Body::Deltas(batch).encode();
        decode_all(&body);
        let message = Sealer::new(&c.world.secrets).seal(&body);
        check_full(&message, Some(&c.topic))?;
        // Exactly the deltas left intact may take effect: compare with a receiver that gets
        // only those.
        let original = owned_deltas(plain).expect("real body");
        let received = owned_deltas(&body);
        let intact: Vec<OwnedDelta> = received
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| original.contains(d))
            .collect();
        let mut expected = Engine::restore(World::config(0, 16), &c.partial).expect("restore");
        if !intact.is_empty() {
            let only = seal_batch(&c.world.secrets, &intact);
            prop_assert!(expected.handle_message(NOW, Peer(5), Some(&c.topic), &only).is_ok());
        }
        let mut e = Engine::restore(World::config(0, 16), &c.partial).expect("restore");
        let r = e.handle_message(NOW, Peer(5), Some(&c.topic), &message);
        let tampered = received.is_none_or(|ds| ds.len() > intact.len());
        prop_assert_eq!(r.is_err(), tampered, "result {:?}", r);
        prop_assert_eq!(
            merged(&e, &c.world.tenant),
            merged(&expected, &c.world.tenant),
            "only the intact deltas took effect"
        );
        prop_assert!(e.evidence(&c.world.tenant).is_empty());
    }

}

proptest! {
    #![proptest_config(config(64))]

    /// `Engine::restore` never panics: random bytes, random payloads behind the right magic
    /// and checksum, and mutated real snapshots (which the checksum must catch).
    #[test]
    fn restore_never_panics_and_refuses_corruption(
        random in prop::collection::vec(any::<u8>(), 0..4000),
        mutations in prop::collection::vec(mutation_strategy(), 1..4),
        rehash in any::<bool>(),
    ) {
        let c = corpus();
        prop_assert!(Engine::restore(Config::default(), &random).is_err());
        // Random payload with a valid header: must not panic (it may even decode).
        let mut framed = b"IGNSNAP1".to_vec();
        framed.extend_from_slice(blake3::hash(&random).as_bytes());
        framed.extend_from_slice(&random);
        let _ = Engine::restore(Config::default(), &framed);

        let real = if rehash { &c.partial } else { &c.full };
        let bad = mutate(real, &mutations);
        prop_assume!(&bad != real);
        prop_assert!(
            Engine::restore(Config::default(), &bad).is_err(),
            "a corrupted snapshot was restored"
        );
        // The same corruption of the payload, with the checksum recomputed: may be refused
        // or restored, never a panic.
        if real.len() > 40 {
            let payload = mutate(&real[40..], &mutations);
            let mut resealed = real[..8].to_vec();
            resealed.extend_from_slice(blake3::hash(&payload).as_bytes());
            resealed.extend_from_slice(&payload);
            if let Ok(mut e) = Engine::restore(Config::default(), &resealed) {
                let _ = merged(&e, &c.world.tenant);
                let _ = e.snapshot();
                e.handle_timeout(NOW);
                drain(&mut e);
            }
        }
    }
}

#[test]
fn real_snapshots_restore_exactly() {
    let c = corpus();
    let e = Engine::restore(Config::default(), &c.full).expect("restore");
    assert_eq!(merged(&e, &c.world.tenant), c.totals);
    assert_eq!(e.snapshot(), c.full, "snapshot of a restored engine is identical");
}
