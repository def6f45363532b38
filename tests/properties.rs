//! Property tests of the engine over real signed, sealed messages:
//!
//! 1. CRDT laws at the engine level: delivery order, duplication, regrouping and the split of
//!    a message set do not change the merged counters, which equal the recorded totals.
//! 2. A lane is a compact `crdts::GCounter`: merged counts equal the model's reads after
//!    merging the same states in the same order.
//!
//! Decoding properties are in `decoding.rs`. Case counts are modest by default (signature
//! checks are slow in debug builds); set `PROPTEST_CASES` to run more. Failures are not
//! persisted to files: proptest prints the minimal failing input instead.

mod common;

use common::props::*;
use common::{T0, Totals, invocations_below_pairs, merged};
use crdts::{CmRDT, CvRDT, Dot, GCounter};
use ignite::rng::SplitMix64;
use ignite::wire::{self, Limits};
use ignite::{Config, CounterKey, Engine, FunctionId, GroupId, Peer, Recorder, TenantSecrets};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};

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
            for (got, want) in invocations_below_pairs(&receiver, &w.tenant) {
                prop_assert_eq!(got, want, "invocations below a tier after delivery {}", step);
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
