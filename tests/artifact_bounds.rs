//! Bounds of code artifacts: the blob store stays within its byte and count bounds (and
//! still installs a new generation when it has room for one blob), and decoding of the
//! Code, Presence, Claim and BlobChunk messages is bounded and never panics on random or
//! mutated bodies.
//!
//! One real engine receives real signed manifests in real sealed messages; the test plays
//! its peers, answering its blob requests honestly or not (see `tests/common/artifacts.rs`).

mod common;

use common::artifacts::*;
use common::function;
use common::props::config;
use ignite::code::{Assumption, Attestation, BlobStore, Claim, Presence, Signed};
use ignite::wire::{Body, Limits, WireError};
use ignite::{Manifest, Peer, Tier};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

#[test]
fn blob_store_stays_within_its_byte_and_count_bounds() {
    let size = 600usize;
    let bounded_count = |c: &mut ignite::Config| c.code.blob_store_count = 2;
    let bounded_bytes = |c: &mut ignite::Config| {
        c.code.blob_store_bytes = 1_500;
        c.code.max_blob_bytes = 1_500;
    };
    for (name, tweak) in [
        ("count", &bounded_count as &dyn Fn(&mut ignite::Config)),
        ("bytes", &bounded_bytes),
    ] {
        let mut rx = CodeRx::new(tweak);
        let (max_bytes, max_count) = (
            rx.engine.config().code.blob_store_bytes,
            rx.engine.config().code.blob_store_count,
        );
        let c2 = rx.compiler(2);
        let key = rx.key(1);
        let mut hashes = Vec::new();
        // Every generation replaces the code of the key: older blobs are no longer pinned.
        for g in 1..=5u32 {
            let code = blob(20 + g as u8, size);
            hashes.push(hash_of(&code));
            let m = rx.manifest(&c2, key, g, &code);
            install(&mut rx, m, &code);
            let held: Vec<bool> = hashes.iter().map(|h| rx.holds(h)).collect();
            let count = held.iter().filter(|h| **h).count();
            assert!(count <= max_count, "{name}: {count} blobs held");
            assert!(
                (count * size) as u64 <= max_bytes,
                "{name}: {} bytes held",
                count * size
            );
            assert!(held[g as usize - 1], "{name}: the installed blob is held");
        }
        // The store is full: the two latest blobs, the older ones evicted.
        let held: Vec<bool> = hashes.iter().map(|h| rx.holds(h)).collect();
        assert_eq!(held, vec![false, false, false, true, true], "{name}");
        assert_eq!(rx.installs().len(), 5, "{name}");
    }
}

/// A store with room for one blob, full of the running code: the next generation is
/// fetched once, installed from the fetched bytes, and then replaces the old blob in the
/// store (which it can serve to peers).
#[test]
fn new_generation_installs_when_the_store_has_room_for_one_blob() {
    let mut rx = CodeRx::new(|c| {
        c.code.blob_store_bytes = 1_000;
        c.code.max_blob_bytes = 1_000;
    });
    let c2 = rx.compiler(2);
    let key = rx.key(1);
    let (old, new) = (blob(50, 600), blob(51, 600));
    let m = rx.manifest(&c2, key, 1, &old);
    install(&mut rx, m, &old);
    let m2 = Signed::sign(rx.manifest(&c2, key, 2, &new), &c2);
    rx.deliver_code(RELAY, &[m2]);
    for _ in 0..8 {
        rx.tick();
        rx.serve(RELAY, &new, new.len() as u64);
        rx.now = rx.now.plus_ms(rx.engine.config().code.tick_ms);
    }
    let fetched = rx.engine.stats().blobs_fetched;
    assert!(fetched <= 2, "the new blob was fetched {} times", fetched - 1);
    assert_eq!(rx.installed(&key), Some((rx.class.id(), 2)), "generation 2 replaces 1");
    let last = rx.installs().last().map(|i| i.blob.to_vec());
    assert_eq!(last, Some(new.clone()), "the host got the new bytes");
    assert!(rx.holds(&hash_of(&new)), "the new blob is stored and served");
    assert!(!rx.holds(&hash_of(&old)), "the replaced blob made room");
}

