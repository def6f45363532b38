//! Engine API behaviour: the publication rule, thresholds, configuration, credentials,
//! bounds, batch verification. Lifecycle (snapshots, garbage collection, deployments) is in
//! `lifecycle.rs`; bans and anti-entropy between engines in `fleet.rs`.

mod common;

use common::{T0, creds, engine, function, publishes, tenant};
use ignite::harness::Cluster;
use ignite::{Config, Counter, Engine, Event, Incarnation, MethodId, MethodKey, MethodShape, Roles, Tier, Timestamp};

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
    // Counted before the next publication: published with it, the last time.
    p.record_invocation();
    a.flush(T0.plus_ms(1000));
    assert_eq!(publishes(&mut a).len(), 1, "the counts until the switch go out once");
    p.record_invocation();
    a.flush(T0.plus_ms(1500));
    assert!(
        publishes(&mut a).is_empty(),
        "tier-0 counts of a tier-1 method are not published after that"
    );
    p.record_deopt();
    a.flush(T0.plus_ms(2000));
    assert_eq!(publishes(&mut a).len(), 1, "deopt feedback is still published");
    let view = a.profile(&root.id(), &f).unwrap();
    assert_eq!(view.count(MethodId(9), Tier(0), Counter::Invocations), 2);
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
    for (i, tier, inv, contributors) in fired {
        assert_eq!(tier, Tier(1));
        assert!(inv >= 200);
        // Counted up to the minimum (1 by default); the profile has the full count.
        assert_eq!(contributors, 1);
        let view = cluster.engines[i].profile(&root.id(), &f).unwrap();
        assert_eq!(view.contributors(MethodId(1), Tier(1)), 3);
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
    assert_eq!(a.profile(&root.id(), &f).unwrap().counters(), before);
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
    // A message sent twice in the batch is processed once; the batched engine takes each
    // message's hash from the driver, the other computes it.
    msgs.push(msgs[0].clone());
    let incoming: Vec<Incoming<'_>> = msgs
        .iter()
        .map(|m| Incoming {
            hash: Some(ignite::MessageHash::of(m)),
            ..Incoming::new(ignite::Peer(1), None, m)
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
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
    assert!(results[6].as_ref().is_ok_and(|a| a.duplicate_message));
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
