//! Anti-entropy between real engines driven by hand, without the harness: a lost reply is
//! retried in a later round (each round carries its own id, so it is not dropped as a
//! duplicate), and engines go quiet once their lanes agree, even when deltas they missed
//! were dropped everywhere as unreferenced.

mod common;

use common::props::methods_of_group;
use common::{T0, creds, function, merged, tenant};
use ignite::wire::{Body, Envelope, Limits, Sealer};
use ignite::{Engine, MethodId, MethodShape, Output, Peer, Roles, TenantSecrets, Tier, Timestamp};
use std::collections::BTreeMap;

/// Shape of every method registered by these tests.
const SHAPE: MethodShape = MethodShape {
    branch_sites: 2,
    call_sites: 1,
};

/// Kind of an anti-entropy or delta message, read by opening it with the tenant's secrets.
fn kind(secrets: &TenantSecrets, bytes: &[u8]) -> &'static str {
    let limits = Limits::default();
    let env = Envelope::decode(bytes, &limits).expect("envelope");
    let plain = Sealer::new(secrets).open(&env).expect("opens");
    match Body::decode(&plain, &limits).expect("body") {
        Body::Deltas(_) => "deltas",
        Body::Revocations(_) => "revocations",
        Body::SyncDigest { .. } => "digest",
        Body::SyncPage { .. } => "page",
        Body::SyncWant { .. } => "want",
        Body::SyncMore { .. } => "more",
        Body::Evidence(_) => "evidence",
        _ => "other",
    }
}

/// A lost anti-entropy reply is retried in a later round, without the harness: two engines,
/// B holds counts A never got. In the first round the two replies that carry or request
/// data (A's `SyncWant`, B's delta push) are lost; every later message is delivered, and A
/// must catch up. Regression test: before anti-entropy messages carried a round id, every
/// later digest and page was byte-identical to the one already processed (same state,
/// deterministic sealing), so the receiver dropped it as a duplicate and never answered.
#[test]
fn anti_entropy_retries_after_lost_replies() {
    let (root, secrets) = tenant(43);
    let f = function("resize");
    let mut a = common::engine(1, 1);
    let mut b = common::engine(2, 1);
    let (_, topic) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).expect("join");
    let (rec_b, _) = b.join_tenant(T0, creds(&root, &secrets, 2, Roles::ALL)).expect("join");
    a.peer_joined(Peer(1), &topic);
    b.peer_joined(Peer(0), &topic);
    let m = methods_of_group(0, 1)[0];
    let p = rec_b.method(f, m, Tier(0), SHAPE).expect("method");
    for _ in 0..50 {
        p.record_invocation();
    }
    // B's publication is lost.
    b.flush(T0.plus_ms(10));
    while b.poll_output().is_some() {}
    let mut engines = [a, b];
    let mut dropped = Vec::new();
    let mut duplicates = 0;
    for round in 0..6u64 {
        let now = T0.plus_ms(1_000 + round * 10_000);
        for e in engines.iter_mut() {
            e.handle_timeout(now);
        }
        // Deliver point-to-point messages until quiet.
        loop {
            let mut queue = Vec::new();
            for (i, e) in engines.iter_mut().enumerate() {
                while let Some(out) = e.poll_output() {
                    if let Output::Send { peer, bytes } = out {
                        queue.push((i, peer.0 as usize, bytes));
                    }
                }
            }
            if queue.is_empty() {
                break;
            }
            for (from, to, bytes) in queue {
                let k = kind(&secrets, &bytes);
                if round == 0 && (k == "want" || k == "deltas") {
                    dropped.push(k);
                    continue;
                }
                let r = engines[to].handle_message(now, Peer(from as u64), None, &bytes);
                if matches!(r, Ok(acc) if acc.duplicate_message) {
                    duplicates += 1;
                }
            }
        }
    }
    assert!(!dropped.is_empty(), "the first round exchanged data");
    let want = merged(&engines[1], &root.id());
    assert_eq!(want.len(), 1);
    assert_eq!(
        merged(&engines[0], &root.id()),
        want,
        "A never caught up after the first round's replies {dropped:?} were lost; {duplicates} \
         later anti-entropy messages were dropped as duplicates of messages already processed"
    );
}

