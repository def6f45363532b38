//! Per-key timeline of a scale run: when a method's fleet-wide count crossed a tier's
//! threshold, when the first engine saw it, when the elected node was asked to compile,
//! and when the code reached the first peer, half the peers and every peer. It shows where
//! the warm executions above the floor come from (written as `timeline.csv`).

use ignite_core::{Event, Tier};
use serde::{Deserialize, Serialize};

/// One (tenant, method, tier) of the run; times are simulated ms after traffic started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyTimeline {
    /// Tenant index.
    pub tenant: usize,
    /// Method.
    pub method: u32,
    /// Tier (1 or 2).
    pub tier: u8,
    /// Fleet-wide calls of the method per second (the scenario's expected rate).
    pub rate_per_s: f64,
    /// The fleet's calls below the tier reached its threshold.
    pub crossed_ms: Option<f64>,
    /// First threshold event of any engine.
    pub first_threshold_ms: Option<f64>,
    /// The count that first event reported (signed, or predicted) and the fleet's true
    /// count of calls below the tier at that moment.
    pub first_threshold_counts: Option<(u64, u64)>,
    /// First compile request of any engine.
    pub compile_ms: Option<f64>,
    /// The threshold event of the engine first asked to compile (the elected one).
    pub compiler_threshold_ms: Option<f64>,
    /// First install of any engine.
    pub first_install_ms: Option<f64>,
    /// Installs reached half the peers.
    pub half_install_ms: Option<f64>,
    /// Installs reached every peer.
    pub all_install_ms: Option<f64>,
    /// Calls that ran below the tier.
    pub below_calls: u64,
    /// Installs of the tier's code (all peers, all generations).
    pub installs: u64,
}

/// Collects [`KeyTimeline`]s while a run goes on.
#[derive(Debug)]
pub(crate) struct Timeline {
    t0_us: u64,
    peers: u64,
    thresholds: [u64; 2],
    methods: usize,
    keys: Vec<KeyTimeline>,
    /// Per key, each peer's first threshold event.
    seen: Vec<Vec<Option<f64>>>,
}

impl Timeline {
    /// A timeline of `tenants × methods × 2` keys; `rates[ti][m]` is the expected rate.
    pub(crate) fn new(t0_us: u64, peers: u32, thresholds: [u64; 2], rates: &[Vec<f64>]) -> Timeline {
        let methods = rates.first().map_or(0, Vec::len);
        let mut keys = Vec::new();
        for (tenant, r) in rates.iter().enumerate() {
            for (m, rate) in r.iter().enumerate() {
                for tier in 1..=2u8 {
                    keys.push(KeyTimeline {
                        tenant,
                        method: m as u32,
                        tier,
                        rate_per_s: *rate,
                        ..KeyTimeline::default()
                    });
                }
            }
        }
        Timeline {
            t0_us,
            peers: u64::from(peers),
            thresholds,
            methods,
            seen: vec![vec![None; peers as usize]; keys.len()],
            keys,
        }
    }

    fn index(&self, tenant: usize, method: u32, tier: u8) -> Option<usize> {
        if !(1..=2).contains(&tier) || method as usize >= self.methods {
            return None;
        }
        let i = (tenant * self.methods + method as usize) * 2 + usize::from(tier - 1);
        (i < self.keys.len()).then_some(i)
    }

    fn key(&mut self, tenant: usize, method: u32, tier: u8) -> Option<&mut KeyTimeline> {
        self.index(tenant, method, tier).map(|i| &mut self.keys[i])
    }

    fn ms(&self, now_us: u64) -> f64 {
        now_us.saturating_sub(self.t0_us) as f64 / 1e3
    }

