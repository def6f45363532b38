//! Tests of the merged function state.

use super::*;
use crate::crypto::SigBytes;

fn delta(seq: u32, full: bool, values: &[(CounterKey, u64)]) -> Arc<StoredDelta> {
    Arc::new(StoredDelta {
        seq,
        issued_at: u64::from(seq) * 1000,
        full,
        entries: crate::wire::encode_entries(values).into(),
        signature: SigBytes([0; 32], [0; 32]),
    })
}

fn test_lane() -> LaneId {
    LaneId {
        function: FunctionId {
            name: [1; 16],
            code: [2; 32],
        },
        node: NodeKey([3; 32]),
        incarnation: Incarnation(1),
        group: GroupId(0),
    }
}

#[test]
fn values_beyond_32_bits_are_exact() {
    let (mut s, lane) = (FunctionState::default(), test_lane());
    let k = CounterKey {
        method: MethodId(1),
        tier: Tier(0),
        counter: Counter::Backedges,
    };
    let k2 = CounterKey {
        method: MethodId(1),
        tier: Tier(0),
        counter: Counter::Invocations,
    };
    let limits = Limits::default();
    for (seq, v) in [
        (1, 7u64),
        (2, u64::from(u32::MAX) - 1),
        (3, u64::from(u32::MAX)),
        (4, 5_000_000_000),
        (5, 9_000_000_000),
    ] {
        let values = [(k2, u64::from(seq)), (k, v)];
        s.apply(
            &lane,
            &delta(seq, seq == 1, &values),
            &values,
            &limits,
            None,
            |_, _, p, _| p,
        );
        assert_eq!(s.merged(&k), v);
        assert_eq!(s.per_node(&k).values().copied().collect::<Vec<_>>(), vec![v]);
    }
    // A stale lower value changes nothing and is not a conflict with the held big value.
    let stale = [(k2, 1), (k, 7)];
    let out = s.apply(&lane, &delta(1, true, &stale), &stale, &limits, None, |_, _, p, _| p);
    assert!(out.increments.is_empty());
    assert_eq!(s.merged(&k), 9_000_000_000);
    s.remove_node(&lane.node);
    assert_eq!(s.merged(&k), 0);
    assert_eq!(s.merged_counters().count(), 0);
}

#[test]
fn a_full_delta_frees_older_stored_deltas() {
    let (mut s, lane) = (FunctionState::default(), test_lane());
    let key = |m| CounterKey {
        method: MethodId(m),
        tier: Tier(0),
        counter: Counter::Invocations,
    };
    let limits = Limits::default();
    let first = [(key(1), 1), (key(2), 1), (key(3), 1)];
    s.apply(&lane, &delta(1, true, &first), &first, &limits, None, |_, _, p, _| p);
    for seq in 2..6u32 {
        let partial = [(key(seq % 3 + 1), u64::from(seq))];
        s.apply(
            &lane,
            &delta(seq, false, &partial),
            &partial,
            &limits,
            None,
            |_, _, p, _| p,
        );
    }
    let held = s.lane(lane.node, lane.incarnation, lane.group).unwrap();
    assert!(held.stored.len() <= 4, "only deltas holding a current value are kept");
    let all: Vec<_> = (1..=3).map(|m| (key(m), held.value_of(s.ids[&key(m)]))).collect();
    s.apply(&lane, &delta(6, true, &all), &all, &limits, None, |_, _, p, _| p);
    let held = s.lane(lane.node, lane.incarnation, lane.group).unwrap();
    assert_eq!(held.stored.len(), 1);
    assert_eq!(held.stored[0].delta.seq, 6);
    assert_eq!(held.have, 6);
}

