//! Signatures: domain separation, strict checks, batch verification and the cache that
//! verifies each unique message once.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

/// Domain-separation prefixes: every signature made by Ignite covers one of these first,
/// so it can never be taken for a signature of another protocol or another message kind.
pub mod domain {
    /// Node certificates, signed by a tenant root.
    pub const CERT: &[u8] = b"ignite/v1/node-cert\0";
    /// Profile deltas, signed by a node.
    pub const DELTA: &[u8] = b"ignite/v1/profile-delta\0";
    /// Revocations, signed by a tenant root.
    pub const REVOCATION: &[u8] = b"ignite/v1/revocation\0";
    /// Presence announcements, signed by a node.
    pub const PRESENCE: &[u8] = b"ignite/v1/presence\0";
    /// Compile claims, signed by a node.
    pub const CLAIM: &[u8] = b"ignite/v1/compile-claim\0";
    /// Code manifests, signed by the compiling node.
    pub const MANIFEST: &[u8] = b"ignite/v1/code-manifest\0";
    /// Attestations of a recompiled blob's hash, signed by the attesting node.
    pub const ATTESTATION: &[u8] = b"ignite/v1/attestation\0";
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
    /// The public key has small order (a weak key: signatures under it are forgeable).
    #[error("public key is weak (small order)")]
    WeakKey,
    /// The signature's R component is not a canonical point encoding or has small order.
    #[error("signature R is of small order or not a canonical point")]
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

/// A public key that passed the strict checks, decompressed once.
#[derive(Clone, Copy, Debug)]
pub struct StrictKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl StrictKey {
    /// The key's encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// Parses a public key: a canonical encoding of a point that is not of small order.
pub fn strict_key(bytes: &[u8; 32]) -> Result<StrictKey, SigError> {
    let point = CompressedEdwardsY(*bytes).decompress().ok_or(SigError::BadKey)?;
    if point.compress().as_bytes() != bytes {
        return Err(SigError::BadKey);
    }
    if point.is_small_order() {
        return Err(SigError::WeakKey);
    }
    Ok(StrictKey { bytes: *bytes, point })
}

/// A signature whose encodings passed the strict checks.
struct StrictSig {
    r: EdwardsPoint,
    r_bytes: [u8; 32],
    s: Scalar,
}

/// Rejects a signature whose R is not a canonical point encoding or has small order.
pub fn check_r(sig: &SigBytes) -> Result<(), SigError> {
    strict_r(sig).map(|_| ())
}

fn strict_r(sig: &SigBytes) -> Result<EdwardsPoint, SigError> {
    let r = CompressedEdwardsY(sig.0).decompress().ok_or(SigError::SmallOrderR)?;
    if r.compress().as_bytes() != &sig.0 || r.is_small_order() {
        return Err(SigError::SmallOrderR);
    }
    Ok(r)
}

fn strict_sig(sig: &SigBytes) -> Result<StrictSig, SigError> {
    let r = strict_r(sig)?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(sig.1)).ok_or(SigError::Invalid)?;
    Ok(StrictSig { r, r_bytes: sig.0, s })
}

/// The challenge `k = SHA-512(R || A || M) mod l` of Ed25519.
fn challenge(r: &[u8; 32], key: &[u8; 32], parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(key);
    for p in parts {
        h.update(p);
    }
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Verifies `domain || msg`.
///
/// # Verification rule
/// Ed25519 with the *cofactored* equation `[8](sB - R - kA) = 0` (as in ZIP-215), plus
/// strict encodings: canonical `s` (no malleability), canonical encodings of `A` and `R`,
/// and no small-order `A` or `R`. The same rule is checked by [`verify_many`] in batches,
/// so a signature is accepted alone exactly when it is accepted in any batch (the
/// cofactorless check of `verify_strict` disagrees with batch verification on signatures
/// whose `R` has a torsion component). Honest Ed25519 signatures verify under both rules.
pub fn verify(key: &[u8; 32], domain: &[u8], msg: &[u8], sig: &SigBytes) -> Result<(), SigError> {
    let key = strict_key(key)?;
    verify_with(&key, &[domain, msg], sig)
}

fn verify_with(key: &StrictKey, parts: &[&[u8]], sig: &SigBytes) -> Result<(), SigError> {
    let sig = strict_sig(sig)?;
    let k = challenge(&sig.r_bytes, &key.bytes, parts);
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-key.point), &sig.s);
    if (sb_minus_ka - sig.r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SigError::Invalid)
    }
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

