//! Certificates and revocations.

use crate::crypto::{self, SigBytes, SigError, domain};
use crate::ids::{NodeKey, Timestamp};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A tenant's identity: its root public key. It appears only inside sealed messages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(pub [u8; 32]);

impl std::fmt::Debug for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tenant-root:{}", crate::ids::hex(&self.0[..4]))
    }
}

/// What a node may do in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Roles(pub u8);

impl Roles {
    /// May publish profile counters.
    pub const PROFILE: Roles = Roles(1);
    /// May compile and publish code.
    pub const COMPILE: Roles = Roles(2);
    /// Both roles.
    pub const ALL: Roles = Roles(3);

    /// Whether every role in `other` is present.
    pub fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A node certificate: the tenant root vouches for a node's per-tenant key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    /// The issuing tenant.
    pub tenant: TenantId,
    /// The node's per-tenant signing key.
    pub node: NodeKey,
    /// What the node may do.
    pub roles: Roles,
    /// Start of validity (inclusive).
    pub not_before: Timestamp,
    /// End of validity (exclusive).
    pub not_after: Timestamp,
    /// Serial number chosen by the issuer.
    pub serial: u64,
}

/// A certificate with the root's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCert {
    /// The certificate.
    pub cert: NodeCert,
    /// Root signature over `domain::CERT || postcard(cert)`.
    pub signature: SigBytes,
}

/// Why a certificate or revocation was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Issued by another tenant's root.
    #[error("certificate from another tenant root")]
    WrongRoot,
    /// Not valid at the given time.
    #[error("certificate not valid at this time")]
    Expired,
    /// The node was revoked.
    #[error("node revoked")]
    Revoked,
    /// The certificate lacks a role required for the message.
    #[error("certificate lacks the required role")]
    MissingRole,
    /// Bad signature or key.
    #[error("bad certificate signature: {0}")]
    Signature(#[from] SigError),
}

impl SignedCert {
    /// The bytes the root signs (without the domain prefix).
    pub fn signed_bytes(cert: &NodeCert) -> Vec<u8> {
        postcard::to_allocvec(cert).expect("certificate encodes")
    }

    /// Checks signature (strict), issuer, validity window at `now` and the node key.
    pub fn verify(&self, root: &TenantId, now: Timestamp) -> Result<(), CertError> {
        self.verify_signature(root)?;
        self.check_time(now)
    }

    /// Checks the issuer and the signature only (the part that can be cached).
    pub fn verify_signature(&self, root: &TenantId) -> Result<(), CertError> {
        if self.cert.tenant != *root {
            return Err(CertError::WrongRoot);
        }
        crypto::strict_key(&self.cert.node.0)?;
        crypto::verify(&root.0, domain::CERT, &Self::signed_bytes(&self.cert), &self.signature)?;
        Ok(())
    }

    /// Checks the validity window.
    pub fn check_time(&self, now: Timestamp) -> Result<(), CertError> {
        if now < self.cert.not_before || now >= self.cert.not_after {
            return Err(CertError::Expired);
        }
        Ok(())
    }

    /// Hash identifying this exact signed certificate: of every field at a fixed width, so
    /// equal hashes mean equal certificates (receivers compute it for every message).
    pub fn hash(&self) -> [u8; 32] {
        let c = &self.cert;
        let mut b = [0u8; 32 + 32 + 1 + 8 * 3 + 64];
        b[..32].copy_from_slice(&c.tenant.0);
        b[32..64].copy_from_slice(&c.node.0);
        b[64] = c.roles.0;
        b[65..73].copy_from_slice(&c.not_before.0.to_le_bytes());
        b[73..81].copy_from_slice(&c.not_after.0.to_le_bytes());
        b[81..89].copy_from_slice(&c.serial.to_le_bytes());
        b[89..121].copy_from_slice(&self.signature.0);
        b[121..].copy_from_slice(&self.signature.1);
        *blake3::hash(&b).as_bytes()
    }
}

/// A revocation of one node key in one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Revocation {
    /// The tenant.
    pub tenant: TenantId,
    /// The revoked node key.
    pub node: NodeKey,
    /// When the root issued it.
    pub issued_at: Timestamp,
}

/// A revocation with the root's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignedRevocation {
    /// The revocation.
    pub revocation: Revocation,
    /// Root signature over `domain::REVOCATION || postcard(revocation)`.
    pub signature: SigBytes,
}

