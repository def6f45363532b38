//! Compiler election and signed code artifacts (sans-IO data and rules).
//!
//! * [`class`]: hardware classes, the explicit targets code is compiled for.
//! * [`assumption`]: speculations baked into code, and the host's check of them.
//! * [`statement`]: signed presence, compile claims, manifests and attestations.
//! * [`blobs`]: the bounded store of code blobs, and chunked transfer.
//! * [`rules`]: the pure functions every engine evaluates identically: rendezvous ranking,
//!   which manifest is current, retirement, re-promotion.
//!
//! The engine ([`crate::Engine`]) drives these: see `docs/PROTOCOL.md` for the protocol.

pub mod assumption;
pub mod blobs;
pub mod class;
pub mod rules;
pub mod statement;

use crate::ids::{FunctionId, MethodId, NodeKey, Tier, Timestamp};
use crate::profile::counter::CounterKey;
use crate::tenancy::TenantId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use assumption::{AllHold, Assumption, AssumptionCheck};
pub use blobs::BlobStore;
pub use class::{ALL_TIERS, ClassId, HardwareClass, HostCpu};
pub use statement::{Attestation, Claim, Manifest, Presence, Signed, Statement};

/// What one artifact is code for: a method of a deployment at a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CodeKey {
    /// The deployment.
    pub function: FunctionId,
    /// The method.
    pub method: MethodId,
    /// The tier the code is for (1 baseline, 2 optimized; 0 for portable bytecode).
    pub tier: Tier,
}

/// One election: a key, a class and a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Election {
    /// The key.
    pub key: CodeKey,
    /// The class.
    pub class: ClassId,
    /// The generation.
    pub generation: u32,
}

/// Bounds on code statements received from the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeLimits {
    /// Most classes in a presence.
    pub max_classes: usize,
    /// Most functions referenced by a presence.
    pub max_presence_functions: usize,
    /// Most installed entries listed in a presence.
    pub max_presence_installed: usize,
    /// Most assumptions in a manifest.
    pub max_assumptions: usize,
    /// Highest generation accepted for a key.
    pub max_generations: u32,
    /// Most manifests or attestations in one message.
    pub max_statements_per_message: usize,
}

impl Default for CodeLimits {
    fn default() -> CodeLimits {
        CodeLimits {
            max_classes: 16,
            max_presence_functions: 64,
            max_presence_installed: 1024,
            max_assumptions: 64,
            max_generations: 64,
            max_statements_per_message: 64,
        }
    }
}

/// Configuration of election, code distribution and feedback. Every engine of a tenant must
/// use the same values for the rules to agree (`lease_ms`, `retire_min_nodes`,
/// `recompile_backoff_ms`, `min_attestations`, `min_latency_samples`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeConfig {
    /// Hardware classes this node can run, best first. Empty: this node runs no compiled
    /// code (it still profiles).
    pub hardware: Vec<HardwareClass>,
    /// Interval between presence announcements.
    pub presence_interval_ms: u64,
    /// A member not heard from for this long is no longer live (scaled with the interval
    /// when the interval grows with the fleet, see `max_presences_per_s`).
    pub presence_ttl_ms: u64,
    /// Target upper bound on presence messages a member receives per second: the interval
    /// grows to `members * 1000 / max_presences_per_s` ms in large fleets.
    pub max_presences_per_s: u32,
    /// A compile claim's lease; the next-ranked node takes over after it lapses. Also the
    /// delay between the turns of successive ranks when a better node never claims.
    pub lease_ms: u64,
    /// How often pending elections, installs and fetches are re-examined.
    pub tick_ms: u64,
    /// After an install, the node's new installed set is announced (for schedulers, see
    /// `Engine::hot_members`) once this percentage of the presence interval in force has
    /// passed since its last presence, instead of at the next regular one: 25 allows up to
    /// four extra presences per interval while installs go on; 100 announces installs only
    /// with the regular presences. Between 1 and 100.
    #[serde(default = "default_install_announce_pct")]
    pub install_announce_pct: u32,
    /// A node claims no compile in its first `claim_after_join_ms` after joining; after
    /// that, until `presence_interval_ms` has passed, only once every member with the
    /// compile role whose delta it accepted has a live presence here (its roster, which
    /// ranks the election, is then complete as far as it can tell). At most
    /// `presence_interval_ms`.
    #[serde(default = "default_claim_after_join_ms")]
    pub claim_after_join_ms: u64,
    /// Distinct contributing nodes a threshold needs by default.
    pub min_contributors: usize,
    /// Distinct attesting nodes (other than the compiler) that must report the same blob
    /// hash before code is installed. 0 turns attestation off.
    pub min_attestations: usize,
    /// Distinct nodes reporting deopts of one assumption that retire an artifact.
    pub retire_min_nodes: usize,
    /// Base delay before a retired key is recompiled; doubles with every generation.
    pub recompile_backoff_ms: u64,
    /// Latency samples each of two generations needs before they are compared.
    pub min_latency_samples: u64,
    /// Validity of a manifest from its creation.
    pub manifest_ttl_ms: u64,
    /// Largest accepted code blob.
    pub max_blob_bytes: u64,
    /// Total bytes of the blob store.
    pub blob_store_bytes: u64,
    /// Most blobs in the store.
    pub blob_store_count: usize,
    /// Bytes per blob chunk message.
    pub blob_chunk_bytes: usize,
    /// A blob request unanswered for this long goes to another peer. Once some of a
    /// tenant's blob requests were answered, a request waits four times their smoothed round
    /// trip instead, at least a twentieth of this; a round over `fetch_attempts` peers that
    /// found no holder backs off 1, 2, 4, then 8 times that wait.
    pub fetch_timeout_ms: u64,
    /// Peers tried for one blob before giving up until the next retry.
    pub fetch_attempts: usize,
    /// Most live members tracked per tenant.
    pub max_members: usize,
    /// Most (key, class) pairs with manifests per tenant.
    pub max_manifest_keys: usize,
    /// Bounds on received statements.
    pub limits: CodeLimits,
}

