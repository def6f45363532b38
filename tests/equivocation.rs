//! Replays, reordering, equivocation and restarts: old messages change nothing, conflicting
//! signed states are detected with evidence, and restarts start new incarnations.
//!
//! Messages are built by hand from real signed and sealed bytes (see `tests/common`) and fed
//! to a real engine through `Engine::handle_message`; each refusal has its exact typed reason
//! and leaves the tenant's merged state (counters, evidence, bans) unchanged.

mod common;

use common::rx::*;
use common::*;
use ignite::profile::Evidence;
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Limits, Sealer};
use ignite::{
    Accepted, Config, Event, Incoming, MethodId, MethodShape, NodeKey, Output, Peer, Rejection, Roles, Tier, Timestamp,
};

// ---------------------------------------------------------------------------------------
// Replay, reordering, equivocation, restarts
// ---------------------------------------------------------------------------------------

#[test]
fn replayed_identical_message_is_a_duplicate_without_effect() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    let bytes = rx.message(&s2, &spec(rx.f, 1, 10));
    assert_eq!(
        rx.deliver(&bytes),
        Ok(Accepted {
            deltas_applied: 1,
            ..Accepted::default()
        })
    );
    rx.events();
    let before = rx.observe();
    let verified = rx.engine.stats().signatures_verified;
    assert_eq!(
        rx.deliver(&bytes),
        Ok(Accepted {
            deltas_applied: 0,
            deltas_duplicate: 0,
            duplicate_message: true,
        })
    );
    assert_unchanged(&mut rx, &before, 10);
    assert_eq!(rx.engine.stats().duplicate_messages, 1);
    assert_eq!(
        rx.engine.stats().signatures_verified,
        verified,
        "no work for a duplicate"
    );
}

#[test]
fn replayed_delta_in_a_new_envelope_is_a_duplicate_delta() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    let sp = spec(rx.f, 1, 10);
    let original = rx.message(&s2, &sp);
    assert!(rx.deliver(&original).is_ok());
    rx.events();
    let before = rx.observe();
    let replay = reseal_with_cert_twice(&rx.secrets, &s2.cert, &sp, &original, &rx.root, &s2.key);
    assert_eq!(
        rx.deliver(&replay),
        Ok(Accepted {
            deltas_applied: 0,
            deltas_duplicate: 1,
            duplicate_message: false,
        })
    );
    assert_unchanged(&mut rx, &before, 10);
    assert_eq!(rx.engine.stats().deltas_duplicate, 1);
}

#[test]
fn replayed_delta_after_cache_eviction_is_still_a_duplicate() {
    // With caches of one entry, the replay is caught by the lane, not by the caches.
    let mut rx = Rx::with_config(Config {
        seed: 1,
        seen_cache: 1,
        ..Config::default()
    });
    let s2 = rx.sender(2);
    let sp1 = spec(rx.f, 1, 10);
    let first = rx.message(&s2, &sp1);
    assert!(rx.deliver(&first).is_ok());
    rx.accept(&s2, &spec(rx.f, 2, 20));
    rx.events();
    let before = rx.observe();
    assert_eq!(
        rx.deliver(&first),
        Ok(Accepted {
            deltas_applied: 0,
            deltas_duplicate: 1,
            duplicate_message: false,
        })
    );
    assert_unchanged(&mut rx, &before, 20);
}

#[test]
fn reordered_older_delta_is_not_equivocation_and_changes_nothing() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    rx.accept(&s2, &spec(rx.f, 2, 20));
    rx.events();
    let before = rx.observe();
    let older = rx.message(&s2, &spec(rx.f, 1, 10));
    assert!(rx.deliver(&older).is_ok());
    assert_unchanged(&mut rx, &before, 20);
    assert!(rx.engine.evidence(&rx.tenant).is_empty());
    assert!(rx.engine.banned(&rx.tenant).is_empty());
    // The node is still accepted.
    rx.accept(&s2, &spec(rx.f, 3, 30));
    assert_eq!(rx.count(), 30);
}

