//! Engine API behaviour: snapshots, garbage collection, the publication rule, thresholds,
//! configuration validation.

mod common;

use common::{T0, creds, engine, function, tenant};
use ignite::harness::Cluster;
use ignite::{
    Config, Counter, DropReason, Engine, Event, Incarnation, MethodId, MethodKey, MethodShape, Output, Roles,
    SnapshotError, Tier, Timestamp,
};

fn publishes(e: &mut Engine) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Publish { bytes, .. } = o {
            v.push(bytes);
        }
    }
    v
}

#[test]
fn snapshot_restores_counts_and_keeps_unpublished_ones() {
    let (root, secrets) = tenant(1);
    let f = function("snap");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let p = rec.method(f, MethodId(3), Tier(0), MethodShape::default()).unwrap();
    for _ in 0..10 {
        p.record_invocation();
    }
    a.flush(T0);
    let first = publishes(&mut a);
    assert_eq!(first.len(), 1);
    for _ in 0..5 {
        p.record_invocation();
    }
    // 5 recorded but not published when the snapshot is taken.
    let snap = a.snapshot();
    let mut b = Engine::restore(
        Config {
            seed: 1,
            ..Config::default()
        },
        &snap,
    )
    .unwrap();
    assert_eq!(b.incarnation(), Incarnation(1));
    let view = b.profile(&root.id(), &f).unwrap();
    assert_eq!(view.count(MethodId(3), Tier(0), Counter::Invocations), 10);
    // The restored engine publishes the 5 pending counts on its next publication, as seq 2
    // of the same lane: a receiver that saw seq 1 accepts it without equivocation.
    let rec_b = b.recorder(&root.id()).unwrap();
    rec_b
        .method(f, MethodId(3), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    b.flush(T0.plus_ms(1000));
    let second = publishes(&mut b);
    let mut c = engine(3, 1);
    c.join_tenant(T0, creds(&root, &secrets, 3, Roles::ALL)).unwrap();
    for m in first.iter().chain(second.iter()) {
        c.handle_message(T0.plus_ms(1000), ignite::Peer(0), None, m).unwrap();
    }
    assert_eq!(
        c.profile(&root.id(), &f)
            .unwrap()
            .count(MethodId(3), Tier(0), Counter::Invocations),
        16
    );
    assert!(c.evidence(&root.id()).is_empty());
}

#[test]
fn corrupt_snapshot_is_a_clear_error() {
    let (root, secrets) = tenant(2);
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    rec.method(function("x"), MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    a.flush(T0);
    let snap = a.snapshot();
    let cfg = Config::default;
    assert!(matches!(
        Engine::restore(cfg(), &snap[..snap.len() - 1]),
        Err(SnapshotError::Checksum)
    ));
    let mut flipped = snap.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(Engine::restore(cfg(), &flipped), Err(SnapshotError::Checksum)));
    assert!(matches!(
        Engine::restore(cfg(), b"not a snapshot at all, clearly not"),
        Err(SnapshotError::BadMagic)
    ));
    assert!(matches!(Engine::restore(cfg(), &[]), Err(SnapshotError::BadMagic)));
    // A well-formed envelope around a payload that does not decode.
    let mut forged = b"IGNSNAP1".to_vec();
    let payload = [0xffu8; 16];
    forged.extend_from_slice(blake3::hash(&payload).as_bytes());
    forged.extend_from_slice(&payload);
    assert!(matches!(Engine::restore(cfg(), &forged), Err(SnapshotError::Decode(_))));
}

#[test]
fn idle_function_is_garbage_collected() {
    let (root, secrets) = tenant(3);
    let f = function("idle");
    let cfg = Config {
        function_ttl_ms: 60_000,
        ..Config::default()
    };
    let mut a = Engine::new(cfg, Incarnation(1)).unwrap();
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    rec.method(f, MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    a.flush(T0);
    assert_eq!(a.functions(&root.id()), vec![f]);
    let mut now = T0;
    while now < T0.plus_ms(200_000) {
        now = a.poll_timeout().unwrap().max(now.plus_ms(1));
        a.handle_timeout(now);
    }
    assert!(a.functions(&root.id()).is_empty());
    assert!(rec.is_empty(), "recorder entries of the dropped function are forgotten");
    let mut dropped = false;
    while let Some(o) = a.poll_output() {
        if let Output::Event(Event::FunctionDropped {
            function,
            reason: DropReason::Expired,
            ..
        }) = o
        {
            dropped |= function == f;
        }
    }
    assert!(dropped);
}

#[test]
fn new_deployment_supersedes_old_state() {
    let (root, secrets) = tenant(4);
    let old = ignite::FunctionId::from_deployment("api", b"v1");
    let new = ignite::FunctionId::from_deployment("api", b"v2");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    rec.method(old, MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    a.flush(T0);
    assert_eq!(a.functions(&root.id()), vec![old]);
    a.set_deployment(&root.id(), new).unwrap();
    assert!(a.functions(&root.id()).is_empty());
    let ev: Vec<_> = std::iter::from_fn(|| a.poll_output()).collect();
    assert!(ev.iter().any(|o| matches!(o, Output::Event(Event::FunctionDropped { function, reason: DropReason::Superseded, .. }) if *function == old)));
}

#[test]
fn publication_interval_grows_with_fleet_size() {
    // 300 members and 100 deltas/s target: interval = 300 * 1000 / 100 = 3 s.
    let (root, secrets) = tenant(5);
    let f = function("busy");
    let n = 300u16;
    let mut receiver = engine(0, 1);
    let (rec, _) = receiver.join_tenant(T0, creds(&root, &secrets, 0, Roles::ALL)).unwrap();
    let mut msgs = Vec::new();
    for i in 1..n {
        let mut e = engine(u64::from(i), 1);
        let c = ignite::TenantCredentials::issue(
            &root,
            secrets.clone(),
            &[
                (i % 256) as u8,
                (i / 256) as u8 + 1,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ],
            Roles::ALL,
            T0,
            T0.plus_ms(common::DAY),
            u64::from(i),
        );
        let (r, _) = e.join_tenant(T0, c).unwrap();
        r.method(f, MethodId(1), Tier(0), MethodShape::default())
            .unwrap()
            .record_invocation();
        e.flush(T0);
        msgs.extend(publishes(&mut e));
    }
    for m in &msgs {
        receiver.handle_message(T0, ignite::Peer(1), None, m).unwrap();
    }
    rec.method(f, MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    receiver.flush(T0);
    let _ = publishes(&mut receiver);
    // flush schedules the next publication by the rule.
    let next = receiver.poll_timeout().unwrap();
    let mut t = T0;
    let mut publish_times = Vec::new();
    while t < T0.plus_ms(10_000) {
        t = receiver.poll_timeout().unwrap().max(t);
        rec.method(f, MethodId(1), Tier(0), MethodShape::default())
            .unwrap()
            .record_invocation();
        receiver.handle_timeout(t);
        if !publishes(&mut receiver).is_empty() {
            publish_times.push(t);
        }
        t = t.plus_ms(1);
    }
    assert!(next <= T0.plus_ms(3_000));
    let gaps: Vec<u64> = publish_times.windows(2).map(|w| w[1].millis_since(w[0])).collect();
    assert!(!gaps.is_empty());
    assert!(gaps.iter().all(|g| *g == 3_000), "gaps {gaps:?}");
}

#[test]
fn small_fleet_publishes_at_the_floor() {
    let (root, secrets) = tenant(6);
    let f = function("small");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let p = rec.method(f, MethodId(1), Tier(0), MethodShape::default()).unwrap();
    let mut t = T0;
    let mut times = Vec::new();
    while t < T0.plus_ms(5_500) {
        t = a.poll_timeout().unwrap().max(t);
        p.record_invocation();
        a.handle_timeout(t);
        if !publishes(&mut a).is_empty() {
            times.push(t);
        }
        t = t.plus_ms(1);
    }
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1].millis_since(w[0])).collect();
    assert!(gaps.len() >= 4 && gaps.iter().all(|g| *g == 1_000), "gaps {gaps:?}");
}

#[test]
fn compiled_tier_stops_profile_publication_but_not_deopts() {
    let (root, secrets) = tenant(7);
    let f = function("jit");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let p = rec.method(f, MethodId(9), Tier(0), MethodShape::default()).unwrap();
    p.record_invocation();
    a.flush(T0);
    let _ = publishes(&mut a);
    a.set_code_current(
        &root.id(),
        MethodKey {
            function: f,
            method: MethodId(9),
        },
        Tier(1),
    )
    .unwrap();
    p.record_invocation();
    a.flush(T0.plus_ms(1000));
    assert!(
        publishes(&mut a).is_empty(),
        "tier-0 counts of a tier-1 method are not published"
    );
    p.record_deopt();
    a.flush(T0.plus_ms(2000));
    assert_eq!(publishes(&mut a).len(), 1, "deopt feedback is still published");
    let view = a.profile(&root.id(), &f).unwrap();
    assert_eq!(view.count(MethodId(9), Tier(0), Counter::Invocations), 1);
    assert_eq!(view.count(MethodId(9), Tier(0), Counter::Deopts), 1);
}

#[test]
fn threshold_fires_once_on_fleet_wide_counts() {
    let (root, secrets) = tenant(8);
    let f = function("hot");
    let mut engines = Vec::new();
    let mut recs = Vec::new();
    for i in 0..3u8 {
        let mut e = engine(u64::from(i), 1);
        let (r, _) = e.join_tenant(T0, creds(&root, &secrets, i, Roles::ALL)).unwrap();
        engines.push(e);
        recs.push(r);
    }
    let mut cluster = Cluster::new(1, T0, engines);
    // 3 nodes × 70 = 210 ≥ 200 fleet-wide, while no node reaches 200 alone.
    for r in &recs {
        let p = r.method(f, MethodId(1), Tier(0), MethodShape::default()).unwrap();
        for _ in 0..70 {
            p.record_invocation();
        }
    }
    cluster.run_until(T0.plus_ms(3_000));
    for r in &recs {
        r.method(f, MethodId(1), Tier(0), MethodShape::default())
            .unwrap()
            .record_invocation();
    }
    cluster.run_until(T0.plus_ms(6_000));
    let fired: Vec<_> = cluster
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::ThresholdReached {
                tier,
                invocations,
                contributors,
                ..
            } => Some((*i, *tier, *invocations, *contributors)),
            _ => None,
        })
        .collect();
    assert_eq!(fired.len(), 3, "once per engine: {fired:?}");
    for (_, tier, inv, contributors) in fired {
        assert_eq!(tier, Tier(1));
        assert!(inv >= 200);
        assert_eq!(contributors, 3);
    }
}