impl CodeConfig {
    /// A copy of every setting, with an empty class list.
    pub(crate) fn clone_settings(c: &CodeConfig) -> CodeConfig {
        CodeConfig {
            hardware: Vec::new(),
            presence_interval_ms: c.presence_interval_ms,
            presence_ttl_ms: c.presence_ttl_ms,
            max_presences_per_s: c.max_presences_per_s,
            lease_ms: c.lease_ms,
            tick_ms: c.tick_ms,
            install_announce_pct: c.install_announce_pct,
            claim_after_join_ms: c.claim_after_join_ms,
            min_contributors: c.min_contributors,
            min_attestations: c.min_attestations,
            retire_min_nodes: c.retire_min_nodes,
            recompile_backoff_ms: c.recompile_backoff_ms,
            min_latency_samples: c.min_latency_samples,
            manifest_ttl_ms: c.manifest_ttl_ms,
            max_blob_bytes: c.max_blob_bytes,
            blob_store_bytes: c.blob_store_bytes,
            blob_store_count: c.blob_store_count,
            blob_chunk_bytes: c.blob_chunk_bytes,
            fetch_timeout_ms: c.fetch_timeout_ms,
            fetch_attempts: c.fetch_attempts,
            max_members: c.max_members,
            max_manifest_keys: c.max_manifest_keys,
            limits: c.limits,
        }
    }
}

fn default_claim_after_join_ms() -> u64 {
    1_000
}

fn default_install_announce_pct() -> u32 {
    25
}

impl Default for CodeConfig {
    fn default() -> CodeConfig {
        CodeConfig {
            hardware: Vec::new(),
            presence_interval_ms: 5_000,
            presence_ttl_ms: 16_000,
            max_presences_per_s: 100,
            lease_ms: 30_000,
            tick_ms: 250,
            install_announce_pct: default_install_announce_pct(),
            claim_after_join_ms: default_claim_after_join_ms(),
            min_contributors: 1,
            min_attestations: 0,
            retire_min_nodes: 3,
            recompile_backoff_ms: 60_000,
            min_latency_samples: 100,
            manifest_ttl_ms: 7 * 24 * 3_600_000,
            max_blob_bytes: 64 << 20,
            blob_store_bytes: 512 << 20,
            blob_store_count: 4_096,
            blob_chunk_bytes: 48 * 1024,
            fetch_timeout_ms: 2_000,
            fetch_attempts: 8,
            max_members: 16_384,
            max_manifest_keys: 65_536,
            limits: CodeLimits::default(),
        }
    }
}

/// Why a compile is requested.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// This node was elected: compile, then hand the code to
    /// [`Engine::compiled`](crate::Engine::compiled), which signs and publishes it.
    Publish,
    /// Attestation: compile with exactly `assumptions` (those of the manifest) and hand the
    /// code to [`Engine::compiled`](crate::Engine::compiled); the engine signs the hash the
    /// compilation produced.
    Attest {
        /// Hash of the signed manifest to attest.
        manifest: [u8; 32],
    },
}

/// Identifies a compile request in [`Engine::compiled`](crate::Engine::compiled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompileId(pub u64);

/// What the host must compile.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileRequest {
    /// Answer with this id.
    pub id: CompileId,
    /// The tenant.
    pub tenant: TenantId,
    /// What to compile.
    pub key: CodeKey,
    /// For which class (one of this node's [`CodeConfig::hardware`]).
    pub class: HardwareClass,
    /// The generation the code will be published as.
    pub generation: u32,
    /// Why.
    pub purpose: Purpose,
    /// The merged fleet-wide profile of the method at the tiers below `key.tier`.
    pub profile: Vec<(CounterKey, u64)>,
    /// Digest of `profile` (recorded in the manifest).
    pub profile_digest: [u8; 32],
    /// Assumptions known to be broken: the code must not rely on them.
    pub excluded: Vec<Assumption>,
    /// For attestation: the assumptions to bake in, exactly.
    pub required: Option<Vec<Assumption>>,
}

