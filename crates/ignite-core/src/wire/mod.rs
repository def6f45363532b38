//! Wire format: a versioned envelope around a sealed, postcard-encoded body.
//!
//! ```text
//! Envelope { version: u8, tenant: TenantTag (16 B, opaque), epoch: u32, nonce: [u8; 24],
//!            sealed: XChaCha20-Poly1305(Body) }
//! ```
//! Everything decoded here comes from the network: sizes are checked before decoding, every
//! count is bounded by [`Limits`], and every failure is a typed [`WireError`]: never a panic.

mod seal;

pub use seal::{Sealer, tenant_tag, topic};

use crate::code::{Attestation, Claim, Manifest, Presence, Signed};
use crate::crypto::SigBytes;
use crate::ids::{FunctionId, GroupId, Incarnation, MethodId, TenantTag, Tier};
use crate::profile::counter::{Counter, CounterKey};
use crate::tenancy::{SignedCert, SignedRevocation};
use serde::{Deserialize, Serialize};

/// The only envelope version this build speaks.
pub const WIRE_VERSION: u8 = 1;

/// Size and count limits applied to every message before and while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted envelope, in bytes (default 64 KiB, the gossipsub default).
    pub max_message_bytes: usize,
    /// Most counter entries in one signed delta.
    pub max_entries_per_delta: usize,
    /// Most signed deltas in one message.
    pub max_deltas_per_message: usize,
    /// Most certificates or functions referenced by one message.
    pub max_refs_per_message: usize,
    /// Most entries in one anti-entropy page or want-list.
    pub max_sync_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 64 * 1024,
            max_entries_per_delta: 4096,
            max_deltas_per_message: 256,
            max_refs_per_message: 256,
            max_sync_entries: 4096,
        }
    }
}

/// Why bytes from the network were rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Larger than [`Limits::max_message_bytes`].
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// Size received.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The envelope version is not one this build speaks.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// Bytes do not decode.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The envelope's tenant tag is not one this engine serves.
    #[error("message for a tenant this engine does not serve")]
    UnknownTenant,
    /// The envelope arrived on a topic that is not its tenant's topic.
    #[error("message arrived on the wrong topic")]
    WrongTopic,
    /// The key epoch is unknown (too old, or not yet received).
    #[error("unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// Authentication of the ciphertext failed (tampered, or sealed with another key).
    #[error("ciphertext failed authentication")]
    Unauthentic,
    /// A count exceeds its limit.
    #[error("too many {what}: {count} > {max}")]
    TooMany {
        /// Which count.
        what: &'static str,
        /// Count received.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Entries of a delta are not strictly increasing.
    #[error("delta entries are not strictly ordered")]
    Unordered,
    /// A reference (certificate or function index) points nowhere.
    #[error("dangling reference in message")]
    BadReference,
}

impl From<postcard::Error> for WireError {
    fn from(e: postcard::Error) -> WireError {
        WireError::Malformed(e.to_string())
    }
}

/// The outer, unencrypted frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<'a> {
    /// Wire version.
    pub version: u8,
    /// Opaque tenant tag.
    pub tenant: TenantTag,
    /// Group-key epoch used to seal.
    pub epoch: u32,
    /// Synthetic nonce (see the `seal` module).
    pub nonce: [u8; 24],
    /// Ciphertext with tag.
    #[serde(borrow)]
    pub sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Decodes an envelope, checking size and version first.
    pub fn decode(bytes: &'a [u8], limits: &Limits) -> Result<Envelope<'a>, WireError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(WireError::Oversize {
                size: bytes.len(),
                max: limits.max_message_bytes,
            });
        }
        match bytes.first() {
            None => return Err(WireError::Malformed("empty".into())),
            Some(&v) if v != WIRE_VERSION => return Err(WireError::UnknownVersion(v)),
            _ => {}
        }
        let (env, rest): (Envelope<'a>, &[u8]) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(WireError::Malformed("trailing bytes".into()));
        }
        Ok(env)
    }
}

