//! The seed paper's Figure 5 experiment: 50 containers serve one function; N requests
//! arrive (Poisson, 50 requests/s fleet-wide, each to a uniformly drawn container); three
//! strategies serve them:
//!
//! - **NS**, no sharing: every container compiles its own hot code after its own
//!   `hot_after` requests ([`strategies::ns`]);
//! - **CS**, code sharing only: the first compiled code reaches every other container after
//!   a dissemination delay ([`strategies::cs`]);
//! - **IGN**, profile and code sharing: 50 peers run the real engine in a
//!   [`World`](crate::world::World); fleet-wide counts cross the threshold, one elected peer
//!   compiles and every container installs its code ([`ign`]).
//!
//! A container's first request is a cold start (cold init plus the request at its tier), then
//! requests run warm until the container runs hot code, then hot; containers are never
//! evicted and requests never queue (latency = service time). Cost is the total CPU time:
//! service times plus compile time of every compile performed. Each strategy runs once per
//! workload on the longest stream; the measures at N requests are taken over its first N
//! requests (compiles count when finished by the N-th request's arrival).
//!
//! The paper set of parameters ([`params::paper_set`]) is an assumption fixed before any
//! result was looked at; the calibration set comes from `calibration/wasm.json`. A
//! sensitivity sweep varies each paper parameter by ×0.5 and ×2, one at a time.
//!
//! Deterministic: the same seed gives byte-identical `figure5.json`.

pub mod ign;
pub mod output;
pub mod params;
pub mod strategies;

use params::{CalibrationError, Workload};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use strategies::{Measure, Request};

/// What to run.
#[derive(Clone, Debug)]
pub struct Figure5Config {
    /// Seed of every draw.
    pub seed: u64,
    /// Request counts (the x axis), each at least 1.
    pub requests: Vec<usize>,
    /// The calibration file.
    pub calibration: PathBuf,
    /// The workloads run with their own parameters and varied in the sensitivity sweep:
    /// the paper set ([`params::paper_set`]) unless a test narrows it.
    pub workloads: Vec<Workload>,
    /// Whether to run the sensitivity sweep.
    pub sensitivity: bool,
}

impl Figure5Config {
    /// The default request counts: 50, 100, 200, 500, 1,000, 2,000, 5,000 and 10,000.
    pub const DEFAULT_REQUESTS: [usize; 8] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];

    /// The experiment with the default counts and calibration file.
    pub fn new(seed: u64) -> Figure5Config {
        Figure5Config {
            seed,
            requests: Self::DEFAULT_REQUESTS.to_vec(),
            calibration: params::default_calibration_path(),
            workloads: params::paper_set(),
            sensitivity: true,
        }
    }
}

/// Request counts at which the sensitivity sweep reports.
pub const SENSITIVITY_REQUESTS: [usize; 2] = [100, 1_000];

/// Why the experiment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Figure5Error {
    /// The calibration set could not be read.
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    /// An engine rejected its configuration or a call.
    #[error(transparent)]
    Engine(#[from] ignite_core::EngineError),
    /// The request counts are empty or contain 0.
    #[error("request counts must be non-empty and positive")]
    Requests,
    /// Writing results failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Writing results failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How much better a strategy is than NS.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Reduction {
    /// NS cost / this strategy's cost.
    pub cost_reduction: f64,
    /// NS median latency / this strategy's median latency.
    pub latency_reduction: f64,
}

impl Reduction {
    fn over(ns: &Measure, x: &Measure) -> Reduction {
        Reduction {
            cost_reduction: ns.cost_s / x.cost_s,
            latency_reduction: ns.median_ms / x.median_ms,
        }
    }
}

/// The three strategies' measures at one request count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Absolute {
    /// No sharing.
    pub ns: Measure,
    /// Code sharing only.
    pub cs: Measure,
    /// Profile and code sharing (the real engine).
    pub ign: Measure,
}

/// One point of the x axis.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Requests N.
    pub requests: usize,
    /// IGN over NS.
    pub ign: Reduction,
    /// CS over NS.
    pub cs: Reduction,
    /// Absolute cost, median latency, compiles and hot requests of each strategy.
    pub absolute: Absolute,
}

/// When the containers of an IGN run installed the tier-2 code, ms after traffic starts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Installs {
    /// Containers that installed it by the last request.
    pub installed: u32,
    /// The first install.
    pub first_ms: Option<f64>,
    /// The median install among those that installed.
    pub median_ms: Option<f64>,
    /// The last install.
    pub last_ms: Option<f64>,
}