#[test]
fn invalid_config_is_refused() {
    for cfg in [
        Config {
            groups: 0,
            ..Config::default()
        },
        Config {
            publish_floor_ms: 0,
            ..Config::default()
        },
        Config {
            max_deltas_per_s: 0,
            ..Config::default()
        },
        Config {
            thresholds: ignite::Thresholds { tier1: 10, tier2: 5 },
            ..Config::default()
        },
    ] {
        assert!(Engine::new(cfg, Incarnation(1)).is_err());
    }
}

#[test]
fn own_expired_certificate_cannot_join() {
    let (root, secrets) = tenant(9);
    let c = creds(&root, &secrets, 1, Roles::ALL);
    let mut a = engine(1, 1);
    assert!(a.join_tenant(Timestamp(T0.as_millis() + common::DAY), c).is_err());
}

#[test]
fn group_key_rotation_through_update_credentials() {
    use ignite::Rejection;
    use ignite::wire::WireError;
    let (root, secrets) = tenant(10);
    let f = function("rot");
    let mut a = engine(1, 1);
    let mut b = engine(2, 1);
    let ca = creds(&root, &secrets, 1, Roles::ALL);
    let (rec, _) = a.join_tenant(T0, ca.clone()).unwrap();
    b.join_tenant(T0, creds(&root, &secrets, 2, Roles::ALL)).unwrap();
    let p = rec.method(f, MethodId(1), Tier(0), MethodShape::default()).unwrap();
    p.record_invocation();
    a.flush(T0);
    let old_epoch_msg = publishes(&mut a);
    let mut rotated = ca;
    rotated.rotate_group_key(1, [0xAB; 32]).unwrap();
    a.update_credentials(T0, rotated).unwrap();
    p.record_invocation();
    a.flush(T0.plus_ms(1000));
    let new_epoch_msg = publishes(&mut a);
    assert_eq!(
        b.handle_message(T0.plus_ms(1000), ignite::Peer(1), None, &new_epoch_msg[0]),
        Err(Rejection::Wire(WireError::UnknownEpoch(1)))
    );
    assert!(b.profile(&root.id(), &f).is_none());
    let mut cb = creds(&root, &secrets, 2, Roles::ALL);
    cb.rotate_group_key(1, [0xAB; 32]).unwrap();
    b.update_credentials(T0, cb).unwrap();
    // Old-epoch messages still open after rotation; new ones open too.
    b.handle_message(T0.plus_ms(1000), ignite::Peer(1), None, &old_epoch_msg[0])
        .unwrap();
    b.handle_message(T0.plus_ms(1000), ignite::Peer(1), None, &new_epoch_msg[0])
        .unwrap();
    assert_eq!(
        b.profile(&root.id(), &f)
            .unwrap()
            .count(MethodId(1), Tier(0), Counter::Invocations),
        2
    );
    // Credentials of another node cannot replace ours.
    assert!(b.update_credentials(T0, creds(&root, &secrets, 3, Roles::ALL)).is_err());
}

