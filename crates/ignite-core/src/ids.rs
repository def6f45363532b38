//! Identifiers shared by every part of the engine.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, in milliseconds since an epoch chosen by the caller.
///
/// The engine never reads a clock: every time it sees is handed to it. Certificates
/// compare against the same timeline, so production drivers pass Unix milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `ms` milliseconds, saturating.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Identity of one deployed function: a hash of its name and a hash of its code.
///
/// A new deployment of the same name has a new `code` hash and is a different function:
/// profiles and code of the old deployment never apply to it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunctionId {
    /// `blake3` of the function's name, truncated to 16 bytes.
    pub name: [u8; 16],
    /// `blake3` of the deployment's content.
    pub code: [u8; 32],
}

impl FunctionId {
    /// Derives a function id from its name and the bytes of its deployment.
    pub fn from_deployment(name: &str, code: &[u8]) -> FunctionId {
        FunctionId {
            name: name_hash(name),
            code: *blake3::hash(code).as_bytes(),
        }
    }
}

/// The 16-byte name hash used in [`FunctionId::name`].
pub fn name_hash(name: &str) -> [u8; 16] {
    let h = blake3::derive_key("ignite v1 function name", name.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

impl fmt::Debug for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fn:{}@{}", hex(&self.name[..4]), hex(&self.code[..4]))
    }
}

/// A method inside a function, numbered by the host (a JVM method index, a Wasm function index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MethodId(pub u32);

/// A compilation tier: 0 interpreter, 1 baseline native, 2 optimized native.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tier(pub u8);

impl Tier {
    /// The highest tier the engine knows of.
    pub const MAX: Tier = Tier(2);
}

/// One method of one deployed function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MethodKey {
    /// The deployment the method belongs to.
    pub function: FunctionId,
    /// The host's number for the method.
    pub method: MethodId,
}

/// One life of a node's state. A node restarted without its state must use a new incarnation
/// (e.g. the current time in milliseconds or a random number), so that nothing it counted
/// before is counted twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

/// A method group: methods are partitioned by hash into a fixed number of groups, and deltas
/// are signed per (tenant, function, group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u16);

impl GroupId {
    /// The group of `method` when methods are split into `groups` groups (a multiplicative
    /// hash: cheap enough to check on every received entry).
    pub fn of(method: MethodId, groups: u16) -> GroupId {
        let h = method.0.wrapping_mul(0x9E37_79B1) ^ (method.0 >> 15);
        GroupId(((h >> 8) % u32::from(groups.max(1))) as u16)
    }
}

/// A node's per-tenant public signing key (ed25519). Separate from its network identity and
/// from its keys in other tenants.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeKey(pub [u8; 32]);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node:{}", hex(&self.0[..4]))
    }
}

/// The opaque tenant id carried in envelopes: derived from a tenant secret, it does not
/// reveal which tenant a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantTag(pub [u8; 16]);

impl fmt::Debug for TenantTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant:{}", hex(&self.0[..4]))
    }
}

/// A gossip topic name (opaque, derived from a tenant secret).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub String);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A handle the driver chooses for a remote peer (for example an index into its table of
/// libp2p peer ids). The engine only hands it back in [`crate::Output::Send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Peer(pub u64);

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