/// Checks the evidence and event of one equivocation by `node`, and the ban.
fn assert_equivocation(rx: &mut Rx, node: NodeKey) -> Evidence {
    let evidence = rx.engine.evidence(&rx.tenant).to_vec();
    assert_eq!(evidence.len(), 1);
    let ev = evidence[0].clone();
    assert_eq!(ev.tenant, rx.tenant);
    assert_eq!(ev.lane.node, node);
    assert_eq!(ev.lane.function, rx.f);
    assert!(ev.verify(&Limits::default()), "evidence verifies");
    assert_eq!(rx.events(), vec![Event::Equivocation(Box::new(ev.clone()))]);
    assert_eq!(rx.engine.banned(&rx.tenant), vec![node]);
    ev
}

#[test]
fn equivocation_same_seq_different_body_is_detected_and_banned() {
    let (mut rx, s2) = Rx::baseline();
    let conflicting = rx.message(&s2, &spec(rx.f, 1, 11));
    assert_eq!(rx.deliver(&conflicting), Err(Rejection::Equivocation));
    let ev = assert_equivocation(&mut rx, s2.node());
    assert_eq!((ev.first.seq, ev.second.seq), (1, 1));
    assert_ne!(ev.first, ev.second);
    // The conflicting body was not applied.
    assert_eq!(rx.count(), 0, "the equivocator's counts are removed");
    assert_eq!(
        rx.engine
            .profile(&rx.tenant, &rx.f)
            .map_or(0, |v| v.invocations_below(MethodId(M), Tier(1))),
        0,
        "and so are its invocations below tier 1"
    );
    // The node's next valid delta is refused.
    let before = rx.observe();
    let next = rx.message(&s2, &spec(rx.f, 2, 20));
    assert_eq!(rx.deliver(&next), Err(Rejection::Banned));
    assert_unchanged(&mut rx, &before, 0);

    // Evidence is not forgeable from one delta: a pair of identical deltas, or one whose
    // entries were altered, does not verify.
    let mut same = ev.clone();
    same.second = same.first.clone();
    assert!(!same.verify(&Limits::default()));
    let mut altered = ev.clone();
    altered.second.entries = wire::encode_entries(&[(inv(M), 12)]).into();
    assert!(!altered.verify(&Limits::default()));
}

#[test]
fn equivocation_lower_value_at_higher_seq_is_detected() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    rx.accept(&s2, &spec(rx.f, 1, 50));
    rx.events();
    let lower = rx.message(&s2, &spec(rx.f, 2, 40));
    assert_eq!(rx.deliver(&lower), Err(Rejection::Equivocation));
    let ev = assert_equivocation(&mut rx, s2.node());
    let mut seqs = [ev.first.seq, ev.second.seq];
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(rx.count(), 0, "the equivocator's counts are removed");
    let next = rx.message(&s2, &spec(rx.f, 3, 60));
    assert_eq!(rx.deliver(&next), Err(Rejection::Banned));
    assert_eq!(rx.count(), 0);
}

#[test]
fn equivocation_lower_value_at_higher_seq_is_detected_when_reordered() {
    // The higher seq (with the lower value) arrives first.
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    rx.accept(&s2, &spec(rx.f, 2, 40));
    rx.events();
    let higher_at_lower_seq = rx.message(&s2, &spec(rx.f, 1, 50));
    assert_eq!(rx.deliver(&higher_at_lower_seq), Err(Rejection::Equivocation));
    assert_equivocation(&mut rx, s2.node());
    assert_eq!(rx.count(), 0, "the equivocator's counts are removed");
}

/// One message carrying several signed deltas of `s`, in order.
fn batch_message(rx: &Rx, s: &Sender, specs: &[DeltaSpec]) -> Vec<u8> {
    let signed: Vec<_> = specs
        .iter()
        .map(|sp| sign_delta(&rx.root, &s.cert, &s.key, sp))
        .collect();
    let body = Body::Deltas(DeltaBatch {
        certs: vec![s.cert],
        functions: vec![rx.f],
        deltas: specs
            .iter()
            .zip(&signed)
            .map(|(sp, d)| DeltaWire {
                signer: 0,
                function: 0,
                incarnation: sp.incarnation,
                group: sp.group,
                seq: d.seq,
                issued_at: d.issued_at,
                full: d.full,
                entries: &d.entries,
                signature: d.signature,
            })
            .collect(),
    });
    Sealer::new(&rx.secrets).seal(&body.encode())
}