/// Invocation sums live in a per-method table and the other counters in a map: every
/// way of reading the merged counts must agree with the lanes' values summed by hand.
#[test]
fn merged_counts_read_alike_from_either_store() {
    let mut rng = crate::rng::SplitMix64::new(7);
    let key = |rng: &mut crate::rng::SplitMix64| {
        let method = MethodId(match rng.below(3) {
            0 => rng.below(8) as u32,
            1 => (1 << 28) + rng.below(2) as u32,
            _ => u32::MAX - rng.below(2) as u32,
        });
        let tier = Tier(rng.below(6) as u8);
        let counter = match rng.below(4) {
            0 | 1 => Counter::Invocations,
            2 => Counter::Backedges,
            _ => Counter::Branch {
                site: rng.below(3) as u16,
                taken: rng.below(2) == 1,
            },
        };
        CounterKey { method, tier, counter }
    };
    let limits = Limits::default();
    let mut s = FunctionState::default();
    // Per node, the values it signed so far.
    let mut lanes: BTreeMap<u8, BTreeMap<CounterKey, u64>> = BTreeMap::new();
    for round in 1..=40u32 {
        for node in 0..4u8 {
            let held = lanes.entry(node).or_default();
            for _ in 0..6 {
                *held.entry(key(&mut rng)).or_insert(0) += 1 + rng.below(1 << 33);
            }
            let values: Vec<(CounterKey, u64)> = held.iter().map(|(k, v)| (*k, *v)).collect();
            let lane = LaneId {
                node: NodeKey([node; 32]),
                ..test_lane()
            };
            let out = s.apply(
                &lane,
                &delta(round, true, &values),
                &values,
                &limits,
                None,
                |_, _, p, _| p,
            );
            assert!(out.conflict.is_none() && !out.duplicate);
        }
        if round == 30 {
            s.remove_node(&NodeKey([2; 32]));
            lanes.remove(&2);
        }
        let mut want: BTreeMap<CounterKey, u64> = BTreeMap::new();
        for held in lanes.values() {
            for (k, v) in held {
                *want.entry(*k).or_insert(0) += v;
            }
        }
        let got: Vec<(CounterKey, u64)> = s.merged_counters().collect();
        assert_eq!(got, want.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        for (k, v) in &want {
            assert_eq!(s.merged(k), *v, "{k:?}");
        }
        for method in want.keys().map(|k| k.method) {
            for tier in 0..=6u8 {
                let below: u64 = want
                    .iter()
                    .filter(|(k, _)| k.method == method && k.tier.0 < tier && k.counter == Counter::Invocations)
                    .map(|(_, v)| v)
                    .sum();
                assert_eq!(s.invocations_below(method, Tier(tier)), below);
            }
        }
    }
    assert!(s.invocations.windows(2).all(|w| w[0].0 < w[1].0));
    // A restore rebuilds both stores from the lanes alone.
    let mut restored = s.clone();
    restored.sums.clear();
    restored.invocations.clear();
    restored.check_restored().unwrap();
    assert_eq!(
        restored.merged_counters().collect::<Vec<_>>(),
        s.merged_counters().collect::<Vec<_>>()
    );
    assert_eq!(restored.invocations, s.invocations);
}

proptest::proptest! {
    #[test]
    fn a_row_found_by_scanning_is_the_one_a_binary_search_finds(
        methods in proptest::collection::btree_set(0..300u32, 0..80),
        from in 0..100usize,
        method in 0..300u32,
    ) {
        let rows: Vec<(MethodId, ())> = methods.into_iter().map(|m| (MethodId(m), ())).collect();
        let method = MethodId(method);
        if let Some(found) = row_after(&rows, from, method) {
            proptest::prop_assert_eq!(found, rows.binary_search_by_key(&method, |(m, _)| *m));
        }
        // Scanning from the row a binary search gives finds it.
        let at = match rows.binary_search_by_key(&method, |(m, _)| *m) {
            Ok(i) | Err(i) => i,
        };
        proptest::prop_assert!(row_after(&rows, at, method).is_some());
    }
}

/// The node index and fired table are not serialized: a state read back builds them from
/// the node table and fired bits before its next merge, so a known node keeps its lane.
#[test]
fn a_deserialized_state_rebuilds_its_indexes() {
    let (mut s, lane) = (FunctionState::default(), test_lane());
    let k = CounterKey {
        method: MethodId(3),
        tier: Tier(0),
        counter: Counter::Invocations,
    };
    let limits = Limits::default();
    s.apply(
        &lane,
        &delta(1, true, &[(k, 5)]),
        &[(k, 5)],
        &limits,
        None,
        |_, _, p, _| p,
    );
    s.set_fired(MethodId(3), Tier(1));
    let mut back: FunctionState = postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
    assert!(back.node_ids.is_empty(), "derived, not serialized");
    assert_eq!(back.fired_bits(MethodId(3)), 1 << 1, "read from the fired map");
    back.set_fired(MethodId(5), Tier(2));
    assert_eq!(back.fired_bits(MethodId(3)), 1 << 1, "still there after the table grew");
    back.apply(
        &lane,
        &delta(2, false, &[(k, 9)]),
        &[(k, 9)],
        &limits,
        None,
        |_, _, p, _| p,
    );
    assert_eq!(back.nodes.len(), 1, "the node is found, not added again");
    assert_eq!(back.lanes.len(), 1);
    assert_eq!(back.per_node(&k).values().copied().collect::<Vec<_>>(), vec![9]);
}
