//! One real engine receiving code, driven by hand: real signed manifests in real sealed
//! messages, and fake peers (played by the test) that answer its blob requests honestly or
//! not. Everything the engine sends point to point is opened and decoded like a peer would.

use super::code::classes;
use super::{DAY, T0, creds, function, tenant};
use ignite::code::{Assumption, CodeConfig, HardwareClass, Signed};
use ignite::wire::{Body, Envelope, Limits, Sealer};
use ignite::{
    Accepted, ClassId, CodeKey, Config, Engine, Event, Incarnation, Install, Manifest, MethodId, Output, Peer, Refusal,
    Rejection, Roles, TenantCredentials, TenantId, TenantRoot, TenantSecrets, Tier, Timestamp, TopicId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::VecDeque;

/// Receive time of the tests (the certificates are valid from `T0` for a day).
pub const NOW: Timestamp = Timestamp(T0.0 + 60_000);
/// Bytes per blob chunk: small, so that blobs of a few hundred bytes take several chunks.
pub const CHUNK: usize = 256;
/// The peer that relays manifests (and is asked first for their blobs).
pub const RELAY: Peer = Peer(2);
/// Another peer of the tenant.
pub const OTHER: Peer = Peer(3);
/// The peer probing the blob store.
const PROBE: Peer = Peer(99);

/// A point-to-point message of the engine, as the peer receiving it decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A request for one chunk of a blob.
    Want { request: u64, hash: [u8; 32], chunk: u32 },
    /// One chunk of a blob (the engine serving its store).
    Chunk {
        request: u64,
        hash: [u8; 32],
        chunk: u32,
        size: u64,
        data: Vec<u8>,
    },
    /// The engine does not hold a blob.
    Missing { request: u64, hash: [u8; 32] },
    /// Anti-entropy and the rest.
    Other,
}

/// Opens and decodes a sealed message of a tenant. Panics on anything a peer could not read.
pub fn open(sealer: &Sealer, bytes: &[u8]) -> Sent {
    let limits = Limits::default();
    let env = Envelope::decode(bytes, &limits).expect("the engine sends valid envelopes");
    let plain = sealer.open(&env).expect("sealed with the tenant's key");
    match Body::decode(&plain, &limits).expect("the engine sends valid bodies") {
        Body::BlobWant { request, hash, chunk } => Sent::Want { request, hash, chunk },
        Body::BlobChunk {
            request,
            hash,
            chunk,
            size,
            data,
        } => Sent::Chunk {
            request,
            hash,
            chunk,
            size,
            data: data.to_vec(),
        },
        Body::BlobMissing { request, hash } => Sent::Missing { request, hash },
        _ => Sent::Other,
    }
}

/// The blake3 hash of a blob, as manifests name it.
pub fn hash_of(blob: &[u8]) -> [u8; 32] {
    *blake3::hash(blob).as_bytes()
}

/// The engine under test: node 1 of tenant 1, running the x86-64-v2 class only.
pub struct CodeRx {
    pub engine: Engine,
    pub root: TenantRoot,
    pub secrets: TenantSecrets,
    pub sealer: Sealer,
    pub topic: TopicId,
    pub tenant: TenantId,
    /// The class this node runs.
    pub class: HardwareClass,
    pub now: Timestamp,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Every point-to-point message, in order.
    pub sent: Vec<(Peer, Sent)>,
    /// Blob requests not answered yet.
    wants: VecDeque<(Peer, u64, [u8; 32], u32)>,
    probes: u64,
}

/// The code configuration of [`CodeRx`] before a test's tweaks.
pub fn rx_code_config(hardware: Vec<HardwareClass>) -> CodeConfig {
    CodeConfig {
        hardware,
        blob_chunk_bytes: CHUNK,
        max_blob_bytes: 64 * 1024,
        blob_store_bytes: 1 << 20,
        ..CodeConfig::default()
    }
}

impl CodeRx {
    /// The engine, with `tweak` applied to its configuration.
    pub fn new(tweak: impl FnOnce(&mut Config)) -> CodeRx {
        let (root, secrets) = tenant(1);
        let class = classes().0;
        let mut config = Config {
            seed: 1,
            code: rx_code_config(vec![class.clone()]),
            ..Config::default()
        };
        tweak(&mut config);
        let mut engine = Engine::new(config, Incarnation(1)).expect("valid config");
        let (_, topic) = engine
            .join_tenant(T0, creds(&root, &secrets, 1, Roles::ALL))
            .expect("join");
        CodeRx {
            engine,
            sealer: Sealer::new(&secrets),
            tenant: root.id(),
            root,
            secrets,
            topic,
            class,
            now: NOW,
            events: Vec::new(),
            sent: Vec::new(),
            wants: VecDeque::new(),
            probes: 0,
        }
    }

