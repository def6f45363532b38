//! Sealing, wire format, certificates, revocation, caps, clocks and deployments: every
//! hostile or malformed message is refused with its exact typed reason, and the tenant's
//! merged state (counters, evidence, bans) does not change. Signatures and equivocation
//! have their own files (`signatures.rs`, `equivocation.rs`).
//!
//! Messages are built by hand from real signed and sealed bytes (see `tests/common`), and
//! fed to a real engine through `Engine::handle_message`.

mod common;

use common::rx::*;
use common::*;
use ed25519_dalek::SigningKey;
use ignite::crypto::{self, SigError, domain};
use ignite::profile::CapConfig;
use ignite::tenancy::{CertError, NodeCert, Revocation, SignedCert, SignedRevocation};
use ignite::wire::{self, Body, Envelope, Limits, Sealer, WireError};
use ignite::{
    Accepted, Config, DropReason, Event, FunctionId, GroupId, MethodId, NodeKey, Rejection, Roles, TenantCredentials,
    Tier, Timestamp,
};

// ---------------------------------------------------------------------------------------
// Sealing and wire format
// ---------------------------------------------------------------------------------------

#[test]
fn tampered_ciphertext_is_rejected_unauthentic() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let bytes = rx.message(&s2, &spec(rx.f, 2, 20));
    let env = Envelope::decode(&bytes, &Limits::default()).expect("valid envelope");
    let sealed_at = bytes.len() - env.sealed.len();
    // Last byte (authentication tag), first ciphertext byte, a middle ciphertext byte.
    for pos in [bytes.len() - 1, sealed_at, sealed_at + env.sealed.len() / 2] {
        let mut t = bytes.clone();
        t[pos] ^= 0x01;
        assert_eq!(
            rx.deliver(&t),
            Err(Rejection::Wire(WireError::Unauthentic)),
            "byte {pos} flipped"
        );
        assert_unchanged(&mut rx, &before, 10);
    }
    // A flipped nonce byte (after version, 16-byte tag and the 1-byte epoch varint).
    let mut t = bytes.clone();
    t[1 + 16 + 1 + 5] ^= 0x80;
    assert_eq!(rx.deliver(&t), Err(Rejection::Wire(WireError::Unauthentic)));
    assert_unchanged(&mut rx, &before, 10);
    // The tampered copies did not poison the duplicate cache: the original still applies.
    assert_eq!(
        rx.deliver(&bytes),
        Ok(Accepted {
            deltas_applied: 1,
            ..Accepted::default()
        })
    );
    assert_eq!(rx.count(), 20);
}

#[test]
fn oversize_message_is_rejected_before_decoding() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let max = Limits::default().max_message_bytes;
    assert_eq!(max, 64 * 1024);
    // A validly sealed envelope just over the limit.
    let big = Sealer::new(&rx.secrets).seal(&vec![0u8; max]);
    assert!(big.len() > max);
    assert_eq!(
        rx.deliver(&big),
        Err(Rejection::Wire(WireError::Oversize { size: big.len(), max }))
    );
    assert_unchanged(&mut rx, &before, 10);
    // A valid message padded to exactly the limit is not oversize (only malformed).
    let mut exact = rx.message(&s2, &spec(rx.f, 2, 20));
    exact.resize(max, 0);
    assert!(matches!(
        rx.deliver(&exact),
        Err(Rejection::Wire(WireError::Malformed(_)))
    ));
    // ... and one byte more is oversize.
    exact.push(0);
    assert_eq!(
        rx.deliver(&exact),
        Err(Rejection::Wire(WireError::Oversize { size: max + 1, max }))
    );
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn unknown_version_byte_is_rejected() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let bytes = rx.message(&s2, &spec(rx.f, 2, 20));
    assert_eq!(bytes[0], wire::WIRE_VERSION);
    for v in [0u8, 2, 0xff] {
        let mut t = bytes.clone();
        t[0] = v;
        assert_eq!(rx.deliver(&t), Err(Rejection::Wire(WireError::UnknownVersion(v))));
        assert_unchanged(&mut rx, &before, 10);
    }
    assert!(rx.deliver(&bytes).is_ok());
    assert_eq!(rx.count(), 20);
}

