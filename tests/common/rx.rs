//! A receiver engine and the helpers the rejection tests share: build real signed and sealed
//! messages from hand-chosen fields, deliver them, and observe every part of the state a
//! rejected message must leave unchanged.
#![allow(dead_code, unused_imports)]

use super::*;
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
pub const NOW: Timestamp = Timestamp(T0.0 + 1_000);
/// Thresholds never reached, so that no `ThresholdReached` event mixes with the ones checked.
pub const NO_THRESHOLD: Thresholds = Thresholds {
    tier1: 1 << 50,
    tier2: 1 << 50,
};
/// The method whose invocations the tests count.
pub const M: u32 = 7;

/// The identity point encoding (y = 1): a point of order 1, the canonical weak key / small-order R.
pub fn identity_point() -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
}

/// The encoding of the point of order 2, (0, -1): y = p - 1.
pub fn order_two_point() -> [u8; 32] {
    let mut p = [0xff; 32];
    p[0] = 0xec;
    p[31] = 0x7f;
    p
}

pub fn spec(f: FunctionId, seq: u32, value: u64) -> DeltaSpec {
    DeltaSpec::new(f, seq, vec![(inv(M), value)])
}

/// A member node of the receiver's tenant: its certificate and signing key.
pub struct Sender {
    pub cert: SignedCert,
    pub key: SigningKey,
}

impl Sender {
    pub fn node(&self) -> NodeKey {
        self.cert.cert.node
    }
}

/// What must not change when a message is rejected.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub counters: Vec<Option<BTreeMap<CounterKey, u64>>>,
    pub functions: Vec<FunctionId>,
    pub evidence: Vec<Evidence>,
    pub banned: Vec<NodeKey>,
}

/// A receiving engine serving tenant 1 as node 1.
pub struct Rx {
    pub root: TenantRoot,
    pub secrets: TenantSecrets,
    pub engine: Engine,
    pub topic: TopicId,
    pub tenant: TenantId,
    pub f: FunctionId,
}

impl Rx {
    pub fn new() -> Rx {
        Rx::with_config(Config {
            seed: 1,
            ..Config::default()
        })
    }

    pub fn with_config(config: Config) -> Rx {
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
    pub fn sender(&self, node: u8) -> Sender {
        let c = creds(&self.root, &self.secrets, node, Roles::ALL);
        Sender {
            cert: *c.cert(),
            key: node_key(node),
        }
    }

    pub fn message(&self, s: &Sender, spec: &DeltaSpec) -> Vec<u8> {
        message(&self.root, &self.secrets, &s.cert, &s.key, spec)
    }

    pub fn deliver(&mut self, bytes: &[u8]) -> Result<Accepted, Rejection> {
        self.deliver_at(NOW, bytes)
    }

    pub fn deliver_at(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Accepted, Rejection> {
        self.engine.handle_message(now, Peer(2), Some(&self.topic), bytes)
    }

    /// Sends a valid delta of `s` and checks that it was applied.
    pub fn accept(&mut self, s: &Sender, spec: &DeltaSpec) {
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
    pub fn count(&self) -> u64 {
        self.count_of(&self.f)
    }

    pub fn count_of(&self, f: &FunctionId) -> u64 {
        self.engine
            .profile(&self.tenant, f)
            .map_or(0, |v| v.count(MethodId(M), Tier(0), Counter::Invocations))
    }

    pub fn observe(&self) -> Observed {
        self.observe_fns(&[self.f])
    }

    pub fn observe_fns(&self, fns: &[FunctionId]) -> Observed {
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
    pub fn drain(&mut self) -> (Vec<Event>, Vec<(TopicId, Vec<u8>)>) {
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

    pub fn events(&mut self) -> Vec<Event> {
        self.drain().0
    }

    /// Sets up the usual baseline: node 2 has 10 invocations accepted at seq 1.
    pub fn baseline() -> (Rx, Sender) {
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
pub fn assert_unchanged(rx: &mut Rx, before: &Observed, count: u64) {
    assert_eq!(&rx.observe(), before, "state changed by a rejected message");
    assert_eq!(rx.count(), count);
    assert_eq!(rx.events(), Vec::<Event>::new(), "a rejected message emitted events");
}

/// The delta of `spec` signed by `key`, in a new envelope: the batch lists the certificate
/// twice and the delta refers to the second copy, so the plaintext (and the sealed bytes)
/// differ from [`message`]'s while the signed delta is the same.
pub fn reseal_with_cert_twice(
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