/// Every lane an engine holds, as (lane hash → hash of the lane's values), read from the
/// `SyncPage` it answers to a digest that matches nothing.
fn lane_table(e: &mut Engine, secrets: &TenantSecrets, now: Timestamp) -> BTreeMap<u64, u64> {
    let digest = Body::SyncDigest {
        round: 0x5ca1ab1e ^ now.0,
        lanes_root: [0; 32],
        revocations: [0; 32],
        banned: [0; 32],
        code: [0; 32],
    };
    let bytes = Sealer::new(secrets).seal(&digest.encode());
    e.handle_message(now, Peer(999), None, &bytes).expect("digest accepted");
    let mut out = BTreeMap::new();
    while let Some(o) = e.poll_output() {
        if let Output::Send { peer: Peer(999), bytes } = o {
            let limits = Limits::default();
            let env = Envelope::decode(&bytes, &limits).expect("envelope");
            let plain = Sealer::new(secrets).open(&env).expect("opens");
            if let Body::SyncPage { lanes, last, .. } = Body::decode(&plain, &limits).expect("body") {
                assert!(last, "one page");
                out.extend(lanes.into_iter().map(|(h, _have, _max, vhash)| (h, vhash)));
            }
        }
    }
    e.peer_left(Peer(999), &Sealer::new(secrets).topic().clone());
    out
}

/// Anti-entropy stops once engines agree: a lagging engine that missed deltas which every
/// holder has since dropped (each value they carried was overwritten by a newer partial
/// delta) must still end with the same lane digest as its peers.
///
/// Origin O publishes seq 1 (full: invocations 1, backedges 1), seq 2 (invocations 2) and
/// seq 3 (backedges 2) of one lane. Relay R receives all three and, like O, drops seq 1 (no
/// current value comes from it). Laggard L receives only seq 3, then syncs with R: R serves
/// its stored seqs 2 and 3, so L's counters are exact, but L's `have` stays 0 (seq 1 is
/// missing and no longer stored anywhere; O sends its next full delta only at seq 17).
/// Digests compare the lanes' values, not their seqs, so L and R agree and go quiet.
#[test]
fn anti_entropy_quiesces_after_deltas_were_dropped_as_unreferenced() {
    let (root, secrets) = tenant(44);
    let f = function("encode");
    let mut o = common::engine(1, 1);
    let mut r = common::engine(2, 1);
    let mut l = common::engine(3, 1);
    let (rec_o, topic) = o.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).expect("join");
    r.join_tenant(T0, creds(&root, &secrets, 2, Roles::ALL)).expect("join");
    l.join_tenant(T0, creds(&root, &secrets, 3, Roles::ALL)).expect("join");
    let p = rec_o.method(f, MethodId(0), Tier(0), SHAPE).expect("method");
    let publish = |o: &mut Engine, at: u64| {
        o.flush(T0.plus_ms(at));
        let mut out = Vec::new();
        while let Some(x) = o.poll_output() {
            if let Output::Publish { bytes, .. } = x {
                out.push(bytes);
            }
        }
        assert_eq!(out.len(), 1);
        out.pop().expect("one message")
    };
    p.record_invocation();
    p.record_backedge();
    let m1 = publish(&mut o, 100);
    p.record_invocation();
    let m2 = publish(&mut o, 200);
    p.record_backedge();
    let m3 = publish(&mut o, 300);
    let now = T0.plus_ms(1_000);
    for m in [&m1, &m2, &m3] {
        r.handle_message(now, Peer(0), Some(&topic), m).expect("accepted");
    }
    l.handle_message(now, Peer(0), Some(&topic), &m3).expect("accepted");
    // Only R and L talk from now on.
    r.peer_joined(Peer(2), &topic);
    l.peer_joined(Peer(1), &topic);
    let mut engines = [r, l];
    let mut sent_per_round = Vec::new();
    for round in 0..4u64 {
        let now = T0.plus_ms(2_000 + round * 10_000);
        let mut sent = 0;
        for e in engines.iter_mut() {
            e.handle_timeout(now);
        }
        loop {
            let mut queue = Vec::new();
            for (i, e) in engines.iter_mut().enumerate() {
                while let Some(out) = e.poll_output() {
                    if let Output::Send { bytes, .. } = out {
                        queue.push((1 - i, bytes));
                    }
                }
            }
            if queue.is_empty() {
                break;
            }
            sent += queue.len();
            for (to, bytes) in queue {
                let from = Peer(if to == 0 { 2 } else { 1 });
                let _ = engines[to].handle_message(now, from, None, &bytes);
            }
        }
        sent_per_round.push(sent);
    }
    let [mut r, mut l] = engines;
    assert_eq!(merged(&l, &root.id()), merged(&o, &root.id()), "L's counters are exact");
    assert_eq!(merged(&r, &root.id()), merged(&o, &root.id()), "R's counters are exact");
    let now = T0.plus_ms(60_000);
    let (tr, tl) = (lane_table(&mut r, &secrets, now), lane_table(&mut l, &secrets, now));
    assert_eq!(
        tl, tr,
        "lane value hashes of L vs R after convergence; messages sent per sync round: \
         {sent_per_round:?} (2 digests per round once quiet)"
    );
    assert_eq!(sent_per_round.last(), Some(&2), "anti-entropy is quiet once converged");
}

