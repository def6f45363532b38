//! What a scale run measured, and the checks a run must pass.

use super::timeline::KeyTimeline;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a scale run measured (simulated quantities only: byte-identical per seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleResult {
    /// Peers.
    pub peers: u32,
    /// Function invocations run.
    pub invocations: u64,
    /// Events processed by the simulator.
    pub events: u64,
    /// Method executions below tier 2.
    pub warm_invocations: u64,
    /// The physical floor of warm executions (see the module documentation).
    pub warm_min: f64,
    /// `warm_invocations / warm_min`.
    pub excess_warm: f64,
    /// Warm executions without sharing (same invocation stream).
    pub ns_warm_invocations: u64,
    /// `ns_warm_invocations / warm_min`.
    pub ns_excess_warm: f64,
    /// Publish compiles per (method, tier, class) compiled.
    pub compiles_per_key_mean: f64,
    /// Threshold events over all peers: reached on the signed counts, and reached by
    /// prediction before them (the engine's `predict_from_pct`).
    pub thresholds_signed_predicted: (u64, u64),
    /// Messages sent per peer per simulated second while invocations ran.
    pub msgs_per_peer_per_s: f64,
    /// Bytes sent per peer per simulated second while invocations ran.
    pub bytes_per_peer_per_s: f64,
    /// Largest engine state of a peer at the end, bytes.
    pub state_bytes_per_peer_max: u64,
    /// 99th percentile of mesh hops to a message's first delivery.
    pub dissemination_hops_p99: u32,
    /// Counts lost to crashes before they were signed.
    pub lost_unpublished: u64,
    /// Every live peer's merged counts equal the recorded totals minus `lost_unpublished`.
    pub totals_exact: bool,
    /// Live peers whose merged counts of some tenant differ from its totals (0 when
    /// `totals_exact`).
    pub peers_inexact: u32,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Signature verifications performed once and reused by other engines.
    pub signatures_verified: u64,
    /// Signature checks answered from the shared results.
    pub signatures_reused: u64,
    /// Decryptions performed once.
    pub opens: u64,
    /// Decryptions answered from the shared results.
    pub opens_reused: u64,
    /// Lane merges of network deltas recorded for the other engines.
    pub merges: u64,
    /// Lane merges an engine took from the recorded ones instead of merging.
    pub merges_reused: u64,
    /// Messages and bytes per peer per second, by kind (gossip RPC kind, or `direct` for
    /// anti-entropy and blob transfer).
    pub by_kind_per_peer_per_s: BTreeMap<String, (f64, f64)>,
    /// Engine messages published (deltas, presence, claims, manifests) per peer per second.
    pub published_per_peer_per_s: f64,
    /// Tenants.
    pub tenants: u32,
    /// Every node compiled for itself (no election, no code distribution).
    pub every_node_compiles: bool,
    /// Churn carried out: crashes restarted from a snapshot, crashes restarted without state
    /// (new incarnation), graceful leaves, late joins.
    pub churn: ChurnCounts,
    /// Installs that broke a rule: another tenant's code, a class the peer cannot run, a
    /// function the tenant does not run (the checker wants 0).
    pub install_violations: u64,
    /// Deliveries also handed to an engine under another tenant's topic, and how many of
    /// them it accepted (the checker wants 0).
    pub misrouted: (u64, u64),
    /// Per tenant: every live peer's merged counts equal that tenant's recorded totals
    /// minus its lost counts (no count crosses tenants).
    pub tenant_totals_exact: Vec<bool>,
    /// Per (tenant, method, tier 1 and 2): crossing, threshold, compile and install times
    /// (not part of `scale.json`; written as `timeline.csv`).
    #[serde(skip)]
    pub timeline: Vec<KeyTimeline>,
}

/// Churn events carried out in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnCounts {
    /// Crashes restarted from the last snapshot.
    pub restarts_from_snapshot: u32,
    /// Crashes restarted without state, as a new incarnation.
    pub restarts_without_state: u32,
    /// Graceful leaves.
    pub leaves: u32,
    /// Late joins.
    pub joins: u32,
}

impl ScaleResult {
    /// Failed checkers, as messages (empty when all pass). `max_compiles` is the bound on
    /// compiles per key (1.01 without faults, 2 with; not checked when every node compiles).
    pub fn failed_checks(&self, max_compiles: f64) -> Vec<String> {
        let mut out = Vec::new();
        if !self.totals_exact {
            out.push(format!(
                "merged totals differ from the recorded totals on {} live peers (per tenant: {:?})",
                self.peers_inexact, self.tenant_totals_exact
            ));
        }
        if !self.every_node_compiles && self.compiles_per_key_mean > max_compiles {
            out.push(format!(
                "{} compiles per key (> {max_compiles})",
                self.compiles_per_key_mean
            ));
        }
        if self.install_violations > 0 {
            out.push(format!(
                "{} installs of another tenant's code, a foreign class or function",
                self.install_violations
            ));
        }
        if self.misrouted.1 > 0 {
            out.push(format!(
                "{} misrouted deliveries accepted under another tenant",
                self.misrouted.1
            ));
        }
        out
    }
}
