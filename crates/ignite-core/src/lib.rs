//! # ignite-core
//!
//! The sans-IO protocol engine of Ignite: runtime nodes of one tenant pool their JIT
//! profiles as signed CRDT counters, so that the fleet learns once what each node would
//! otherwise learn alone.
//!
//! * [`Recorder`] / [`MethodProfiler`]: the host's hot path (no lock, no atomic
//!   read-modify-write, no allocation per record).
//! * [`Engine`]: turns local counts into signed, sealed deltas; verifies, merges and
//!   re-evaluates thresholds on what others send; runs anti-entropy; snapshots.
//! * [`tenancy`]: tenant roots, node certificates, revocations, credentials.
//! * [`code`]: compiler election and signed code artifacts: hardware classes, speculation
//!   assumptions, manifests, blobs, the rules every engine evaluates identically.
//! * [`wire`]: the versioned, sealed wire format with bounded decoding.
//!
//! ## Determinism
//! Nothing in this crate reads a clock, a socket or a global random number generator: time
//! is an argument ([`Timestamp`]), randomness comes from [`Config::seed`], and iteration
//! that reaches output goes over ordered maps. The same inputs in the same order produce
//! the same outputs, byte for byte, which is what lets a simulator run thousands of real
//! engines reproducibly.

pub mod code;
pub mod crypto;
pub mod engine;
pub mod harness;
pub mod ids;
pub mod profile;
pub mod recorder;
pub mod rng;
pub mod tenancy;
pub mod wire;

pub use code::{
    Assumption, AssumptionCheck, ClassId, CodeConfig, CodeKey, CompileId, CompileRequest, CompiledCode, HardwareClass,
    Install, Manifest, Refusal,
};
pub use engine::{
    Accepted, CATCH_UP_ROUNDS, CompileUnit, Config, DropReason, Engine, EngineError, Event, FunctionPolicy, Incoming,
    MessageHash, Output, Rejection, SharedChecks, SnapshotError, Stats, Thresholds,
};
pub use ids::{
    FunctionId, GroupId, Incarnation, MethodId, MethodKey, NodeKey, Peer, TenantTag, Tier, Timestamp, TopicId,
};
pub use profile::counter::{Counter, CounterKey};
pub use profile::{Evidence, ProfileView};
pub use recorder::{MethodProfiler, MethodShape, Recorder, RecorderConfig, RecorderError};
pub use tenancy::{Roles, TenantCredentials, TenantId, TenantRoot, TenantSecrets};