#[test]
fn equivocating_node_is_banned_for_the_rest_of_the_same_message() {
    let (mut rx, s2) = Rx::baseline();
    // The conflicting seq 1, then a seq 2 that would raise the count, in one message.
    let bytes = batch_message(&rx, &s2, &[spec(rx.f, 1, 11), spec(rx.f, 2, 1_000)]);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Equivocation));
    assert_eq!(rx.engine.banned(&rx.tenant), vec![s2.node()]);
    assert_eq!(
        rx.count(),
        0,
        "nothing of the banned node counts, before or after the ban"
    );
}

#[test]
fn equivocating_node_is_banned_for_later_messages_of_the_same_handle_messages_call() {
    let (mut rx, s2) = Rx::baseline();
    let conflicting = rx.message(&s2, &spec(rx.f, 1, 11));
    let next = rx.message(&s2, &spec(rx.f, 2, 1_000));
    let incoming = [
        Incoming::new(Peer(2), Some(&rx.topic), &conflicting),
        Incoming::new(Peer(2), Some(&rx.topic), &next),
        // The conflicting message again: handled after the ban, as a call for it alone.
        Incoming::new(Peer(2), Some(&rx.topic), &conflicting),
    ];
    // Documented as equivalent to handle_message for each message in order.
    let results = rx.engine.handle_messages(NOW, &incoming);
    assert_eq!(
        results,
        vec![
            Err(Rejection::Equivocation),
            Err(Rejection::Banned),
            Err(Rejection::Banned)
        ]
    );
    assert_eq!(rx.count(), 0);
}

/// Records `n` invocations of `M` through a real engine of node 2 and publishes them.
fn publish_from_engine(rx: &Rx, incarnation: u64, n: u64, now: Timestamp) -> Vec<Vec<u8>> {
    let mut e = engine(2, incarnation);
    let (rec, topic) = e
        .join_tenant(T0, creds(&rx.root, &rx.secrets, 2, Roles::ALL))
        .expect("join");
    assert_eq!(topic, rx.topic);
    let p = rec
        .method(rx.f, MethodId(M), Tier(0), MethodShape::default())
        .expect("register");
    for _ in 0..n {
        p.record_invocation();
    }
    e.flush(now);
    let mut out = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Publish { bytes, .. } = o {
            out.push(bytes);
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn restart_without_state_with_new_incarnation_sums_both_lives() {
    let mut rx = Rx::new();
    for bytes in publish_from_engine(&rx, 1, 100, NOW) {
        assert!(rx.deliver(&bytes).is_ok());
    }
    assert_eq!(rx.count(), 100);
    // The node restarts without its state, in a new incarnation, and counts 50 more.
    for bytes in publish_from_engine(&rx, 2, 50, NOW.plus_ms(1_000)) {
        assert!(rx.deliver_at(NOW.plus_ms(1_000), &bytes).is_ok());
    }
    assert_eq!(rx.count(), 150);
    let view = rx.engine.profile(&rx.tenant, &rx.f).expect("profile");
    assert_eq!(view.contributors(MethodId(M), Tier(1)), 1, "one node, two lives");
    assert!(rx.engine.evidence(&rx.tenant).is_empty());
    assert!(rx.engine.banned(&rx.tenant).is_empty());
    assert!(!rx.events().iter().any(|e| matches!(e, Event::Equivocation(_))));
}

#[test]
fn restart_without_state_reusing_the_incarnation_is_equivocation() {
    // Why the incarnation must change: the fresh engine starts its lane at seq 1 again.
    let mut rx = Rx::new();
    for bytes in publish_from_engine(&rx, 1, 100, NOW) {
        assert!(rx.deliver(&bytes).is_ok());
    }
    rx.events();
    let mut results = Vec::new();
    for bytes in publish_from_engine(&rx, 1, 50, NOW.plus_ms(1_000)) {
        results.push(rx.deliver_at(NOW.plus_ms(1_000), &bytes));
    }
    assert_eq!(results, vec![Err(Rejection::Equivocation)]);
    assert_eq!(rx.count(), 0, "the equivocator's counts are removed");
    assert_eq!(rx.engine.banned(&rx.tenant), vec![rx.sender(2).node()]);
}