impl Installs {
    fn of(install_us: &[Option<u64>]) -> Installs {
        let mut t: Vec<u64> = install_us.iter().flatten().copied().collect();
        t.sort_unstable();
        let ms = |v: Option<&u64>| v.map(|&us| us as f64 / 1_000.0);
        Installs {
            installed: t.len() as u32,
            first_ms: ms(t.first()),
            median_ms: ms(t.get(t.len() / 2)),
            last_ms: ms(t.last()),
        }
    }
}

/// The results of one workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadResult {
    /// Workload name.
    pub name: String,
    /// Its parameters.
    pub params: Workload,
    /// Compile requests the IGN world saw over the whole run.
    pub ign_compiles: u64,
    /// When IGN's containers installed the tier-2 code.
    pub ign_installs: Installs,
    /// One point per request count, ascending.
    pub points: Vec<Point>,
}

/// One parameter varied in the sensitivity sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityRow {
    /// Workload name.
    pub workload: String,
    /// The parameter varied: `baseline`, `hot_speedup`, `hot_after`, `compile_ms` or
    /// `cold_init_ms`.
    pub parameter: String,
    /// Factor applied (1 for the baseline).
    pub factor: f64,
    /// The parameters run.
    pub params: Workload,
    /// IGN and CS over NS at [`SENSITIVITY_REQUESTS`].
    pub points: Vec<SensitivityPoint>,
}

/// IGN and CS over NS at one request count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SensitivityPoint {
    /// Requests N.
    pub requests: usize,
    /// IGN over NS.
    pub ign: Reduction,
    /// CS over NS.
    pub cs: Reduction,
}

/// Constants of the model, reported beside the results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// Containers.
    pub containers: u32,
    /// Fleet-wide Poisson request rate, per second.
    pub rate_per_s: f64,
    /// IGN profile publication interval, ms.
    pub sync_interval_ms: u64,
    /// CS: mesh hops of the dissemination delay.
    pub cs_hops: u32,
    /// CS: median link latency per hop, µs.
    pub cs_link_median_us: u64,
    /// CS (and IGN uplinks): artifact transfer bandwidth, bytes per second.
    pub blob_bytes_per_s: f64,
}

/// Everything `figure5.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure5 {
    /// Seed of every draw.
    pub seed: u64,
    /// Request counts.
    pub requests: Vec<usize>,
    /// Model constants.
    pub model: Model,
    /// The parameters of [`Figure5::workloads`]: the paper set (assumptions fixed before
    /// results).
    pub paper_parameters: Vec<Workload>,
    /// The calibration set of parameters.
    pub calibration_parameters: Vec<Workload>,
    /// Results with the paper set.
    pub workloads: Vec<WorkloadResult>,
    /// Results with the calibration set.
    pub calibration: Vec<WorkloadResult>,
    /// The sensitivity sweep over the paper set.
    pub sensitivity: Vec<SensitivityRow>,
}

/// Runs one workload: NS, CS and IGN on `stream`, measured at `counts`.
fn run_workload(seed: u64, stream: &[Request], w: &Workload, counts: &[usize]) -> Result<WorkloadResult, Figure5Error> {
    let ns = strategies::measure(stream, &strategies::ns(stream, w), w, counts);
    let cs = strategies::measure(stream, &strategies::cs(stream, w), w, counts);
    let run = ign::run(seed, stream, w)?;
    let ign = strategies::measure(stream, &run.outcome, w, counts);
    let points = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| Point {
            requests: n,
            ign: Reduction::over(&ns[i], &ign[i]),
            cs: Reduction::over(&ns[i], &cs[i]),
            absolute: Absolute {
                ns: ns[i],
                cs: cs[i],
                ign: ign[i],
            },
        })
        .collect();
    Ok(WorkloadResult {
        name: w.name.clone(),
        params: w.clone(),
        ign_compiles: run.compiles,
        ign_installs: Installs::of(&run.install_us),
        points,
    })
}

/// The variants of the sensitivity sweep for one workload: the baseline, then each paper
/// parameter ×0.5 and ×2, one at a time. The hot speedup varies the hot latency
/// (`hot = warm / (speedup × factor)`); `hot_after` is rounded and at least 1.
pub fn variants(w: &Workload) -> Vec<(&'static str, f64, Workload)> {
    let mut out = vec![("baseline", 1.0, w.clone())];
    for factor in [0.5, 2.0] {
        let mut v = w.clone();
        v.hot_ms = w.warm_ms / (w.speedup() * factor);
        out.push(("hot_speedup", factor, v));
        let mut v = w.clone();
        v.hot_after = ((w.hot_after as f64 * factor).round() as u64).max(1);
        out.push(("hot_after", factor, v));
        let mut v = w.clone();
        v.compile_ms = w.compile_ms * factor;
        out.push(("compile_ms", factor, v));
        let mut v = w.clone();
        v.cold_init_ms = w.cold_init_ms * factor;
        out.push(("cold_init_ms", factor, v));
    }
    out
}

