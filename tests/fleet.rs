//! Behaviour between engines of a tenant: equivocation evidence and bans reaching every
//! engine, and anti-entropy's answers to hostile or unsolicited messages.

mod common;

use common::{T0, creds, engine, engine_with_tenant, function, publishes, tenant};
use ignite::harness::Cluster;
use ignite::{Engine, MethodId, Output, Roles};

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
        code: [0; 32],
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