#[test]
fn counters_per_function_are_bounded() {
    use ignite::{CounterKey, Rejection};
    let (root, secrets) = tenant(11);
    let f = function("flood");
    let cfg = Config {
        max_counters_per_function: 100,
        ..Config::default()
    };
    let mut a = Engine::new(cfg, Incarnation(1)).unwrap();
    a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let c2 = creds(&root, &secrets, 2, Roles::ALL);
    let key = common::node_key(2);
    // Methods of group 0 only, as the engine checks that entries belong to their lane's group.
    let group0: Vec<u32> = (0..10_000)
        .filter(|m| ignite::GroupId::of(MethodId(*m), Config::default().groups) == ignite::GroupId(0))
        .collect();
    let entries = |from: usize| -> Vec<(CounterKey, u64)> {
        group0[from..from + 60]
            .iter()
            .map(|m| {
                (
                    CounterKey {
                        method: MethodId(*m),
                        tier: Tier(0),
                        counter: Counter::Invocations,
                    },
                    1,
                )
            })
            .collect()
    };
    let spec1 = common::DeltaSpec {
        group: ignite::GroupId(0),
        ..common::DeltaSpec::new(f, 1, entries(0))
    };
    a.handle_message(
        T0,
        ignite::Peer(2),
        None,
        &common::message(&root, &secrets, c2.cert(), &key, &spec1),
    )
    .unwrap();
    let before = a.profile(&root.id(), &f).unwrap().counters().clone();
    assert_eq!(before.len(), 60);
    let spec2 = common::DeltaSpec {
        group: ignite::GroupId(0),
        ..common::DeltaSpec::new(f, 2, entries(60))
    };
    let r = a.handle_message(
        T0,
        ignite::Peer(2),
        None,
        &common::message(&root, &secrets, c2.cert(), &key, &spec2),
    );
    assert_eq!(r, Err(Rejection::Limit("counters per function")));
    assert_eq!(a.profile(&root.id(), &f).unwrap().counters(), &before);
    // An entry signed into the wrong group's lane is refused.
    let spec3 = common::DeltaSpec {
        group: ignite::GroupId(1),
        ..common::DeltaSpec::new(f, 1, entries(0))
    };
    let r = a.handle_message(
        T0,
        ignite::Peer(2),
        None,
        &common::message(&root, &secrets, c2.cert(), &key, &spec3),
    );
    assert!(matches!(r, Err(Rejection::Wire(ignite::wire::WireError::Malformed(_)))));
}

