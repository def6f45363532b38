//! Engine configuration.

use crate::code::CodeConfig;
use crate::profile::CapConfig;
use crate::recorder::RecorderConfig;
use crate::wire::Limits;
use serde::{Deserialize, Serialize};

/// Invocation counts (fleet-wide, at lower tiers) at which a method becomes eligible for
/// a tier. Defaults follow HotSpot's tiered policy in spirit: tier 1 at 200, tier 2 at 5,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Invocations (at tier 0) before tier 1.
    pub tier1: u64,
    /// Invocations (at tiers 0 and 1) before tier 2.
    pub tier2: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            tier1: 200,
            tier2: 5_000,
        }
    }
}

/// Configuration of an [`Engine`](super::Engine). Build with `Config::default()` and adjust
/// fields; [`Engine::new`](super::Engine::new) validates it.
///
/// # Publication rule
/// A node publishes its changed counters every `interval`, where
/// `interval = max(publish_floor_ms, members * 1000 / max_deltas_per_s)` and `members` is the
/// number of distinct nodes whose deltas this engine accepted within `member_window_ms`
/// (itself included). With every member following the rule, a member receives at most about
/// `max_deltas_per_s` delta messages per second on the tenant topic, whatever the fleet
/// size: larger fleets publish less often, each delta carrying more change. Each node's
/// first publication is offset by a hash of its key so that publications spread over the
/// interval. Counters of a method at tier `t` stop being published once code of a tier
/// above `t` is current for the method (declared by the host through
/// [`Engine::set_code_current`](super::Engine::set_code_current), or code the engine
/// installed), after the next publication, which carries what was counted below it until
/// then; feedback counters (deopts) continue.
///
/// # Settled counters
/// A non-feedback counter of a method at tier `t` is *settled* once every tier threshold
/// above `t` has been reached on this node's merged counts, by the signed counts or by
/// prediction (a counter at the top tier is settled from the start): no threshold reads it
/// any more. A lane's changed settled
/// counters are published when `max(settled_publish_ms, interval)` has passed since the
/// lane last published them, or at the first publication round at which the lane's counts
/// have not changed since the previous round (within two intervals of the last change);
/// until then each publication carries only the lane's unsettled changes (and those of a
/// method whose newly installed tier becomes current after it). Steady traffic over
/// compiled methods then costs the fleet a delta per lane per `settled_publish_ms` instead
/// of per `interval`; merged totals still become exact once traffic quiets (one interval
/// later than without settled counters), and thresholds see unsettled counts as promptly
/// as before. The price: counts not yet signed wait longer (a crash loses more, see
/// [`Engine::unpublished`](super::Engine::unpublished)). [`Engine::flush`](super::Engine::flush)
/// publishes them at once.
///
/// # Predicted thresholds
/// With the publication rule, the signed counts a node sees lag the fleet's true counts by
/// what members recorded since their last delta: on average the fleet's call rate times
/// half an interval, which at 1,000 members and a 10 s interval is far more than a
/// threshold for every method but the rarest. A node therefore also fires an open
/// threshold when its *predicted* count reaches it: the signed merged count `K` plus the
/// fleet's rate times the members' mean time since their last delta (the staleness `S`).
/// The rate is the growth of `K` over the last one to two windows of `max(interval, 2 *
/// publish_floor_ms)` (at least `2 * publish_floor_ms` of samples), sampled at the start of
/// each window of a grid of multiples of the window in tenant time, divided by the span
/// less the staleness gained over it (`K` trails the true count by the rate times `S`, so
/// while a growing fleet publishes less often `K` grows slower than the fleet's calls; the
/// divisor is at least half the span). Each member's time since its last delta is capped
/// at the interval (a member with changes publishes every interval). The
/// prediction uses only signed data every member sees alike, sampled at the same times, so
/// members fire within milliseconds of each other; it fires only once `K` is at least
/// `predict_from_pct` percent of the threshold and the threshold's contributor minimum
/// holds on the signed counts. It assumes the last window's rate goes on: a fleet whose
/// traffic stops within a window of a threshold may fire it up to the unsigned part early.
/// `predict_from_pct` 100 turns prediction off. Passes run while a counted method has an
/// open threshold: every `code.tick_ms`, at each window start, and when an open key's
/// prediction may reach its limit (from the time its rate needs; at least 10 ms apart).
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed for the engine's random choices (peer selection for anti-entropy).
    pub seed: u64,
    /// Size and count limits on messages.
    pub limits: Limits,
    /// Number of method groups per function (deltas are signed per group).
    pub groups: u16,
    /// Shortest publication interval.
    pub publish_floor_ms: u64,
    /// Target upper bound on delta messages a member receives per second per tenant topic.
    pub max_deltas_per_s: u32,
    /// Longest wait of a busy lane's changed settled counters (see "Settled counters"
    /// above); at most the publication interval (e.g. 0) publishes them every interval like
    /// the others.
    pub settled_publish_ms: u64,
    /// Smallest signed share of a threshold, in percent, from which the threshold may be
    /// reached by prediction (see "Predicted thresholds" above); 100 turns prediction off.
    pub predict_from_pct: u32,
    /// Every `full_every`-th delta of a lane carries every counter of the lane, so that
    /// receivers can drop older stored deltas.
    pub full_every: u32,
    /// Interval between anti-entropy rounds with one random peer.
    pub sync_interval_ms: u64,
    /// Interval between anti-entropy rounds while catching up (capped at
    /// `sync_interval_ms`): after joining or restoring a snapshot, and after a round that
    /// found this node at least two deltas behind on a lane, the next
    /// [`CATCH_UP_ROUNDS`](super::CATCH_UP_ROUNDS) rounds follow at this interval, so that a
    /// node that missed much (lost messages, a partition, downtime) repairs it in a few
    /// seconds instead of a few rounds of `sync_interval_ms`.
    pub sync_catch_up_ms: u64,
    /// A function not seen for this long is dropped.
    pub function_ttl_ms: u64,
    /// Window over which members are counted for the publication rule.
    pub member_window_ms: u64,
    /// Deltas signed further than this in the future of `now` are rejected.
    pub max_clock_skew_ms: u64,
    /// Most functions tracked per tenant.
    pub max_functions_per_tenant: usize,
    /// Most incarnations of one node tracked per function.
    pub max_incarnations_per_node: usize,
    /// Most distinct counters tracked per function (all nodes together).
    pub max_counters_per_function: usize,
    /// Increment caps per node and counter.
    pub cap: CapConfig,
    /// Tier thresholds.
    pub thresholds: Thresholds,
    /// Capacity of the caches of processed messages and verified signatures.
    pub seen_cache: usize,
    /// Configuration of the recorders handed to the host.
    pub recorder: RecorderConfig,
    /// Election, code distribution and feedback.
    pub code: CodeConfig,
    /// Check results shared with other engines of this process (simulators); `None` for a
    /// platform host.
    pub shared: Option<super::SharedChecks>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 0,
            limits: Limits::default(),
            groups: 2,
            publish_floor_ms: 1_000,
            max_deltas_per_s: 100,
            settled_publish_ms: 30_000,
            predict_from_pct: 10,
            full_every: 16,
            sync_interval_ms: 10_000,
            sync_catch_up_ms: 1_000,
            function_ttl_ms: 3_600_000,
            member_window_ms: 60_000,
            max_clock_skew_ms: 60_000,
            max_functions_per_tenant: 1_024,
            max_incarnations_per_node: 8,
            max_counters_per_function: 1 << 18,
            cap: CapConfig::default(),
            thresholds: Thresholds::default(),
            seen_cache: 1 << 16,
            recorder: RecorderConfig::default(),
            code: CodeConfig::default(),
            shared: None,
        }
    }
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is out of range.
    #[error("config field `{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

