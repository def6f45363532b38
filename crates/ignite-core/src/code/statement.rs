//! Signed statements about code: presence, compile claims, manifests, attestations.
//!
//! Each is signed by one node under its tenant certificate, with its own domain prefix.
//! Decoding bounds every list; [`Statement::check_bounds`] is run on everything received.

use super::assumption::Assumption;
use super::class::ClassId;
use super::{CodeKey, CodeLimits};
use crate::crypto::{self, SigBytes, SigError, domain};
use crate::ids::{FunctionId, MethodId, NodeKey, Tier, Timestamp};
use crate::tenancy::{SignedCert, TenantCredentials, TenantId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Something a node signs about code.
pub trait Statement: Serialize + DeserializeOwned + Clone + std::fmt::Debug {
    /// Domain-separation prefix of its signatures.
    const DOMAIN: &'static [u8];
    /// The tenant it is about.
    fn tenant(&self) -> &TenantId;
    /// The node that signs it.
    fn signer(&self) -> &NodeKey;
    /// Checks list sizes and field ranges; `Err` names the offending field.
    fn check_bounds(&self, limits: &CodeLimits) -> Result<(), &'static str>;
}

/// A statement with the signer's certificate and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What is stated.
    pub statement: T,
    /// The signer's certificate (root-signed).
    pub cert: SignedCert,
    /// Signature over `T::DOMAIN || postcard(statement)`.
    pub signature: SigBytes,
}

impl<T: Statement> Signed<T> {
    /// Signs `statement` with the node key of `creds`.
    pub fn sign(statement: T, creds: &TenantCredentials) -> Signed<T> {
        let bytes = postcard::to_allocvec(&statement).expect("statement encodes");
        let signature = crypto::sign(creds.signing_key(), T::DOMAIN, &bytes);
        Signed {
            statement,
            cert: *creds.cert(),
            signature,
        }
    }

    /// Checks that the certificate is the signer's and the signature is valid (the
    /// certificate itself is checked by the engine against the tenant root).
    pub fn verify_signature(&self) -> Result<(), SigError> {
        if self.cert.cert.node != *self.statement.signer() {
            return Err(SigError::Invalid);
        }
        let bytes = postcard::to_allocvec(&self.statement).expect("statement encodes");
        crypto::verify(&self.statement.signer().0, T::DOMAIN, &bytes, &self.signature)
    }

    /// A hash identifying this exact signed statement.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = postcard::to_allocvec(self).expect("statement encodes");
        *blake3::Hasher::new_derive_key("ignite v1 signed statement")
            .update(T::DOMAIN)
            .update(&bytes)
            .finalize()
            .as_bytes()
    }
}

/// A node's signed announcement of itself in a tenant: what it can run, what it has
/// installed, how loaded it is. Last writer (highest `seq`) wins; it expires after the
/// presence TTL unless renewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The tenant.
    pub tenant: TenantId,
    /// The node.
    pub node: NodeKey,
    /// Increases with every announcement of this node.
    pub seq: u64,
    /// The node's time when it signed.
    pub issued_at: Timestamp,
    /// How long receivers should consider the node live without a newer presence (the
    /// sender's announcement interval times the TTL factor; receivers cap it).
    pub valid_ms: u64,
    /// Hardware classes the node can run, best first, each with the tiers it serves (a
    /// [`HardwareClass::tiers`](super::HardwareClass::tiers) mask).
    pub classes: Vec<(ClassId, u8)>,
    /// Load, in thousandths of capacity (host-defined).
    pub load: u16,
    /// Hash of the node's whole installed set (the list below may be truncated).
    pub installed_digest: [u8; 32],
    /// Functions referenced by `installed`.
    pub functions: Vec<FunctionId>,
    /// Installed code: (index into `functions`, method, tier).
    pub installed: Vec<(u16, MethodId, Tier)>,
    /// Whether `installed` was truncated to fit.
    pub truncated: bool,
}

impl Statement for Presence {
    const DOMAIN: &'static [u8] = domain::PRESENCE;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn signer(&self) -> &NodeKey {
        &self.node
    }
    fn check_bounds(&self, l: &CodeLimits) -> Result<(), &'static str> {
        if self.classes.len() > l.max_classes {
            return Err("classes");
        }
        if self.classes.iter().any(|(_, t)| *t == 0 || t & !super::ALL_TIERS != 0) {
            return Err("class tiers");
        }
        if self.functions.len() > l.max_presence_functions {
            return Err("functions");
        }
        if self.installed.len() > l.max_presence_installed {
            return Err("installed");
        }
        if self
            .installed
            .iter()
            .any(|(f, _, t)| *f as usize >= self.functions.len() || *t > Tier::MAX)
        {
            return Err("installed reference");
        }
        Ok(())
    }
}

