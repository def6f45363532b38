//! Every forged, stale, replayed, hostile or malformed message is refused with its exact
//! typed reason, and the tenant's merged state (counters, evidence, bans) does not change.
//!
//! Messages are built by hand from real signed and sealed bytes (see `tests/common`), and
//! fed to a real engine through `Engine::handle_message`.

mod common;

use common::*;
use curve25519_dalek::Scalar;
use ed25519_dalek::{SigningKey, Verifier, VerifyingKey};
use ignite::crypto::{self, BatchItem, SigBytes, SigError, domain};
use ignite::profile::{CapConfig, Evidence};
use ignite::tenancy::{CertError, NodeCert, Revocation, SignedCert, SignedRevocation, TenantId};
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Envelope, Limits, Sealer, WireError};
use ignite::{
    Accepted, Config, Counter, CounterKey, DropReason, Engine, Event, FunctionId, GroupId, Incarnation, Incoming,
    MethodId, MethodShape, NodeKey, Output, Peer, Rejection, Roles, TenantCredentials, TenantRoot, TenantSecrets,
    Thresholds, Tier, Timestamp, TopicId,
};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;

/// Receive time used unless a test needs another one.
const NOW: Timestamp = Timestamp(T0.0 + 1_000);
/// Thresholds never reached, so that no `ThresholdReached` event mixes with the ones checked.
const NO_THRESHOLD: Thresholds = Thresholds {
    tier1: 1 << 50,
    tier2: 1 << 50,
};
/// The method whose invocations the tests count.
const M: u32 = 7;

/// The identity point encoding (y = 1): a point of order 1, the canonical weak key / small-order R.
fn identity_point() -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
}

/// The encoding of the point of order 2, (0, -1): y = p - 1.
fn order_two_point() -> [u8; 32] {
    let mut p = [0xff; 32];
    p[0] = 0xec;
    p[31] = 0x7f;
    p
}

fn spec(f: FunctionId, seq: u32, value: u64) -> DeltaSpec {
    DeltaSpec::new(f, seq, vec![(inv(M), value)])
}

/// A member node of the receiver's tenant: its certificate and signing key.
struct Sender {
    cert: SignedCert,
    key: SigningKey,
}

impl Sender {
    fn node(&self) -> NodeKey {
        self.cert.cert.node
    }
}

/// What must not change when a message is rejected.
#[derive(Debug, PartialEq)]
struct Observed {
    counters: Vec<Option<BTreeMap<CounterKey, u64>>>,
    functions: Vec<FunctionId>,
    evidence: Vec<Evidence>,
    banned: Vec<NodeKey>,
}

/// A receiving engine serving tenant 1 as node 1.
struct Rx {
    root: TenantRoot,
    secrets: TenantSecrets,
    engine: Engine,
    topic: TopicId,
    tenant: TenantId,
    f: FunctionId,
}

impl Rx {
    fn new() -> Rx {
        Rx::with_config(Config {
            seed: 1,
            ..Config::default()
        })
    }

