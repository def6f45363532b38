//! Code artifacts a node must refuse, each with its exact reason: a class it cannot run, a
//! violated assumption, another tenant, an older generation, an expired manifest, blobs that
//! do not match their manifest (and the fetch that goes on elsewhere), oversize code,
//! another deployment, bad signatures and certificates. Also bounded decoding of the code
//! messages, and the bounds of the blob store.
//!
//! One real engine receives real signed manifests in real sealed messages; the test plays
//! its peers, answering its blob requests honestly or not (see `tests/common/artifacts.rs`).

mod common;

use common::artifacts::*;
use common::code::classes;
use common::props::config;
use common::{T0, creds, function, tenant};
use ignite::code::{Assumption, AssumptionCheck, Attestation, BlobStore, Claim, Presence, Signed};
use ignite::crypto::SigError;
use ignite::tenancy::CertError;
use ignite::wire::{Body, Limits, WireError};
use ignite::{CodeKey, Event, FunctionId, Manifest, Peer, Refusal, Roles, TenantId, Tier, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

/// A blob of `n` bytes derived from `seed`.
fn blob(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Asserts that nothing was installed, announced as installed, or fetched.
fn assert_nothing_installed(rx: &CodeRx) {
    assert!(rx.installs().is_empty(), "no Event::Install: {:?}", rx.installs());
    assert!(rx.engine.installed(&rx.tenant).is_empty(), "nothing installed");
    assert_eq!(rx.engine.stats().installs, 0);
}

/// Delivers `m` (signed by node 2) from the relay, lets the engine ask for its blob and
/// serves it honestly; the code must be installed.
fn install(rx: &mut CodeRx, m: Manifest, blob: &[u8]) -> Signed<Manifest> {
    let key = m.key;
    let generation = m.generation;
    let signed = Signed::sign(m, &rx.compiler(2));
    rx.deliver_code(RELAY, std::slice::from_ref(&signed));
    rx.tick();
    assert!(rx.serve(RELAY, blob, blob.len() as u64) > 0, "the blob was asked for");
    assert_eq!(rx.installed(&key), Some((rx.class.id(), generation)));
    signed
}

// ---------------------------------------------------------------------------------------
// Refusals of the manifest itself
// ---------------------------------------------------------------------------------------

#[test]
fn class_not_runnable_here_is_refused_and_the_runnable_class_installed() {
    let mut rx = CodeRx::new(|_| {});
    let (_, v3, arm) = classes();
    let c2 = rx.compiler(2);
    let key = rx.key(1);
    let code = blob(1, 600);
    // This node runs x86-64-v2 only: code for v3 or aarch64 is not for it.
    let foreign: Vec<Manifest> = [v3, arm]
        .iter()
        .map(|c| Manifest {
            class: c.id(),
            ..rx.manifest(&c2, key, 1, &blob(c.id().0[0], 600))
        })
        .collect();
    let signed: Vec<_> = foreign.iter().map(|m| Signed::sign(m.clone(), &c2)).collect();
    rx.deliver_code(RELAY, &signed);
    rx.tick();
    for m in &foreign {
        assert!(
            rx.events.contains(&rx.refused(m, Refusal::ClassNotRunnable)),
            "{:?}",
            rx.events
        );
    }
    assert_eq!(rx.refusals(), vec![Refusal::ClassNotRunnable; 2]);
    assert_eq!(rx.refused_count("class_not_runnable"), 2);
    assert_eq!(rx.all_wants(), 0, "no blob fetched for code that cannot run here");
    assert_nothing_installed(&rx);
    // The same key in this node's class is installed; the refusals are not repeated.
    let m = rx.manifest(&c2, key, 1, &code);
    install(&mut rx, m, &code);
    assert_eq!(rx.installs().len(), 1);
    assert_eq!(&*rx.installs()[0].blob, &code[..]);
    assert_eq!(rx.refused_count("class_not_runnable"), 2);
}

/// Refuses monomorphic calls to `target` ("the class is not loaded here").
struct NotLoaded {
    target: u32,
}

impl AssumptionCheck for NotLoaded {
    fn check(&self, _: &TenantId, _: &CodeKey, a: &Assumption) -> Result<(), String> {
        match a {
            Assumption::MonomorphicCall { target, .. } if *target == self.target => {
                Err(format!("type {target} not loaded"))
            }
            _ => Ok(()),
        }
    }
}

const MONO: Assumption = Assumption::MonomorphicCall { site: 0, target: 7 };

#[test]
fn violated_assumption_is_refused_before_fetching() {
    let mut rx = CodeRx::new(|_| {});
    let tenant = rx.tenant;
    rx.engine
        .set_assumption_check(&tenant, Box::new(NotLoaded { target: 7 }))
        .unwrap();
    let c2 = rx.compiler(2);
    let bad = Manifest {
        assumptions: vec![Assumption::BranchNeverTaken { site: 1, taken: true }, MONO],
        ..rx.manifest(&c2, rx.key(1), 1, &blob(1, 600))
    };
    rx.deliver_code(RELAY, &[Signed::sign(bad.clone(), &c2)]);
    rx.tick();
    let reason = Refusal::AssumptionViolated {
        assumption: MONO,
        reason: "type 7 not loaded".into(),
    };
    assert_eq!(rx.refusals(), vec![reason.clone()]);
    assert!(rx.events.contains(&rx.refused(&bad, reason)));
    assert_eq!(rx.refused_count("assumption_violated"), 1);
    assert_eq!(rx.all_wants(), 0, "code that cannot run is not fetched");
    assert_nothing_installed(&rx);
    // The check is selective: code relying on another monomorphic target installs.
    let ok_code = blob(2, 600);
    let ok = Manifest {
        assumptions: vec![Assumption::MonomorphicCall { site: 0, target: 8 }],
        ..rx.manifest(&c2, rx.key(2), 1, &ok_code)
    };
    install(&mut rx, ok, &ok_code);
    assert_eq!(rx.installs().len(), 1);
}

#[test]
fn installed_code_is_uninstalled_when_its_assumption_stops_holding() {
    let mut rx = CodeRx::new(|_| {});
    let c2 = rx.compiler(2);
    let code = blob(3, 700);
    let m = Manifest {
        assumptions: vec![MONO],
        ..rx.manifest(&c2, rx.key(1), 1, &code)
    };
    install(&mut rx, m.clone(), &code);
    assert_eq!(rx.installs().len(), 1);
    assert!(rx.refusals().is_empty());
    rx.events.clear();
    // The host unloads type 7: the installed code relies on it.
    let tenant = rx.tenant;
    rx.engine
        .set_assumption_check(&tenant, Box::new(NotLoaded { target: 7 }))
        .unwrap();
    rx.now = rx.now.plus_ms(1);
    rx.tick();
    let reason = Refusal::AssumptionViolated {
        assumption: MONO,
        reason: "type 7 not loaded".into(),
    };
    assert!(rx.events.contains(&rx.refused(&m, reason)), "{:?}", rx.events);
    let uninstall = Event::Uninstall {
        tenant,
        key: m.key,
        class: m.class,
        generation: 1,
    };
    assert_eq!(
        rx.events.iter().filter(|e| **e == uninstall).count(),
        1,
        "{:?}",
        rx.events
    );
    assert_eq!(rx.installed(&m.key), None);
    assert_eq!(rx.engine.stats().uninstalls, 1);
    assert_eq!(rx.refused_count("assumption_violated"), 1);
    // Nothing is installed again while the assumption does not hold.
    rx.now = rx.now.plus_ms(1_000);
    rx.tick();
    assert!(rx.installs().is_empty());
    assert_eq!(rx.installed(&m.key), None);
}

#[test]
fn manifest_of_another_tenant_is_refused_and_changes_nothing() {
    let mut rx = CodeRx::new(|_| {});
    // The engine serves tenant B too, as node 1.
    let (root_b, secrets_b) = tenant(2);
    let tenant_b = root_b.id();
    rx.engine
        .join_tenant(T0, creds(&root_b, &secrets_b, 1, Roles::ALL))
        .unwrap();
    let b2 = creds(&root_b, &secrets_b, 2, Roles::ALL);
    let code = blob(4, 500);
    // 1. About tenant B and signed by B's node, sealed in a message of tenant A.
    let about_b = Manifest {
        tenant: tenant_b,
        ..rx.manifest(&b2, rx.key(1), 1, &code)
    };
    // 2. Claiming tenant A, but signed under B's root.
    let claims_a = rx.manifest(&b2, rx.key(2), 1, &code);
    rx.deliver_code(
        RELAY,
        &[Signed::sign(about_b.clone(), &b2), Signed::sign(claims_a.clone(), &b2)],
    );
    rx.tick();
    assert_eq!(rx.refusals(), vec![Refusal::WrongTenant; 2]);
    assert!(rx.events.contains(&rx.refused(&about_b, Refusal::WrongTenant)));
    assert!(rx.events.contains(&rx.refused(&claims_a, Refusal::WrongTenant)));
    assert_eq!(rx.refused_count("wrong_tenant"), 2);
    // Neither tenant holds anything, nothing is fetched or installed.
    assert!(rx.engine.manifests(&rx.tenant).is_empty());
    assert!(rx.engine.manifests(&tenant_b).is_empty());
    assert!(rx.engine.installed(&tenant_b).is_empty());
    assert_eq!(rx.all_wants(), 0);
    assert_nothing_installed(&rx);
}

#[test]
fn older_generation_is_refused_after_a_newer_one() {
    let mut rx = CodeRx::new(|_| {});
    let c2 = rx.compiler(2);
    let key = rx.key(1);
    let new_code = blob(5, 600);
    let old_code = blob(6, 600);
    let m = rx.manifest(&c2, key, 2, &new_code);
    let g2 = install(&mut rx, m, &new_code);
    rx.events.clear();
    let wants = rx.all_wants();
    let g1 = rx.manifest(&c2, key, 1, &old_code);
    rx.deliver_code(RELAY, &[Signed::sign(g1.clone(), &c2)]);
    rx.tick();
    let reason = Refusal::OlderGeneration { got: 1, current: 2 };
    assert_eq!(rx.refusals(), vec![reason.clone()]);
    assert!(rx.events.contains(&rx.refused(&g1, reason)));
    assert_eq!(rx.refused_count("older_generation"), 1);
    assert!(rx.installs().is_empty(), "generation 1 not installed");
    assert_eq!(rx.installed(&key), Some((rx.class.id(), 2)));
    assert_eq!(rx.engine.manifests(&rx.tenant)[&(key, rx.class.id())], g2);
    assert_eq!(rx.all_wants(), wants, "its blob is not fetched");
}

#[test]
fn expired_manifest_is_refused() {
    let ttl = 30_000;
    let mut rx = CodeRx::new(|c| c.code.manifest_ttl_ms = ttl);
    let c2 = rx.compiler(2);
    let now = rx.now;
    // Expires exactly now (expires_at <= now).
    let at_expiry = Manifest {
        expires_at: now,
        ..rx.manifest(&c2, rx.key(1), 1, &blob(7, 300))
    };
    // Expires later by its own word, but older than this node's manifest_ttl_ms.
    let too_old = Manifest {
        created_at: Timestamp(now.0 - ttl),
        ..rx.manifest(&c2, rx.key(2), 1, &blob(8, 300))
    };
    // Control: valid for one more millisecond.
    let alive = Manifest {
        expires_at: now.plus_ms(1),
        ..rx.manifest(&c2, rx.key(3), 1, &blob(9, 300))
    };
    let signed: Vec<_> = [&at_expiry, &too_old, &alive]
        .into_iter()
        .map(|m| Signed::sign(m.clone(), &c2))
        .collect();
    rx.deliver_code(RELAY, &signed);
    rx.tick();
    assert_eq!(rx.refusals(), vec![Refusal::Expired; 2], "{:?}", rx.events);
    assert!(rx.events.contains(&rx.refused(&at_expiry, Refusal::Expired)));
    assert!(rx.events.contains(&rx.refused(&too_old, Refusal::Expired)));
    assert_eq!(rx.refused_count("expired"), 2);
    let held: Vec<CodeKey> = rx.engine.manifests(&rx.tenant).keys().map(|(k, _)| *k).collect();
    assert_eq!(held, vec![alive.key], "only the live manifest is held");
    assert_eq!(
        rx.wants_to(RELAY),
        vec![(alive.blob_hash, 0)],
        "only its blob is asked for"
    );
    assert_nothing_installed(&rx);
}

#[test]
fn oversize_blob_is_refused() {
    let max = 4_096;
    let mut rx = CodeRx::new(|c| c.code.max_blob_bytes = max);
    let c2 = rx.compiler(2);
    let big = Manifest {
        blob_size: max + 1,
        ..rx.manifest(&c2, rx.key(1), 1, &blob(10, 300))
    };
    let at_limit = Manifest {
        blob_size: max,
        ..rx.manifest(&c2, rx.key(2), 1, &blob(11, 300))
    };
    rx.deliver_code(
        RELAY,
        &[Signed::sign(big.clone(), &c2), Signed::sign(at_limit.clone(), &c2)],
    );
    rx.tick();
    let reason = Refusal::Oversize { size: max + 1, max };
    assert_eq!(rx.refusals(), vec![reason.clone()]);
    assert!(rx.events.contains(&rx.refused(&big, reason)));
    assert_eq!(rx.refused_count("oversize"), 1);
    assert!(
        !rx.wants_to(RELAY).iter().any(|(h, _)| *h == big.blob_hash),
        "not fetched"
    );
    assert_eq!(
        rx.engine.manifests(&rx.tenant).len(),
        1,
        "the manifest at the limit is held"
    );
    assert_nothing_installed(&rx);
}

#[test]
fn manifest_for_another_deployment_is_refused() {
    let mut rx = CodeRx::new(|_| {});
    let c2 = rx.compiler(2);
    let current = FunctionId::from_deployment("hot", b"v2");
    let stale = FunctionId::from_deployment("hot", b"v1");
    let tenant = rx.tenant;
    rx.engine.set_deployment(&tenant, current).unwrap();
    let key = |function| CodeKey {
        function,
        method: ignite::MethodId(1),
        tier: Tier(2),
    };
    let code = blob(12, 400);
    let old = rx.manifest(&c2, key(stale), 1, &blob(13, 400));
    rx.deliver_code(RELAY, &[Signed::sign(old.clone(), &c2)]);
    rx.tick();
    assert_eq!(rx.refusals(), vec![Refusal::OtherDeployment]);
    assert!(rx.events.contains(&rx.refused(&old, Refusal::OtherDeployment)));
    assert_eq!(rx.refused_count("other_deployment"), 1);
    assert!(rx.engine.manifests(&tenant).is_empty());
    assert_eq!(rx.all_wants(), 0);
    assert_nothing_installed(&rx);
    // The declared deployment's code installs.
    let m = rx.manifest(&c2, key(current), 1, &code);
    install(&mut rx, m, &code);
    assert_eq!(rx.refusals(), vec![Refusal::OtherDeployment]);
}

#[test]
fn bad_signature_is_refused_unauthentic() {
    let mut rx = CodeRx::new(|_| {});
    let c2 = rx.compiler(2);
    let m = rx.manifest(&c2, rx.key(1), 1, &blob(14, 400));
    // Signed, then the size changed.
    let mut tampered = Signed::sign(m.clone(), &c2);
    tampered.statement.blob_size += 1;
    // Signed by node 2, presented with node 3's certificate.
    let mut other_cert = Signed::sign(rx.manifest(&c2, rx.key(2), 1, &blob(15, 400)), &c2);
    other_cert.cert = *rx.compiler(3).cert();
    rx.deliver_code(RELAY, &[tampered.clone(), other_cert.clone()]);
    rx.tick();
    let reason = Refusal::Unauthentic(SigError::Invalid.to_string());
    assert_eq!(rx.refusals(), vec![reason.clone(); 2]);
    assert!(rx.events.contains(&rx.refused(&tampered.statement, reason.clone())));
    assert!(rx.events.contains(&rx.refused(&other_cert.statement, reason)));
    assert_eq!(rx.refused_count("unauthentic"), 2);
    assert!(rx.engine.manifests(&rx.tenant).is_empty());
    assert_eq!(rx.all_wants(), 0);
    assert_nothing_installed(&rx);
}

#[test]
fn certificate_without_compile_role_is_refused_unauthentic() {
    let mut rx = CodeRx::new(|_| {});
    let profiler = creds(&rx.root, &rx.secrets, 4, Roles::PROFILE);
    let m = rx.manifest(&profiler, rx.key(1), 1, &blob(16, 400));
    rx.deliver_code(RELAY, &[Signed::sign(m.clone(), &profiler)]);
    rx.tick();
    let reason = Refusal::Unauthentic(CertError::MissingRole.to_string());
    assert_eq!(rx.refusals(), vec![reason.clone()]);
    assert!(rx.events.contains(&rx.refused(&m, reason)));
    assert_eq!(rx.refused_count("unauthentic"), 1);
    assert!(rx.engine.manifests(&rx.tenant).is_empty());
    assert_eq!(rx.all_wants(), 0);
    assert_nothing_installed(&rx);
}

// ---------------------------------------------------------------------------------------
// Refusals of the blob
// ---------------------------------------------------------------------------------------

#[test]
fn blob_hash_mismatch_is_rejected_and_fetched_elsewhere() {
    let mut rx = CodeRx::new(|_| {});
    let topic = rx.topic.clone();
    rx.engine.peer_joined(OTHER, &topic);
    let c2 = rx.compiler(2);
    let code = blob(17, 1_000); // 4 chunks
    let m = rx.manifest(&c2, rx.key(1), 1, &code);
    rx.deliver_code(RELAY, &[Signed::sign(m.clone(), &c2)]);
    rx.tick();
    assert_eq!(rx.wants_to(RELAY), vec![(m.blob_hash, 0)], "the relay is asked first");
    assert!(rx.wants_to(OTHER).is_empty());
    // The relay answers with other bytes of the right size.
    let forged = blob(18, code.len());
    assert_eq!(rx.serve(RELAY, &forged, code.len() as u64), 4);
    assert_eq!(rx.refusals(), vec![Refusal::BlobHashMismatch]);
    assert!(rx.events.contains(&rx.refused(&m, Refusal::BlobHashMismatch)));
    assert_eq!(rx.refused_count("blob_hash_mismatch"), 1);
    assert_nothing_installed(&rx);
    assert!(!rx.holds(&hash_of(&forged)), "the forged bytes are not stored");
    assert!(!rx.holds(&m.blob_hash));
    // The engine moved on to the other peer at once, from the first chunk.
    assert_eq!(rx.wants_to(OTHER), vec![(m.blob_hash, 0)]);
    assert_eq!(rx.serve(OTHER, &code, code.len() as u64), 4);
    let installs = rx.installs();
    assert_eq!(installs.len(), 1);
    assert_eq!(installs[0].manifest.statement, m);
    assert_eq!(&*installs[0].blob, &code[..]);
    assert_eq!(rx.installed(&m.key), Some((rx.class.id(), 1)));
    assert_eq!(rx.engine.stats().blobs_fetched, 1);
    assert!(rx.holds(&m.blob_hash));
    assert_eq!(rx.refusals(), vec![Refusal::BlobHashMismatch], "no other refusal");
}

#[test]
fn blob_size_mismatch_is_rejected() {
    let mut rx = CodeRx::new(|_| {});
    let c2 = rx.compiler(2);
    let code = blob(19, 600);
    let m = rx.manifest(&c2, rx.key(1), 1, &code);
    rx.deliver_code(RELAY, &[Signed::sign(m.clone(), &c2)]);
    rx.tick();
    // The relay announces one byte more than the manifest.
    assert_eq!(rx.serve(RELAY, &code, code.len() as u64 + 1), 1);
    assert_eq!(rx.refusals()[0], Refusal::BlobSizeMismatch, "{:?}", rx.events);
    assert!(rx.events.contains(&rx.refused(&m, Refusal::BlobSizeMismatch)));
    assert_eq!(rx.refused_count("blob_size_mismatch"), 1);
    // No other peer to ask: reported unavailable, nothing stored or installed.
    assert!(
        rx.refusals()
            .iter()
            .all(|r| matches!(r, Refusal::BlobSizeMismatch | Refusal::BlobUnavailable))
    );
    assert!(!rx.holds(&m.blob_hash));
    assert_nothing_installed(&rx);
}

// ---------------------------------------------------------------------------------------
// Bounds: the blob store, and decoding of the code messages
// ---------------------------------------------------------------------------------------

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
            store.set_pinned(&pinned);
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
