//! Signature checks: forged, malleated, weak-key and small-order signatures are refused, and a
//! signature gets the same verdict alone and in a batch.
//!
//! Messages are built by hand from real signed and sealed bytes (see `tests/common`) and fed
//! to a real engine through `Engine::handle_message`; each refusal has its exact typed reason
//! and leaves the tenant's merged state (counters, evidence, bans) unchanged.

mod common;

use common::rx::*;
use common::*;
use curve25519_dalek::Scalar;
use ed25519_dalek::{SigningKey, Verifier, VerifyingKey};
use ignite::crypto::{self, BatchItem, SigBytes, SigError};
use ignite::tenancy::CertError;
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Sealer};
use ignite::{NodeKey, Rejection, Roles};
use sha2::{Digest, Sha512};

// ---------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------

#[test]
fn forged_signature_copied_from_another_message_is_rejected_invalid() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let other = sign_delta(&rx.root, &s2.cert, &s2.key, &spec(rx.f, 1, 10));
    let sp = spec(rx.f, 2, 1_000);
    let mut forged = sign_delta(&rx.root, &s2.cert, &s2.key, &sp);
    forged.signature = other.signature;
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn forged_signature_by_another_member_key_is_rejected_invalid() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    // Node 3 (a member) signs a delta and attaches node 2's certificate.
    let sp = spec(rx.f, 2, 1_000);
    let forged = sign_delta(&rx.root, &s2.cert, &node_key(3), &sp);
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);
}

#[test]
fn forged_signature_garbage_bytes_are_rejected() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    let sp = spec(rx.f, 2, 1_000);
    let mut forged = sign_delta(&rx.root, &s2.cert, &s2.key, &sp);

    // Garbage bytes: the R half ([0x55; 32]) happens to decode to a point of large order, so
    // the signature is well formed and simply does not verify.
    forged.signature = garbage_sig();
    assert_eq!(crypto::check_r(&forged.signature), Ok(()));
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);

    // A genuine R with a garbage S is well formed and simply does not verify.
    let genuine = sign_delta(&rx.root, &s2.cert, &s2.key, &sp);
    forged.signature = ignite::crypto::SigBytes(genuine.signature.0, [0x11; 32]);
    assert_eq!(crypto::check_r(&forged.signature), Ok(()));
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);

    // Garbage whose R half is not a curve point at all: refused up front, reported with
    // small-order R ("R of small order or not a point").
    let not_a_point = (2u8..)
        .map(|b| {
            let mut r = [0u8; 32];
            r[0] = b;
            r
        })
        .find(|r| VerifyingKey::from_bytes(r).is_err())
        .expect("half of all y values are not on the curve");
    forged.signature = SigBytes(not_a_point, [0x11; 32]);
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::SmallOrderR)));
    assert_unchanged(&mut rx, &before, 10);

    // The genuine R with a flipped bit in S: a well-formed but wrong signature.
    let genuine = sign_delta(&rx.root, &s2.cert, &s2.key, &sp).signature;
    forged.signature = SigBytes(genuine.0, genuine.1);
    forged.signature.1[0] ^= 1;
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);
}

/// `s + ℓ` (the group order) as 32 little-endian bytes: the classic malleated signature.
fn add_group_order(s: [u8; 32]) -> [u8; 32] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

#[test]
fn malleated_signature_of_an_accepted_delta_is_rejected_and_frames_nobody() {
    // A third party re-encodes an honest signature as (R, S + ℓ). Accepting it would make the
    // same (lane, seq) appear with a different body: an honest node framed for equivocation.
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    let sp = spec(rx.f, 1, 10);
    let honest = sign_delta(&rx.root, &s2.cert, &s2.key, &sp);
    rx.accept(&s2, &sp);
    rx.events();
    let before = rx.observe();
    let mut malleated = honest.clone();
    malleated.signature.1 = add_group_order(honest.signature.1);
    let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &malleated);
    assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::Invalid)));
    assert_unchanged(&mut rx, &before, 10);
    assert!(rx.engine.banned(&rx.tenant).is_empty());
}

