//! What a node holds for one tenant: its certificate, its per-tenant signing key, and the
//! tenant's shared secrets (topic secret, group-key epochs).

use super::cert::{Roles, SignedCert, TenantId, TenantRoot};
use crate::ids::{NodeKey, Timestamp};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many group-key epochs a node keeps to open messages (the current one and older ones).
pub const MAX_EPOCHS: usize = 4;

/// A tenant's shared secrets, distributed to members by the tenant's administrator.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantSecrets {
    /// Stable secret from which the topic name and the envelope tenant tag are derived.
    pub topic_secret: [u8; 32],
    /// Group keys by epoch; the highest epoch is current. At most [`MAX_EPOCHS`] kept.
    pub group_keys: BTreeMap<u32, [u8; 32]>,
}

impl std::fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSecrets")
            .field("epochs", &self.group_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TenantSecrets {
    /// Secrets with one group key at epoch 0.
    pub fn new(topic_secret: [u8; 32], group_key: [u8; 32]) -> TenantSecrets {
        TenantSecrets {
            topic_secret,
            group_keys: BTreeMap::from([(0, group_key)]),
        }
    }

    /// Deterministic secrets from a seed (tests and simulation).
    pub fn from_seed(seed: &[u8; 32]) -> TenantSecrets {
        let mut h = blake3::Hasher::new_derive_key("ignite v1 tenant secrets from seed");
        h.update(seed);
        let mut out = [0u8; 64];
        h.finalize_xof().fill(&mut out);
        let mut topic = [0u8; 32];
        let mut group = [0u8; 32];
        topic.copy_from_slice(&out[..32]);
        group.copy_from_slice(&out[32..]);
        TenantSecrets::new(topic, group)
    }

    /// The current epoch and its key.
    pub fn current(&self) -> (u32, [u8; 32]) {
        let (e, k) = self.group_keys.iter().next_back().expect("at least one epoch");
        (*e, *k)
    }
}

/// Errors of credential handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A new epoch must be higher than the current one.
    #[error("epoch {new} is not after current epoch {current}")]
    EpochNotNewer {
        /// The epoch offered.
        new: u32,
        /// The current epoch.
        current: u32,
    },
    /// The certificate is for another key or tenant.
    #[error("certificate does not match this node's key or tenant")]
    CertMismatch,
    /// The credentials bytes could not be decoded.
    #[error("credentials could not be decoded: {0}")]
    Decode(#[from] postcard::Error),
    /// No group key at all.
    #[error("credentials hold no group key")]
    NoGroupKey,
}

/// Everything a node needs to take part in one tenant. One serializable value with a
/// rotation API for the certificate and the group key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RawCredentials")]
pub struct TenantCredentials {
    cert: SignedCert,
    signing_secret: [u8; 32],
    secrets: TenantSecrets,
    /// The key expanded from `signing_secret`, kept so signing does not derive the public
    /// key again each time.
    #[serde(skip)]
    signing: SigningKey,
}

/// The serialized form, checked by [`TenantCredentials::new`] when deserialized.
#[derive(Deserialize)]
struct RawCredentials {
    cert: SignedCert,
    signing_secret: [u8; 32],
    secrets: TenantSecrets,
}

impl TryFrom<RawCredentials> for TenantCredentials {
    type Error = CredentialsError;

    fn try_from(raw: RawCredentials) -> Result<TenantCredentials, CredentialsError> {
        TenantCredentials::new(raw.cert, raw.signing_secret, raw.secrets)
    }
}

impl std::fmt::Debug for TenantCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCredentials")
            .field("tenant", &self.cert.cert.tenant)
            .field("node", &self.cert.cert.node)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl TenantCredentials {
    /// Builds credentials; the certificate must be for `signing_secret`'s public key.
    pub fn new(
        cert: SignedCert,
        signing_secret: [u8; 32],
        secrets: TenantSecrets,
    ) -> Result<TenantCredentials, CredentialsError> {
        let key = SigningKey::from_bytes(&signing_secret);
        if cert.cert.node.0 != key.verifying_key().to_bytes() {
            return Err(CredentialsError::CertMismatch);
        }
        if secrets.group_keys.is_empty() {
            return Err(CredentialsError::NoGroupKey);
        }
        Ok(TenantCredentials {
            cert,
            signing_secret,
            secrets,
            signing: key,
        })
    }

    /// Convenience for tests, simulators and demos: a node key derived from `node_seed`,
    /// certified by `root` with `roles` over `[not_before, not_after)`.
    pub fn issue(
        root: &TenantRoot,
        secrets: TenantSecrets,
        node_seed: &[u8; 32],
        roles: Roles,
        not_before: Timestamp,
        not_after: Timestamp,
        serial: u64,
    ) -> TenantCredentials {
        let key = crate::crypto::key_from_seed(node_seed, "node tenant key");
        let cert = root.issue(
            NodeKey(key.verifying_key().to_bytes()),
            roles,
            not_before,
            not_after,
            serial,
        );
        TenantCredentials {
            cert,
            signing_secret: key.to_bytes(),
            secrets,
            signing: key,
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> TenantId {
        self.cert.cert.tenant
    }

    /// This node's key in the tenant.
    pub fn node(&self) -> NodeKey {
        self.cert.cert.node
    }

    /// The certificate.
    pub fn cert(&self) -> &SignedCert {
        &self.cert
    }

    /// The shared secrets.
    pub fn secrets(&self) -> &TenantSecrets {
        &self.secrets
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Replaces the certificate (renewal); it must be for the same key and tenant.
    pub fn renew_cert(&mut self, cert: SignedCert) -> Result<(), CredentialsError> {
        if cert.cert.node != self.cert.cert.node || cert.cert.tenant != self.cert.cert.tenant {
            return Err(CredentialsError::CertMismatch);
        }
        self.cert = cert;
        Ok(())
    }

    /// Adds a new group-key epoch, which becomes current; the oldest epochs beyond
    /// [`MAX_EPOCHS`] are forgotten.
    pub fn rotate_group_key(&mut self, epoch: u32, key: [u8; 32]) -> Result<(), CredentialsError> {
        let (current, _) = self.secrets.current();
        if epoch <= current {
            return Err(CredentialsError::EpochNotNewer { new: epoch, current });
        }
        self.secrets.group_keys.insert(epoch, key);
        while self.secrets.group_keys.len() > MAX_EPOCHS {
            self.secrets.group_keys.pop_first();
        }
        Ok(())
    }

    /// Serializes (contains secrets: store like a private key).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("credentials encode")
    }

    /// Deserializes and re-checks the key/certificate match.
    pub fn from_bytes(bytes: &[u8]) -> Result<TenantCredentials, CredentialsError> {
        let raw: RawCredentials = postcard::from_bytes(bytes)?;
        TenantCredentials::try_from(raw)
    }
}