#[test]
fn messages_arriving_together_are_verified_in_one_batch() {
    use ignite::Incoming;
    let (root, secrets) = tenant(12);
    let f = function("batch");
    let mut msgs = Vec::new();
    for i in 1..=5u8 {
        let mut e = engine(u64::from(i), 1);
        let (r, _) = e.join_tenant(T0, creds(&root, &secrets, i, Roles::ALL)).unwrap();
        let p = r
            .method(f, MethodId(u32::from(i)), Tier(0), MethodShape::default())
            .unwrap();
        for _ in 0..u32::from(i) * 10 {
            p.record_invocation();
        }
        e.flush(T0);
        msgs.extend(publishes(&mut e));
    }
    // Corrupt one signature inside a validly sealed message: re-seal a forged copy.
    let forged = {
        let c = creds(&root, &secrets, 9, Roles::ALL);
        let spec = common::DeltaSpec::new(
            f,
            1,
            vec![(
                ignite::CounterKey {
                    method: MethodId(77),
                    tier: Tier(0),
                    counter: Counter::Invocations,
                },
                5,
            )],
        );
        let mut d = common::sign_delta(&root, c.cert(), &common::node_key(9), &spec);
        d.signature = common::garbage_sig();
        common::seal_delta(&secrets, c.cert(), &spec, &d)
    };
    msgs.insert(2, forged);
    let mut batched = engine(0, 1);
    batched.join_tenant(T0, creds(&root, &secrets, 0, Roles::ALL)).unwrap();
    let incoming: Vec<Incoming<'_>> = msgs
        .iter()
        .map(|m| Incoming {
            from: ignite::Peer(1),
            topic: None,
            bytes: m,
        })
        .collect();
    let results = batched.handle_messages(T0, &incoming);
    let mut single = engine(0, 1);
    single.join_tenant(T0, creds(&root, &secrets, 0, Roles::ALL)).unwrap();
    let one_by_one: Vec<_> = msgs
        .iter()
        .map(|m| single.handle_message(T0, ignite::Peer(1), None, m))
        .collect();
    assert_eq!(results, one_by_one);
    assert!(results[2].is_err());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    let view = batched.profile(&root.id(), &f).unwrap();
    for i in 1..=5u32 {
        assert_eq!(
            view.count(MethodId(i), Tier(0), Counter::Invocations),
            u64::from(i) * 10
        );
    }
    assert_eq!(view.count(MethodId(77), Tier(0), Counter::Invocations), 0);
    assert_eq!(
        batched.profile(&root.id(), &f).unwrap().counters(),
        single.profile(&root.id(), &f).unwrap().counters()
    );
}

