//! Signatures: domain separation, strict checks, batch verification and the cache that
//! verifies each unique message once.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// Domain-separation prefixes: every signature made by Ignite covers one of these first,
/// so it can never be taken for a signature of another protocol or another message kind.
pub mod domain {
    /// Node certificates, signed by a tenant root.
    pub const CERT: &[u8] = b"ignite/v1/node-cert\0";
    /// Profile deltas, signed by a node.
    pub const DELTA: &[u8] = b"ignite/v1/profile-delta\0";
    /// Revocations, signed by a tenant root.
    pub const REVOCATION: &[u8] = b"ignite/v1/revocation\0";
}

/// An ed25519 signature as it travels (64 bytes, split for serde).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SigBytes(pub [u8; 32], pub [u8; 32]);

impl std::fmt::Debug for SigBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sig:{}", crate::ids::hex(&self.0[..4]))
    }
}

impl SigBytes {
    /// The 64 signature bytes.
    pub fn to_bytes(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.0);
        out[32..].copy_from_slice(&self.1);
        out
    }

    /// From 64 signature bytes.
    pub fn from_bytes(b: &[u8; 64]) -> SigBytes {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&b[..32]);
        s.copy_from_slice(&b[32..]);
        SigBytes(r, s)
    }
}

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigError {
    /// The public key is not a valid curve point encoding.
    #[error("public key is not a valid point")]
    BadKey,
    /// The public key has small order (signatures under it are forgeable) or a torsion
    /// component.
    #[error("public key is weak (small order or torsion component)")]
    WeakKey,
    /// The signature's R component is not a point, has small order, or has a torsion
    /// component.
    #[error("signature R is not a point of the prime-order subgroup")]
    SmallOrderR,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Invalid,
}

/// Signs `domain || msg` with `key`.
pub fn sign(key: &SigningKey, domain: &[u8], msg: &[u8]) -> SigBytes {
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    SigBytes::from_bytes(&key.sign(&buf).to_bytes())
}

/// Parses a public key and rejects weak (small-order) keys.
pub fn strict_key(bytes: &[u8; 32]) -> Result<VerifyingKey, SigError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| SigError::BadKey)?;
    if key.is_weak() {
        return Err(SigError::WeakKey);
    }
    // A key with a torsion component verifies differently in single and batch
    // (cofactorless vs random-linear-combination) verification: refuse it.
    if !key.to_edwards().is_torsion_free() {
        return Err(SigError::WeakKey);
    }
    Ok(key)
}

/// Rejects a signature whose R is not a point of the prime-order subgroup. `verify_batch`
/// does not check this, so it runs before every batch.
pub fn check_r(sig: &SigBytes) -> Result<(), SigError> {
    // Small-order R is refused by `verify_strict` but not by `verify_batch`; an R with a
    // torsion component can pass a batch while failing alone. Refusing both makes batch and
    // single verification agree.
    match CompressedEdwardsY(sig.0).decompress() {
        Some(p) if !p.is_small_order() && p.is_torsion_free() => Ok(()),
        _ => Err(SigError::SmallOrderR),
    }
}

/// Verifies `domain || msg` strictly (`verify_strict`: rejects weak keys and small-order R).
pub fn verify(key: &[u8; 32], domain: &[u8], msg: &[u8], sig: &SigBytes) -> Result<(), SigError> {
    let vk = strict_key(key)?;
    check_r(sig)?;
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    vk.verify_strict(&buf, &Signature::from_bytes(&sig.to_bytes()))
        .map_err(|_| SigError::Invalid)
}

/// One signature to verify in a batch: the full signed bytes (domain included).
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// Signer's public key.
    pub key: [u8; 32],
    /// The signed bytes, domain prefix included.
    pub signed: &'a [u8],
    /// The signature.
    pub sig: SigBytes,
}