impl Config {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::Invalid { field, problem });
        if self.groups == 0 {
            return bad("groups", "must be at least 1");
        }
        if self.publish_floor_ms == 0 {
            return bad("publish_floor_ms", "must be positive");
        }
        if self.max_deltas_per_s == 0 {
            return bad("max_deltas_per_s", "must be positive");
        }
        if self.predict_from_pct > 100 {
            return bad("predict_from_pct", "must be at most 100");
        }
        if self.full_every == 0 {
            return bad("full_every", "must be at least 1");
        }
        if self.sync_interval_ms == 0 {
            return bad("sync_interval_ms", "must be positive");
        }
        if self.sync_catch_up_ms == 0 {
            return bad("sync_catch_up_ms", "must be positive");
        }
        if self.limits.max_message_bytes < 1024 {
            return bad("limits.max_message_bytes", "must be at least 1024");
        }
        if self.limits.max_entries_per_delta == 0 || self.limits.max_deltas_per_message == 0 {
            return bad("limits", "entry and delta counts must be positive");
        }
        if self.thresholds.tier1 == 0 || self.thresholds.tier2 < self.thresholds.tier1 {
            return bad("thresholds", "must satisfy 0 < tier1 <= tier2");
        }
        if self.max_functions_per_tenant == 0
            || self.max_incarnations_per_node == 0
            || self.max_counters_per_function == 0
        {
            return bad("max_functions_per_tenant/max_incarnations_per_node", "must be positive");
        }
        let c = &self.code;
        if c.presence_interval_ms == 0 || c.presence_ttl_ms <= c.presence_interval_ms {
            return bad("code.presence_ttl_ms", "must exceed a positive presence_interval_ms");
        }
        if c.install_announce_pct == 0 || c.install_announce_pct > 100 {
            return bad("code.install_announce_pct", "must be between 1 and 100");
        }
        if c.claim_after_join_ms > c.presence_interval_ms {
            return bad("code.claim_after_join_ms", "must be at most presence_interval_ms");
        }
        if c.max_presences_per_s == 0 || c.lease_ms == 0 || c.tick_ms == 0 || c.fetch_timeout_ms == 0 {
            return bad("code.lease_ms/tick_ms/fetch_timeout_ms", "must be positive");
        }
        if c.min_contributors == 0 || c.retire_min_nodes == 0 || c.fetch_attempts == 0 {
            return bad(
                "code.min_contributors/retire_min_nodes/fetch_attempts",
                "must be at least 1",
            );
        }
        if c.blob_chunk_bytes == 0 || c.blob_chunk_bytes + 1024 > self.limits.max_message_bytes {
            return bad("code.blob_chunk_bytes", "must be positive and fit in a message");
        }
        if c.max_blob_bytes > c.blob_store_bytes || c.blob_store_count == 0 {
            return bad("code.max_blob_bytes", "must fit in the blob store");
        }
        if c.hardware.iter().any(|h| h.validate().is_err()) || c.hardware.len() > c.limits.max_classes {
            return bad("code.hardware", "invalid class or too many classes");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_announce_pct_must_be_a_share_of_the_interval() {
        for (pct, ok) in [(0, false), (1, true), (25, true), (100, true), (101, false)] {
            let mut c = Config::default();
            c.code.install_announce_pct = pct;
            assert_eq!(c.validate().is_ok(), ok, "install_announce_pct {pct}");
        }
    }
}