fn engine_with_tenant(seed: u8) -> (Engine, ignite::TenantRoot, ignite::TenantSecrets, ignite::TopicId) {
    let (root, secrets) = tenant(seed);
    let mut e = engine(u64::from(seed), 1);
    let (_, topic) = e.join_tenant(T0, creds(&root, &secrets, 0, Roles::ALL)).unwrap();
    (e, root, secrets, topic)
}

#[test]
fn evidence_from_a_peer_bans_the_node_everywhere_with_the_same_state() {
    let (mut a, root, secrets, topic) = engine_with_tenant(20);
    let mut b = engine(99, 1);
    b.join_tenant(T0, creds(&root, &secrets, 9, Roles::ALL)).unwrap();
    let f = function("evid");
    let c2 = creds(&root, &secrets, 2, Roles::ALL);
    let k2 = common::node_key(2);
    let one = common::message(
        &root,
        &secrets,
        c2.cert(),
        &k2,
        &common::DeltaSpec::new(f, 1, vec![(common::inv(7), 10)]),
    );
    let other = common::message(
        &root,
        &secrets,
        c2.cert(),
        &k2,
        &common::DeltaSpec::new(f, 1, vec![(common::inv(7), 11)]),
    );
    // B saw only the first version; A sees both and detects the equivocation.
    b.handle_message(T0, ignite::Peer(2), Some(&topic), &one).unwrap();
    a.handle_message(T0, ignite::Peer(2), Some(&topic), &one).unwrap();
    assert_eq!(
        a.handle_message(T0, ignite::Peer(2), Some(&topic), &other),
        Err(ignite::Rejection::Equivocation)
    );
    let gossip = publishes(&mut a);
    assert_eq!(gossip.len(), 1, "the evidence is published");
    b.handle_message(T0, ignite::Peer(0), Some(&topic), &gossip[0]).unwrap();
    assert_eq!(b.banned(&root.id()), vec![c2.node()]);
    assert_eq!(b.evidence(&root.id()).len(), 1);
    assert_eq!(common::merged(&a, &root.id()), common::merged(&b, &root.id()));
    assert!(
        common::merged(&b, &root.id()).is_empty(),
        "the equivocator's counts are gone on both"
    );
    // Forged evidence (two identical deltas) is refused and bans nobody.
    let mut c = engine(98, 1);
    c.join_tenant(T0, creds(&root, &secrets, 8, Roles::ALL)).unwrap();
    // Evidence about a key nobody certified is ignored; about a member, it must verify.
    let mut fake = a.evidence(&root.id())[0].clone();
    let mut stranger = fake.clone();
    stranger.lane.node = ignite::NodeKey([0x42; 32]);
    let bytes = ignite::wire::Sealer::new(&secrets).seal(&ignite::wire::Body::Evidence(Box::new(stranger)).encode());
    assert!(c.handle_message(T0, ignite::Peer(0), Some(&topic), &bytes).is_ok());
    assert!(c.banned(&root.id()).is_empty());
    c.handle_message(T0, ignite::Peer(2), Some(&topic), &one).unwrap();
    fake.second = fake.first.clone();
    let bytes = ignite::wire::Sealer::new(&secrets).seal(&ignite::wire::Body::Evidence(Box::new(fake)).encode());
    assert!(c.handle_message(T0, ignite::Peer(0), Some(&topic), &bytes).is_err());
    assert!(c.banned(&root.id()).is_empty());
}

