//! Tenant isolation and confidentiality: what crosses the wire reveals nothing in
//! plaintext, and nothing signed, sealed or certified for one tenant changes another.

mod common;

use common::*;
use ignite::crypto::SigError;
use ignite::ids::name_hash;
use ignite::tenancy::{CertError, CredentialsError, MAX_EPOCHS, TenantId};
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Envelope, Limits, WireError};
use ignite::{
    Accepted, Config, Counter, CounterKey, Engine, Evidence, FunctionId, MethodId, MethodShape, NodeKey, Output, Peer,
    Rejection, Roles, TenantCredentials, TenantRoot, TenantSecrets, Tier, Timestamp, TopicId,
};
use std::collections::BTreeMap;

const NOW: Timestamp = Timestamp(T0.0 + 1_000);
const M: u32 = 7;

fn spec(f: FunctionId, seq: u32, value: u64) -> DeltaSpec {
    DeltaSpec::new(f, seq, vec![(inv(M), value)])
}

/// One tenant as seen by a test: root, secrets, id and topic.
struct Tenant {
    root: TenantRoot,
    secrets: TenantSecrets,
    id: TenantId,
    topic: TopicId,
}

impl Tenant {
    fn new(seed: u8) -> Tenant {
        let (root, secrets) = tenant(seed);
        let topic = wire::topic(&secrets);
        Tenant {
            id: root.id(),
            root,
            secrets,
            topic,
        }
    }

    fn creds(&self, node: u8) -> TenantCredentials {
        creds(&self.root, &self.secrets, node, Roles::ALL)
    }

    /// A valid message of node `node` of this tenant: `value` invocations of `M` at `seq`.
    fn message(&self, node: u8, f: FunctionId, seq: u32, value: u64) -> Vec<u8> {
        let c = self.creds(node);
        message(
            &self.root,
            &self.secrets,
            c.cert(),
            &node_key(node),
            &spec(f, seq, value),
        )
    }
}

/// What must not change in one tenant.
#[derive(Debug, PartialEq)]
struct Observed {
    counters: Option<BTreeMap<CounterKey, u64>>,
    functions: Vec<FunctionId>,
    evidence: Vec<Evidence>,
    banned: Vec<NodeKey>,
}

fn observe(e: &Engine, tenant: &TenantId, f: &FunctionId) -> Observed {
    Observed {
        counters: e.profile(tenant, f).map(|v| v.counters().clone()),
        functions: e.functions(tenant),
        evidence: e.evidence(tenant).to_vec(),
        banned: e.banned(tenant),
    }
}

fn count(e: &Engine, tenant: &TenantId, f: &FunctionId) -> u64 {
    e.profile(tenant, f)
        .map_or(0, |v| v.count(MethodId(M), Tier(0), Counter::Invocations))
}

fn applied_one() -> Result<Accepted, Rejection> {
    Ok(Accepted {
        deltas_applied: 1,
        ..Accepted::default()
    })
}

/// An engine serving tenant `a` (and `b` if given) as node 1, with baselines: node 2 of `a`
/// has 10 invocations of `f`, node 12 of `b` has 77.
fn serving(a: &Tenant, b: Option<&Tenant>, f: FunctionId) -> Engine {
    let mut e = engine(1, 1);
    let (_, topic) = e.join_tenant(T0, a.creds(1)).expect("join a");
    assert_eq!(topic, a.topic);
    assert_eq!(
        e.handle_message(NOW, Peer(2), Some(&a.topic), &a.message(2, f, 1, 10)),
        applied_one()
    );
    if let Some(b) = b {
        let (_, topic) = e.join_tenant(T0, b.creds(11)).expect("join b");
        assert_eq!(topic, b.topic);
        assert_eq!(
            e.handle_message(NOW, Peer(12), Some(&b.topic), &b.message(12, f, 1, 77)),
            applied_one()
        );
    }
    while e.poll_output().is_some() {}
    e
}

// ---------------------------------------------------------------------------------------
// Confidentiality on the wire
// ---------------------------------------------------------------------------------------