/// Verifies several signatures under the same rule as [`verify`], faster than one by one.
///
/// Encodings are checked up front; the remaining signatures are checked together with one
/// random linear combination of their cofactored equations (weights of 128 bits derived by
/// hashing every input, so no RNG is needed and results are deterministic). If the batch
/// fails, each signature is verified alone to find the culprits. Returns one result per
/// item, in order.
pub fn verify_many(items: &[BatchItem<'_>]) -> Vec<Result<(), SigError>> {
    let mut results: Vec<Result<(), SigError>> = Vec::with_capacity(items.len());
    let mut ok: Vec<(usize, StrictKey, StrictSig)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match strict_key(&item.key).and_then(|k| strict_sig(&item.sig).map(|s| (k, s))) {
            Ok((k, s)) => {
                ok.push((i, k, s));
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if ok.len() == 1 {
        let (i, k, _) = &ok[0];
        results[*i] = verify_with(k, &[items[*i].signed], &items[*i].sig);
        return results;
    }
    if ok.is_empty() {
        return results;
    }
    // Weights: 128-bit values from a hash of the whole batch.
    let mut transcript = blake3::Hasher::new_derive_key("ignite v1 batch verification weights");
    for (i, _, _) in &ok {
        transcript.update(&items[*i].key);
        transcript.update(&items[*i].sig.to_bytes());
        transcript.update(blake3::hash(items[*i].signed).as_bytes());
    }
    let mut xof = transcript.finalize_xof();
    let mut b_coeff = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * ok.len() + 1);
    let mut points = Vec::with_capacity(2 * ok.len() + 1);
    for (i, k, s) in &ok {
        let mut zb = [0u8; 32];
        xof.fill(&mut zb[..16]);
        let z = Scalar::from_bytes_mod_order(zb);
        let h = challenge(&s.r_bytes, &k.bytes, &[items[*i].signed]);
        b_coeff -= z * s.s;
        scalars.push(z);
        points.push(s.r);
        scalars.push(z * h);
        points.push(k.point);
    }
    scalars.push(b_coeff);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if !sum.mul_by_cofactor().is_identity() {
        for (i, k, _) in &ok {
            results[*i] = verify_with(k, &[items[*i].signed], &items[*i].sig);
        }
    }
    results
}

/// A bounded set of hashes of messages already verified (or already processed), so that a
/// duplicate costs one hash instead of a signature check.
///
/// Each 32-byte blake3 hash is held as its first 16 bytes: treating a different message as
/// seen would take a second preimage of 128 bits of blake3. The hashes are kept in sets of
/// [`SEEN_WAYS`] slots chosen by a mix of the fingerprint; the table doubles while it has
/// fewer sets than the capacity allows, and once it has them all, a full set replaces its
/// oldest entry. A lookup reads one set (two cache lines) instead of walking a tree.
///
/// Forgetting a hash is always safe: a message whose hash was replaced is checked in full
/// again if it comes back, and applying it again changes nothing. Someone able to send
/// accepted messages could choose them so that their hashes fall into one set and push out
/// the others of that set; that costs them [`SEEN_WAYS`] accepted messages and about as
/// many hashes as there are sets per message, and costs the receiver only full checks of
/// the duplicates it then receives.
#[derive(Debug)]
pub struct SeenCache {
    /// The slots of each set, oldest first until the set is full.
    slots: Vec<[u128; SEEN_WAYS]>,
    /// Entries held per set.
    fill: Vec<u8>,
    /// Per full set, the slot holding its oldest entry (replaced next).
    next: Vec<u8>,
    /// Slots used per set (fewer than [`SEEN_WAYS`] only for tiny capacities).
    ways: usize,
    /// Sets at full size (a power of two).
    max_sets: usize,
    len: usize,
}

/// Slots per set of a [`SeenCache`].
pub const SEEN_WAYS: usize = 8;

/// The part of a hash a [`SeenCache`] keeps.
fn fingerprint(hash: &[u8; 32]) -> u128 {
    u128::from_le_bytes(hash[..16].try_into().expect("16 bytes"))
}

/// The set of fingerprint `f` in a table of `sets` sets (a power of two): the top bits of
/// a multiplicative mix, which depend on every bit of the fingerprint. Doubling the table
/// appends one bit, so each new set takes its entries from one old set.
fn set_of(f: u128, sets: usize) -> usize {
    let h = (f as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((f >> 64) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    match sets.trailing_zeros() {
        0 => 0,
        bits => (h >> (64 - bits)) as usize,
    }
}

impl SeenCache {
    /// A cache holding at most `cap` hashes (rounded down to a power of two times the set
    /// size).
    pub fn new(cap: usize) -> SeenCache {
        let cap = cap.max(1);
        let ways = cap.min(SEEN_WAYS);
        let sets = (cap / ways).max(1);
        let max_sets = 1 << (usize::BITS - 1 - sets.leading_zeros());
        SeenCache {
            slots: vec![[0; SEEN_WAYS]],
            fill: vec![0],
            next: vec![0],
            ways,
            max_sets,
            len: 0,
        }
    }

    /// Whether `hash` is in the cache.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.holds(fingerprint(hash)).1
    }

    /// The set of fingerprint `f`, and whether it holds `f`.
    fn holds(&self, f: u128) -> (usize, bool) {
        let s = set_of(f, self.slots.len());
        (s, self.slots[s][..usize::from(self.fill[s])].contains(&f))
    }

    /// Inserts `hash`; returns false if it was already there.
    pub fn insert(&mut self, hash: [u8; 32]) -> bool {
        let f = fingerprint(&hash);
        let (mut s, held) = self.holds(f);
        if held {
            return false;
        }
        loop {
            let fill = usize::from(self.fill[s]);
            if fill < self.ways {
                self.slots[s][fill] = f;
                self.fill[s] += 1;
                self.len += 1;
                return true;
            }
            if self.slots.len() < self.max_sets {
                self.grow();
                s = set_of(f, self.slots.len());
                continue;
            }
            let oldest = usize::from(self.next[s]);
            self.slots[s][oldest] = f;
            self.next[s] = ((oldest + 1) % self.ways) as u8;
            return true;
        }
    }

    /// Doubles the number of sets. Each old set splits into two new ones, so no new set
    /// overflows, and each keeps its entries oldest first.
    fn grow(&mut self) {
        let sets = self.slots.len() * 2;
        let mut slots = vec![[0u128; SEEN_WAYS]; sets];
        let mut fill = vec![0u8; sets];
        for (s, held) in self.slots.iter().enumerate() {
            let n = usize::from(self.fill[s]);
            // Oldest first: from the replacement cursor round (0 while the set was filling).
            for i in 0..n {
                let f = held[(usize::from(self.next[s]) + i) % n];
                let t = set_of(f, sets);
                slots[t][usize::from(fill[t])] = f;
                fill[t] += 1;
            }
        }
        self.slots = slots;
        self.fill = fill;
        self.next = vec![0; sets];
    }

    /// Number of hashes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn agrees_with_verify_strict_on_honest_and_corrupted_signatures() {
        for i in 0..40u8 {
            let k = key_from_seed(&[i; 32], "agree");
            let pk = k.verifying_key();
            let msg = vec![i; usize::from(i) * 3];
            let mut sig = sign(&k, domain::DELTA, &msg);
            let full = [domain::DELTA, msg.as_slice()].concat();
            let dalek = |s: &SigBytes| {
                pk.verify_strict(&full, &ed25519_dalek::Signature::from_bytes(&s.to_bytes()))
                    .is_ok()
            };
            assert!(dalek(&sig));
            assert_eq!(verify(&pk.to_bytes(), domain::DELTA, &msg, &sig), Ok(()));
            // Flip one bit of S (keeping it canonical) or of R.
            if i % 2 == 0 {
                sig.1[usize::from(i) % 31] ^= 1;
            } else {
                sig.0[usize::from(i) % 32] ^= 1;
            }
            assert_eq!(verify(&pk.to_bytes(), domain::DELTA, &msg, &sig).is_ok(), dalek(&sig));
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let k = key_from_seed(&[3; 32], "a");
        let pk = k.verifying_key().to_bytes();
        let mut s = sign(&k, domain::DELTA, b"m");
        // s + l is the classic malleation; its top byte exceeds that of l.
        s.1[31] |= 0xf0;
        assert_eq!(verify(&pk, domain::DELTA, b"m", &s), Err(SigError::Invalid));
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
        // Each of the first 16 bytes tells hashes apart; the other 16 are not kept.
        let mut c = SeenCache::new(64);
        assert!(c.insert([0; 32]));
        for i in 0..16 {
            let mut h = [0; 32];
            h[i] = 1;
            assert!(!c.contains(&h), "byte {i}");
            assert!(c.insert(h));
            assert!(c.contains(&h));
        }
        let mut tail = [0; 32];
        tail[16] = 1;
        assert!(c.contains(&tail));
        assert_eq!(c.len(), 17);
    }

    #[test]
    fn seen_cache_keeps_recent_hashes_within_its_capacity() {
        let cap = 1 << 12;
        let mut c = SeenCache::new(cap);
        let h = |i: u64| *blake3::hash(&i.to_le_bytes()).as_bytes();
        for i in 0..(10 * cap as u64) {
            assert!(c.insert(h(i)), "new hash {i} taken for seen");
            assert!(!c.insert(h(i)));
            assert!(c.len() <= cap);
            // The newest hashes of every set are kept: the last few overall always are.
            for j in i.saturating_sub(SEEN_WAYS as u64 - 1)..=i {
                assert!(c.contains(&h(j)), "hash {j} forgotten at {i}");
            }
        }
        assert_eq!(c.len(), cap);
        // An entry lives about `cap` insertions: nearly all of the last half are held,
        // and little of what came more than twice the capacity ago.
        let end = 10 * cap as u64;
        let recent = (end - cap as u64 / 2..end).filter(|i| c.contains(&h(*i))).count();
        assert!(recent > cap / 2 * 95 / 100, "{recent} of the last {} held", cap / 2);
        let old = (end - 4 * cap as u64..end - 2 * cap as u64)
            .filter(|i| c.contains(&h(*i)))
            .count();
        assert!(old < cap / 100, "{old} hashes older than twice the capacity held");
        // Growing keeps everything: below the first overflow nothing is lost.
        let mut c = SeenCache::new(cap);
        for i in 0..64 {
            c.insert(h(i));
        }
        assert!((0..64).all(|i| c.contains(&h(i))));
        assert_eq!(c.len(), 64);
    }
}