    /// A call of `method` ran at `tier`.
    pub(crate) fn call(&mut self, now_us: u64, tenant: usize, method: u32, tier: u8) {
        let at = self.ms(now_us);
        let thresholds = self.thresholds;
        for t in (tier + 1)..=2 {
            if let Some(k) = self.key(tenant, method, t) {
                k.below_calls += 1;
                if k.crossed_ms.is_none() && k.below_calls >= thresholds[usize::from(t - 1)] {
                    k.crossed_ms = Some(at);
                }
            }
        }
    }

    /// Peer `peer`'s engine emitted `e`; `tenant` is the index of its tenant.
    pub(crate) fn event(&mut self, now_us: u64, peer: u32, tenant: usize, e: &Event) {
        let at = self.ms(now_us);
        let peers = self.peers;
        match e {
            Event::ThresholdReached {
                method,
                tier,
                invocations,
                ..
            } => {
                if let Some(i) = self.index(tenant, method.method.0, tier.0) {
                    let k = &mut self.keys[i];
                    if k.first_threshold_ms.is_none() {
                        k.first_threshold_ms = Some(at);
                        k.first_threshold_counts = Some((*invocations, k.below_calls));
                    }
                    if let Some(s) = self.seen[i].get_mut(peer as usize) {
                        s.get_or_insert(at);
                    }
                }
            }
            Event::Install(ins) => {
                let key = ins.manifest.statement.key;
                if let Some(k) = self.key(tenant, key.method.0, key.tier.0) {
                    k.installs += 1;
                    k.first_install_ms.get_or_insert(at);
                    if k.installs * 2 >= peers {
                        k.half_install_ms.get_or_insert(at);
                    }
                    if k.installs >= peers {
                        k.all_install_ms.get_or_insert(at);
                    }
                }
            }
            _ => {}
        }
    }

    /// Peer `peer`'s engine asked its host to compile `method` at `tier`.
    pub(crate) fn compile(&mut self, now_us: u64, peer: u32, tenant: usize, method: u32, tier: Tier) {
        let at = self.ms(now_us);
        if let Some(i) = self.index(tenant, method, tier.0)
            && self.keys[i].compile_ms.is_none()
        {
            self.keys[i].compile_ms = Some(at);
            self.keys[i].compiler_threshold_ms = self.seen[i].get(peer as usize).copied().flatten();
        }
    }

    /// The collected keys.
    pub(crate) fn finish(self) -> Vec<KeyTimeline> {
        self.keys
    }
}

/// The timeline as CSV (one row per key; empty cells where a step never happened).
pub fn to_csv(keys: &[KeyTimeline]) -> String {
    let mut s = String::from(
        "tenant,method,tier,rate_per_s,crossed_ms,first_threshold_ms,first_threshold_count,true_count,compiler_threshold_ms,compile_ms,first_install_ms,half_install_ms,all_install_ms,below_calls,installs\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    for k in keys {
        s.push_str(&format!(
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{}\n",
            k.tenant,
            k.method,
            k.tier,
            k.rate_per_s,
            opt(k.crossed_ms),
            opt(k.first_threshold_ms),
            k.first_threshold_counts.map(|c| c.0.to_string()).unwrap_or_default(),
            k.first_threshold_counts.map(|c| c.1.to_string()).unwrap_or_default(),
            opt(k.compiler_threshold_ms),
            opt(k.compile_ms),
            opt(k.first_install_ms),
            opt(k.half_install_ms),
            opt(k.all_install_ms),
            k.below_calls,
            k.installs
        ));
    }
    s
}

/// Where a tier's calls below it went, summed over keys: each step's calls are the
/// method's rate times the step's duration (see [`breakdown`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Tier (1 or 2).
    pub tier: u8,
    /// Keys whose count crossed the threshold.
    pub crossed: usize,
    /// Calls that ran below the tier.
    pub below_calls: u64,
    /// Crossing → first threshold event (what the fleet did not know yet).
    pub knowledge: f64,
    /// First threshold event → the elected compiler's.
    pub election: f64,
    /// The compiler's threshold event → its compile request.
    pub claim: f64,
    /// Compile request → first install (compile time and the code's first hops).
    pub compile: f64,
    /// First install → installs on half the peers.
    pub spread: f64,
}