impl SignedRevocation {
    /// Checks issuer and signature.
    pub fn verify(&self, root: &TenantId) -> Result<(), CertError> {
        if self.revocation.tenant != *root {
            return Err(CertError::WrongRoot);
        }
        let bytes = postcard::to_allocvec(&self.revocation).expect("revocation encodes");
        crypto::verify(&root.0, domain::REVOCATION, &bytes, &self.signature)?;
        Ok(())
    }
}

/// The revoked node keys of a tenant: a grow-only set (`crdts::GSet`) of keys, with the
/// signed revocation kept for each so it can be forwarded.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    set: crdts::GSet<NodeKey>,
    signed: BTreeMap<NodeKey, SignedRevocation>,
}

impl Revocations {
    /// Adds a verified revocation; returns true if it was new.
    pub fn insert(&mut self, rev: SignedRevocation) -> bool {
        let node = rev.revocation.node;
        if self.set.contains(&node) {
            return false;
        }
        self.set.insert(node);
        self.signed.insert(node, rev);
        true
    }

    /// Whether `node` is revoked.
    pub fn contains(&self, node: &NodeKey) -> bool {
        self.set.contains(node)
    }

    /// Every signed revocation, ordered by node key.
    pub fn iter(&self) -> impl Iterator<Item = &SignedRevocation> {
        self.signed.values()
    }

    /// Number of revoked keys.
    pub fn len(&self) -> usize {
        self.signed.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.signed.is_empty()
    }

    /// Merges another set (grow-only union).
    pub fn merge(&mut self, other: &Revocations) {
        for r in other.iter() {
            self.insert(*r);
        }
    }

    /// A digest of the set (order-independent: the map is ordered).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 revocations digest");
        for k in self.signed.keys() {
            h.update(&k.0);
        }
        *h.finalize().as_bytes()
    }
}

/// A tenant root key, held by the tenant's administrator (not by nodes).
pub struct TenantRoot {
    key: SigningKey,
}

impl std::fmt::Debug for TenantRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRoot")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl TenantRoot {
    /// A root from its 32 secret bytes.
    pub fn from_secret(secret: [u8; 32]) -> TenantRoot {
        TenantRoot {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The root's secret bytes (to store in a key file).
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The tenant's identity.
    pub fn id(&self) -> TenantId {
        TenantId(self.key.verifying_key().to_bytes())
    }

    /// Certifies `node` with `roles` for `[not_before, not_after)`.
    pub fn issue(
        &self,
        node: NodeKey,
        roles: Roles,
        not_before: Timestamp,
        not_after: Timestamp,
        serial: u64,
    ) -> SignedCert {
        let cert = NodeCert {
            tenant: self.id(),
            node,
            roles,
            not_before,
            not_after,
            serial,
        };
        let signature = crypto::sign(&self.key, domain::CERT, &SignedCert::signed_bytes(&cert));
        SignedCert { cert, signature }
    }

    /// Revokes `node`.
    pub fn revoke(&self, node: NodeKey, issued_at: Timestamp) -> SignedRevocation {
        let revocation = Revocation {
            tenant: self.id(),
            node,
            issued_at,
        };
        let bytes = postcard::to_allocvec(&revocation).expect("revocation encodes");
        SignedRevocation {
            revocation,
            signature: crypto::sign(&self.key, domain::REVOCATION, &bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_to_any_field_changes_the_hash() {
        let base = SignedCert {
            cert: NodeCert {
                tenant: TenantId([1; 32]),
                node: NodeKey([2; 32]),
                roles: Roles::ALL,
                not_before: Timestamp(3),
                not_after: Timestamp(4),
                serial: 5,
            },
            signature: SigBytes([6; 32], [7; 32]),
        };
        let edits: [fn(&mut SignedCert); 8] = [
            |c| c.cert.tenant.0[31] ^= 1,
            |c| c.cert.node.0[0] ^= 1,
            |c| c.cert.roles = Roles::PROFILE,
            |c| c.cert.not_before = Timestamp(4),
            |c| c.cert.not_after = Timestamp(3),
            |c| c.cert.serial = 1 << 40,
            |c| c.signature.0[5] ^= 1,
            |c| c.signature.1[31] ^= 1,
        ];
        let mut seen = std::collections::BTreeSet::from([base.hash()]);
        for edit in edits {
            let mut c = base;
            edit(&mut c);
            assert!(seen.insert(c.hash()), "{c:?}");
        }
    }
}