/// The sealed content of a message.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body<'a> {
    /// Signed profile deltas (published on the topic, or served by anti-entropy).
    #[serde(borrow)]
    Deltas(DeltaBatch<'a>),
    /// Root-signed revocations.
    Revocations(Vec<SignedRevocation>),
    /// Proof that a node equivocated (two conflicting deltas it signed).
    Evidence(Box<crate::profile::Evidence>),
    /// Anti-entropy opening: a digest of everything the sender holds.
    SyncDigest {
        /// Round id chosen by the opener and echoed by every message of the round, so that
        /// messages of different rounds never have identical bytes.
        round: u64,
        /// Hash over all (lane, seq) the sender holds.
        lanes_root: [u8; 32],
        /// Digest of the sender's revocation set.
        revocations: [u8; 32],
        /// Digest of the nodes the sender banned for equivocation.
        banned: [u8; 32],
        /// Digest of the current code manifests and attestations the sender holds.
        code: [u8; 32],
    },
    /// Anti-entropy: a page of the sender's lanes, ordered by lane hash.
    SyncPage {
        /// Round id.
        round: u64,
        /// Lane hashes in this page are `>= start`.
        start: u64,
        /// Whether this is the last page.
        last: bool,
        /// (lane hash, seq up to which everything is held, highest seq held, hash of the
        /// lane's values), strictly increasing by lane hash.
        lanes: Vec<(u64, u32, u32, u64)>,
    },
    /// Anti-entropy: lanes the sender wants, with the seq it already holds (0 = none).
    SyncWant {
        /// Round id.
        round: u64,
        /// (lane hash, seq held).
        lanes: Vec<(u64, u32)>,
    },
    /// Anti-entropy: ask for the page of lanes after `start`.
    SyncMore {
        /// Round id.
        round: u64,
        /// First lane hash wanted.
        start: u64,
    },
    /// A node's signed presence.
    Presence(Box<Signed<Presence>>),
    /// A signed compile claim (or its release).
    Claim(Box<Signed<Claim>>),
    /// Signed code manifests and attestations: published (round 0) or served by
    /// anti-entropy (the round's id).
    Code {
        /// Anti-entropy round, 0 when published on the topic.
        round: u64,
        /// Manifests.
        manifests: Vec<Signed<Manifest>>,
        /// Attestations.
        attestations: Vec<Signed<Attestation>>,
    },
    /// Point to point: asks for one chunk of a blob.
    BlobWant {
        /// Request id, echoed by the answer (also makes every request's bytes unique).
        request: u64,
        /// blake3 hash of the blob.
        hash: [u8; 32],
        /// Chunk index.
        chunk: u32,
    },
    /// Point to point: one chunk of a blob.
    BlobChunk {
        /// The request answered.
        request: u64,
        /// blake3 hash of the blob.
        hash: [u8; 32],
        /// Chunk index.
        chunk: u32,
        /// Total size of the blob.
        size: u64,
        /// The chunk's bytes.
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// Point to point: the sender does not hold the blob.
    BlobMissing {
        /// The request answered.
        request: u64,
        /// blake3 hash of the blob.
        hash: [u8; 32],
    },
}

impl<'a> Body<'a> {
    /// Decodes a body (after opening) and checks every bound.
    pub fn decode(bytes: &'a [u8], limits: &Limits) -> Result<Body<'a>, WireError> {
        let (body, rest): (Body<'a>, &[u8]) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(WireError::Malformed("trailing bytes".into()));
        }
        body.check(limits)?;
        Ok(body)
    }

    fn check(&self, limits: &Limits) -> Result<(), WireError> {
        let bound = |what, count, max| {
            if count > max {
                Err(WireError::TooMany { what, count, max })
            } else {
                Ok(())
            }
        };
        match self {
            Body::Deltas(b) => {
                bound("certificates", b.certs.len(), limits.max_refs_per_message)?;
                bound("functions", b.functions.len(), limits.max_refs_per_message)?;
                bound("deltas", b.deltas.len(), limits.max_deltas_per_message)?;
                for d in &b.deltas {
                    if d.signer as usize >= b.certs.len() || d.function as usize >= b.functions.len() {
                        return Err(WireError::BadReference);
                    }
                }
                Ok(())
            }
            Body::Revocations(r) => bound("revocations", r.len(), limits.max_refs_per_message),
            Body::SyncPage { lanes, start, .. } => {
                bound("sync entries", lanes.len(), limits.max_sync_entries)?;
                let ordered = lanes.windows(2).all(|w| w[0].0 < w[1].0);
                if !ordered || lanes.first().is_some_and(|l| l.0 < *start) {
                    return Err(WireError::Unordered);
                }
                Ok(())
            }
            Body::SyncWant { lanes, .. } => bound("sync entries", lanes.len(), limits.max_sync_entries),
            Body::Code {
                manifests,
                attestations,
                ..
            } => {
                bound("manifests", manifests.len(), limits.max_refs_per_message)?;
                bound("attestations", attestations.len(), limits.max_refs_per_message)
            }
            Body::SyncDigest { .. }
            | Body::SyncMore { .. }
            | Body::Evidence(_)
            | Body::Presence(_)
            | Body::Claim(_)
            | Body::BlobWant { .. }
            | Body::BlobChunk { .. }
            | Body::BlobMissing { .. } => Ok(()),
        }
    }

    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("body encodes")
    }
}

/// Signed deltas with the certificates and function ids they refer to by index.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeltaBatch<'a> {
    /// Certificates of the signers.
    pub certs: Vec<SignedCert>,
    /// Functions the deltas are about.
    pub functions: Vec<FunctionId>,
    /// The deltas.
    #[serde(borrow)]
    pub deltas: Vec<DeltaWire<'a>>,
}

