//! A read-only view of a function's merged profile, with robust ratios for compilers.

use super::state::FunctionState;
use crate::ids::{FunctionId, MethodId, NodeKey, Tier};
use crate::profile::counter::{Counter, CounterKey};
use std::collections::BTreeMap;

/// Merged fleet-wide profile of one function, as a compiler consumes it.
///
/// Ratios (branch directions, receiver-type shares) are computed robustly: each node's
/// weight is capped at [`ProfileView::INFLUENCE_CAP`] times the median node's weight, so one
/// node reporting huge counts cannot dictate the profile.
#[derive(Debug)]
pub struct ProfileView<'a> {
    function: FunctionId,
    state: &'a FunctionState,
}

impl<'a> ProfileView<'a> {
    /// Largest weight of one node, in multiples of the median node's weight.
    pub const INFLUENCE_CAP: u64 = 4;

    pub(crate) fn new(function: FunctionId, state: &'a FunctionState) -> ProfileView<'a> {
        ProfileView { function, state }
    }

    /// The function.
    pub fn function(&self) -> FunctionId {
        self.function
    }

    /// Merged value of one counter (the exact fleet-wide sum).
    pub fn count(&self, method: MethodId, tier: Tier, counter: Counter) -> u64 {
        self.state.merged(&CounterKey { method, tier, counter })
    }

    /// Every merged counter with a non-zero value, ordered.
    pub fn counters(&self) -> BTreeMap<CounterKey, u64> {
        self.state.merged_counters().collect()
    }

    /// Invocations of `method` at tiers below `tier`.
    pub fn invocations_below(&self, method: MethodId, tier: Tier) -> u64 {
        self.state.invocations_below(method, tier)
    }

    /// Distinct nodes that contributed invocations of `method` below `tier`.
    pub fn contributors(&self, method: MethodId, tier: Tier) -> usize {
        self.state.contributors(method, tier)
    }

    /// Robust share of `part` in `whole`, node weights capped relative to the median.
    fn robust_ratio(part: &BTreeMap<NodeKey, u64>, whole: &BTreeMap<NodeKey, u64>) -> Option<f64> {
        if whole.is_empty() {
            return None;
        }
        let mut totals: Vec<u64> = whole.values().copied().collect();
        totals.sort_unstable();
        let median = totals[totals.len() / 2].max(1);
        let cap = median.saturating_mul(Self::INFLUENCE_CAP);
        let (mut num, mut den) = (0f64, 0f64);
        for (node, &w) in whole {
            if w == 0 {
                continue;
            }
            let p = part.get(node).copied().unwrap_or(0).min(w);
            let scale = if w > cap { cap as f64 / w as f64 } else { 1.0 };
            num += p as f64 * scale;
            den += w as f64 * scale;
        }
        (den > 0.0).then(|| num / den)
    }

    /// Robust fraction of executions of branch `site` that took the branch.
    pub fn branch_taken_ratio(&self, method: MethodId, tier: Tier, site: u16) -> Option<f64> {
        let taken = self.state.per_node(&CounterKey {
            method,
            tier,
            counter: Counter::Branch { site, taken: true },
        });
        let not = self.state.per_node(&CounterKey {
            method,
            tier,
            counter: Counter::Branch { site, taken: false },
        });
        let mut whole = taken.clone();
        for (n, v) in not {
            *whole.entry(n).or_insert(0) += v;
        }
        Self::robust_ratio(&taken, &whole)
    }

    /// Robust share of receiver `type_id` among all observations at call `site`.
    pub fn receiver_share(&self, method: MethodId, tier: Tier, site: u16, type_id: u32) -> Option<f64> {
        let part = self.state.per_node(&CounterKey {
            method,
            tier,
            counter: Counter::Receiver { site, type_id },
        });
        let whole = self.state.per_node(&CounterKey {
            method,
            tier,
            counter: Counter::ReceiverTotal { site },
        });
        Self::robust_ratio(&part, &whole)
    }

    /// Receiver types seen at a call site with merged counts, most frequent first (ties by
    /// type id), and the merged count of observations whose type was not tracked.
    pub fn receivers(&self, method: MethodId, tier: Tier, site: u16) -> (Vec<(u32, u64)>, u64) {
        let lo = CounterKey {
            method,
            tier,
            counter: Counter::Receiver { site, type_id: 0 },
        };
        let hi = CounterKey {
            method,
            tier,
            counter: Counter::Receiver {
                site,
                type_id: u32::MAX,
            },
        };
        let mut types: Vec<(u32, u64)> = self
            .state
            .other_counters()
            .range(lo..=hi)
            .filter_map(|(k, v)| match k.counter {
                Counter::Receiver { type_id, .. } => Some((type_id, *v)),
                _ => None,
            })
            .collect();
        types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total = self.count(method, tier, Counter::ReceiverTotal { site });
        let tracked: u64 = types.iter().map(|t| t.1).sum();
        (types, total.saturating_sub(tracked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GroupId, Incarnation};
    use crate::profile::{LaneId, StoredDelta};

    fn state_with(branch: &[(u8, u64, u64)]) -> FunctionState {
        let mut s = FunctionState::default();
        let f = FunctionId {
            name: [0; 16],
            code: [0; 32],
        };
        for (node, taken, not) in branch {
            let m = MethodId(1);
            let kt = CounterKey {
                method: m,
                tier: Tier(0),
                counter: Counter::Branch { site: 0, taken: true },
            };
            let kn = CounterKey {
                method: m,
                tier: Tier(0),
                counter: Counter::Branch { site: 0, taken: false },
            };
            let mut values = vec![(kt, *taken), (kn, *not)];
            values.sort();
            let lane = LaneId {
                function: f,
                node: NodeKey([*node; 32]),
                incarnation: Incarnation(1),
                group: GroupId(0),
            };
            let delta = StoredDelta {
                seq: 1,
                issued_at: 0,
                full: true,
                entries: crate::wire::encode_entries(&values).into(),
                signature: crate::crypto::SigBytes([0; 32], [0; 32]),
            };
            s.apply(
                &lane,
                &std::sync::Arc::new(delta),
                &values,
                &crate::wire::Limits::default(),
                None,
                |_, _, v, _| v,
            );
        }
        s
    }

    #[test]
    fn one_node_with_huge_counts_cannot_dictate_branch_ratio() {
        // Nine honest nodes see the branch taken 90% of the time; one node claims a million
        // not-taken executions.
        let mut rows: Vec<(u8, u64, u64)> = (0..9).map(|n| (n, 90, 10)).collect();
        rows.push((9, 0, 1_000_000));
        let s = state_with(&rows);
        let v = ProfileView::new(
            FunctionId {
                name: [0; 16],
                code: [0; 32],
            },
            &s,
        );
        let robust = v.branch_taken_ratio(MethodId(1), Tier(0), 0).unwrap();
        // Plain pooling would give 810 / 1_001_000 ≈ 0.0008.
        assert!(robust > 0.6, "robust ratio {robust}");
        // The attacker's weight is capped at 4× the median (100): 810 / (900 + 400).
        assert!((robust - 810.0 / 1300.0).abs() < 1e-9);
    }

    #[test]
    fn honest_fleet_ratio_is_the_pooled_ratio() {
        let s = state_with(&[(0, 30, 70), (1, 60, 140), (2, 3, 7)]);
        let v = ProfileView::new(
            FunctionId {
                name: [0; 16],
                code: [0; 32],
            },
            &s,
        );
        let r = v.branch_taken_ratio(MethodId(1), Tier(0), 0).unwrap();
        assert!((r - 0.3).abs() < 1e-9);
        assert_eq!(v.branch_taken_ratio(MethodId(2), Tier(0), 0), None);
    }
}