#[test]
fn full_delta_omitting_a_counter_is_equivocation_in_either_order() {
    let f = function("omit");
    for order in [[0usize, 1], [1, 0]] {
        let (mut a, root, secrets, topic) = engine_with_tenant(21);
        let c2 = creds(&root, &secrets, 2, Roles::ALL);
        let k2 = common::node_key(2);
        let m = (0..10_000u32)
            .filter(|m| ignite::GroupId::of(MethodId(*m), 2) == ignite::GroupId(0))
            .take(2)
            .collect::<Vec<_>>();
        let partial = common::DeltaSpec::new(f, 1, vec![(common::inv(m[0]), 1_000_000)]);
        let full = common::DeltaSpec {
            full: true,
            ..common::DeltaSpec::new(f, 2, vec![(common::inv(m[1]), 1)])
        };
        let msgs = [
            common::message(&root, &secrets, c2.cert(), &k2, &partial),
            common::message(&root, &secrets, c2.cert(), &k2, &full),
        ];
        let results: Vec<_> = order
            .iter()
            .map(|i| a.handle_message(T0, ignite::Peer(2), Some(&topic), &msgs[*i]))
            .collect();
        assert_eq!(results[1], Err(ignite::Rejection::Equivocation), "order {order:?}");
        assert!(a.evidence(&root.id())[0].verify(&ignite::wire::Limits::default()));
        assert!(common::merged(&a, &root.id()).is_empty());
    }
}

#[test]
fn malformed_deltas_and_pages_are_refused_without_panicking() {
    let (mut a, root, secrets, topic) = engine_with_tenant(22);
    let f = function("bad");
    let c2 = creds(&root, &secrets, 2, Roles::ALL);
    let k2 = common::node_key(2);
    for spec in [
        common::DeltaSpec::new(f, 0, vec![(common::inv(1), 5)]),
        common::DeltaSpec::new(f, u32::MAX, vec![(common::inv(1), 5)]),
        common::DeltaSpec::new(f, 1, vec![(common::inv(1), 0)]),
    ] {
        let r = a.handle_message(
            T0,
            ignite::Peer(2),
            Some(&topic),
            &common::message(&root, &secrets, c2.cert(), &k2, &spec),
        );
        assert!(
            matches!(r, Err(ignite::Rejection::Wire(ignite::wire::WireError::Malformed(_)))),
            "{spec:?}: {r:?}"
        );
    }
    assert!(a.functions(&root.id()).is_empty(), "no phantom function");
    // A page whose lanes are out of order or below its start is refused (it used to be
    // able to make the receiver panic).
    let ok = common::message(
        &root,
        &secrets,
        c2.cert(),
        &k2,
        &common::DeltaSpec::new(f, 1, vec![(common::inv(1), 5)]),
    );
    a.handle_message(T0, ignite::Peer(2), Some(&topic), &ok).unwrap();
    let sealer = ignite::wire::Sealer::new(&secrets);
    for lanes in [vec![(5u64, 0u32, 0u32, 0u64)], vec![(200, 0, 0, 0), (150, 0, 0, 0)]] {
        let body = ignite::wire::Body::SyncPage {
            round: 1,
            start: 100,
            last: false,
            lanes,
        };
        let r = a.handle_message(T0, ignite::Peer(3), None, &sealer.seal(&body.encode()));
        assert_eq!(r, Err(ignite::Rejection::Wire(ignite::wire::WireError::Unordered)));
    }
}