/// One signed delta as it travels: signer and function by index into the batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeltaWire<'a> {
    /// Index into [`DeltaBatch::certs`].
    pub signer: u16,
    /// Index into [`DeltaBatch::functions`].
    pub function: u16,
    /// The signer's incarnation.
    pub incarnation: Incarnation,
    /// The method group.
    pub group: GroupId,
    /// Sequence number of this lane (node, incarnation, function, group), from 1.
    pub seq: u32,
    /// Signer's time when it signed.
    pub issued_at: u64,
    /// Whether this delta holds every counter of the lane (older deltas are superseded).
    pub full: bool,
    /// Encoded entries ([`encode_entries`]), covered by the signature as they are.
    #[serde(borrow)]
    pub entries: &'a [u8],
    /// Signature over [`signed_delta_bytes`].
    pub signature: SigBytes,
}

impl DeltaWire<'_> {
    /// The bytes its signature covers ([`signed_delta_bytes`]), with the signer's key and
    /// the function its indices refer to.
    pub fn signed_bytes(&self, tenant: &[u8; 32], node: &[u8; 32], function: &FunctionId) -> Vec<u8> {
        signed_delta_bytes(
            tenant,
            node,
            function,
            self.incarnation,
            self.group,
            self.seq,
            self.issued_at,
            self.full,
            self.entries,
        )
    }

    /// `blake3` of [`Self::signed_bytes`] followed by the signature: what identifies this
    /// signed delta in seen caches and shared check results. Computed without building the
    /// signed bytes.
    pub fn hash(&self, tenant: &[u8; 32], node: &[u8; 32], function: &FunctionId) -> [u8; 32] {
        let header = SignedHeader {
            tenant,
            node,
            function,
            incarnation: self.incarnation,
            group: self.group,
            seq: self.seq,
            issued_at: self.issued_at,
            full: self.full,
        };
        let mut buf = [0u8; 192];
        let header = postcard::to_slice(&header, &mut buf).expect("a delta header fits in 192 bytes");
        let mut h = blake3::Hasher::new();
        h.update(crate::crypto::domain::DELTA);
        h.update(header);
        h.update(self.entries);
        h.update(&self.signature.to_bytes());
        *h.finalize().as_bytes()
    }
}

/// The header fields a delta signature covers, with signer and function spelled out.
#[derive(Debug, Serialize)]
struct SignedHeader<'a> {
    tenant: &'a [u8; 32],
    node: &'a [u8; 32],
    function: &'a FunctionId,
    incarnation: Incarnation,
    group: GroupId,
    seq: u32,
    issued_at: u64,
    full: bool,
}

/// The exact bytes a delta signature covers: `domain::DELTA || header || entries`.
#[allow(clippy::too_many_arguments)]
pub fn signed_delta_bytes(
    tenant: &[u8; 32],
    node: &[u8; 32],
    function: &FunctionId,
    incarnation: Incarnation,
    group: GroupId,
    seq: u32,
    issued_at: u64,
    full: bool,
    entries: &[u8],
) -> Vec<u8> {
    let header = SignedHeader {
        tenant,
        node,
        function,
        incarnation,
        group,
        seq,
        issued_at,
        full,
    };
    let mut out = crate::crypto::domain::DELTA.to_vec();
    out.extend_from_slice(&postcard::to_allocvec(&header).expect("header encodes"));
    out.extend_from_slice(entries);
    out
}

/// One counter value as encoded: methods as deltas from the previous entry.
#[derive(Debug, Serialize, Deserialize)]
struct WireEntry {
    method_delta: u32,
    tier: u8,
    counter: Counter,
    value: u64,
}

