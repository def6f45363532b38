//! Sealing: tenant messages are signed in plaintext, then encrypted with the tenant's
//! current group key (XChaCha20-Poly1305).
//!
//! # Nonces without an RNG
//! The nonce is synthetic: `keyed_blake3(nonce_key(epoch), aad || plaintext)` truncated to
//! 24 bytes, where `nonce_key` is derived from the epoch's group key and is different from
//! the encryption key. Two different plaintexts get the same nonce only if blake3 collides
//! on 192 bits, so a nonce is never reused with different plaintext. The same plaintext
//! sealed twice gives the same ciphertext, which reveals only that a message was repeated,
//! something gossip deduplication reveals anyway. No RNG and no counter state are needed,
//! so a restarted node or a simulator cannot reuse a nonce by accident.

use super::{Envelope, WIRE_VERSION, WireError};
use crate::ids::{TenantTag, TopicId};
use crate::tenancy::TenantSecrets;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;

struct EpochKeys {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

/// The sealing state of one tenant: opaque tag and topic, ciphers for each known epoch.
pub struct Sealer {
    tag: TenantTag,
    topic: TopicId,
    epochs: BTreeMap<u32, EpochKeys>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("tag", &self.tag)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The opaque tenant tag carried in envelopes, derived from the topic secret.
pub fn tenant_tag(secrets: &TenantSecrets) -> TenantTag {
    let k = blake3::derive_key("ignite v1 tenant tag", &secrets.topic_secret);
    let mut t = [0u8; 16];
    t.copy_from_slice(&k[..16]);
    TenantTag(t)
}

/// The opaque gossip topic name of a tenant, derived from the topic secret.
pub fn topic(secrets: &TenantSecrets) -> TopicId {
    let k = blake3::derive_key("ignite v1 topic", &secrets.topic_secret);
    TopicId(format!("ignite/1/{}", crate::ids::hex(&k[..16])))
}

impl Sealer {
    /// Builds the sealing state from a tenant's secrets.
    pub fn new(secrets: &TenantSecrets) -> Sealer {
        let epochs = secrets
            .group_keys
            .iter()
            .map(|(e, k)| {
                let enc = blake3::derive_key("ignite v1 seal key", k);
                let nonce_key = blake3::derive_key("ignite v1 seal nonce", k);
                (
                    *e,
                    EpochKeys {
                        cipher: XChaCha20Poly1305::new(&enc.into()),
                        nonce_key,
                    },
                )
            })
            .collect();
        Sealer {
            tag: tenant_tag(secrets),
            topic: topic(secrets),
            epochs,
        }
    }

    /// The tenant tag.
    pub fn tag(&self) -> TenantTag {
        self.tag
    }

    /// The topic name.
    pub fn topic(&self) -> &TopicId {
        &self.topic
    }

    fn aad(tag: &TenantTag, epoch: u32) -> [u8; 21] {
        let mut aad = [0u8; 21];
        aad[0] = WIRE_VERSION;
        aad[1..17].copy_from_slice(&tag.0);
        aad[17..].copy_from_slice(&epoch.to_le_bytes());
        aad
    }

    /// Seals `plaintext` under the current epoch and encodes the envelope.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let (epoch, keys) = self.epochs.iter().next_back().expect("at least one epoch");
        let aad = Self::aad(&self.tag, *epoch);
        let mut h = blake3::Hasher::new_keyed(&keys.nonce_key);
        h.update(&aad);
        h.update(plaintext);
        let mut nonce = [0u8; 24];
        h.finalize_xof().fill(&mut nonce);
        let sealed = keys
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");
        let env = Envelope {
            version: WIRE_VERSION,
            tenant: self.tag,
            epoch: *epoch,
            nonce,
            sealed: &sealed,
        };
        postcard::to_allocvec(&env).expect("envelope encodes")
    }

    /// Opens an envelope already decoded and addressed to this tenant.
    pub fn open(&self, env: &Envelope<'_>) -> Result<Vec<u8>, WireError> {
        let keys = self.epochs.get(&env.epoch).ok_or(WireError::UnknownEpoch(env.epoch))?;
        let aad = Self::aad(&self.tag, env.epoch);
        keys.cipher
            .decrypt(
                &XNonce::from(env.nonce),
                Payload {
                    msg: env.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| WireError::Unauthentic)
    }
}