    fn with_config(config: Config) -> Rx {
        let (root, secrets) = tenant(1);
        let mut engine = Engine::new(config, Incarnation(1)).expect("valid config");
        let (_recorder, topic) = engine
            .join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL))
            .expect("join");
        let tenant = root.id();
        Rx {
            root,
            secrets,
            engine,
            topic,
            tenant,
            f: function("resize"),
        }
    }

    /// A member certified by this tenant's root with every role, valid for a day from T0.
    fn sender(&self, node: u8) -> Sender {
        let c = creds(&self.root, &self.secrets, node, Roles::ALL);
        Sender {
            cert: *c.cert(),
            key: node_key(node),
        }
    }

    fn message(&self, s: &Sender, spec: &DeltaSpec) -> Vec<u8> {
        message(&self.root, &self.secrets, &s.cert, &s.key, spec)
    }

    fn deliver(&mut self, bytes: &[u8]) -> Result<Accepted, Rejection> {
        self.deliver_at(NOW, bytes)
    }

    fn deliver_at(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Accepted, Rejection> {
        self.engine.handle_message(now, Peer(2), Some(&self.topic), bytes)
    }

    /// Sends a valid delta of `s` and checks that it was applied.
    fn accept(&mut self, s: &Sender, spec: &DeltaSpec) {
        let bytes = self.message(s, spec);
        assert_eq!(
            self.deliver(&bytes),
            Ok(Accepted {
                deltas_applied: 1,
                ..Accepted::default()
            })
        );
    }

    /// Merged invocations of method `M` of the default function.
    fn count(&self) -> u64 {
        self.count_of(&self.f)
    }

    fn count_of(&self, f: &FunctionId) -> u64 {
        self.engine
            .profile(&self.tenant, f)
            .map_or(0, |v| v.count(MethodId(M), Tier(0), Counter::Invocations))
    }

    fn observe(&self) -> Observed {
        self.observe_fns(&[self.f])
    }

    fn observe_fns(&self, fns: &[FunctionId]) -> Observed {
        Observed {
            counters: fns
                .iter()
                .map(|f| self.engine.profile(&self.tenant, f).map(|v| v.counters().clone()))
                .collect(),
            functions: self.engine.functions(&self.tenant),
            evidence: self.engine.evidence(&self.tenant).to_vec(),
            banned: self.engine.banned(&self.tenant),
        }
    }

    /// Drains every output; returns the events and the published messages.
    fn drain(&mut self) -> (Vec<Event>, Vec<(TopicId, Vec<u8>)>) {
        let mut events = Vec::new();
        let mut published = Vec::new();
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Event(e) => events.push(e),
                Output::Publish { topic, bytes } => published.push((topic, bytes)),
                _ => {}
            }
        }
        (events, published)
    }

    fn events(&mut self) -> Vec<Event> {
        self.drain().0
    }

    /// Sets up the usual baseline: node 2 has 10 invocations accepted at seq 1.
    fn baseline() -> (Rx, Sender) {
        let mut rx = Rx::new();
        let s2 = rx.sender(2);
        let f = rx.f;
        rx.accept(&s2, &spec(f, 1, 10));
        assert_eq!(rx.count(), 10);
        rx.events();
        (rx, s2)
    }
}

/// Asserts that a rejected message changed nothing and emitted no event.
fn assert_unchanged(rx: &mut Rx, before: &Observed, count: u64) {
    assert_eq!(&rx.observe(), before, "state changed by a rejected message");
    assert_eq!(rx.count(), count);
    assert_eq!(rx.events(), Vec::<Event>::new(), "a rejected message emitted events");
}

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
        entries,
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
        entries,
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
// Replay, reordering, equivocation, restarts
// ---------------------------------------------------------------------------------------

/// The delta of `spec` signed by `key`, in a new envelope: the batch lists the certificate
/// twice and the delta refers to the second copy, so the plaintext (and the sealed bytes)
/// differ from [`message`]'s while the signed delta is the same.
fn reseal_with_cert_twice(
    secrets: &TenantSecrets,
    cert: &SignedCert,
    spec: &DeltaSpec,
    original: &[u8],
    root: &TenantRoot,
    key: &SigningKey,
) -> Vec<u8> {
    let d = sign_delta(root, cert, key, spec);
    let body = Body::Deltas(DeltaBatch {
        certs: vec![*cert, *cert],
        functions: vec![spec.function],
        deltas: vec![DeltaWire {
            signer: 1,
            function: 0,
            incarnation: spec.incarnation,
            group: spec.group,
            seq: d.seq,
            issued_at: d.issued_at,
            full: d.full,
            entries: &d.entries,
            signature: d.signature,
        }],
    });
    let bytes = Sealer::new(secrets).seal(&body.encode());
    assert_ne!(bytes, original, "a new envelope");
    bytes
}

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
    altered.second.entries = wire::encode_entries(&[(inv(M), 12)]);
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
        Incoming {
            from: Peer(2),
            topic: Some(&rx.topic),
            bytes: &conflicting,
        },
        Incoming {
            from: Peer(2),
            topic: Some(&rx.topic),
            bytes: &next,
        },
    ];
    // Documented as equivalent to handle_message for each message in order.
    let results = rx.engine.handle_messages(NOW, &incoming);
    assert_eq!(results, vec![Err(Rejection::Equivocation), Err(Rejection::Banned)]);
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
