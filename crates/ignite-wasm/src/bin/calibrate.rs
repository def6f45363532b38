//! Measures the three wasmtime tiers on the workloads and writes the calibration file
//! simnet reads.
//!
//! `cargo run --release -p ignite-wasm --bin calibrate -- --out calibration/wasm.json`

use clap::Parser;
use ignite_wasm::calibrate::calibrate;
use ignite_wasm::tiers::{DEFAULT_LEVELS, host_cpu, tier_engines};
use std::path::PathBuf;
use std::time::Duration;

/// Measure cold starts, warm latency per tier, compile time per tier and instrumentation
/// overhead of every workload, and write them as JSON.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where to write the calibration JSON.
    #[arg(long, default_value = "calibration/wasm.json")]
    out: PathBuf,
    /// Seed of the workload inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Warm invocations timed per latency, at least.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Time budget per latency measurement, in milliseconds (more runs while it lasts).
    #[arg(long, default_value_t = 400)]
    budget_ms: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tiers = tier_engines(&host_cpu(), DEFAULT_LEVELS)?;
    let c = calibrate(
        &tiers,
        args.seed,
        args.runs.max(1),
        Duration::from_millis(args.budget_ms),
    )?;
    println!("classes: {}", c.classes.join(", "));
    println!(
        "{:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>6}",
        "workload",
        "cold loc",
        "cold t0",
        "cold t2",
        "tier0",
        "tier1",
        "t2 gen",
        "t2 spec",
        "c0 ms",
        "c1 ms",
        "c2 ms",
        "inst0",
        "inst1"
    );
    for w in &c.workloads {
        println!(
            "{:<17} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} | {:>8.0} {:>8.1} {:>8.1} {:>8.1} | {:>5.2}x {:>5.2}x",
            w.name,
            w.cold_us.local_compile,
            w.cold_us.fleet_tier0,
            w.cold_us.fleet_tier2,
            w.latency_us.tier0,
            w.latency_us.tier1,
            w.latency_us.tier2_generic,
            w.latency_us.tier2_specialized,
            w.compile_ms.tier0_pulley,
            w.compile_ms.tier1_winch,
            w.compile_ms.tier2_specialized,
            w.instrumentation_overhead[0],
            w.instrumentation_overhead[1]
        );
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&c)? + "\n")?;
    println!(
        "latencies in µs (medians of warm runs); written to {}",
        args.out.display()
    );
    Ok(())
}
