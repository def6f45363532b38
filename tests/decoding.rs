//! Property tests of untrusted input: decoders and `Engine::handle_message` never panic on
//! arbitrary or mutated bytes, a rejected message changes nothing, and `Engine::restore`
//! refuses corrupt snapshots. Set `PROPTEST_CASES` to run more cases.

mod common;

use common::props::*;
use common::{T0, Totals, creds, merged};
use ignite::wire::{self, Body, Envelope, Limits, Sealer};
use ignite::{Config, Engine, GroupId, Incarnation, NodeKey, Peer, Roles, Timestamp, TopicId};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::sync::{Mutex, OnceLock};

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
    #![proptest_config(config(1024))]

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
        let mut framed = b"IGNSNAP3".to_vec();
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