/// Splits a tier's calls below it into steps (calls at each key's rate over each step),
/// summed over the keys that crossed; keys missing a step add nothing to it.
pub fn breakdown(keys: &[KeyTimeline], tier: u8) -> Breakdown {
    let mut b = Breakdown {
        tier,
        ..Breakdown::default()
    };
    for k in keys.iter().filter(|k| k.tier == tier) {
        b.below_calls += k.below_calls;
        if k.crossed_ms.is_none() {
            continue;
        }
        b.crossed += 1;
        let steps = [
            k.crossed_ms,
            k.first_threshold_ms,
            k.compiler_threshold_ms,
            k.compile_ms,
            k.first_install_ms,
            k.half_install_ms,
        ];
        let sums = [
            &mut b.knowledge,
            &mut b.election,
            &mut b.claim,
            &mut b.compile,
            &mut b.spread,
        ];
        for (i, sum) in sums.into_iter().enumerate() {
            if let (Some(a), Some(z)) = (steps[i], steps[i + 1]) {
                *sum += k.rate_per_s * (z - a) / 1e3;
            }
        }
    }
    b
}

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tier {}: {} calls below it; of {} crossed keys, calls at their rate from crossing to first threshold {:.0}, \
             to the compiler's threshold {:.0}, to its compile request {:.0}, to the first install {:.0}, to half the peers {:.0}",
            self.tier,
            self.below_calls,
            self.crossed,
            self.knowledge,
            self.election,
            self.claim,
            self.compile,
            self.spread
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_counts_calls_below_the_tier_only() {
        let mut t = Timeline::new(1_000, 4, [2, 3], &[vec![10.0, 5.0]]);
        t.call(2_000, 0, 0, 0);
        t.call(3_000, 0, 0, 1);
        t.call(4_000, 0, 0, 2);
        t.call(5_000, 0, 0, 1);
        let keys = t.finish();
        let (t1, t2) = (&keys[0], &keys[1]);
        // Tier 1 counts tier-0 calls only: one, below its threshold of 2.
        assert_eq!((t1.below_calls, t1.crossed_ms), (1, None));
        // Tier 2 counts tier-0 and tier-1 calls: the third arrives at 5 ms (4 ms after t0).
        assert_eq!((t2.below_calls, t2.crossed_ms), (3, Some(4.0)));
        assert!(
            to_csv(&keys)
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("0,0,2,10.000,4.000,,,,")
        );
    }

    #[test]
    fn breakdown_weighs_each_step_by_the_rate() {
        let key = |tier, rate, steps: [Option<f64>; 6]| KeyTimeline {
            tier,
            rate_per_s: rate,
            crossed_ms: steps[0],
            first_threshold_ms: steps[1],
            compiler_threshold_ms: steps[2],
            compile_ms: steps[3],
            first_install_ms: steps[4],
            half_install_ms: steps[5],
            below_calls: 7,
            ..KeyTimeline::default()
        };
        let keys = [
            key(
                2,
                1000.0,
                [
                    Some(100.0),
                    Some(300.0),
                    Some(400.0),
                    Some(400.0),
                    Some(600.0),
                    Some(700.0),
                ],
            ),
            key(2, 500.0, [Some(0.0), Some(1000.0), None, None, None, None]),
            key(2, 10.0, [None, None, None, None, None, None]),
            key(1, 1e6, [Some(0.0), Some(1000.0), None, None, None, None]),
        ];
        let b = breakdown(&keys, 2);
        assert_eq!((b.crossed, b.below_calls), (2, 21));
        // 1000/s for 200 ms, plus 500/s for 1 s.
        assert_eq!(b.knowledge, 200.0 + 500.0);
        assert_eq!((b.election, b.claim, b.compile, b.spread), (100.0, 0.0, 200.0, 100.0));
    }
}