#[test]
fn small_order_r_in_delta_signature_is_rejected() {
    let (mut rx, s2) = Rx::baseline();
    let before = rx.observe();
    for (seq, r) in [(2, identity_point()), (3, order_two_point())] {
        let sp = spec(rx.f, seq, 1_000);
        let mut forged = sign_delta(&rx.root, &s2.cert, &s2.key, &sp);
        forged.signature.0 = r;
        let bytes = seal_delta(&rx.secrets, &s2.cert, &sp, &forged);
        assert_eq!(rx.deliver(&bytes), Err(Rejection::Signature(SigError::SmallOrderR)));
        assert_unchanged(&mut rx, &before, 10);
    }
}

#[test]
fn weak_node_key_certificate_is_rejected_weak_key() {
    let mut rx = Rx::new();
    let s3 = rx.sender(3);
    rx.accept(&s3, &spec(rx.f, 1, 10));
    rx.events();
    let before = rx.observe();

    // The root validly certifies the identity point as a node key (a careless issuer).
    let weak = NodeKey(identity_point());
    let cert = rx.root.issue(weak, Roles::ALL, T0, T0.plus_ms(DAY), 99);
    // Under a small-order key anyone can "sign" anything: with A = identity,
    // [s]B = R + [k]A holds for R = B and s = 1, whatever the message.
    let sp = spec(rx.f, 1, 1_000_000);
    let entries = wire::encode_entries(&sp.entries);
    let signed = wire::signed_delta_bytes(
        &rx.tenant.0,
        &weak.0,
        &sp.function,
        sp.incarnation,
        sp.group,
        sp.seq,
        sp.issued_at,
        sp.full,
        &entries,
    );
    let mut basepoint = [0x66u8; 32];
    basepoint[0] = 0x58;
    let mut one = [0u8; 32];
    one[0] = 1;
    let forgery = SigBytes(basepoint, one);
    // A lax (non-strict) verifier accepts the forgery: the attack is real.
    let lax = VerifyingKey::from_bytes(&weak.0).expect("identity decodes");
    assert!(
        lax.verify(&signed, &ed25519_dalek::Signature::from_bytes(&forgery.to_bytes()))
            .is_ok()
    );
    let delta = ignite::profile::StoredDelta {
        seq: sp.seq,
        issued_at: sp.issued_at,
        full: sp.full,
        entries: entries.into(),
        signature: forgery,
    };
    let bytes = seal_delta(&rx.secrets, &cert, &sp, &delta);
    assert_eq!(
        rx.deliver(&bytes),
        Err(Rejection::Cert(CertError::Signature(SigError::WeakKey)))
    );
    assert_unchanged(&mut rx, &before, 10);
}

/// The encoding of `P + T2`, with `T2 = (0, -1)` the point of order two.
fn add_order_two(point: [u8; 32]) -> [u8; 32] {
    let p = curve25519_dalek::edwards::CompressedEdwardsY(point)
        .decompress()
        .expect("a point");
    (p + curve25519_dalek::constants::EIGHT_TORSION[4])
        .compress()
        .to_bytes()
}

/// Signs `msg` (domain included) with the key of `node`, using the nonce key derived from
/// `nonce` for R; if `torsion`, R is replaced by R + T2 (T2 the point of order two), a
/// "mixed-order" R that is not itself of small order. Such a signature fails strict single
/// verification and passes a cofactorless batch whenever its random weight is even. Only
/// the holder of the key can make one.
fn hand_signature(node: u8, nonce: u8, msg: &[u8], torsion: bool) -> SigBytes {
    let a = node_key(node).to_scalar();
    let nonce_key = SigningKey::from_bytes(&[nonce; 32]);
    let r = nonce_key.to_scalar();
    let mut big_r = nonce_key.verifying_key().to_bytes();
    if torsion {
        big_r = add_order_two(big_r);
    }
    let public = node_key(node).verifying_key().to_bytes();
    let mut h = Sha512::new();
    for part in [&big_r[..], &public[..], msg] {
        h.update(part);
    }
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * a;
    SigBytes(big_r, s.to_bytes())
}

