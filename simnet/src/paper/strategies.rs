//! The request stream, the two strategies without profile sharing (NS and CS), and the
//! cost and latency measures every strategy is judged by.
//!
//! A strategy's [`Outcome`] says, per request, whether it ran hot code, and when each compile
//! finished; [`measure`] turns an outcome and a workload's parameters into cost (total CPU
//! time) and median latency over the first N requests.

use super::params::Workload;
use crate::rng::Rng;
use serde::Serialize;

/// Containers of the experiment (the paper simulates 50).
pub const CONTAINERS: u32 = 50;

/// Fleet-wide request rate, requests per second (one per container per second on average).
pub const RATE_PER_S: f64 = 50.0;

/// Mesh degree of the dissemination bound (gossipsub's D = 6).
pub const MESH_DEGREE: u32 = 6;

/// Median one-way link latency of the dissemination bound: the network model's cross-zone
/// median (20 ms), as most mesh links cross zones with 3 zones.
pub const LINK_MEDIAN_US: u64 = 20_000;

/// Bandwidth a code artifact is transferred at: 100 Mbit/s, in bytes per second.
pub const BLOB_BYTES_PER_S: f64 = 100e6 / 8.0;

/// Label of the request stream's random stream.
const STREAM_LABEL: u64 = 0x6669_6735_7265_7173;

/// One request: when it arrives (µs after traffic starts) and which container serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Arrival time, µs after traffic starts.
    pub at_us: u64,
    /// The container.
    pub container: u32,
}

/// `count` requests: open-loop Poisson arrivals at [`RATE_PER_S`], each to a container drawn
/// uniformly among [`CONTAINERS`]. Arrival times strictly increase.
pub fn stream(seed: u64, count: usize) -> Vec<Request> {
    let mut rng = Rng::new(seed).child(STREAM_LABEL);
    let mut at_us = 0u64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        at_us += ((rng.exp(RATE_PER_S) * 1e6) as u64).max(1);
        let container = rng.below(u64::from(CONTAINERS)) as u32;
        out.push(Request { at_us, container });
    }
    out
}

/// What a strategy did with a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per request (stream order), whether it ran hot code.
    pub hot: Vec<bool>,
    /// When each compile finished, µs after traffic starts, ascending.
    pub compiles_done_us: Vec<u64>,
}

/// Mesh hops for code to reach every container: `ceil(log_D N)`, the smallest `h` with
/// `D^h >= N`.
pub fn hops(containers: u32, degree: u32) -> u32 {
    let mut h = 0;
    let mut reach = 1u64;
    while reach < u64::from(containers) {
        reach *= u64::from(degree.max(2));
        h += 1;
    }
    h
}

/// Delay from the end of a compile to the code running on every other container in CS:
/// `ceil(log_6 50)` = 3 hops × [`LINK_MEDIAN_US`] plus the transfer of the artifact at
/// [`BLOB_BYTES_PER_S`].
pub fn distribution_delay_us(w: &Workload) -> u64 {
    let hops = u64::from(hops(CONTAINERS, MESH_DEGREE));
    hops * LINK_MEDIAN_US + (w.artifact_bytes as f64 / BLOB_BYTES_PER_S * 1e6).round() as u64
}

/// No sharing: each container compiles after its own `hot_after` requests; the compile
/// starts at the arrival of that request and the container runs hot from the compile's end
/// (requests arriving meanwhile run warm).
pub fn ns(stream: &[Request], w: &Workload) -> Outcome {
    let mut seen = vec![0u64; CONTAINERS as usize];
    let mut hot_at: Vec<Option<u64>> = vec![None; CONTAINERS as usize];
    let mut out = Outcome::default();
    for r in stream {
        let c = r.container as usize;
        out.hot.push(hot_at[c].is_some_and(|t| r.at_us >= t));
        seen[c] += 1;
        if seen[c] == w.hot_after && hot_at[c].is_none() {
            let done = r.at_us + w.compile_us();
            hot_at[c] = Some(done);
            out.compiles_done_us.push(done);
        }
    }
    out.compiles_done_us.sort_unstable();
    out
}

/// Code sharing only: like [`ns`], but the first compiled code reaches every other container
/// [`distribution_delay_us`] after that compile ends. A container whose own threshold comes
/// before the shared code arrives compiles too (its compile is counted in full) and runs
/// hot from whichever comes first.
pub fn cs(stream: &[Request], w: &Workload) -> Outcome {
    let delay = distribution_delay_us(w);
    let mut seen = vec![0u64; CONTAINERS as usize];
    let mut own_at: Vec<Option<u64>> = vec![None; CONTAINERS as usize];
    // (container that compiled first, when the others receive its code)
    let mut shared: Option<(usize, u64)> = None;
    let mut out = Outcome::default();
    for r in stream {
        let c = r.container as usize;
        let hot = own_at[c].is_some_and(|t| r.at_us >= t) || shared.is_some_and(|(_, s)| r.at_us >= s);
        out.hot.push(hot);
        seen[c] += 1;
        if seen[c] == w.hot_after && own_at[c].is_none() && !hot {
            let done = r.at_us + w.compile_us();
            own_at[c] = Some(done);
            out.compiles_done_us.push(done);
            if shared.is_none() {
                shared = Some((c, done + delay));
            }
        }
    }
    out.compiles_done_us.sort_unstable();
    out
}