// ---------------------------------------------------------------------------------------
// Certificates and revocation
// ---------------------------------------------------------------------------------------

#[test]
fn cert_from_another_root_is_rejected_wrong_root() {
    let (mut rx, _) = Rx::baseline();
    let before = rx.observe();
    let (root_b, _) = tenant(2);
    // Certified by tenant 2's root, but holding tenant 1's secrets and signing for tenant 1.
    let foreign = TenantCredentials::issue(
        &root_b,
        rx.secrets.clone(),
        &[5; 32],
        Roles::ALL,
        T0,
        T0.plus_ms(DAY),
        5,
    );
    let bytes = message(
        &rx.root,
        &rx.secrets,
        foreign.cert(),
        &node_key(5),
        &spec(rx.f, 1, 1_000),
    );
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Cert(CertError::WrongRoot)));
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn cert_claiming_this_tenant_but_signed_by_another_root_is_rejected() {
    let (mut rx, _) = Rx::baseline();
    let before = rx.observe();
    let (root_b, _) = tenant(2);
    let cert = NodeCert {
        tenant: rx.tenant,
        node: NodeKey(node_key(5).verifying_key().to_bytes()),
        roles: Roles::ALL,
        not_before: T0,
        not_after: T0.plus_ms(DAY),
        serial: 5,
    };
    let signature = crypto::sign(
        &SigningKey::from_bytes(&root_b.secret()),
        domain::CERT,
        &SignedCert::signed_bytes(&cert),
    );
    let forged = SignedCert { cert, signature };
    let bytes = message(&rx.root, &rx.secrets, &forged, &node_key(5), &spec(rx.f, 1, 1_000));
    assert_eq!(
        rx.deliver(&bytes),
        Err(Rejection::Cert(CertError::Signature(SigError::Invalid)))
    );
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn expired_cert_is_rejected_from_not_after_on() {
    let (mut rx, s2) = Rx::baseline();
    let not_after = s2.cert.cert.not_after;
    assert_eq!(not_after, T0.plus_ms(DAY));
    // One ms before not_after the certificate is still good.
    let last_ok = Timestamp(not_after.0 - 1);
    let ok = rx.message(&s2, &spec(rx.f, 2, 20));
    assert!(rx.deliver_at(last_ok, &ok).is_ok());
    assert_eq!(rx.count(), 20);
    rx.events();
    let before = rx.observe();
    // At not_after (exclusive) and later it is not.
    let late = rx.message(&s2, &spec(rx.f, 3, 30));
    assert_eq!(
        rx.deliver_at(not_after, &late),
        Err(Rejection::Cert(CertError::Expired))
    );
    assert_unchanged(&mut rx, &before, 20);
    let later = rx.message(&s2, &spec(rx.f, 4, 40));
    assert_eq!(
        rx.deliver_at(not_after.plus_ms(DAY), &later),
        Err(Rejection::Cert(CertError::Expired))
    );
    assert_unchanged(&mut rx, &before, 20);
}

#[test]
fn cert_not_yet_valid_is_rejected_before_not_before() {
    let (mut rx, _) = Rx::baseline();
    let before = rx.observe();
    let future = TenantCredentials::issue(
        &rx.root,
        rx.secrets.clone(),
        &[6; 32],
        Roles::ALL,
        T0.plus_ms(DAY),
        T0.plus_ms(2 * DAY),
        6,
    );
    let bytes = message(
        &rx.root,
        &rx.secrets,
        future.cert(),
        &node_key(6),
        &spec(rx.f, 1, 1_000),
    );
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Cert(CertError::Expired)));
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn cert_without_profile_role_is_rejected_missing_role() {
    let (mut rx, _) = Rx::baseline();
    let before = rx.observe();
    let compile_only = creds(&rx.root, &rx.secrets, 4, Roles::COMPILE);
    let bytes = message(
        &rx.root,
        &rx.secrets,
        compile_only.cert(),
        &node_key(4),
        &spec(rx.f, 1, 1_000),
    );
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Cert(CertError::MissingRole)));
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn revoked_node_is_rejected_and_its_counts_removed() {
    let (mut rx, s2) = Rx::baseline();
    let s3 = rx.sender(3);
    rx.accept(&s3, &spec(rx.f, 1, 5));
    assert_eq!(rx.count(), 15);
    rx.events();

    let rev = rx.root.revoke(s2.node(), NOW);
    assert_eq!(rx.engine.revoke(NOW, rev), Ok(()));
    let (events, published) = rx.drain();
    assert_eq!(
        events,
        vec![Event::NodeRevoked {
            tenant: rx.tenant,
            node: s2.node()
        }]
    );
    // The revocation is forwarded on the tenant topic.
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, rx.topic);
    // Node 2's counts are gone; node 3's remain.
    assert_eq!(rx.count(), 5);
    let view = rx.engine.profile(&rx.tenant, &rx.f).expect("node 3 still counts");
    assert_eq!(view.contributors(MethodId(M), Tier(1)), 1);

    let before = rx.observe();
    let bytes = rx.message(&s2, &spec(rx.f, 2, 20));
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Cert(CertError::Revoked)));
    assert_unchanged(&mut rx, &before, 5);
    // Its old delta, replayed in a new message, does not come back either.
    let old = rx.message(&s2, &spec(rx.f, 1, 10));
    let replay = reseal_with_cert_twice(&rx.secrets, &s2.cert, &spec(rx.f, 1, 10), &old, &rx.root, &s2.key);
    assert_eq!(rx.deliver(&replay), Err(Rejection::Cert(CertError::Revoked)));
    assert_unchanged(&mut rx, &before, 5);
    // A second copy of the revocation changes nothing and emits nothing.
    assert_eq!(rx.engine.revoke(NOW, rev), Ok(()));
    assert!(rx.events().is_empty());
    assert_eq!(rx.count(), 5);
}