/// Distinctive method ids: their 4-byte and varint encodings cannot appear by chance.
const METHOD_A: u32 = 0x5A5A_1234;
const METHOD_B: u32 = 0x6B6B_4321;
/// Distinctive receiver type id.
const TYPE_ID: u32 = 0x7E7E_ABCD;
/// Distinctive back-edge count (engine `n` records `BACKEDGES + n`).
const BACKEDGES: u64 = 987_654_321;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn varint(v: u64) -> Vec<u8> {
    postcard::to_allocvec(&v).expect("encodes")
}

/// Three engines of one tenant, run by hand so that every message can be captured.
struct Net {
    engines: Vec<Engine>,
    /// Every message put on the wire, published or sent, with whether it was published.
    wire: Vec<(bool, Vec<u8>)>,
}

impl Net {
    /// Drains every engine and delivers until quiet; `lost(from, to)` drops a delivery.
    fn pump(&mut self, now: Timestamp, lost: &dyn Fn(usize, usize) -> bool) {
        loop {
            let mut queue: Vec<(usize, usize, Option<TopicId>, Vec<u8>)> = Vec::new();
            for i in 0..self.engines.len() {
                while let Some(out) = self.engines[i].poll_output() {
                    match out {
                        Output::Publish { topic, bytes } => {
                            self.wire.push((true, bytes.clone()));
                            for j in (0..self.engines.len()).filter(|j| *j != i) {
                                queue.push((i, j, Some(topic.clone()), bytes.clone()));
                            }
                        }
                        Output::Send { peer, bytes } => {
                            self.wire.push((false, bytes.clone()));
                            queue.push((i, peer.0 as usize, None, bytes));
                        }
                        _ => {}
                    }
                }
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, topic, bytes) in queue {
                if lost(from, to) {
                    continue;
                }
                let r = self.engines[to].handle_message(now, Peer(from as u64), topic.as_ref(), &bytes);
                assert!(r.is_ok(), "honest message rejected: {r:?}");
            }
        }
    }
}