/// What IGN's dynamics depend on: the other parameters only change latencies, so runs with
/// the same key are shared.
fn ign_key(w: &Workload) -> (u64, u64, u64) {
    (w.hot_after, w.compile_us(), w.artifact_bytes)
}

/// The sensitivity sweep over `set` on the first [`SENSITIVITY_REQUESTS`] requests of
/// `stream` (which must hold at least the largest of them).
fn sensitivity(
    seed: u64,
    stream: &[Request],
    set: &[Workload],
    progress: &mut dyn FnMut(),
) -> Result<Vec<SensitivityRow>, Figure5Error> {
    let counts = SENSITIVITY_REQUESTS;
    let stream = &stream[..counts[counts.len() - 1]];
    let mut rows = Vec::new();
    for w in set {
        let mut runs: BTreeMap<(u64, u64, u64), strategies::Outcome> = BTreeMap::new();
        for (parameter, factor, v) in variants(w) {
            let key = ign_key(&v);
            if let std::collections::btree_map::Entry::Vacant(e) = runs.entry(key) {
                e.insert(ign::run(seed, stream, &v)?.outcome);
                progress();
            }
            let ns = strategies::measure(stream, &strategies::ns(stream, &v), &v, &counts);
            let cs = strategies::measure(stream, &strategies::cs(stream, &v), &v, &counts);
            let ign = strategies::measure(stream, &runs[&key], &v, &counts);
            rows.push(SensitivityRow {
                workload: w.name.clone(),
                parameter: parameter.to_string(),
                factor,
                params: v,
                points: (0..counts.len())
                    .map(|i| SensitivityPoint {
                        requests: counts[i],
                        ign: Reduction::over(&ns[i], &ign[i]),
                        cs: Reduction::over(&ns[i], &cs[i]),
                    })
                    .collect(),
            });
        }
    }
    Ok(rows)
}

/// IGN runs [`run`] performs for `c` with the calibration set `calibration` (for progress
/// bars).
pub fn total_runs(c: &Figure5Config, calibration: &[Workload]) -> usize {
    let paper = &c.workloads;
    let distinct: usize = paper
        .iter()
        .map(|w| {
            variants(w)
                .iter()
                .map(|(_, _, v)| ign_key(v))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .sum();
    paper.len() + calibration.len() + if c.sensitivity { distinct } else { 0 }
}

/// Runs the experiment with the calibration set `calibration` (see
/// [`params::calibration_set`]). `progress(ign_runs_done)` after each IGN run.
pub fn run(
    c: &Figure5Config,
    calibration: &[Workload],
    mut progress: impl FnMut(usize),
) -> Result<Figure5, Figure5Error> {
    let mut counts = c.requests.clone();
    counts.sort_unstable();
    counts.dedup();
    if counts.first().is_none_or(|&n| n == 0) {
        return Err(Figure5Error::Requests);
    }
    let longest = counts[counts.len() - 1].max(SENSITIVITY_REQUESTS[1]);
    let stream = strategies::stream(c.seed, longest);
    let main = &stream[..counts[counts.len() - 1]];
    let paper = c.workloads.clone();
    let mut done = 0;
    let mut workloads = Vec::new();
    for w in &paper {
        workloads.push(run_workload(c.seed, main, w, &counts)?);
        done += 1;
        progress(done);
    }
    let mut calibrated = Vec::new();
    for w in calibration {
        calibrated.push(run_workload(c.seed, main, w, &counts)?);
        done += 1;
        progress(done);
    }
    let sensitivity = if c.sensitivity {
        sensitivity(c.seed, &stream, &paper, &mut || {
            done += 1;
            progress(done);
        })?
    } else {
        Vec::new()
    };
    Ok(Figure5 {
        seed: c.seed,
        requests: counts,
        model: Model {
            containers: strategies::CONTAINERS,
            rate_per_s: strategies::RATE_PER_S,
            sync_interval_ms: ign::SYNC_INTERVAL_MS,
            cs_hops: strategies::hops(strategies::CONTAINERS, strategies::MESH_DEGREE),
            cs_link_median_us: strategies::LINK_MEDIAN_US,
            blob_bytes_per_s: strategies::BLOB_BYTES_PER_S,
        },
        paper_parameters: paper,
        calibration_parameters: calibration.to_vec(),
        workloads,
        calibration: calibrated,
        sensitivity,
    })
}