/// Drives `a` alone by its own timers until `until`; B only answers. Returns the times, in
/// ms after T0, at which A opened a round with B. With `deliver`, every message between the
/// two is delivered until quiet; otherwise everything A sends is lost.
fn rounds_of_a(a: &mut Engine, b: &mut Engine, until: Timestamp, deliver: bool, secrets: &TenantSecrets) -> Vec<u64> {
    let mut opened = Vec::new();
    while let Some(now) = a.poll_timeout().filter(|t| *t <= until) {
        a.handle_timeout(now);
        let mut to_b = Vec::new();
        while let Some(out) = a.poll_output() {
            if let Output::Send { peer: Peer(1), bytes } = out {
                if kind(secrets, &bytes) == "digest" {
                    opened.push(now.0 - T0.0);
                }
                to_b.push(bytes);
            }
        }
        while deliver && !to_b.is_empty() {
            for bytes in to_b.drain(..) {
                let _ = b.handle_message(now, Peer(0), None, &bytes);
            }
            let mut to_a = Vec::new();
            while let Some(out) = b.poll_output() {
                if let Output::Send { peer: Peer(0), bytes } = out {
                    to_a.push(bytes);
                }
            }
            for bytes in to_a {
                let _ = a.handle_message(now, Peer(1), None, &bytes);
            }
            while let Some(out) = a.poll_output() {
                if let Output::Send { peer: Peer(1), bytes } = out {
                    to_b.push(bytes);
                }
            }
        }
    }
    opened
}

/// Catching up: a node opens its first `CATCH_UP_ROUNDS` rounds after joining
/// `sync_catch_up_ms` (1 s) apart, then `sync_interval_ms` (10 s) apart; a page showing it
/// two or more deltas behind on a lane (a delta lost for good) makes its next
/// `CATCH_UP_ROUNDS` rounds come 1 s apart again; a page showing it one delta behind (what
/// a delta still in flight looks like) leaves the pace alone.
#[test]
fn rounds_come_every_second_while_a_node_catches_up() {
    let (root, secrets) = tenant(45);
    let f = function("thumbnail");
    let mut a = common::engine(1, 1);
    let mut b = common::engine(2, 1);
    let (_, topic) = a.join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL)).expect("join");
    let (rec_b, _) = b.join_tenant(T0, creds(&root, &secrets, 2, Roles::ALL)).expect("join");
    a.peer_joined(Peer(1), &topic);
    b.peer_joined(Peer(0), &topic);
    let p = rec_b.method(f, MethodId(0), Tier(0), SHAPE).expect("method");
    // B signs three deltas that A never receives.
    let sign = |b: &mut Engine, p: &ignite::MethodProfiler, at: u64| {
        p.record_invocation();
        b.flush(T0.plus_ms(at));
        while b.poll_output().is_some() {}
    };
    for at in [100, 1_200, 2_300] {
        sign(&mut b, &p, at);
    }
    assert_eq!(ignite::CATCH_UP_ROUNDS, 5);

    // Joined: five rounds 1 s apart, then 10 s apart (A's messages are lost).
    let opened = rounds_of_a(&mut a, &mut b, T0.plus_ms(30_000), false, &secrets);
    assert_eq!(opened, [0, 1_000, 2_000, 3_000, 4_000, 14_000, 24_000]);
    assert!(merged(&a, &root.id()).is_empty());

    // The round at 34 s gets B's page: three deltas behind, so five rounds follow at 1 s.
    let opened = rounds_of_a(&mut a, &mut b, T0.plus_ms(50_000), true, &secrets);
    assert_eq!(opened, [34_000, 35_000, 36_000, 37_000, 38_000, 39_000, 49_000]);
    assert_eq!(merged(&a, &root.id()), merged(&b, &root.id()), "A caught up");

    // One delta behind at 59 s: the pace stays at 10 s.
    sign(&mut b, &p, 55_000);
    let opened = rounds_of_a(&mut a, &mut b, T0.plus_ms(80_000), true, &secrets);
    assert_eq!(opened, [59_000, 69_000, 79_000]);
    assert_eq!(merged(&a, &root.id()), merged(&b, &root.id()), "A caught up again");
}