/// Encodes counter values, which must be strictly increasing by key.
pub fn encode_entries(entries: &[(CounterKey, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 6 + 2);
    let mut prev = 0u32;
    let wire: Vec<WireEntry> = entries
        .iter()
        .map(|(k, v)| {
            debug_assert!(k.method.0 >= prev);
            let e = WireEntry {
                method_delta: k.method.0 - prev,
                tier: k.tier.0,
                counter: k.counter,
                value: *v,
            };
            prev = k.method.0;
            e
        })
        .collect();
    out.extend_from_slice(&postcard::to_allocvec(&wire).expect("entries encode"));
    out
}

/// Refuses a delta of more than `limits.max_entries_per_delta` entries.
pub fn check_entry_count(count: usize, limits: &Limits) -> Result<(), WireError> {
    if count > limits.max_entries_per_delta {
        return Err(WireError::TooMany {
            what: "entries",
            count,
            max: limits.max_entries_per_delta,
        });
    }
    Ok(())
}

/// Decodes counter values, checking the count bound, tiers and strict ordering.
pub fn decode_entries(bytes: &[u8], limits: &Limits) -> Result<Vec<(CounterKey, u64)>, WireError> {
    // The length prefix is checked before any allocation.
    let (count, _) = postcard::take_from_bytes::<u32>(bytes).map_err(WireError::from)?;
    check_entry_count(count as usize, limits)?;
    let (wire, rest): (Vec<WireEntry>, &[u8]) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed("trailing bytes in entries".into()));
    }
    let mut out = Vec::with_capacity(wire.len());
    let mut method = 0u32;
    for e in wire {
        method = method.checked_add(e.method_delta).ok_or(WireError::Unordered)?;
        if e.tier > Tier::MAX.0 {
            return Err(WireError::Malformed(format!("tier {}", e.tier)));
        }
        let key = CounterKey {
            method: MethodId(method),
            tier: Tier(e.tier),
            counter: e.counter,
        };
        if let Some((last, _)) = out.last()
            && *last >= key
        {
            return Err(WireError::Unordered);
        }
        out.push((key, e.value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_hash_covers_its_signed_bytes_and_signature() {
        let entries = encode_entries(&[(
            CounterKey {
                method: MethodId(3),
                tier: Tier(1),
                counter: Counter::Invocations,
            },
            u64::MAX,
        )]);
        let function = FunctionId {
            name: [1; 16],
            code: [2; 32],
        };
        let d = DeltaWire {
            signer: 0,
            function: 0,
            incarnation: Incarnation(u64::MAX),
            group: GroupId(u16::MAX),
            seq: u32::MAX,
            issued_at: u64::MAX,
            full: true,
            entries: &entries,
            signature: SigBytes([3; 32], [4; 32]),
        };
        let (tenant, node) = ([5; 32], [6; 32]);
        let mut whole = d.signed_bytes(&tenant, &node, &function);
        whole.extend_from_slice(&d.signature.to_bytes());
        assert_eq!(d.hash(&tenant, &node, &function), *blake3::hash(&whole).as_bytes());
        let other = DeltaWire { seq: 7, ..d.clone() };
        assert_ne!(other.hash(&tenant, &node, &function), d.hash(&tenant, &node, &function));
    }

    #[test]
    fn entries_roundtrip_and_ordering() {
        let k = |m, c| CounterKey {
            method: MethodId(m),
            tier: Tier(0),
            counter: c,
        };
        let entries = vec![
            (k(1, Counter::Invocations), 5),
            (k(1, Counter::Backedges), 9),
            (k(7, Counter::Invocations), 300),
        ];
        let bytes = encode_entries(&entries);
        assert_eq!(decode_entries(&bytes, &Limits::default()).unwrap(), entries);
        // The same key twice (second entry: method delta 0) is not strictly increasing.
        let one = encode_entries(&[(k(1, Counter::Backedges), 1)]);
        let mut two = vec![2u8];
        two.extend_from_slice(&one[1..]);
        two.push(0);
        two.extend_from_slice(&one[2..]);
        assert_eq!(decode_entries(&two, &Limits::default()), Err(WireError::Unordered));
    }

    #[test]
    fn entry_count_bound_checked_before_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&postcard::to_allocvec(&u32::MAX).unwrap());
        assert!(matches!(
            decode_entries(&bytes, &Limits::default()),
            Err(WireError::TooMany { .. })
        ));
    }

    #[test]
    fn envelope_rejects_oversize_and_unknown_version() {
        let l = Limits::default();
        assert!(matches!(
            Envelope::decode(&vec![1u8; l.max_message_bytes + 1], &l),
            Err(WireError::Oversize { .. })
        ));
        assert_eq!(
            Envelope::decode(&[9, 0, 0], &l).unwrap_err(),
            WireError::UnknownVersion(9)
        );
        assert!(matches!(Envelope::decode(&[], &l), Err(WireError::Malformed(_))));
    }
}