#[test]
fn bytes_on_the_wire_contain_no_plaintext() {
    let (root, secrets) = tenant(1);
    let f1 = FunctionId::from_deployment("thumbnail-resizer", b"thumbnail deployment bytes");
    let f2 = FunctionId::from_deployment("invoice-renderer", b"invoice deployment bytes");
    let shape = MethodShape {
        branch_sites: 0,
        call_sites: 1,
    };
    let mut engines = Vec::new();
    let mut all_creds = Vec::new();
    let mut recorders = Vec::new();
    for n in 0..3u8 {
        let c = creds(&root, &secrets, 20 + n, Roles::ALL);
        let mut e = engine(u64::from(n), 1);
        let (rec, topic) = e.join_tenant(T0, c.clone()).expect("join");
        assert_eq!(topic, wire::topic(&secrets));
        engines.push(e);
        all_creds.push(c);
        recorders.push(rec);
    }
    let topic = wire::topic(&secrets);
    for (i, e) in engines.iter_mut().enumerate() {
        for j in (0..3u64).filter(|j| *j != i as u64) {
            e.peer_joined(Peer(j), &topic);
        }
    }
    // Long enough after the certificates' start that the increment caps keep every count.
    let t1 = T0.plus_ms(600_000);
    for (n, rec) in recorders.iter().enumerate() {
        for (f, m) in [(f1, METHOD_A), (f2, METHOD_B)] {
            let p = rec.method(f, MethodId(m), Tier(0), shape).expect("register");
            for _ in 0..300 {
                p.record_invocation();
            }
            p.record_backedges(BACKEDGES + n as u64);
            p.record_receiver(0, TYPE_ID);
        }
    }
    let mut net = Net {
        engines,
        wire: Vec::new(),
    };
    for e in &mut net.engines {
        e.flush(t1);
    }
    // Engine 0's publication is lost on its way to engine 2: anti-entropy must carry it,
    // point to point, so that sent messages are checked too.
    net.pump(t1, &|from, to| (from, to) == (0, 2));
    for round in 1..=12u64 {
        let t = t1.plus_ms(round * Config::default().sync_interval_ms);
        for e in &mut net.engines {
            e.handle_timeout(t);
        }
        net.pump(t, &|_, _| false);
    }

    // The data did travel: every engine holds every node's counts.
    let tenant_id = root.id();
    let total: u64 = (0..3).map(|n| BACKEDGES + n).sum();
    for e in &net.engines {
        for (f, m) in [(f1, METHOD_A), (f2, METHOD_B)] {
            let view = e.profile(&tenant_id, &f).expect("profile");
            assert_eq!(view.count(MethodId(m), Tier(0), Counter::Backedges), total);
            assert_eq!(view.count(MethodId(m), Tier(0), Counter::Invocations), 900);
            assert_eq!(view.receivers(MethodId(m), Tier(0), 0).0, vec![(TYPE_ID, 3)]);
        }
    }
    assert!(net.wire.iter().any(|(published, _)| *published));
    assert!(
        net.wire.iter().any(|(published, _)| !*published),
        "anti-entropy sent messages"
    );

    // What must never appear in clear.
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for m in [METHOD_A, METHOD_B, TYPE_ID] {
        needles.push((format!("id {m:#x} LE"), m.to_le_bytes().to_vec()));
        needles.push((format!("id {m:#x} varint"), varint(u64::from(m))));
    }
    for n in 0..3 {
        let v = BACKEDGES + n;
        needles.push((format!("count {v} LE"), v.to_le_bytes().to_vec()));
        needles.push((format!("count {v} varint"), varint(v)));
    }
    needles.push(("merged count varint".into(), varint(total)));
    for (n, c) in all_creds.iter().enumerate() {
        needles.push((format!("node {n} key"), c.node().0.to_vec()));
        needles.push((
            format!("node {n} cert signature"),
            c.cert().signature.to_bytes().to_vec(),
        ));
    }
    needles.push(("tenant root key".into(), root.id().0.to_vec()));
    needles.push(("topic secret".into(), secrets.topic_secret.to_vec()));
    needles.push(("group key".into(), secrets.current().1.to_vec()));
    for (name, f) in [("thumbnail-resizer", f1), ("invoice-renderer", f2)] {
        assert_eq!(f.name, name_hash(name));
        needles.push((format!("{name} name hash"), f.name.to_vec()));
        needles.push((format!("{name} code hash"), f.code.to_vec()));
        needles.push((format!("{name} name"), name.as_bytes().to_vec()));
    }

    // The needles are right: a plaintext body of the same content holds every varint and key.
    let c0 = &all_creds[0];
    let mut entries = vec![
        (inv(METHOD_A), 300),
        (
            CounterKey {
                method: MethodId(METHOD_A),
                tier: Tier(0),
                counter: Counter::Backedges,
            },
            BACKEDGES,
        ),
        (
            CounterKey {
                method: MethodId(METHOD_A),
                tier: Tier(0),
                counter: Counter::Receiver {
                    site: 0,
                    type_id: TYPE_ID,
                },
            },
            1,
        ),
    ];
    entries.sort();
    let mut sp = DeltaSpec::new(f1, 1, entries);
    sp.group = ignite::GroupId::of(MethodId(METHOD_A), Config::default().groups);
    let d = sign_delta(&root, c0.cert(), &node_key(20), &sp);
    let plain = Body::Deltas(DeltaBatch {
        certs: vec![*c0.cert()],
        functions: vec![f1],
        deltas: vec![DeltaWire {
            signer: 0,
            function: 0,
            incarnation: sp.incarnation,
            group: sp.group,
            seq: 1,
            issued_at: d.issued_at,
            full: d.full,
            entries: &d.entries,
            signature: d.signature,
        }],
    })
    .encode();
    for must in [
        varint(u64::from(METHOD_A)),
        varint(u64::from(TYPE_ID)),
        varint(BACKEDGES),
        c0.node().0.to_vec(),
        root.id().0.to_vec(),
        f1.name.to_vec(),
        f1.code.to_vec(),
    ] {
        assert!(contains(&plain, &must), "needle {must:02x?} missing from plaintext");
    }

    assert!(net.wire.len() >= 3);
    for (i, (published, bytes)) in net.wire.iter().enumerate() {
        for (what, needle) in &needles {
            assert!(
                !contains(bytes, needle),
                "message {i} (published: {published}) reveals {what}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cross-tenant delivery
// ---------------------------------------------------------------------------------------

#[test]
fn message_of_a_tenant_not_served_is_rejected_unknown_tenant() {
    let a = Tenant::new(1);
    let b = Tenant::new(2);
    let f = function("resize");
    let mut e = serving(&a, None, f);
    let before = observe(&e, &a.id, &f);
    let from_b = b.message(12, f, 1, 1_000);
    assert_eq!(
        e.handle_message(NOW, Peer(12), Some(&a.topic), &from_b),
        Err(Rejection::Wire(WireError::UnknownTenant))
    );
    assert_eq!(
        e.handle_message(NOW, Peer(12), None, &from_b),
        Err(Rejection::Wire(WireError::UnknownTenant))
    );
    assert_eq!(observe(&e, &a.id, &f), before);
    assert_eq!(count(&e, &a.id, &f), 10);
    assert!(e.poll_output().is_none());
}

#[test]
fn message_on_another_tenants_topic_is_rejected_wrong_topic() {
    let a = Tenant::new(1);
    let b = Tenant::new(2);
    let f = function("resize");
    let mut e = serving(&a, Some(&b), f);
    let before_a = observe(&e, &a.id, &f);
    let before_b = observe(&e, &b.id, &f);
    assert_ne!(before_a, before_b, "same function, separate state per tenant");
    let from_b = b.message(12, f, 2, 1_000);
    assert_eq!(
        e.handle_message(NOW, Peer(12), Some(&a.topic), &from_b),
        Err(Rejection::Wire(WireError::WrongTopic))
    );
    assert_eq!(observe(&e, &a.id, &f), before_a);
    assert_eq!(observe(&e, &b.id, &f), before_b);
    assert!(e.poll_output().is_none());
    // On its own topic the same message is accepted, and changes only B.
    assert_eq!(e.handle_message(NOW, Peer(12), Some(&b.topic), &from_b), applied_one());
    assert_eq!(count(&e, &b.id, &f), 1_000);
    assert_eq!(observe(&e, &a.id, &f), before_a);
    assert_eq!(count(&e, &a.id, &f), 10);
}

#[test]
fn delta_certified_by_another_root_sealed_with_this_tenants_key_is_rejected_wrong_root() {
    // An insider of both tenants: it holds A's secrets and a certificate from B's root.
    let a = Tenant::new(1);
    let b = Tenant::new(2);
    let f = function("resize");
    let mut e = serving(&a, Some(&b), f);
    let before_a = observe(&e, &a.id, &f);
    let before_b = observe(&e, &b.id, &f);
    let b_cert = *b.creds(15).cert();
    // Signed as a delta of B (as it would be honestly) and as a delta of A.
    for signed_for in [&b.root, &a.root] {
        let bytes = message(signed_for, &a.secrets, &b_cert, &node_key(15), &spec(f, 1, 1_000));
        assert_eq!(
            e.handle_message(NOW, Peer(15), Some(&a.topic), &bytes),
            Err(Rejection::Cert(CertError::WrongRoot))
        );
        assert_eq!(observe(&e, &a.id, &f), before_a);
        assert_eq!(observe(&e, &b.id, &f), before_b);
        assert!(e.poll_output().is_none());
    }
    // The same signed delta sealed for B, on B's topic, is a valid delta of B.
    let bytes = message(&b.root, &b.secrets, &b_cert, &node_key(15), &spec(f, 1, 1_000));
    assert_eq!(e.handle_message(NOW, Peer(15), Some(&b.topic), &bytes), applied_one());
    assert_eq!(count(&e, &b.id, &f), 77 + 1_000);
    assert_eq!(observe(&e, &a.id, &f), before_a);
}

#[test]
fn delta_signed_for_another_tenant_does_not_verify_under_this_tenants_certificate() {
    // A node whose one key is certified by both roots replays its B delta into A, with its
    // A certificate: the signature covers B's root key, so it does not verify in A.
    let a = Tenant::new(1);
    let b = Tenant::new(2);
    let f = function("resize");
    let mut e = serving(&a, Some(&b), f);
    let before_a = observe(&e, &a.id, &f);
    let a_cert = *a.creds(16).cert();
    let b_cert = *b.creds(16).cert();
    assert_eq!(a_cert.cert.node, b_cert.cert.node, "one key, two tenants");
    let sp = spec(f, 1, 1_000);
    let signed_in_b = sign_delta(&b.root, &b_cert, &node_key(16), &sp);
    let bytes = seal_delta(&a.secrets, &a_cert, &sp, &signed_in_b);
    assert_eq!(
        e.handle_message(NOW, Peer(16), Some(&a.topic), &bytes),
        Err(Rejection::Signature(SigError::Invalid))
    );
    assert_eq!(observe(&e, &a.id, &f), before_a);
    assert_eq!(count(&e, &a.id, &f), 10);
}

#[test]
fn topic_names_and_tenant_tags_differ_and_reveal_no_root_key() {
    let a = Tenant::new(1);
    let b = Tenant::new(2);
    assert_ne!(a.topic, b.topic);
    let tag_a = wire::tenant_tag(&a.secrets);
    let tag_b = wire::tenant_tag(&b.secrets);
    assert_ne!(tag_a, tag_b);
    for t in [&a, &b] {
        let hex: String = t.id.0.iter().map(|x| format!("{x:02x}")).collect();
        assert!(!t.topic.0.contains(&hex), "topic holds the root key");
        assert!(!t.topic.0.contains(&hex[..16]), "topic holds a prefix of the root key");
        let tag = wire::tenant_tag(&t.secrets);
        assert!(!contains(&t.id.0, &tag.0[..8]));
        // The envelope carries exactly the opaque tag.
        let msg = t.message(2, function("resize"), 1, 1);
        let env = Envelope::decode(&msg, &Limits::default()).expect("envelope");
        assert_eq!(env.tenant, tag);
    }
    // Topic and tag are functions of the topic secret alone: another root with the same
    // secrets gets the same ones, so they carry nothing of the root key.
    let other_root = TenantRoot::from_secret([77; 32]);
    let mut e = engine(1, 1);
    let (_, topic) = e
        .join_tenant(T0, creds(&other_root, &a.secrets, 1, Roles::ALL))
        .expect("join");
    assert_eq!(topic, a.topic);
    assert_ne!(other_root.id(), a.id);
}

// ---------------------------------------------------------------------------------------
// Credentials and group keys
// ---------------------------------------------------------------------------------------

#[test]
fn credentials_round_trip_through_bytes() {
    let a = Tenant::new(1);
    let c = a.creds(2);
    let bytes = c.to_bytes();
    let back = TenantCredentials::from_bytes(&bytes).expect("decodes");
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.cert(), c.cert());
    assert_eq!(back.node(), c.node());
    assert_eq!(back.tenant(), a.id);
    assert_eq!(back.secrets(), c.secrets());

    // The restored credentials work: an engine using them publishes deltas a peer accepts.
    let f = function("resize");
    let mut rx = serving(&a, None, f);
    let mut tx = engine(2, 7);
    let (rec, _) = tx.join_tenant(T0, back).expect("join");
    let p = rec
        .method(f, MethodId(M), Tier(0), MethodShape::default())
        .expect("register");
    for _ in 0..5 {
        p.record_invocation();
    }
    tx.flush(NOW);
    let mut published = 0;
    while let Some(out) = tx.poll_output() {
        if let Output::Publish { topic, bytes } = out {
            assert_eq!(rx.handle_message(NOW, Peer(2), Some(&topic), &bytes), applied_one());
            published += 1;
        }
    }
    assert_eq!(published, 1);
    assert_eq!(count(&rx, &a.id, &f), 15);

    // A signing secret that does not match the certificate is refused.
    let secret = node_key(2).to_bytes();
    let at = bytes
        .windows(32)
        .position(|w| w == secret)
        .expect("the secret is in the bytes");
    let mut bad = bytes.clone();
    bad[at] ^= 1;
    assert!(matches!(
        TenantCredentials::from_bytes(&bad),
        Err(CredentialsError::CertMismatch)
    ));
    // Truncated bytes do not decode.
    assert!(matches!(
        TenantCredentials::from_bytes(&bytes[..bytes.len() / 2]),
        Err(CredentialsError::Decode(_))
    ));
}

#[test]
fn group_key_rotation_keeps_old_epochs_and_unrotated_engines_reject_the_new_one() {
    let a = Tenant::new(1);
    let f = function("resize");
    let sender = a.creds(2);
    let sp1 = spec(f, 2, 20);
    let old_epoch_msg = message(&a.root, &a.secrets, sender.cert(), &node_key(2), &sp1);

    let mut rotated_secrets = a.creds(2);
    rotated_secrets.rotate_group_key(1, [0xE1; 32]).expect("newer epoch");
    let new_epoch_msg = message(
        &a.root,
        rotated_secrets.secrets(),
        sender.cert(),
        &node_key(2),
        &spec(f, 3, 30),
    );
    let limits = Limits::default();
    assert_eq!(Envelope::decode(&old_epoch_msg, &limits).expect("env").epoch, 0);
    assert_eq!(Envelope::decode(&new_epoch_msg, &limits).expect("env").epoch, 1);

    // A rotated engine (its own credentials updated in place) opens both epochs.
    let mut rotated = serving(&a, None, f);
    let mut own = a.creds(1);
    own.rotate_group_key(1, [0xE1; 32]).expect("newer epoch");
    rotated.update_credentials(NOW, own).expect("same tenant and topic");
    assert_eq!(rotated.tenants().next().map(|(_, t)| t.clone()), Some(a.topic.clone()));
    assert_eq!(
        rotated.handle_message(NOW, Peer(2), Some(&a.topic), &old_epoch_msg),
        applied_one()
    );
    assert_eq!(
        rotated.handle_message(NOW, Peer(2), Some(&a.topic), &new_epoch_msg),
        applied_one()
    );
    assert_eq!(count(&rotated, &a.id, &f), 30);

    // An engine that has not rotated opens the old epoch and rejects the new one.
    let mut stale = serving(&a, None, f);
    assert_eq!(
        stale.handle_message(NOW, Peer(2), Some(&a.topic), &old_epoch_msg),
        applied_one()
    );
    let before = observe(&stale, &a.id, &f);
    assert_eq!(
        stale.handle_message(NOW, Peer(2), Some(&a.topic), &new_epoch_msg),
        Err(Rejection::Wire(WireError::UnknownEpoch(1)))
    );
    assert_eq!(observe(&stale, &a.id, &f), before);
    assert_eq!(count(&stale, &a.id, &f), 20);
}

#[test]
fn group_key_epochs_beyond_max_epochs_are_forgotten() {
    let a = Tenant::new(1);
    let f = function("resize");
    let sender = a.creds(2);
    let epoch0 = |seq, value| message(&a.root, &a.secrets, sender.cert(), &node_key(2), &spec(f, seq, value));
    let mut own = a.creds(1);
    let mut e = serving(&a, None, f);
    // Epochs 0..MAX_EPOCHS are all kept: epoch 0 still opens.
    for epoch in 1..MAX_EPOCHS as u32 {
        own.rotate_group_key(epoch, [epoch as u8; 32]).expect("newer epoch");
    }
    assert_eq!(own.secrets().group_keys.len(), MAX_EPOCHS);
    e.update_credentials(NOW, own.clone()).expect("update");
    assert_eq!(
        e.handle_message(NOW, Peer(2), Some(&a.topic), &epoch0(2, 20)),
        applied_one()
    );
    assert_eq!(count(&e, &a.id, &f), 20);
    // One more rotation forgets epoch 0.
    own.rotate_group_key(MAX_EPOCHS as u32, [0xAB; 32])
        .expect("newer epoch");
    assert_eq!(own.secrets().group_keys.len(), MAX_EPOCHS);
    assert!(!own.secrets().group_keys.contains_key(&0));
    e.update_credentials(NOW, own.clone()).expect("update");
    let before = observe(&e, &a.id, &f);
    assert_eq!(
        e.handle_message(NOW, Peer(2), Some(&a.topic), &epoch0(3, 30)),
        Err(Rejection::Wire(WireError::UnknownEpoch(0)))
    );
    assert_eq!(observe(&e, &a.id, &f), before);
    assert_eq!(count(&e, &a.id, &f), 20);
    // Epochs must increase.
    assert!(matches!(
        own.rotate_group_key(2, [0; 32]),
        Err(CredentialsError::EpochNotNewer { new: 2, current: 4 })
    ));
}