/// Verifies several signatures, as strictly as [`verify`], faster than one by one.
///
/// Weak keys and small-order R are rejected up front (`verify_batch` skips those checks);
/// if the batch fails, each item is verified alone to find the culprits. Returns one result
/// per item, in order.
pub fn verify_many(items: &[BatchItem<'_>]) -> Vec<Result<(), SigError>> {
    let mut results: Vec<Result<(), SigError>> = Vec::with_capacity(items.len());
    let mut keys = Vec::new();
    let mut msgs = Vec::new();
    let mut sigs = Vec::new();
    let mut idx = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let pre = strict_key(&item.key).and_then(|k| check_r(&item.sig).map(|_| k));
        match pre {
            Ok(k) => {
                keys.push(k);
                msgs.push(item.signed);
                sigs.push(Signature::from_bytes(&item.sig.to_bytes()));
                idx.push(i);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if idx.is_empty() {
        return results;
    }
    let batch_ok = if idx.len() == 1 {
        keys[0].verify_strict(msgs[0], &sigs[0]).is_ok()
    } else {
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
    };
    if !batch_ok {
        for (j, &i) in idx.iter().enumerate() {
            if keys[j].verify_strict(msgs[j], &sigs[j]).is_err() {
                results[i] = Err(SigError::Invalid);
            }
        }
    }
    results
}

/// A bounded set of hashes of messages already verified (or already processed), so that a
/// duplicate costs one hash instead of a signature check. First in, first out when full.
#[derive(Debug)]
pub struct SeenCache {
    set: BTreeSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    cap: usize,
}

impl SeenCache {
    /// A cache holding at most `cap` hashes.
    pub fn new(cap: usize) -> SeenCache {
        SeenCache {
            set: BTreeSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Whether `hash` is in the cache.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.set.contains(hash)
    }

    /// Inserts `hash`; returns false if it was already there.
    pub fn insert(&mut self, hash: [u8; 32]) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Number of hashes held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Derives an ed25519 signing key deterministically from 32 seed bytes and a label
/// (for tests, simulators and key files; production keys come from a real RNG).
pub fn key_from_seed(seed: &[u8; 32], label: &str) -> SigningKey {
    let mut hasher = blake3::Hasher::new_derive_key("ignite v1 key from seed");
    hasher.update(seed);
    hasher.update(label.as_bytes());
    SigningKey::from_bytes(hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_domain_separation() {
        let k = key_from_seed(&[1; 32], "a");
        let pk = k.verifying_key().to_bytes();
        let s = sign(&k, domain::DELTA, b"hello");
        assert_eq!(verify(&pk, domain::DELTA, b"hello", &s), Ok(()));
        assert_eq!(verify(&pk, domain::CERT, b"hello", &s), Err(SigError::Invalid));
        assert_eq!(verify(&pk, domain::DELTA, b"hellp", &s), Err(SigError::Invalid));
    }

    #[test]
    fn weak_key_and_small_order_r_rejected() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(strict_key(&identity).err(), Some(SigError::WeakKey));
        let k = key_from_seed(&[2; 32], "a");
        let mut s = sign(&k, domain::DELTA, b"m");
        s.0 = identity;
        let pk = k.verifying_key().to_bytes();
        assert_eq!(verify(&pk, domain::DELTA, b"m", &s), Err(SigError::SmallOrderR));
    }

    #[test]
    fn batch_finds_the_culprit() {
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let keys: Vec<SigningKey> = (0..5u8).map(|i| key_from_seed(&[i; 32], "k")).collect();
        let signed: Vec<Vec<u8>> = msgs.iter().map(|m| [domain::DELTA, m.as_slice()].concat()).collect();
        let mut items: Vec<BatchItem<'_>> = (0..5)
            .map(|i| BatchItem {
                key: keys[i].verifying_key().to_bytes(),
                signed: &signed[i],
                sig: sign(&keys[i], domain::DELTA, &msgs[i]),
            })
            .collect();
        assert!(verify_many(&items).iter().all(|r| r.is_ok()));
        items[3].sig = items[2].sig;
        let r = verify_many(&items);
        assert_eq!(r[3], Err(SigError::Invalid));
        assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 4);
    }

    #[test]
    fn seen_cache_is_bounded() {
        let mut c = SeenCache::new(2);
        assert!(c.insert([1; 32]));
        assert!(!c.insert([1; 32]));
        c.insert([2; 32]);
        c.insert([3; 32]);
        assert_eq!(c.len(), 2);
        assert!(!c.contains(&[1; 32]));
    }
}
