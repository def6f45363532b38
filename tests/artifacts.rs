//! Code artifacts a node must refuse, each with its exact reason: a class it cannot run, a
//! violated assumption, another tenant, an older generation, an expired manifest, blobs that
//! do not match their manifest (and the fetch that goes on elsewhere), oversize code,
//! another deployment, bad signatures and certificates. The bounds of the blob store and
//! of decoding the code messages are in `tests/artifact_bounds.rs`.
//!
//! One real engine receives real signed manifests in real sealed messages; the test plays
//! its peers, answering its blob requests honestly or not (see `tests/common/artifacts.rs`).

mod common;

use common::artifacts::*;
use common::code::classes;
use common::{T0, creds, tenant};
use ignite::code::{Assumption, AssumptionCheck, Signed};
use ignite::crypto::SigError;
use ignite::tenancy::CertError;
use ignite::{CodeKey, Event, FunctionId, Manifest, Refusal, Roles, TenantId, Tier, Timestamp};

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

/// An unanswered blob request goes to another peer after `fetch_timeout_ms` (2 s) until
/// some request was answered; then after four times the measured round trip.
#[test]
fn an_unanswered_blob_request_waits_four_round_trips_once_answers_were_timed() {
    // Returns the receiver and the manifest of a blob whose request to the relay is never
    // answered, after `answered` round trips of 100 ms for other blobs.
    let unanswered = |answered: u8| {
        let mut rx = CodeRx::new(|_| {});
        let topic = rx.topic.clone();
        rx.engine.peer_joined(OTHER, &topic);
        let c2 = rx.compiler(2);
        for i in 0..answered {
            let code = blob(30 + i, 200);
            let m = rx.manifest(&c2, rx.key(1 + u32::from(i)), 1, &code);
            rx.deliver_code(RELAY, &[Signed::sign(m.clone(), &c2)]);
            rx.tick();
            rx.now = rx.now.plus_ms(100);
            assert_eq!(rx.serve(RELAY, &code, code.len() as u64), 1);
            assert_eq!(rx.installed(&m.key), Some((rx.class.id(), 1)));
        }
        let code = blob(40, 200);
        let m = rx.manifest(&c2, rx.key(9), 1, &code);
        rx.deliver_code(RELAY, &[Signed::sign(m.clone(), &c2)]);
        rx.tick();
        assert_eq!(rx.wants_to(RELAY).last(), Some(&(m.blob_hash, 0)));
        assert!(rx.wants_to(OTHER).is_empty());
        (rx, m)
    };
    // No answer timed yet: the request waits 2 s.
    let (mut rx, m) = unanswered(0);
    rx.now = rx.now.plus_ms(500);
    rx.tick();
    assert!(rx.wants_to(OTHER).is_empty(), "waits fetch_timeout_ms");
    rx.now = rx.now.plus_ms(1_500);
    rx.tick();
    assert_eq!(rx.wants_to(OTHER), vec![(m.blob_hash, 0)]);
    // Answers took 100 ms: the request waits 400 ms.
    let (mut rx, m) = unanswered(2);
    rx.now = rx.now.plus_ms(250);
    rx.tick();
    assert!(rx.wants_to(OTHER).is_empty(), "250 ms < 400 ms");
    rx.now = rx.now.plus_ms(250);
    rx.tick();
    assert_eq!(rx.wants_to(OTHER), vec![(m.blob_hash, 0)], "500 ms > 400 ms");
}