/// Code the host compiled, for [`Engine::compiled`](crate::Engine::compiled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCode {
    /// The code (for wasmtime, a serialized module).
    pub bytes: Vec<u8>,
    /// The speculations it relies on.
    pub assumptions: Vec<Assumption>,
}

/// Code to install, handed to the host by [`Event::Install`](crate::Event::Install) after
/// every check passed.
#[derive(Clone, PartialEq)]
pub struct Install {
    /// The tenant.
    pub tenant: TenantId,
    /// The signed manifest.
    pub manifest: Signed<Manifest>,
    /// The class (one of this node's).
    pub class: HardwareClass,
    /// The code, whose blake3 hash and size match the manifest.
    pub blob: Arc<[u8]>,
}

impl std::fmt::Debug for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Install")
            .field("tenant", &self.tenant)
            .field("manifest", &self.manifest)
            .field("class", &self.class.level)
            .field("blob_bytes", &self.blob.len())
            .finish()
    }
}

/// Why code was not installed (or was removed). Each refusal is an event and a metric.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// This node cannot run the manifest's class, or the class does not serve the
    /// manifest's tier.
    #[error("hardware class not runnable here (or not for this tier)")]
    ClassNotRunnable,
    /// An assumption does not hold here.
    #[error("assumption {assumption:?} does not hold here: {reason}")]
    AssumptionViolated {
        /// The assumption.
        assumption: Assumption,
        /// The host's reason.
        reason: String,
    },
    /// The manifest is about another tenant.
    #[error("manifest for another tenant")]
    WrongTenant,
    /// A newer generation is already current for the key.
    #[error("generation {got} older than current {current}")]
    OlderGeneration {
        /// The manifest's generation.
        got: u32,
        /// The current generation.
        current: u32,
    },
    /// The manifest expired.
    #[error("manifest expired")]
    Expired,
    /// The code received does not hash to the manifest's blob hash.
    #[error("blob hash mismatch")]
    BlobHashMismatch,
    /// The code received does not have the manifest's size.
    #[error("blob size mismatch")]
    BlobSizeMismatch,
    /// The manifest announces code larger than this node accepts.
    #[error("blob of {size} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// Announced size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// The manifest is for another deployment of the function.
    #[error("manifest for another deployment")]
    OtherDeployment,
    /// The artifact was retired: one of its assumptions broke on too many nodes.
    #[error("artifact retired (assumption {assumption} broke on {nodes} nodes)")]
    Retired {
        /// Id of the broken assumption.
        assumption: u32,
        /// Distinct nodes that reported deopts of it.
        nodes: usize,
    },
    /// Too few attestations agree with the manifest's blob hash yet.
    #[error("{have} of {need} attestations")]
    Unattested {
        /// Agreeing attestations held.
        have: usize,
        /// Required.
        need: usize,
    },
    /// No peer could supply the blob.
    #[error("blob unavailable from every peer tried")]
    BlobUnavailable,
    /// A bound was exceeded or a field is invalid.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// The signer's certificate or signature is not valid.
    #[error("bad signature or certificate: {0}")]
    Unauthentic(String),
}

impl Refusal {
    /// A short stable name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::ClassNotRunnable => "class_not_runnable",
            Refusal::AssumptionViolated { .. } => "assumption_violated",
            Refusal::WrongTenant => "wrong_tenant",
            Refusal::OlderGeneration { .. } => "older_generation",
            Refusal::Expired => "expired",
            Refusal::BlobHashMismatch => "blob_hash_mismatch",
            Refusal::BlobSizeMismatch => "blob_size_mismatch",
            Refusal::Oversize { .. } => "oversize",
            Refusal::OtherDeployment => "other_deployment",
            Refusal::Retired { .. } => "retired",
            Refusal::Unattested { .. } => "unattested",
            Refusal::BlobUnavailable => "blob_unavailable",
            Refusal::Invalid(_) => "invalid",
            Refusal::Unauthentic(_) => "unauthentic",
        }
    }
}

/// Errors of [`Engine::compiled`](crate::Engine::compiled).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// No such pending request (never issued, answered already, or cancelled).
    #[error("no pending compile request with this id")]
    UnknownRequest,
    /// The code is larger than `max_blob_bytes`.
    #[error("code of {size} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// Size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// The code relies on an assumption known to be broken.
    #[error("code relies on an excluded assumption: {0:?}")]
    ExcludedAssumption(Assumption),
    /// Too many or too large assumptions.
    #[error("assumptions out of bounds")]
    Bounds,
}

/// One live member as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberCode {
    /// The member.
    pub node: NodeKey,
    /// Its announced load (thousandths).
    pub load: u16,
    /// When its presence was last heard (this engine's time).
    pub heard_at: Timestamp,
    /// Installed (method, tier) of the function asked about, best tier per method.
    pub installed: Vec<(MethodId, Tier)>,
}
