//! What is counted: the counter addressing scheme shared by the recorder, the CRDT state and
//! the wire format.

use crate::ids::{MethodId, Tier};
use serde::{Deserialize, Serialize};

/// One counter of a method at one tier.
///
/// Receiver-type histograms are kept as a per-site total plus per-type counts for a bounded
/// set of types; the overflow (types not tracked) is `total - sum(types)`. Every variant is
/// a monotone counter, so the CRDT merge (per-node max, then sum) applies to all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Counter {
    /// Invocations of the method.
    Invocations,
    /// Loop back-edges taken inside the method.
    Backedges,
    /// Deoptimizations of code for this method (a feedback counter: published even after
    /// the tier's code is current).
    Deopts,
    /// A conditional branch site, taken or not taken.
    Branch {
        /// The host's number for the branch site inside the method.
        site: u16,
        /// Whether this counter counts the taken direction.
        taken: bool,
    },
    /// All receiver observations at a call site.
    ReceiverTotal {
        /// The host's number for the call site inside the method.
        site: u16,
    },
    /// Observations of one receiver type (or indirect-call target) at a call site.
    Receiver {
        /// The host's number for the call site inside the method.
        site: u16,
        /// The host's number for the type or target.
        type_id: u32,
    },
    /// Deoptimizations caused by one speculation assumption breaking, in code of this
    /// method and tier (feedback; `id` is [`Assumption::id`](crate::code::Assumption::id)).
    AssumptionBroken {
        /// The assumption's id.
        id: u32,
    },
    /// Invocations that ran the code of one generation (feedback).
    CodeInvocations {
        /// The code's generation.
        generation: u32,
    },
    /// Invocations of one generation whose latency fell in one power-of-two bucket of
    /// microseconds (feedback; see [`latency_bucket`](crate::code::rules::latency_bucket)).
    CodeLatency {
        /// The code's generation.
        generation: u32,
        /// `floor(log2(latency in µs))`.
        bucket: u8,
    },
}

impl Counter {
    /// Whether this counter is feedback about installed code (kept after the tier compiles).
    pub fn is_feedback(self) -> bool {
        matches!(
            self,
            Counter::Deopts
                | Counter::AssumptionBroken { .. }
                | Counter::CodeInvocations { .. }
                | Counter::CodeLatency { .. }
        )
    }
}

/// A counter of one method at one tier (inside one function, implied by context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CounterKey {
    /// The method.
    pub method: MethodId,
    /// The tier whose execution was counted. Tier-N counts never merge into tier-M.
    pub tier: Tier,
    /// What is counted.
    pub counter: Counter,
}