#[test]
fn revocation_received_from_a_peer_removes_counts() {
    let (mut rx, s2) = Rx::baseline();
    let rev = rx.root.revoke(s2.node(), NOW);
    let bytes = Sealer::new(&rx.secrets).seal(&Body::Revocations(vec![rev]).encode());
    assert_eq!(rx.deliver(&bytes), Ok(Accepted::default()));
    assert_eq!(
        rx.events(),
        vec![Event::NodeRevoked {
            tenant: rx.tenant,
            node: s2.node()
        }]
    );
    assert_eq!(rx.count(), 0);
    let next = rx.message(&s2, &spec(rx.f, 2, 20));
    assert_eq!(rx.deliver(&next), Err(Rejection::Cert(CertError::Revoked)));
    assert_eq!(rx.count(), 0);
}

#[test]
fn forged_revocation_is_rejected_and_removes_nothing() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let (root_b, _) = tenant(2);
    // Claims tenant 1, signed by tenant 2's root.
    let revocation = Revocation {
        tenant: rx.tenant,
        node: s2.node(),
        issued_at: NOW,
    };
    let signature = crypto::sign(
        &SigningKey::from_bytes(&root_b.secret()),
        domain::REVOCATION,
        &postcard::to_allocvec(&revocation).expect("encodes"),
    );
    let forged = SignedRevocation { revocation, signature };
    assert_eq!(
        rx.engine.revoke(NOW, forged),
        Err(Rejection::Cert(CertError::Signature(SigError::Invalid)))
    );
    assert_unchanged(&mut rx, &before, 10);
    // The same forgery arriving from a peer.
    let bytes = Sealer::new(&rx.secrets).seal(&Body::Revocations(vec![forged]).encode());
    assert_eq!(
        rx.deliver(&bytes),
        Err(Rejection::Cert(CertError::Signature(SigError::Invalid)))
    );
    assert_unchanged(&mut rx, &before, 10);
    // Tenant 2's genuine revocation of the same key is about another tenant.
    assert_eq!(
        rx.engine.revoke(NOW, root_b.revoke(s2.node(), NOW)),
        Err(Rejection::Wire(WireError::UnknownTenant))
    );
    assert_unchanged(&mut rx, &before, 10);
    // Node 2 is still accepted.
    rx.accept(&s2, &spec(rx.f, 2, 20));
    assert_eq!(rx.count(), 20);
}