#[test]
fn expired_functions_stay_dropped_and_own_lanes_continue_when_they_return() {
    let (root, secrets) = tenant(23);
    let f = function("idle-then-busy");
    let cfg = || Config {
        function_ttl_ms: 600_000,
        seen_cache: 8,
        ..Config::default()
    };
    let mut engines = Vec::new();
    let mut recs = Vec::new();
    for i in 0..3u8 {
        let mut e = Engine::new(
            Config {
                seed: u64::from(i),
                ..cfg()
            },
            Incarnation(1),
        )
        .unwrap();
        let (r, _) = e.join_tenant(T0, creds(&root, &secrets, i, Roles::ALL)).unwrap();
        engines.push(e);
        recs.push(r);
    }
    let mut cluster = Cluster::new(5, T0, engines);
    for r in &recs {
        let p = r.method(f, MethodId(1), Tier(0), MethodShape::default()).unwrap();
        for _ in 0..10 {
            p.record_invocation();
        }
    }
    cluster.run_until(T0.plus_ms(5_000));
    // Idle for two hours: every engine drops the function, and anti-entropy between engines
    // with small caches does not bring it back.
    cluster.run_until(T0.plus_ms(7_200_000));
    for e in &cluster.engines {
        assert!(e.functions(&root.id()).is_empty());
    }
    let drops = cluster
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::FunctionDropped { .. }))
        .count();
    assert_eq!(drops, 3, "each engine dropped the function once");
    // The function runs again on node 0: its lane continues (no equivocation), and its new
    // counts include the old ones.
    recs[0]
        .method(f, MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    cluster.run_until(T0.plus_ms(7_260_000));
    assert!(cluster.events.iter().all(|(_, e)| !matches!(e, Event::Equivocation(_))));
    for e in &cluster.engines {
        assert!(e.banned(&root.id()).is_empty());
        let view = e.profile(&root.id(), &f).expect("function back");
        assert_eq!(view.count(MethodId(1), Tier(0), Counter::Invocations), 11);
    }
}

#[test]
fn anti_entropy_answers_only_rounds_it_opened_or_serves() {
    use ignite::wire::{Body, Sealer};
    let (mut a, root, secrets, topic) = engine_with_tenant(24);
    let f = function("sync");
    let c2 = creds(&root, &secrets, 2, Roles::ALL);
    let ok = common::message(
        &root,
        &secrets,
        c2.cert(),
        &common::node_key(2),
        &common::DeltaSpec::new(f, 1, vec![(common::inv(1), 5)]),
    );
    a.handle_message(T0, ignite::Peer(2), Some(&topic), &ok).unwrap();
    let _ = publishes(&mut a);
    let sealer = Sealer::new(&secrets);
    let sends = |a: &mut Engine| {
        std::iter::from_fn(|| a.poll_output())
            .filter(|o| matches!(o, Output::Send { .. }))
            .count()
    };
    // Unsolicited: an empty page (would ask for everything) and a want for a round never served.
    let page = Body::SyncPage {
        round: 7,
        start: 0,
        last: true,
        lanes: vec![],
    };
    a.handle_message(T0, ignite::Peer(5), None, &sealer.seal(&page.encode()))
        .unwrap();
    let want = Body::SyncWant {
        round: 8,
        lanes: vec![(1, 0)],
    };
    a.handle_message(T0, ignite::Peer(5), None, &sealer.seal(&want.encode()))
        .unwrap();
    assert_eq!(sends(&mut a), 0);
    assert_eq!(a.stats().sync_ignored, 2);
    // A digest opens a round the engine serves: it answers with a page, then serves wants.
    let digest = Body::SyncDigest {
        round: 9,
        lanes_root: [0; 32],
        revocations: [0; 32],
        banned: [0; 32],
    };
    a.handle_message(T0, ignite::Peer(5), None, &sealer.seal(&digest.encode()))
        .unwrap();
    let mut pages = 0;
    let mut lane = None;
    while let Some(o) = a.poll_output() {
        if let Output::Send { bytes, .. } = o {
            let env = ignite::wire::Envelope::decode(&bytes, &ignite::wire::Limits::default()).unwrap();
            let plain = sealer.open(&env).unwrap();
            if let Body::SyncPage { lanes, .. } = Body::decode(&plain, &ignite::wire::Limits::default()).unwrap() {
                pages += 1;
                lane = Some(lanes[0].0);
            }
        }
    }
    assert_eq!(pages, 1);
    let want = Body::SyncWant {
        round: 9,
        lanes: vec![(lane.unwrap(), 0); 50],
    };
    a.handle_message(T0, ignite::Peer(5), None, &sealer.seal(&want.encode()))
        .unwrap();
    assert_eq!(
        sends(&mut a),
        1,
        "the lane's deltas once, however often it is asked for"
    );
}

