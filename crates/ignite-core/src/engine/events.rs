//! Events the engine reports to its host.

use crate::code::{ClassId, CodeKey, CompileId, CompileRequest, Install, Refusal};
use crate::ids::{FunctionId, MethodKey, NodeKey, Tier};
use crate::profile::Evidence;
use crate::tenancy::TenantId;

/// Why a function's state was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Not seen for `function_ttl_ms`.
    Expired,
    /// A newer deployment of the same function name was declared.
    Superseded,
}

/// Events for the host.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A method's fleet-wide invocations below `tier` reached the tier's threshold, on the
    /// signed counts or predicted (see [`Config`](crate::Config), "Predicted thresholds").
    ThresholdReached {
        /// The tenant.
        tenant: TenantId,
        /// The method.
        method: MethodKey,
        /// The tier the method is now eligible for.
        tier: Tier,
        /// Fleet-wide invocations below `tier`: the signed merged count, or the predicted
        /// count when `predicted`.
        invocations: u64,
        /// Distinct nodes that contributed signed invocations, counted up to
        /// `code.min_contributors` (the check stops there;
        /// [`ProfileView::contributors`](crate::ProfileView::contributors) gives the full count).
        contributors: usize,
        /// Whether the threshold was reached by prediction before the signed counts reached it.
        predicted: bool,
    },
    /// A node signed two conflicting states; it is no longer accepted in the tenant.
    Equivocation(Box<Evidence>),
    /// A node's counters grew faster than the cap; the excess was not counted.
    IncrementCapped {
        /// The tenant.
        tenant: TenantId,
        /// The node.
        node: NodeKey,
        /// The function.
        function: FunctionId,
        /// Increments not counted.
        excess: u64,
    },
    /// A function's state was dropped.
    FunctionDropped {
        /// The tenant.
        tenant: TenantId,
        /// The function.
        function: FunctionId,
        /// Why.
        reason: DropReason,
    },
    /// A node was revoked; its counts were removed.
    NodeRevoked {
        /// The tenant.
        tenant: TenantId,
        /// The node.
        node: NodeKey,
    },
    /// A method's fleet-wide invocations reached a tier's threshold, but from fewer distinct
    /// nodes than required: no compile yet (reported once; re-checked on later deltas).
    ThresholdPending {
        /// The tenant.
        tenant: TenantId,
        /// The method.
        method: MethodKey,
        /// The tier.
        tier: Tier,
        /// Fleet-wide invocations below `tier`.
        invocations: u64,
        /// Distinct nodes that contributed them.
        contributors: usize,
        /// Distinct nodes required.
        required: usize,
    },
    /// This node was elected: compile, then answer with
    /// [`Engine::compiled`](crate::Engine::compiled) (or [`Engine::compile_failed`](crate::Engine::compile_failed)).
    Compile(Box<CompileRequest>),
    /// A compile request is no longer wanted (another node's code arrived, or a better-ranked
    /// node claimed the same election). An answer to it is refused.
    CompileCancelled {
        /// The tenant.
        tenant: TenantId,
        /// The request.
        id: CompileId,
    },
    /// Install this code: every check passed (signature chain, blob hash and size, class,
    /// assumptions, not retired, not expired, attestations).
    Install(Box<Install>),
    /// Code installed earlier must no longer run (retired, expired, an assumption no longer
    /// holds, or its compiler was revoked): fall back to a lower tier.
    Uninstall {
        /// The tenant.
        tenant: TenantId,
        /// The key.
        key: CodeKey,
        /// The class of the removed code.
        class: ClassId,
        /// Its generation.
        generation: u32,
    },
    /// Code was refused (reported once per manifest and reason).
    Refused {
        /// The tenant.
        tenant: TenantId,
        /// The key.
        key: CodeKey,
        /// The manifest's class.
        class: ClassId,
        /// The manifest's generation.
        generation: u32,
        /// Why.
        reason: Refusal,
    },
    /// An attester compiled the same inputs and got different code: compilation is not
    /// reproducible for this key, or one of the two nodes misbehaves.
    AttestationMismatch {
        /// The tenant.
        tenant: TenantId,
        /// The key.
        key: CodeKey,
        /// The class.
        class: ClassId,
        /// The generation.
        generation: u32,
        /// The attester.
        attester: NodeKey,
        /// The manifest's blob hash.
        expected: [u8; 32],
        /// The attester's.
        got: [u8; 32],
    },
}