// ---------------------------------------------------------------------------------------
// Caps, clocks, deployments
// ---------------------------------------------------------------------------------------

#[test]
fn increment_cap_clamps_excess_and_reports_it() {
    let cap = CapConfig {
        max_increments_per_s: 100,
        burst: 10,
    };
    let mut rx = Rx::with_config(Config {
        seed: 1,
        cap,
        thresholds: NO_THRESHOLD,
        ..Config::default()
    });
    let s2 = rx.sender(2);
    let not_before = s2.cert.cert.not_before.as_millis();

    // First delta 5 s after the certificate became valid, claiming a million invocations.
    let t1 = T0.plus_ms(5_000);
    let mut sp = spec(rx.f, 1, 1_000_000);
    sp.issued_at = t1.as_millis();
    let bytes = rx.message(&s2, &sp);
    assert_eq!(
        rx.deliver_at(t1, &bytes),
        Ok(Accepted {
            deltas_applied: 1,
            ..Accepted::default()
        })
    );
    // The lifetime bound: 100/s over (5 s + 1) plus the burst.
    let allowed = cap.allowed(0, 1_000_000, t1.as_millis(), t1.as_millis() - not_before);
    assert_eq!(allowed, 100 * 6 + 10);
    assert_eq!(rx.count(), allowed);
    let excess = 1_000_000 - allowed;
    assert_eq!(
        rx.events(),
        vec![Event::IncrementCapped {
            tenant: rx.tenant,
            node: s2.node(),
            function: rx.f,
            excess
        }]
    );
    assert_eq!(rx.engine.stats().clamped_increments, excess);

    // Second delta 2 s later claiming two million: bounded again.
    let t2 = t1.plus_ms(2_000);
    let mut sp = spec(rx.f, 2, 2_000_000);
    sp.issued_at = t2.as_millis();
    let bytes = rx.message(&s2, &sp);
    assert!(rx.deliver_at(t2, &bytes).is_ok());
    let allowed2 = cap.allowed(allowed, 2_000_000, 2_000, t2.as_millis() - not_before);
    assert_eq!(allowed2, 100 * 8 + 10);
    assert_eq!(rx.count(), allowed2);
    let excess2 = 2_000_000 - allowed2;
    assert_eq!(
        rx.events(),
        vec![Event::IncrementCapped {
            tenant: rx.tenant,
            node: s2.node(),
            function: rx.f,
            excess: excess2
        }]
    );
    assert_eq!(rx.engine.stats().clamped_increments, excess + excess2);
}

#[test]
fn increment_cap_bounds_growth_since_the_previous_delta() {
    // Long after the certificate became valid the lifetime bound is loose, and the bound
    // since the lane's previous delta applies.
    let cap = CapConfig {
        max_increments_per_s: 100,
        burst: 10,
    };
    let mut rx = Rx::with_config(Config {
        seed: 1,
        cap,
        thresholds: NO_THRESHOLD,
        ..Config::default()
    });
    let s2 = rx.sender(2);
    let t1 = T0.plus_ms(1_000_000);
    let mut sp = spec(rx.f, 1, 10);
    sp.issued_at = t1.as_millis();
    let bytes = rx.message(&s2, &sp);
    assert!(rx.deliver_at(t1, &bytes).is_ok());
    assert_eq!(rx.count(), 10);
    assert!(rx.events().is_empty());
    let t2 = t1.plus_ms(1_000);
    let mut sp = spec(rx.f, 2, 1_000_000);
    sp.issued_at = t2.as_millis();
    let bytes = rx.message(&s2, &sp);
    assert!(rx.deliver_at(t2, &bytes).is_ok());
    let allowed = cap.allowed(10, 1_000_000, 1_000, t2.as_millis() - T0.as_millis());
    assert_eq!(allowed, 10 + 100 * 2 + 10);
    assert_eq!(rx.count(), allowed);
    assert_eq!(
        rx.events(),
        vec![Event::IncrementCapped {
            tenant: rx.tenant,
            node: s2.node(),
            function: rx.f,
            excess: 1_000_000 - allowed
        }]
    );
}

