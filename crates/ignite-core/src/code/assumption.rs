//! Speculation assumptions baked into compiled code, and the host's check of them.

use super::CodeKey;
use crate::ids::MethodId;
use crate::tenancy::TenantId;
use serde::{Deserialize, Serialize};

/// Largest opaque payload of a runtime-specific assumption.
pub const MAX_RUNTIME_DATA: usize = 64;

/// A speculation compiled code relies on. When it breaks at run time the code deoptimizes
/// (or takes a slow path) and the host reports it with
/// [`Engine::record_deopt`](crate::Engine::record_deopt).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Assumption {
    /// A call site always calls one target (monomorphic receiver or indirect call).
    MonomorphicCall {
        /// Call site inside the method.
        site: u16,
        /// The profiled target (type id or function index).
        target: u32,
    },
    /// A branch always goes one way.
    BranchNeverTaken {
        /// Branch site inside the method.
        site: u16,
        /// The direction that never happens.
        taken: bool,
    },
    /// A class has no subclass (class hierarchy analysis).
    NoSubclass {
        /// The host's number for the class.
        class: u32,
    },
    /// A callee was inlined at a given version of its code.
    InlinedCallee {
        /// The callee.
        callee: MethodId,
        /// Hash of the callee's code that was inlined.
        version: [u8; 16],
    },
    /// A runtime-specific speculation the core does not interpret.
    Runtime {
        /// The runtime's kind number.
        kind: u16,
        /// Its payload (at most [`MAX_RUNTIME_DATA`] bytes).
        data: Vec<u8>,
    },
}

impl Assumption {
    /// A stable 32-bit id (the key of its deopt counter). Deopts of the same assumption
    /// count together whatever the code generation or class.
    pub fn id(&self) -> u32 {
        let bytes = postcard::to_allocvec(self).expect("assumption encodes");
        let h = blake3::derive_key("ignite v1 assumption id", &bytes);
        u32::from_le_bytes(h[..4].try_into().expect("4 bytes"))
    }

    /// Whether sizes are within bounds.
    pub fn is_bounded(&self) -> bool {
        match self {
            Assumption::Runtime { data, .. } => data.len() <= MAX_RUNTIME_DATA,
            _ => true,
        }
    }
}

/// The host's check that an assumption holds on this node before code relying on it is
/// installed (the classes loaded, the callee versions deployed, the table contents...).
pub trait AssumptionCheck: Send {
    /// Whether `assumption`, baked into code for `key`, holds here. `Err` carries the reason
    /// reported in the refusal event.
    fn check(&self, tenant: &TenantId, key: &CodeKey, assumption: &Assumption) -> Result<(), String>;
}

/// The default check: every assumption holds (hosts whose code guards every speculation).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHold;

impl AssumptionCheck for AllHold {
    fn check(&self, _: &TenantId, _: &CodeKey, _: &Assumption) -> Result<(), String> {
        Ok(())
    }
}

/// A boxed check with a `Debug` impl, held per tenant by the engine.
pub(crate) struct Checker(pub(crate) Box<dyn AssumptionCheck>);

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssumptionCheck")
    }
}
