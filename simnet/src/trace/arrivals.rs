//! Invocation arrivals and execution durations of the trace scenario.
//!
//! Two arrival processes over the same functions:
//! - [`ArrivalKind::Poisson`]: one open-loop Poisson stream for the fleet at
//!   `peers × rate_per_peer` invocations per second; each arrival picks its function by
//!   popularity (Zipf) and its peer uniformly.
//! - [`ArrivalKind::Azure`]: an Azure-Functions-like synthetic trace. Each function has the
//!   same mean rate as under Poisson (its Zipf share of the fleet rate) but arrives in
//!   bursts: it alternates ON periods (exponential, mean [`AzureShape::on_mean_s`]) during
//!   which it is invoked as a Poisson process at `rate / duty`, and OFF periods without
//!   invocations drawn from a Pareto distribution (heavy-tailed, shape
//!   [`AzureShape::off_alpha`], mean [`AzureShape::off_mean_s`]). The peer of each arrival
//!   is uniform.
//!
//! Execution durations follow the Azure Functions 2019 trace characterization: a
//! log-normal with μ = −0.38 and σ = 2.36 (seconds), median e^−0.38 ≈ 0.68 s. Each function
//! draws its base duration once ([`base_duration_s`]); each invocation runs its base
//! duration times a log-normal jitter of median 1 (σ = [`JITTER_SIGMA`]).

use crate::rng::{Rng, Zipf};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// μ of the log-normal execution duration, in ln(seconds): the Azure Functions 2019 trace
/// characterization (Shahrad et al., "Serverless in the Wild", ATC 2020).
pub const DURATION_MU: f64 = -0.38;
/// σ of the log-normal execution duration (same source as [`DURATION_MU`]).
pub const DURATION_SIGMA: f64 = 2.36;
/// Longest base duration, s: Azure Functions' default timeout on the Consumption plan
/// (5 minutes); longer draws are capped.
pub const DURATION_MAX_S: f64 = 300.0;
/// Shortest base duration, s (1 ms; shorter draws are raised to it).
pub const DURATION_MIN_S: f64 = 0.001;
/// σ of the per-invocation duration jitter around the function's base duration (assumed:
/// invocations of one function vary by about ±30%).
pub const JITTER_SIGMA: f64 = 0.25;

/// A function's base execution duration, seconds: log-normal(μ = −0.38, σ = 2.36) clamped
/// to `[DURATION_MIN_S, DURATION_MAX_S]` (the clamp leaves the median unchanged).
pub fn base_duration_s(rng: &mut Rng) -> f64 {
    rng.lognormal_mu(DURATION_MU, DURATION_SIGMA)
        .clamp(DURATION_MIN_S, DURATION_MAX_S)
}

/// Which arrival process drives the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    /// Open-loop Poisson arrivals at a constant fleet rate.
    Poisson,
    /// Bursty per-function ON/OFF arrivals (Azure-Functions-like).
    Azure,
}

/// Shape of the bursty arrivals of [`ArrivalKind::Azure`] (assumed values: the public
/// trace reports rates spanning 8 orders of magnitude and bursty, timer- and event-driven
/// invocation, but no ON/OFF parameters; these make most OFF periods shorter than the
/// keep-alive and a heavy tail of them longer).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AzureShape {
    /// Mean ON period, s (exponential).
    pub on_mean_s: f64,
    /// Mean OFF period, s (Pareto).
    pub off_mean_s: f64,
    /// Pareto shape of OFF periods (> 1; 1.5: finite mean, infinite variance).
    pub off_alpha: f64,
    /// Longest OFF period, s (bounds the Pareto tail).
    pub off_max_s: f64,
}

impl Default for AzureShape {
    fn default() -> AzureShape {
        AzureShape {
            on_mean_s: 300.0,
            off_mean_s: 1_200.0,
            off_alpha: 1.5,
            off_max_s: 6.0 * 3_600.0,
        }
    }
}

impl AzureShape {
    /// Share of time a function is ON.
    pub fn duty(&self) -> f64 {
        self.on_mean_s / (self.on_mean_s + self.off_mean_s)
    }

