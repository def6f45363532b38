//! Predicted thresholds: a threshold reached on the counts the fleet has recorded but not
//! yet signed (see [`Config`](super::Config), "Predicted thresholds").

use super::Engine;
use super::tenant::TenantState;
use crate::ids::{FunctionId, MethodId, TenantTag, Tier, Timestamp};

/// Shortest wait between two prediction passes, ms (a crossing foreseen sooner is looked
/// at after this long).
const MIN_STEP_MS: u64 = 10;

/// The two samples `(time, signed count, members' mean staleness in ms)` a key's fleet
/// rate is measured between.
pub(crate) type Samples = [(Timestamp, u64, u64); 2];

/// What a prediction pass found.
struct Found {
    function: FunctionId,
    method: MethodId,
    tier: Tier,
    predicted: u64,
    contributors: usize,
}

/// Members' mean time since their last delta in ms, each capped at `cap` (a member that
/// has not published for a whole interval has nothing unpublished), this node included.
fn mean_staleness(t: &TenantState, now: Timestamp, cap: u64) -> u64 {
    let others = t
        .activity
        .iter()
        .filter(|(n, _)| **n != t.node)
        .map(|(_, seen)| now.millis_since(*seen).min(cap));
    let mut sum = now.millis_since(t.last_publish).min(cap);
    let mut n = 1u64;
    for s in others {
        sum += s;
        n += 1;
    }
    sum / n
}

impl Engine {
    /// Fires the thresholds whose predicted fleet-wide count has reached them, and schedules
    /// the next pass: while a threshold of a counted method is open, after `code.tick_ms`
    /// or sooner, when an open key's prediction may reach its limit (the time its rate
    /// needs, at least `MIN_STEP_MS`); otherwise at the next publication.
    pub(super) fn predict(&mut self, now: Timestamp, tag: TenantTag) {
        let pct = u64::from(self.config.predict_from_pct);
        let interval = self.publication_interval(tag);
        let window = interval.max(2 * self.config.publish_floor_ms);
        let min_span = 2 * self.config.publish_floor_ms;
        let tick = self.config.code.tick_ms;
        let default_policy = self.default_policy();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if pct >= 100 {
            t.next_predict = Timestamp(u64::MAX);
            return;
        }
        let staleness = mean_staleness(t, now, interval);
        let mut found: Vec<Found> = Vec::new();
        let mut open = false;
        // Time until some open key may fire, ms.
        let mut soonest = tick;
        // Samples of keys still open, rebuilt in key order from the previous pass's: keys
        // that fired or lost their counts drop out.
        let mut old = std::mem::take(&mut t.samples).into_iter().peekable();
        let mut kept: Vec<((FunctionId, MethodId, Tier), Samples)> = Vec::new();
        for (f, state) in &t.functions {
            let policy = t.code.policies.get(f).copied().unwrap_or(default_policy);
            let mut fired_bits = state.fired.iter().peekable();
            for (m, sums) in state.invocation_sums() {
                if matches!(policy.unit, super::CompileUnit::Whole(unit) if unit != m) {
                    continue;
                }
                while fired_bits.next_if(|(fm, _)| **fm < m).is_some() {}
                let fired = fired_bits.next_if(|(fm, _)| **fm == m).map_or(0, |(_, b)| *b);
                for tier in 1..=Tier::MAX.0 {
                    let tier = Tier(tier);
                    let Some(limit) = super::tier_threshold(&policy.thresholds, tier) else {
                        continue;
                    };
                    if fired & (1 << tier.0) != 0 {
                        continue;
                    }
                    let signed = sums.below(tier);
                    if signed == 0 || signed >= limit {
                        continue;
                    }
                    open = true;
                    let key = (*f, m, tier);
                    while old.next_if(|(k, _)| *k < key).is_some() {}
                    let mut s = old
                        .next_if(|(k, _)| *k == key)
                        .map_or([(now, signed, staleness); 2], |(_, s)| s);
                    // Samples are taken at the first pass in each window of a grid every
                    // engine shares (multiples of `window` in tenant time), so the members'
                    // rates, hence their predictions, agree.
                    if now.0 / window > s[1].0.0 / window {
                        s = [s[1], (now, signed, staleness)];
                    }
                    kept.push((key, s));
                    let (t0, n0, s0) = s[0];
                    let span = now.millis_since(t0);
                    if signed.saturating_mul(100) < pct * limit {
                        continue;
                    }
                    if span < min_span {
                        soonest = soonest.min(min_span - span);
                        continue;
                    }
                    // The signed count trails the true one by the rate times the staleness,
                    // so while the staleness grows (a growing fleet publishes less often) it
                    // grows slower than the fleet counts: the rate is its growth over the
                    // span less the staleness gained (at least half the span).
                    let grown = u128::from(signed.saturating_sub(n0));
                    let gained = staleness.saturating_sub(s0).min(span / 2);
                    let denom = u128::from(span - gained);
                    let unsigned = grown * u128::from(staleness) / denom;
                    let predicted = u64::try_from(u128::from(signed) + unsigned).unwrap_or(u64::MAX);
                    if predicted < limit {
                        // The prediction grows at the rate: look again when it may reach
                        // the limit rather than a whole tick later, so the engines of a
                        // fleet, which hold nearly the same counts, fire at nearly the same
                        // time (the elected compiler among them).
                        if grown > 0 {
                            let wait = (u128::from(limit - predicted) * denom).div_ceil(grown);
                            soonest = soonest.min(u64::try_from(wait).unwrap_or(u64::MAX));
                        }
                        continue;
                    }
                    let contributors = state.contributors_up_to(m, tier, policy.min_contributors);
                    if contributors < policy.min_contributors {
                        continue;
                    }
                    found.push(Found {
                        function: *f,
                        method: m,
                        tier,
                        predicted,
                        contributors,
                    });
                }
            }
        }
        drop(old);
        t.samples = kept.into_iter().collect();
        if open {
            // Be there when the next window of the grid starts.
            soonest = soonest.min(window - now.0 % window);
        }
        t.next_predict = if open {
            now.plus_ms(soonest.clamp(MIN_STEP_MS.min(tick), tick))
        } else {
            t.next_publish
        };
        for x in found {
            t.samples.remove(&(x.function, x.method, x.tier));
            self.stats.predicted_thresholds += 1;
            super::ingest::fire(
                t,
                &mut self.outputs,
                (x.function, x.method, x.tier),
                x.predicted,
                x.contributors,
                true,
            );
        }
    }
}
