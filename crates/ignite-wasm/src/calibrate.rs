//! Measures the real tiers on the workloads: cold starts, warm latency per tier, compile
//! time per tier and the cost of instrumentation. The result is the parameter set simnet
//! reads ([`Calibration`], written as JSON by the `calibrate` binary).
//!
//! Wall-clock numbers of one machine: they are measured, not deterministic. Latencies are
//! medians of warm invocations on one kept instance, as a warm container runs them.

use crate::host::{HostError, Warm, monomorphic_sites};
use crate::rewrite::{self, SiteMap};
use crate::tiers::{Compiler, TierEngine};
use crate::workloads::{Mix, Workload, html_input};
use ignite_core::{Counter, CounterKey, MethodId, Tier};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Compile times of one workload, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileMs {
    /// Tier 0: the instrumented module to Pulley bytecode.
    pub tier0_pulley: f64,
    /// Tier 1: the instrumented module with Winch.
    pub tier1_winch: f64,
    /// Tier 2: the plain module with Cranelift.
    pub tier2_generic: f64,
    /// Tier 2: the specialized module with Cranelift.
    pub tier2_specialized: f64,
}

/// Cold starts of one workload: from nothing to the first result, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColdUs {
    /// The node compiles Pulley code itself, instantiates and runs (no fleet).
    pub local_compile: f64,
    /// The node loads the fleet's tier-0 artifact, instantiates and runs.
    pub fleet_tier0: f64,
    /// The node loads the fleet's tier-2 artifact, instantiates and runs (a hot start).
    pub fleet_tier2: f64,
}

/// Warm latency per tier of one workload (median, microseconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    /// Tier 0, instrumented (what a node runs at tier 0).
    pub tier0: f64,
    /// Tier 0, plain module (for the instrumentation overhead).
    pub tier0_plain: f64,
    /// Tier 1, instrumented.
    pub tier1: f64,
    /// Tier 1, plain module.
    pub tier1_plain: f64,
    /// Tier 2 without speculation.
    pub tier2_generic: f64,
    /// Tier 2 specialized from the instrumented profile of the same input.
    pub tier2_specialized: f64,
}

/// The measurements of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadCalibration {
    /// Workload name (`hash`, `wordcount`, `html`, `html_monomorphic`, `thumbnail`).
    pub name: String,
    /// Input size in bytes.
    pub input_bytes: usize,
    /// Compile times.
    pub compile_ms: CompileMs,
    /// Cold starts.
    pub cold_us: ColdUs,
    /// Warm latencies.
    pub latency_us: LatencyUs,
    /// Instrumented / plain latency at tiers 0 and 1.
    pub instrumentation_overhead: [f64; 2],
    /// Call sites the tier-2 code speculates on.
    pub speculated_sites: usize,
    /// Serialized artifact sizes: tier 0, 1, 2 (specialized).
    pub artifact_bytes: [usize; 3],
}

/// A calibration run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// wasmtime release.
    pub wasmtime: String,
    /// The classes measured: Pulley, then the best native level this machine runs.
    pub classes: Vec<String>,
    /// Warm invocations timed per latency (at least; more for fast workloads).
    pub min_runs: usize,
    /// Per workload.
    pub workloads: Vec<WorkloadCalibration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median warm latency: at least `min_runs` runs, more until about `budget` has passed