    /// An OFF period, s: Pareto with scale `x_m = mean (α − 1) / α`, capped.
    fn off_s(&self, rng: &mut Rng) -> f64 {
        let xm = self.off_mean_s * (self.off_alpha - 1.0) / self.off_alpha;
        let u = 1.0 - rng.f64(); // (0, 1]
        (xm * u.powf(-1.0 / self.off_alpha)).min(self.off_max_s)
    }
}

/// One invocation arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Virtual time, µs.
    pub at_us: u64,
    /// Function index (0 most popular).
    pub function: u32,
    /// Peer that serves it.
    pub peer: u32,
}

/// ON/OFF state of one function under [`ArrivalKind::Azure`].
struct Burst {
    rng: Rng,
    /// Invocations per second while ON.
    rate_on: f64,
    /// Start of the current (or next) ON period, µs.
    on_start_us: u64,
    /// Its end, µs.
    on_end_us: u64,
}

/// What drives the arrivals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrivalConfig {
    /// Arrival process.
    pub kind: ArrivalKind,
    /// Peers (each arrival picks one uniformly).
    pub peers: u32,
    /// Functions (ranked by popularity, 0 most popular).
    pub functions: u32,
    /// Zipf exponent of function popularity.
    pub zipf_s: f64,
    /// Mean fleet-wide invocations per second.
    pub fleet_rate: f64,
    /// Shape of bursts under [`ArrivalKind::Azure`].
    pub shape: AzureShape,
}

/// The arrival generator: yields arrivals in time order.
pub struct Arrivals {
    kind: ArrivalKind,
    peers: u32,
    popularity: Zipf,
    fleet_rate: f64,
    shape: AzureShape,
    /// Draws of the Poisson stream and of peers.
    rng: Rng,
    /// Poisson: time of the next arrival, µs.
    next_us: u64,
    /// Azure: per-function bursts and the next arrival of each function, by time.
    bursts: Vec<Burst>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

const S: f64 = 1e6;

impl Arrivals {
    /// A generator starting at `t0_us`, its draws derived from `rng`'s seed.
    pub fn new(c: &ArrivalConfig, rng: &Rng, t0_us: u64) -> Arrivals {
        let ArrivalConfig {
            kind,
            peers,
            functions,
            zipf_s,
            fleet_rate,
            shape,
        } = *c;
        assert!(peers > 0 && functions > 0 && fleet_rate > 0.0);
        let popularity = Zipf::new(functions as usize, zipf_s);
        let rng = rng.child(0x6172_7269_7661_6c73);
        let mut a = Arrivals {
            kind,
            peers,
            popularity,
            fleet_rate,
            shape,
            next_us: t0_us,
            bursts: Vec::new(),
            heap: BinaryHeap::new(),
            rng: rng.clone(),
        };
        match kind {
            ArrivalKind::Poisson => a.next_us = t0_us + (a.rng.exp(fleet_rate) * S) as u64,
            ArrivalKind::Azure => {
                let duty = shape.duty();
                for f in 0..functions {
                    let mut r = rng.child(0x6275_7273_7400_0000 | u64::from(f));
                    let rate_on = fleet_rate * a.popularity.probability(f as usize) / duty;
                    let (on_start, on_end) = phase_at_start(&mut r, &shape);
                    let mut b = Burst {
                        rng: r,
                        rate_on,
                        on_start_us: t0_us + (on_start * S) as u64,
                        on_end_us: t0_us + (on_end * S) as u64,
                    };
                    let at = next_in_burst(&mut b, &shape, t0_us);
                    a.heap.push(Reverse((at, f)));
                    a.bursts.push(b);
                }
            }
        }
        a
    }

    /// The popularity distribution of functions.
    pub fn popularity(&self) -> &Zipf {
        &self.popularity
    }