proptest! {
    #![proptest_config(config(64))]

    /// Random inserts and pins: the store never exceeds its bounds and never loses a pinned
    /// blob; a blob it reports stored is held.
    #[test]
    fn blob_store_bounds_hold_under_random_use(
        max_bytes in 100u64..2_000,
        max_count in 1usize..6,
        ops in prop::collection::vec((0usize..400, any::<u8>(), any::<u8>()), 1..40),
    ) {
        let mut store = BlobStore::new(max_bytes, max_count);
        let mut known: Vec<([u8; 32], usize)> = Vec::new();
        let mut pinned: BTreeSet<[u8; 32]> = BTreeSet::new();
        for (n, fill, pin_mask) in ops {
            let bytes: Arc<[u8]> = vec![fill; n].into();
            let stored = store.insert(bytes);
            if let Some(h) = stored {
                prop_assert_eq!(h, hash_of(&vec![fill; n]));
                prop_assert!(store.contains(&h));
                known.push((h, n));
            } else {
                prop_assert!(n as u64 > max_bytes || !pinned.is_empty(), "refused without cause");
            }
            prop_assert!(store.bytes() <= max_bytes);
            prop_assert!(store.len() <= max_count);
            for p in &pinned {
                prop_assert!(store.contains(p), "a pinned blob was evicted");
            }
            let mut held = BTreeSet::new();
            for (h, n) in &known {
                if store.contains(h) {
                    held.insert((*h, *n));
                }
            }
            prop_assert_eq!(held.len(), store.len());
            prop_assert_eq!(held.iter().map(|(_, n)| *n as u64).sum::<u64>(), store.bytes());
            // Pin a subset of what is held (installed code).
            pinned = held.iter().enumerate().filter(|(i, _)| pin_mask & (1 << (i % 8)) != 0)
                .map(|(_, (h, _))| *h).collect();
            // In ascending order, or (every other step) in descending order.
            let mut list: Vec<[u8; 32]> = pinned.iter().copied().collect();
            if fill % 2 == 1 {
                list.reverse();
            }
            store.set_pinned(&list);
        }
    }
}

/// Real plaintext bodies of every new variant, and the manifest they carry.
struct CodeCorpus {
    /// The manifest of `code` (by node 2), and another one (by node 3).
    manifests: Vec<Signed<Manifest>>,
    /// One chunk of code.
    code: Vec<u8>,
    /// Encoded Code (two manifests, an attestation), Presence and Claim bodies.
    bodies: Vec<Vec<u8>>,
}

fn corpus() -> &'static CodeCorpus {
    static C: OnceLock<CodeCorpus> = OnceLock::new();
    C.get_or_init(|| {
        let rx = CodeRx::new(|_| {});
        let (c2, c3) = (rx.compiler(2), rx.compiler(3));
        let code = blob(40, 200);
        let m = Manifest {
            assumptions: vec![
                MONO,
                Assumption::Runtime {
                    kind: 3,
                    data: vec![1; 20],
                },
            ],
            ..rx.manifest(&c2, rx.key(1), 1, &code)
        };
        let manifest = Signed::sign(m.clone(), &c2);
        let other = Signed::sign(rx.manifest(&c3, rx.key(2), 1, &blob(41, 200)), &c3);
        let attestation = Signed::sign(
            Attestation {
                tenant: rx.tenant,
                attester: c3.cert().cert.node,
                key: m.key,
                class: m.class,
                generation: 1,
                manifest: manifest.hash(),
                blob_hash: m.blob_hash,
                issued_at: NOW,
            },
            &c3,
        );
        let presence = Signed::sign(
            Presence {
                tenant: rx.tenant,
                node: c3.cert().cert.node,
                seq: 5,
                issued_at: NOW,
                valid_ms: 16_000,
                classes: vec![(rx.class.id(), rx.class.tiers)],
                load: 300,
                installed_digest: [9; 32],
                functions: vec![function("hot")],
                installed: vec![(0, m.key.method, Tier(2))],
                truncated: false,
            },
            &c3,
        );
        let claim = Signed::sign(
            Claim {
                tenant: rx.tenant,
                node: c3.cert().cert.node,
                key: m.key,
                class: m.class,
                generation: 1,
                lease_until: NOW.plus_ms(30_000),
                issued_at: NOW,
            },
            &c3,
        );
        let bodies = vec![
            Body::Code {
                round: 0,
                manifests: vec![manifest.clone(), other.clone()],
                attestations: vec![attestation],
            }
            .encode(),
            Body::Presence(Box::new(presence)).encode(),
            Body::Claim(Box::new(claim)).encode(),
        ];
        CodeCorpus {
            manifests: vec![manifest, other],
            code,
            bodies,
        }
    })
}

/// A receiver that holds the corpus manifest and asked the relay for its first chunk;
/// returns the valid answer (a BlobChunk body) it waits for.
fn receiver_waiting_for_chunk() -> (CodeRx, Vec<u8>) {
    let c = corpus();
    let mut rx = CodeRx::new(|_| {});
    rx.deliver_code(RELAY, &c.manifests[..1]);
    rx.tick();
    let (hash, chunk) = rx.wants_to(RELAY)[0];
    let request = rx
        .sent
        .iter()
        .find_map(|(_, s)| match s {
            Sent::Want { request, .. } => Some(*request),
            _ => None,
        })
        .unwrap();
    let body = Body::BlobChunk {
        request,
        hash,
        chunk,
        size: c.code.len() as u64,
        data: &c.code,
    };
    (rx, body.encode())
}