/// (at most 1,000). Checks every output against `want`.
fn warm_median(w: &mut Warm, input: &[u8], want: &[u8], min_runs: usize, budget: Duration) -> Result<f64, HostError> {
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_runs.max(1) || (started.elapsed() < budget && times.len() < 1_000) {
        let t = Instant::now();
        let out = w.invoke(input)?;
        times.push(us(t.elapsed()));
        if out != want {
            return Err(HostError::Abi("output differs from the reference".into()));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The module-method profile an instrumented run of `input` produces (what the fleet
/// would merge), for choosing speculations.
fn profile_of(module: &wasmtime::Module, sites: &SiteMap, input: &[u8]) -> Result<Vec<(CounterKey, u64)>, HostError> {
    let recorder =
        ignite_core::Recorder::new(ignite_core::RecorderConfig::default()).map_err(ignite_core::EngineError::from)?;
    let function = ignite_core::FunctionId::from_deployment("calibration", &[]);
    let p = recorder
        .method(
            function,
            MethodId(0),
            Tier(0),
            ignite_core::MethodShape {
                branch_sites: sites.branch_sites,
                call_sites: sites.call_sites,
            },
        )
        .map_err(ignite_core::EngineError::from)?;
    let mut w = Warm::new(module, Some(sites), &[])?;
    w.invoke(input)?;
    w.record_profile(&p);
    let mut out = Vec::new();
    recorder.visit(|_, k, v| out.push((k, v)));
    out.retain(|(k, _)| matches!(k.counter, Counter::Receiver { .. } | Counter::ReceiverTotal { .. }));
    Ok(out)
}

/// Measures one workload on `input` with the three tier engines.
pub fn measure(
    name: &str,
    workload: Workload,
    input: &[u8],
    tiers: [&TierEngine; 3],
    min_runs: usize,
    budget: Duration,
) -> Result<WorkloadCalibration, HostError> {
    let [pulley, winch, cranelift] = tiers;
    let want = workload.reference(input);
    let wasm = workload.wasm();
    let inst = rewrite::instrument(&wasm)?;

    let t = Instant::now();
    let t0 = pulley.compile(&inst.wasm)?;
    let c0 = ms(t.elapsed());
    let t = Instant::now();
    let t1 = winch.compile(&inst.wasm)?;
    let c1 = ms(t.elapsed());
    let t = Instant::now();
    let generic = cranelift.compile(&wasm)?;
    let c2g = ms(t.elapsed());

    // SAFETY (all `deserialize` calls below): the bytes were produced by these engines'
    // `precompile_module` in this process a moment ago.
    let load = |te: &TierEngine, bytes: &[u8]| unsafe { wasmtime::Module::deserialize(&te.engine, bytes) };
    let m0 = load(pulley, &t0)?;
    let profile = profile_of(&m0, &inst.sites, input)?;
    let speculations = monomorphic_sites(&profile, 1, &[]);
    let spec = rewrite::specialize(&wasm, &speculations)?;
    let t = Instant::now();
    let t2 = cranelift.compile(&spec.wasm)?;
    let c2s = ms(t.elapsed());
    let assumptions: Vec<ignite_core::Assumption> = spec
        .guards
        .iter()
        .map(|g| ignite_core::Assumption::MonomorphicCall {
            site: g.site,
            target: g.slot,
        })
        .collect();

    let cold = |f: &dyn Fn() -> Result<wasmtime::Module, HostError>, sites: Option<&SiteMap>, a: &[_]| {
        let t = Instant::now();
        let m = f()?;
        let out = Warm::new(&m, sites, a)?.invoke(input)?;
        let d = us(t.elapsed());
        if out != want {
            return Err(HostError::Abi("cold output differs from the reference".into()));
        }
        Ok::<f64, HostError>(d)
    };
    let local = cold(
        &|| Ok(wasmtime::Module::new(&pulley.engine, &inst.wasm)?),
        Some(&inst.sites),
        &[],
    )?;
    let fleet0 = cold(&|| Ok(load(pulley, &t0)?), Some(&inst.sites), &[])?;
    let fleet2 = cold(&|| Ok(load(cranelift, &t2)?), None, &assumptions)?;

    let plain0 = load(pulley, &pulley.compile(&wasm)?)?;
    let plain1 = load(winch, &winch.compile(&wasm)?)?;
    let m1 = load(winch, &t1)?;
    let m2g = load(cranelift, &generic)?;
    let m2s = load(cranelift, &t2)?;
    let lat = |m: &wasmtime::Module, sites: Option<&SiteMap>, a: &[ignite_core::Assumption]| {
        let mut w = Warm::new(m, sites, a)?;
        warm_median(&mut w, input, &want, min_runs, budget)
    };
    let latency = LatencyUs {
        tier0: lat(&m0, Some(&inst.sites), &[])?,
        tier0_plain: lat(&plain0, None, &[])?,
        tier1: lat(&m1, Some(&inst.sites), &[])?,
        tier1_plain: lat(&plain1, None, &[])?,
        tier2_generic: lat(&m2g, None, &[])?,
        tier2_specialized: lat(&m2s, None, &assumptions)?,
    };
    Ok(WorkloadCalibration {
        name: name.to_string(),
        input_bytes: input.len(),
        compile_ms: CompileMs {
            tier0_pulley: c0,
            tier1_winch: c1,
            tier2_generic: c2g,
            tier2_specialized: c2s,
        },
        cold_us: ColdUs {
            local_compile: local,
            fleet_tier0: fleet0,
            fleet_tier2: fleet2,
        },
        instrumentation_overhead: [latency.tier0 / latency.tier0_plain, latency.tier1 / latency.tier1_plain],
        latency_us: latency,
        speculated_sites: spec.guards.len(),
        artifact_bytes: [t0.len(), t1.len(), t2.len()],
    })
}

/// Measures every workload on its default input, and HTML also with a monomorphic
/// formatter mix (where tier 2 speculates), with the first engine of each compiler in
/// `tiers` (best class first).
pub fn calibrate(tiers: &[TierEngine], seed: u64, min_runs: usize, budget: Duration) -> Result<Calibration, HostError> {
    let pick = |c: Compiler| tiers.iter().find(|t| t.compiler == c).ok_or(HostError::UnknownClass);
    let three = [
        pick(Compiler::Pulley)?,
        pick(Compiler::Winch)?,
        pick(Compiler::Cranelift)?,
    ];
    let mut workloads = Vec::new();
    for w in Workload::ALL {
        workloads.push(measure(w.name(), w, &w.default_input(seed), three, min_runs, budget)?);
        if w == Workload::Html {
            let input = html_input(seed, crate::workloads::DEFAULT_HTML_ITEMS, Mix::Monomorphic);
            workloads.push(measure("html_monomorphic", w, &input, three, min_runs, budget)?);
        }
    }
    Ok(Calibration {
        wasmtime: crate::tiers::WASMTIME_VERSION.to_string(),
        classes: three
            .iter()
            .map(|t| format!("{}/{}/{}", t.class.runtime, t.class.arch, t.class.level))
            .collect(),
        min_runs,
        workloads,
    })
}