    /// The next arrival.
    pub fn next_arrival(&mut self) -> Arrival {
        let (at_us, function) = match self.kind {
            ArrivalKind::Poisson => {
                let at = self.next_us;
                self.next_us = at + ((self.rng.exp(self.fleet_rate) * S) as u64).max(1);
                (at, self.popularity.sample(&mut self.rng) as u32)
            }
            ArrivalKind::Azure => {
                let Reverse((at, f)) = self.heap.pop().expect("one pending arrival per function");
                let next = next_in_burst(&mut self.bursts[f as usize], &self.shape, at + 1);
                self.heap.push(Reverse((next, f)));
                (at, f)
            }
        };
        let peer = self.rng.below(u64::from(self.peers)) as u32;
        Arrival { at_us, function, peer }
    }
}

/// How long bursts run before traffic starts, s: a day of ON/OFF periods (about 60 cycles
/// with the default shape) puts each function in a typical phase at the start.
const BURST_WARMUP_S: f64 = 86_400.0;

/// The ON period in progress at the start, or the next one: (start, end), s after the
/// start (the start clamped to 0). Periods alternate from [`BURST_WARMUP_S`] before the
/// start; arrivals within ON periods are memoryless, so only the periods are drawn.
fn phase_at_start(r: &mut Rng, shape: &AzureShape) -> (f64, f64) {
    let mut on_end = -BURST_WARMUP_S + r.exp(1.0 / shape.on_mean_s);
    loop {
        if on_end >= 0.0 {
            return (0.0, on_end);
        }
        let on_start = on_end + shape.off_s(r);
        on_end = on_start + r.exp(1.0 / shape.on_mean_s);
        if on_start >= 0.0 {
            return (on_start, on_end);
        }
    }
}

/// The first arrival of a bursty function at or after `from_us`, moving through OFF and ON
/// periods as needed.
fn next_in_burst(b: &mut Burst, shape: &AzureShape, from_us: u64) -> u64 {
    let mut from_us = from_us.max(b.on_start_us);
    loop {
        let at = from_us + (b.rng.exp(b.rate_on) * S) as u64;
        if at <= b.on_end_us {
            return at;
        }
        // The ON period ended: an OFF period, then a new ON period.
        b.on_start_us = b.on_end_us + (shape.off_s(&mut b.rng) * S) as u64;
        b.on_end_us = b.on_start_us + (b.rng.exp(1.0 / shape.on_mean_s) * S) as u64;
        from_us = b.on_start_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` arrivals of 20 functions at 50/s, with ON/OFF periods 100× shorter than the
    /// defaults (many cycles in a short run).
    fn count(kind: ArrivalKind, n: usize) -> (Vec<u64>, Vec<Arrival>) {
        let d = AzureShape::default();
        let c = ArrivalConfig {
            kind,
            peers: 10,
            functions: 20,
            zipf_s: 1.0,
            fleet_rate: 50.0,
            shape: AzureShape {
                on_mean_s: d.on_mean_s / 100.0,
                off_mean_s: d.off_mean_s / 100.0,
                off_max_s: d.off_max_s / 100.0,
                ..d
            },
        };
        let mut a = Arrivals::new(&c, &Rng::new(1), 0);
        let v: Vec<Arrival> = (0..n).map(|_| a.next_arrival()).collect();
        let mut per_f = vec![0u64; 20];
        for x in &v {
            per_f[x.function as usize] += 1;
        }
        (per_f, v)
    }

    #[test]
    fn arrivals_are_ordered_and_follow_popularity() {
        for kind in [ArrivalKind::Poisson, ArrivalKind::Azure] {
            let (per_f, v) = count(kind, 200_000);
            assert!(v.windows(2).all(|w| w[0].at_us <= w[1].at_us), "{kind:?}");
            assert!(v.iter().all(|x| x.peer < 10 && x.function < 20));
            // Rank 0 is about twice as popular as rank 1 (loosely for bursty arrivals).
            let ratio = per_f[0] as f64 / per_f[1] as f64;
            assert!((1.2..3.5).contains(&ratio), "{kind:?} {ratio}");
            // The mean fleet rate holds (loosely for bursts).
            let rate = v.len() as f64 / (v.last().unwrap().at_us as f64 / 1e6);
            assert!((25.0..100.0).contains(&rate), "{kind:?} {rate}");
        }
    }

    #[test]
    fn azure_arrivals_are_burstier_than_poisson() {
        // Coefficient of variation of a popular function's inter-arrival gaps: 1 for
        // Poisson, well above 1 for ON/OFF bursts.
        let cv = |kind| {
            let (_, v) = count(kind, 200_000);
            let t: Vec<f64> = v.iter().filter(|x| x.function == 2).map(|x| x.at_us as f64).collect();
            let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / gaps.len() as f64;
            var.sqrt() / mean
        };
        let p = cv(ArrivalKind::Poisson);
        let a = cv(ArrivalKind::Azure);
        assert!((0.9..1.1).contains(&p), "{p}");
        assert!(a > 2.0, "{a}");
    }
}