#[test]
fn delta_with_an_entry_outside_its_group_is_rejected_so_a_counter_is_capped_once() {
    // One node, one incarnation: the same counter must not be counted in several lanes by
    // putting its method in groups it does not hash to (each lane has its own cap).
    let cap = CapConfig {
        max_increments_per_s: 100,
        burst: 10,
    };
    let mut rx = Rx::with_config(Config {
        seed: 1,
        cap,
        thresholds: NO_THRESHOLD,
        ..Config::default()
    });
    let s2 = rx.sender(2);
    let groups = Config::default().groups;
    let home = GroupId::of(MethodId(M), groups);
    rx.accept(&s2, &spec(rx.f, 1, 1_000_000));
    let single_lane_cap = cap.allowed(0, 1_000_000, T0.as_millis(), 0);
    assert_eq!(single_lane_cap, 110);
    assert_eq!(rx.count(), single_lane_cap);
    rx.events();
    let before = rx.observe();
    for g in (0..groups).map(GroupId).filter(|g| *g != home) {
        let mut sp = spec(rx.f, 1, 1_000_000);
        sp.group = g;
        let bytes = rx.message(&s2, &sp);
        assert_eq!(
            rx.deliver(&bytes),
            Err(Rejection::Wire(WireError::Malformed(
                "entry outside its method group".into()
            ))),
            "group {g:?}"
        );
        assert_unchanged(&mut rx, &before, single_lane_cap);
    }
}

#[test]
fn rejected_delta_for_a_new_function_leaves_no_function_state() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let fresh = function("never-accepted");
    let groups = Config::default().groups;
    let mut sp = spec(fresh, 1, 1_000);
    sp.group = GroupId((GroupId::of(MethodId(M), groups).0 + 1) % groups);
    let bytes = rx.message(&s2, &sp);
    assert_eq!(
        rx.deliver(&bytes),
        Err(Rejection::Wire(WireError::Malformed(
            "entry outside its method group".into()
        )))
    );
    assert!(rx.engine.profile(&rx.tenant, &fresh).is_none(), "a profile appeared");
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn delta_from_the_future_is_rejected() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let skew = Config::default().max_clock_skew_ms;
    let mut sp = spec(rx.f, 2, 20);
    sp.issued_at = NOW.as_millis() + skew + 1;
    let bytes = rx.message(&s2, &sp);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::FromTheFuture));
    assert_unchanged(&mut rx, &before, 10);
    // Exactly at the allowed skew it is accepted.
    let mut sp = spec(rx.f, 3, 30);
    sp.issued_at = NOW.as_millis() + skew;
    let bytes = rx.message(&s2, &sp);
    assert!(rx.deliver(&bytes).is_ok());
    assert_eq!(rx.count(), 30);
}

#[test]
fn delta_for_a_superseded_deployment_is_rejected_other_deployment() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    let v1 = FunctionId::from_deployment("resize", b"deployment v1");
    let v2 = FunctionId::from_deployment("resize", b"deployment v2");
    assert_eq!(v1.name, v2.name);
    rx.accept(&s2, &spec(v1, 1, 10));
    rx.accept(&s2, &spec(v2, 1, 7));
    rx.events();
    rx.engine.set_deployment(&rx.tenant, v2).expect("tenant served");
    assert_eq!(
        rx.events(),
        vec![Event::FunctionDropped {
            tenant: rx.tenant,
            function: v1,
            reason: DropReason::Superseded
        }]
    );
    assert!(rx.engine.profile(&rx.tenant, &v1).is_none());
    let before = rx.observe_fns(&[v1, v2]);
    let stale = rx.message(&s2, &spec(v1, 2, 20));
    assert_eq!(rx.deliver(&stale), Err(Rejection::OtherDeployment));
    assert_eq!(rx.observe_fns(&[v1, v2]), before);
    assert!(rx.events().is_empty());
    assert_eq!(rx.count_of(&v1), 0);
    assert_eq!(rx.count_of(&v2), 7);
    // The current deployment still takes deltas.
    rx.accept(&s2, &spec(v2, 2, 9));
    assert_eq!(rx.count_of(&v2), 9);
}