/// A node's claim to compile one key for one class at one generation, until `lease_until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The tenant.
    pub tenant: TenantId,
    /// The claimant.
    pub node: NodeKey,
    /// What is compiled.
    pub key: CodeKey,
    /// For which class.
    pub class: ClassId,
    /// Which generation.
    pub generation: u32,
    /// The claim lapses at this time unless renewed (`lease_until <= issued_at` releases it).
    pub lease_until: Timestamp,
    /// The claimant's time when it signed.
    pub issued_at: Timestamp,
}

impl Statement for Claim {
    const DOMAIN: &'static [u8] = domain::CLAIM;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn signer(&self) -> &NodeKey {
        &self.node
    }
    fn check_bounds(&self, l: &CodeLimits) -> Result<(), &'static str> {
        if self.key.tier > Tier::MAX {
            return Err("tier");
        }
        if self.generation == 0 || self.generation > l.max_generations {
            return Err("generation");
        }
        Ok(())
    }
}

/// The signed description of one compiled artifact. The code itself (the blob) travels
/// separately and is identified by `blob_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The tenant.
    pub tenant: TenantId,
    /// The code's function (deployment), method and tier.
    pub key: CodeKey,
    /// The hardware class it was compiled for.
    pub class: ClassId,
    /// Generation: 1 for the first compile, +1 for every recompile or re-promotion.
    pub generation: u32,
    /// Speculations baked in.
    pub assumptions: Vec<Assumption>,
    /// Ids of assumptions known to break on some nodes that this code tolerates (set only
    /// by a re-promotion): they neither block installation nor retire it.
    pub tolerated: Vec<u32>,
    /// For a re-promotion: the generation whose code this re-publishes.
    pub repromotes: Option<u32>,
    /// Digest of the merged profile the code was built from.
    pub profile_digest: [u8; 32],
    /// blake3 hash of the code.
    pub blob_hash: [u8; 32],
    /// Size of the code in bytes.
    pub blob_size: u64,
    /// The compiling node (the signer).
    pub compiler: NodeKey,
    /// The compiler's logical time when it signed.
    pub created_at: Timestamp,
    /// Not installed at or after this time.
    pub expires_at: Timestamp,
}

impl Statement for Manifest {
    const DOMAIN: &'static [u8] = domain::MANIFEST;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn signer(&self) -> &NodeKey {
        &self.compiler
    }
    fn check_bounds(&self, l: &CodeLimits) -> Result<(), &'static str> {
        if self.key.tier > Tier::MAX {
            return Err("tier");
        }
        if self.generation == 0 || self.generation > l.max_generations {
            return Err("generation");
        }
        if self.assumptions.len() > l.max_assumptions || self.tolerated.len() > l.max_assumptions {
            return Err("assumptions");
        }
        if !self.assumptions.iter().all(Assumption::is_bounded) {
            return Err("assumption size");
        }
        if self.repromotes.is_some_and(|g| g >= self.generation) {
            return Err("repromotes");
        }
        Ok(())
    }
}

/// A node's statement that it compiled the same key, class and inputs as a manifest and got
/// `blob_hash` (equal to the manifest's when compilation is reproducible).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The tenant.
    pub tenant: TenantId,
    /// The attesting node.
    pub attester: NodeKey,
    /// The key compiled.
    pub key: CodeKey,
    /// The class compiled for.
    pub class: ClassId,
    /// The manifest's generation.
    pub generation: u32,
    /// Hash of the signed manifest attested.
    pub manifest: [u8; 32],
    /// Hash of the code the attester produced.
    pub blob_hash: [u8; 32],
    /// The attester's time when it signed.
    pub issued_at: Timestamp,
}

impl Statement for Attestation {
    const DOMAIN: &'static [u8] = domain::ATTESTATION;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn signer(&self) -> &NodeKey {
        &self.attester
    }
    fn check_bounds(&self, l: &CodeLimits) -> Result<(), &'static str> {
        if self.key.tier > Tier::MAX {
            return Err("tier");
        }
        if self.generation == 0 || self.generation > l.max_generations {
            return Err("generation");
        }
        Ok(())
    }
}