#[test]
fn torsioned_r_signature_gets_the_same_verdict_alone_and_in_a_batch() {
    let mut rx = Rx::new();
    let s2 = rx.sender(2);
    let s3 = rx.sender(3);
    let honest_spec = spec(rx.f, 1, 5);
    let honest = sign_delta(&rx.root, &s3.cert, &s3.key, &honest_spec);
    let honest_signed = wire::signed_delta_bytes(
        &rx.tenant.0,
        &s3.node().0,
        &rx.f,
        honest_spec.incarnation,
        honest_spec.group,
        1,
        honest_spec.issued_at,
        false,
        &honest.entries,
    );
    let sp = spec(rx.f, 1, 1_000);
    let entries = wire::encode_entries(&sp.entries);
    let signed = wire::signed_delta_bytes(
        &rx.tenant.0,
        &s2.node().0,
        &rx.f,
        sp.incarnation,
        sp.group,
        1,
        sp.issued_at,
        false,
        &entries,
    );
    // The hand-made signer is right: without torsion its signature verifies strictly.
    let plain = hand_signature(2, 200, &signed, false);
    assert_eq!(crypto::verify(&s2.node().0, &[], &signed, &plain), Ok(()));
    // A signature whose R has a torsion component: the cofactored rule accepts it, and it
    // must do so identically alone and in a batch (the cofactorless check of `verify_strict`
    // would refuse it alone and accept it in a batch about half of the time).
    for nonce in 0..64u8 {
        let sig = hand_signature(2, nonce, &signed, true);
        let alone = crypto::verify(&s2.node().0, &[], &signed, &sig);
        let items = [
            BatchItem {
                key: s3.node().0,
                signed: &honest_signed,
                sig: honest.signature,
            },
            BatchItem {
                key: s2.node().0,
                signed: &signed,
                sig,
            },
        ];
        let batched = crypto::verify_many(&items);
        assert_eq!(batched[1], alone, "nonce {nonce}");
        assert_eq!(batched[0], Ok(()));
    }
    let sig = hand_signature(2, 0, &signed, true);
    let forged = ignite::profile::StoredDelta {
        seq: 1,
        issued_at: sp.issued_at,
        full: false,
        entries: entries.into(),
        signature: sig,
    };
    // Both deltas in one message: batch-verified together.
    let body = Body::Deltas(DeltaBatch {
        certs: vec![s3.cert, s2.cert],
        functions: vec![rx.f],
        deltas: vec![
            DeltaWire {
                signer: 0,
                function: 0,
                incarnation: honest_spec.incarnation,
                group: honest_spec.group,
                seq: 1,
                issued_at: honest.issued_at,
                full: false,
                entries: &honest.entries,
                signature: honest.signature,
            },
            DeltaWire {
                signer: 1,
                function: 0,
                incarnation: sp.incarnation,
                group: sp.group,
                seq: 1,
                issued_at: forged.issued_at,
                full: false,
                entries: &forged.entries,
                signature: forged.signature,
            },
        ],
    });
    let bytes = Sealer::new(&rx.secrets).seal(&body.encode());
    // The engine's verdict on the batched message equals its verdict on each delta alone.
    let batched = rx.deliver(&bytes);
    let mut alone_rx = Rx::new();
    let a3 = alone_rx.sender(3);
    let a2 = alone_rx.sender(2);
    let honest_alone = seal_delta(&alone_rx.secrets, &a3.cert, &honest_spec, &honest);
    assert!(alone_rx.deliver(&honest_alone).is_ok());
    let forged_alone = seal_delta(&alone_rx.secrets, &a2.cert, &sp, &forged);
    let alone = alone_rx.deliver(&forged_alone);
    assert_eq!(batched.is_ok(), alone.is_ok(), "batched {batched:?} alone {alone:?}");
    assert_eq!(rx.count(), alone_rx.count());
    assert_eq!(
        rx.engine.profile(&rx.tenant, &rx.f).map(|v| v.counters().clone()),
        alone_rx
            .engine
            .profile(&alone_rx.tenant, &alone_rx.f)
            .map(|v| v.counters().clone())
    );
}