#[test]
fn a_ban_reaches_engines_that_missed_the_evidence_through_anti_entropy() {
    let (root, secrets) = tenant(25);
    let f = function("ban-sync");
    let mut engines = Vec::new();
    for i in 0..3u8 {
        let mut e = engine(u64::from(i), 1);
        e.join_tenant(T0, creds(&root, &secrets, i, Roles::ALL)).unwrap();
        engines.push(e);
    }
    let topic = engines[0].tenants().next().unwrap().1.clone();
    let c9 = creds(&root, &secrets, 9, Roles::ALL);
    let k9 = common::node_key(9);
    let one = common::message(
        &root,
        &secrets,
        c9.cert(),
        &k9,
        &common::DeltaSpec::new(f, 1, vec![(common::inv(7), 100)]),
    );
    let other = common::message(
        &root,
        &secrets,
        c9.cert(),
        &k9,
        &common::DeltaSpec::new(f, 1, vec![(common::inv(7), 50)]),
    );
    for e in engines.iter_mut() {
        e.handle_message(T0, ignite::Peer(9), Some(&topic), &one).unwrap();
    }
    // Engine 0 detects the equivocation; its published evidence is lost.
    assert!(
        engines[0]
            .handle_message(T0, ignite::Peer(9), Some(&topic), &other)
            .is_err()
    );
    let _ = publishes(&mut engines[0]);
    let mut cluster = Cluster::new(3, T0, engines);
    cluster.run_until(T0.plus_ms(120_000));
    for e in &cluster.engines {
        assert_eq!(e.banned(&root.id()), vec![c9.node()]);
        assert!(common::merged(e, &root.id()).is_empty());
    }
}

#[test]
fn rollback_to_an_earlier_deployment_continues_own_lanes() {
    let (root, secrets) = tenant(26);
    let a = ignite::FunctionId::from_deployment("api", b"A");
    let b = ignite::FunctionId::from_deployment("api", b"B");
    let mut engines = Vec::new();
    let mut recs = Vec::new();
    for i in 0..2u8 {
        let mut e = engine(u64::from(i), 1);
        let (r, _) = e.join_tenant(T0, creds(&root, &secrets, i, Roles::ALL)).unwrap();
        engines.push(e);
        recs.push(r);
    }
    let mut cluster = Cluster::new(4, T0, engines);
    let p = recs[0].method(a, MethodId(1), Tier(0), MethodShape::default()).unwrap();
    for _ in 0..10 {
        p.record_invocation();
    }
    cluster.run_until(T0.plus_ms(3_000));
    // Node 0 moves to B, then back to A; node 1 never moved.
    cluster.engines[0].set_deployment(&root.id(), b).unwrap();
    cluster.run_until(T0.plus_ms(6_000));
    cluster.engines[0].set_deployment(&root.id(), a).unwrap();
    recs[0]
        .method(a, MethodId(1), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocation();
    cluster.run_until(T0.plus_ms(20_000));
    assert!(cluster.events.iter().all(|(_, e)| !matches!(e, Event::Equivocation(_))));
    assert!(cluster.engines[1].banned(&root.id()).is_empty());
    assert_eq!(
        cluster.engines[1]
            .profile(&root.id(), &a)
            .unwrap()
            .count(MethodId(1), Tier(0), Counter::Invocations),
        11
    );
}
