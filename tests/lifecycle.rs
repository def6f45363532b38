//! Engine lifecycle: snapshots and restore, garbage collection of idle functions, new
//! deployments and rollbacks.

mod common;

use common::{T0, creds, engine, function, publishes, tenant};
use ignite::harness::Cluster;
use ignite::{
    Config, Counter, CounterKey, DropReason, Engine, Event, Incarnation, MethodId, MethodKey, MethodShape, Output,
    Roles, SnapshotError, Tier,
};

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
    // The per-method sums the threshold checks read are rebuilt too.
    assert_eq!(view.invocations_below(MethodId(3), Tier(1)), 10);
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
    let mut forged = b"IGNSNAP3".to_vec();
    let payload = [0xffu8; 16];
    forged.extend_from_slice(blake3::hash(&payload).as_bytes());
    forged.extend_from_slice(&payload);
    assert!(matches!(Engine::restore(cfg(), &forged), Err(SnapshotError::Decode(_))));
}

#[test]
fn unpublished_lists_what_a_crash_would_lose() {
    let (root, secrets) = tenant(1);
    let f = function("lose");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let p = rec.method(f, MethodId(2), Tier(0), MethodShape::default()).unwrap();
    assert!(a.unpublished(&root.id()).is_empty());
    p.record_invocations(7);
    let key = |t: u8| CounterKey {
        method: MethodId(2),
        tier: Tier(t),
        counter: Counter::Invocations,
    };
    assert_eq!(a.unpublished(&root.id()).get(&(f, key(0))), Some(&7));
    a.flush(T0);
    assert!(a.unpublished(&root.id()).is_empty(), "published: nothing left to lose");
    p.record_invocations(3);
    assert_eq!(a.unpublished(&root.id()).get(&(f, key(0))), Some(&3));
    // Another tenant's view is empty.
    let (other, _) = tenant(2);
    assert!(a.unpublished(&other.id()).is_empty());
}

#[test]
fn a_restored_engine_has_no_code_current_and_publishes_lower_tiers() {
    let (root, secrets) = tenant(1);
    let f = function("restart");
    let mut a = engine(1, 1);
    let (rec, _) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).unwrap();
    let t0 = rec.method(f, MethodId(4), Tier(0), MethodShape::default()).unwrap();
    t0.record_invocations(10);
    a.flush(T0);
    let _ = publishes(&mut a);
    a.set_code_current(
        &root.id(),
        MethodKey {
            function: f,
            method: MethodId(4),
        },
        Tier(2),
    )
    .unwrap();
    t0.record_invocations(5);
    let key = CounterKey {
        method: MethodId(4),
        tier: Tier(0),
        counter: Counter::Invocations,
    };
    assert_eq!(
        a.unpublished(&root.id()).get(&(f, key)),
        Some(&5),
        "counted before the switch: still to be published"
    );
    a.flush(T0.plus_ms(500));
    let _ = publishes(&mut a);
    t0.record_invocations(5);
    assert!(
        !a.unpublished(&root.id()).contains_key(&(f, key)),
        "tier 0 is below the current tier: no longer published"
    );
    // The host restarts from a snapshot: its code is gone, so what it runs at tier 0 again
    // must be published.
    let mut b = Engine::restore(
        Config {
            seed: 1,
            ..Config::default()
        },
        &a.snapshot(),
    )
    .unwrap();
    let rec_b = b.recorder(&root.id()).unwrap();
    rec_b
        .method(f, MethodId(4), Tier(0), MethodShape::default())
        .unwrap()
        .record_invocations(2);
    assert_eq!(b.unpublished(&root.id()).get(&(f, key)), Some(&7), "5 held back, 2 new");
    b.flush(T0.plus_ms(1_000));
    assert!(b.unpublished(&root.id()).is_empty());
}