/// Cost and latency of the first N requests of a strategy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Measure {
    /// Total CPU time: the service times of the first N requests plus the compiles finished
    /// by the N-th request's arrival, s.
    pub cost_s: f64,
    /// Median latency (service time) of the first N requests, ms.
    pub median_ms: f64,
    /// Compiles finished by the N-th request's arrival.
    pub compiles: u64,
    /// Requests among the first N that ran hot code.
    pub hot_requests: u64,
}

/// Service time of each request of `outcome`, ms: a container's first request is a cold
/// start (cold init plus the request at the container's tier), then warm or hot.
pub fn latencies_ms(stream: &[Request], outcome: &Outcome, w: &Workload) -> Vec<f64> {
    assert_eq!(stream.len(), outcome.hot.len(), "one tier per request");
    let mut started = vec![false; CONTAINERS as usize];
    stream
        .iter()
        .zip(&outcome.hot)
        .map(|(r, &hot)| {
            let c = r.container as usize;
            let run = if hot { w.hot_ms } else { w.warm_ms };
            let cold = if started[c] { 0.0 } else { w.cold_init_ms };
            started[c] = true;
            cold + run
        })
        .collect()
}

/// The measures of the first `n` requests for each `n` of `counts` (each at most the
/// stream's length).
pub fn measure(stream: &[Request], outcome: &Outcome, w: &Workload, counts: &[usize]) -> Vec<Measure> {
    let lat = latencies_ms(stream, outcome, w);
    counts
        .iter()
        .map(|&n| {
            assert!(n >= 1 && n <= stream.len(), "count {n} within the stream");
            let last_at = stream[n - 1].at_us;
            let compiles = outcome.compiles_done_us.iter().take_while(|&&t| t <= last_at).count() as u64;
            let service_ms: f64 = lat[..n].iter().sum();
            let mut sorted = lat[..n].to_vec();
            sorted.sort_by(f64::total_cmp);
            let median_ms = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            Measure {
                cost_s: (service_ms + compiles as f64 * w.compile_ms) / 1_000.0,
                median_ms,
                compiles,
                hot_requests: outcome.hot[..n].iter().filter(|h| **h).count() as u64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paper::params::paper_set;

    #[test]
    fn stream_is_seeded_and_increasing() {
        let a = stream(1, 1_000);
        assert_eq!(a, stream(1, 1_000));
        assert_ne!(a, stream(2, 1_000));
        assert!(a.windows(2).all(|p| p[0].at_us < p[1].at_us));
        // About 50 requests per second.
        let secs = a[999].at_us as f64 / 1e6;
        assert!((15.0..25.0).contains(&secs), "{secs}");
    }

    #[test]
    fn hops_and_delay() {
        assert_eq!(hops(50, 6), 3);
        assert_eq!(hops(36, 6), 2);
        assert_eq!(hops(1, 6), 0);
        let w = &paper_set()[0];
        // 3 × 20 ms + 64 KiB at 12.5 MB/s (5,243 µs).
        assert_eq!(distribution_delay_us(w), 60_000 + 5_243);
    }

    #[test]
    fn ns_and_cs_on_a_hand_made_stream() {
        let mut w = paper_set()[0].clone();
        w.hot_after = 2;
        w.compile_ms = 1.0;
        // Container 0 at 0 ms, 10 ms (threshold, compile ends at 11 ms), 20 ms (hot);
        // container 1 at 5 ms, 30 ms (its threshold), 40 ms.
        let s: Vec<Request> = [(0, 0), (5, 1), (10, 0), (20, 0), (30, 1), (40, 1)]
            .iter()
            .map(|&(ms, c)| Request {
                at_us: ms * 1_000 + 1,
                container: c,
            })
            .collect();
        let n = ns(&s, &w);
        assert_eq!(n.hot, [false, false, false, true, false, true]);
        assert_eq!(n.compiles_done_us, [11_001, 31_001]);
        let c = cs(&s, &w);
        // Shared code reaches container 1 at 11 ms + 65.2 ms: too late for 30 ms, so it
        // compiles itself.
        assert_eq!(c.hot, n.hot);
        assert_eq!(c.compiles_done_us, n.compiles_done_us);
        w.compile_ms = 0.0;
        w.artifact_bytes = 0;
        let c = cs(&s, &w);
        // Now the code is shared at 10 ms + 60 ms: container 1 still compiles at 30 ms.
        assert_eq!(c.compiles_done_us.len(), 2);
        let m = measure(&s, &n, &paper_set()[0], &[1, 6]);
        assert_eq!(m[0].cost_s, 1.05);
        assert_eq!(m[0].median_ms, 1_050.0);
        assert_eq!(m[1].compiles, 2);
        assert_eq!(m[1].hot_requests, 2);
        assert!((m[1].median_ms - 250.0).abs() < 1e-9);
    }
}