    /// Credentials of node `node` of the tenant with every role (a compiler).
    pub fn compiler(&self, node: u8) -> TenantCredentials {
        creds(&self.root, &self.secrets, node, Roles::ALL)
    }

    /// The key of `method` at tier 2 in function "hot".
    pub fn key(&self, method: u32) -> CodeKey {
        CodeKey {
            function: function("hot"),
            method: MethodId(method),
            tier: Tier(2),
        }
    }

    /// A valid manifest by `by` of `blob` for `key` in this node's class, created now.
    pub fn manifest(&self, by: &TenantCredentials, key: CodeKey, generation: u32, blob: &[u8]) -> Manifest {
        Manifest {
            tenant: self.tenant,
            key,
            class: self.class.id(),
            generation,
            assumptions: Vec::new(),
            tolerated: Vec::new(),
            repromotes: None,
            profile_digest: [7; 32],
            blob_hash: hash_of(blob),
            blob_size: blob.len() as u64,
            compiler: by.cert().cert.node,
            created_at: self.now,
            expires_at: self.now.plus_ms(DAY / 2),
        }
    }

    /// Manifests (and no attestation) sealed in a published code message.
    pub fn code_message(&self, manifests: &[Signed<Manifest>]) -> Vec<u8> {
        let body = Body::Code {
            round: 0,
            manifests: manifests.to_vec(),
            attestations: Vec::new(),
        };
        self.sealer.seal(&body.encode())
    }

    /// Delivers manifests from `from` on the tenant topic; the message itself is accepted.
    pub fn deliver_code(&mut self, from: Peer, manifests: &[Signed<Manifest>]) {
        let bytes = self.code_message(manifests);
        assert_eq!(self.deliver(from, &bytes), Ok(Accepted::default()));
    }

    /// Delivers sealed bytes from `from` on the tenant topic.
    pub fn deliver(&mut self, from: Peer, bytes: &[u8]) -> Result<Accepted, Rejection> {
        let topic = self.topic.clone();
        let r = self.engine.handle_message(self.now, from, Some(&topic), bytes);
        self.pump();
        r
    }

    /// Delivers sealed bytes point to point.
    pub fn deliver_direct(&mut self, from: Peer, bytes: &[u8]) -> Result<Accepted, Rejection> {
        let r = self.engine.handle_message(self.now, from, None, bytes);
        self.pump();
        r
    }

    /// Runs the engine's timer at the current time (elections, installs, transfers).
    pub fn tick(&mut self) {
        self.engine.handle_timeout(self.now);
        self.pump();
    }