/// Decodes `plain` directly, then seals it for a receiver and lets it handle the message and
/// a timer pass: nothing may panic, only the corpus's authentic manifests may be held, and
/// code is installed only with exactly its manifest's blob.
fn check_plain(rx: &mut CodeRx, plain: &[u8]) -> Result<(), TestCaseError> {
    let _ = Body::decode(plain, &Limits::default());
    let bytes = rx.sealer.seal(plain);
    let _ = rx.deliver_direct(RELAY, &bytes);
    rx.now = rx.now.plus_ms(3_000);
    rx.tick();
    let c = corpus();
    for m in rx.engine.manifests(&rx.tenant).values() {
        prop_assert!(c.manifests.contains(m), "a forged manifest was accepted: {:?}", m);
    }
    for i in rx.installs() {
        prop_assert_eq!(&i.manifest, &c.manifests[0]);
        prop_assert_eq!(&*i.blob, &c.code[..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    /// Random bytes behind the tag of a Code, Presence, Claim or BlobChunk body.
    #[test]
    fn random_code_bodies_never_panic(
        tag in prop::sample::select(vec![0usize, 1, 2, 3]),
        tail in prop::collection::vec(any::<u8>(), 0..1_500),
    ) {
        let (mut rx, chunk) = receiver_waiting_for_chunk();
        let c = corpus();
        let first = [&c.bodies[0], &c.bodies[1], &c.bodies[2], &chunk][tag][0];
        let mut plain = vec![first];
        plain.extend_from_slice(&tail);
        check_plain(&mut rx, &plain)?;
    }

    /// Real Code, Presence, Claim and BlobChunk bodies with a few mutations.
    #[test]
    fn mutated_code_bodies_never_panic(
        which in 0usize..4,
        ms in prop::collection::vec(mutation(), 1..3),
    ) {
        let (mut rx, chunk) = receiver_waiting_for_chunk();
        let c = corpus();
        let original = if which == 3 { chunk } else { c.bodies[which].clone() };
        check_plain(&mut rx, &mutate(&original, &ms))?;
    }
}

#[test]
fn code_bodies_are_bounded_before_use() {
    let c = corpus();
    let limits = Limits {
        max_refs_per_message: 1,
        ..Limits::default()
    };
    // The corpus Code body carries two manifests.
    assert_eq!(
        Body::decode(&c.bodies[0], &limits).unwrap_err(),
        WireError::TooMany {
            what: "manifests",
            count: 2,
            max: 1
        }
    );
    // A length prefix of u32::MAX manifests with nothing behind it is refused.
    let mut huge = vec![c.bodies[0][0], 0];
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        Body::decode(&huge, &Limits::default()),
        Err(WireError::Malformed(_))
    ));
    // Every real body decodes under the default limits, and re-encodes identically.
    for b in &c.bodies {
        assert_eq!(&Body::decode(b, &Limits::default()).unwrap().encode(), b);
    }
    // A chunk is taken only as the answer to the request outstanding, from its peer.
    let (mut rx, chunk) = receiver_waiting_for_chunk();
    let Body::BlobChunk {
        request,
        hash,
        chunk: index,
        size,
        data,
    } = Body::decode(&chunk, &Limits::default()).unwrap()
    else {
        unreachable!()
    };
    let stale = Body::BlobChunk {
        request: request ^ 1,
        hash,
        chunk: index,
        size,
        data,
    };
    // The expected answer from another peer (a fresh receiver: the bytes of a message
    // handled once are not handled again).
    let (mut other, _) = receiver_waiting_for_chunk();
    let ignored = other.engine.stats().sync_ignored;
    let bytes = other.sealer.seal(&chunk);
    assert_eq!(other.deliver_direct(Peer(7), &bytes), Ok(Default::default()));
    assert_eq!(other.engine.stats().sync_ignored, ignored + 1, "from another peer");
    assert_nothing_installed(&other);
    // Another request's answer from the right peer.
    let ignored = rx.engine.stats().sync_ignored;
    let bytes = rx.sealer.seal(&stale.encode());
    assert_eq!(rx.deliver_direct(RELAY, &bytes), Ok(Default::default()));
    assert_eq!(rx.engine.stats().sync_ignored, ignored + 1, "stale request id");
    assert_nothing_installed(&rx);
    let bytes = rx.sealer.seal(&chunk);
    assert_eq!(rx.deliver_direct(RELAY, &bytes), Ok(Default::default()));
    assert_eq!(rx.installs().len(), 1, "the answer expected installs the code");
}