    /// Drains the engine's outputs into `events`, `sent` and the unanswered blob requests.
    pub fn pump(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Event(e) => self.events.push(e),
                Output::Send { peer, bytes } => {
                    let s = open(&self.sealer, &bytes);
                    if let Sent::Want { request, hash, chunk } = s {
                        self.wants.push_back((peer, request, hash, chunk));
                    }
                    self.sent.push((peer, s));
                }
                _ => {}
            }
        }
    }

    /// Blob requests sent to `peer` so far.
    pub fn wants_to(&self, peer: Peer) -> Vec<([u8; 32], u32)> {
        self.sent
            .iter()
            .filter_map(|(p, s)| match s {
                Sent::Want { hash, chunk, .. } if *p == peer => Some((*hash, *chunk)),
                _ => None,
            })
            .collect()
    }

    /// Blob requests sent to anyone so far.
    pub fn all_wants(&self) -> usize {
        self.sent.iter().filter(|(_, s)| matches!(s, Sent::Want { .. })).count()
    }

    /// Plays `peer` answering every request the engine sends it (including the ones its
    /// answers trigger) with chunks of `data`, announcing `size` as the blob's size.
    /// Returns the number of chunks sent.
    pub fn serve(&mut self, peer: Peer, data: &[u8], size: u64) -> usize {
        let mut served = 0;
        while let Some(i) = self.wants.iter().position(|w| w.0 == peer) {
            let (_, request, hash, chunk) = self.wants.remove(i).expect("present");
            let start = (chunk as usize * CHUNK).min(data.len());
            let end = (start + CHUNK).min(data.len());
            let body = Body::BlobChunk {
                request,
                hash,
                chunk,
                size,
                data: &data[start..end],
            };
            let bytes = self.sealer.seal(&body.encode());
            assert_eq!(self.deliver_direct(peer, &bytes), Ok(Accepted::default()));
            served += 1;
            assert!(served < 10_000, "the engine keeps asking");
        }
        served
    }

    /// Asks the engine for the first chunk of a blob, as a peer would: whether it holds it.
    pub fn holds(&mut self, hash: &[u8; 32]) -> bool {
        self.probes += 1;
        let body = Body::BlobWant {
            request: self.probes,
            hash: *hash,
            chunk: 0,
        };
        let bytes = self.sealer.seal(&body.encode());
        let before = self.sent.len();
        assert_eq!(self.deliver_direct(PROBE, &bytes), Ok(Accepted::default()));
        let answers: Vec<&Sent> = self.sent[before..]
            .iter()
            .filter(|(p, _)| *p == PROBE)
            .map(|(_, s)| s)
            .collect();
        match answers.as_slice() {
            [Sent::Chunk { request, hash: h, .. }] if *request == self.probes && h == hash => true,
            [Sent::Missing { request, hash: h }] if *request == self.probes && h == hash => false,
            other => panic!("unexpected answer to a blob request: {other:?}"),
        }
    }

    /// The refusals reported so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Refused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// The installs reported so far.
    pub fn installs(&self) -> Vec<&Install> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Install(i) => Some(&**i),
                _ => None,
            })
            .collect()
    }

    /// The event a refusal of `m` for `reason` must be.
    pub fn refused(&self, m: &Manifest, reason: Refusal) -> Event {
        Event::Refused {
            tenant: self.tenant,
            key: m.key,
            class: m.class,
            generation: m.generation,
            reason,
        }
    }

    /// Refusals counted in the stats under `kind`.
    pub fn refused_count(&self, kind: &str) -> u64 {
        self.engine.stats().refused.get(kind).copied().unwrap_or(0)
    }

    /// What is installed for `key`: (class, generation).
    pub fn installed(&self, key: &CodeKey) -> Option<(ClassId, u32)> {
        self.engine
            .installed(&self.tenant)
            .get(&(key.function, key.method, key.tier))
            .copied()
    }
}

/// One random edit of a message (for the decoding properties).
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

pub fn mutate(bytes: &[u8], ms: &[Mutation]) -> Vec<u8> {
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
            Mutation::Insert(i, b) => v.insert(i.index(v.len() + 1), *b),
            Mutation::Delete(i) if !v.is_empty() => {
                v.remove(i.index(v.len()));
            }
            Mutation::Truncate(i) => v.truncate(i.index(v.len() + 1)),
            _ => {}
        }
    }
    v
}

/// The assumption the tests' manifests speculate on: call site 0 always calls type 7.
pub const MONO: Assumption = Assumption::MonomorphicCall { site: 0, target: 7 };

/// A blob of `n` bytes derived from `seed`.
pub fn blob(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Asserts that nothing was installed, announced as installed, or fetched.
pub fn assert_nothing_installed(rx: &CodeRx) {
    assert!(rx.installs().is_empty(), "no Event::Install: {:?}", rx.installs());
    assert!(rx.engine.installed(&rx.tenant).is_empty(), "nothing installed");
    assert_eq!(rx.engine.stats().installs, 0);
}

/// Delivers `m` (signed by node 2) from the relay, lets the engine ask for its blob and
/// serves it honestly; the code must be installed.
pub fn install(rx: &mut CodeRx, m: Manifest, blob: &[u8]) -> Signed<Manifest> {
    let key = m.key;
    let generation = m.generation;
    let signed = Signed::sign(m, &rx.compiler(2));
    rx.deliver_code(RELAY, std::slice::from_ref(&signed));
    rx.tick();
    assert!(rx.serve(RELAY, blob, blob.len() as u64) > 0, "the blob was asked for");
    assert_eq!(rx.installed(&key), Some((rx.class.id(), generation)));
    signed
}
