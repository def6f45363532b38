//! The `simnet` command line: runs a scenario and writes its result files.

use clap::{Parser, Subcommand};
use ignite_simnet::paper::{self, Figure5Config};
use ignite_simnet::report::{peak_rss_bytes, write_json};
use ignite_simnet::scale::{self, ScaleConfig};
use ignite_simnet::trace::{self, ArrivalKind, TraceConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Simulations allocate and free small buffers for every message each of thousands of
/// engines handles; mimalloc's per-thread free lists make that cheaper than the system
/// allocator. Results do not depend on it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deterministic simulation of Ignite peers running the real engine.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The scale scenario: one function of 200 methods, 20 calls per invocation drawn by
    /// Zipf(1.0), Poisson arrivals of 20 invocations/s per peer, thresholds 200 and 5,000,
    /// 3 zones; until `--invocations` invocations. Writes DIR/scale.json (simulated results,
    /// byte-identical per seed), DIR/timeline.csv (per method and tier: when the fleet's
    /// count crossed the threshold, the first threshold event, compile request and install,
    /// installs on half and on all peers) and DIR/run.json (wall time, peak memory).
    Scale {
        /// Number of peers.
        #[arg(long, default_value_t = 100)]
        peers: u32,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Function invocations to run, fleet-wide.
        #[arg(long, default_value_t = 1_000_000)]
        invocations: u64,
        /// Interval between a peer's profile publications, ms.
        #[arg(long, default_value_t = 1_000)]
        sync_interval_ms: u64,
        /// Longest wait, ms, of a busy lane whose only changes are settled counters (no
        /// threshold reads them any more, e.g. invocations at tier 2): such lanes publish
        /// when this much time has passed or once their counts stop changing. 0 publishes
        /// them every interval.
        #[arg(long, default_value_t = 30_000)]
        settled_publish_ms: u64,
        /// Smallest signed share of a threshold, in percent, from which an engine may fire
        /// it on the predicted fleet-wide count (signed counts plus the fleet's rate times
        /// members' mean time since their last delta); 100 turns prediction off.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
        predict_from_pct: u32,
        /// After an install, a node announces its installed set (for schedulers) once this
        /// percentage of the presence interval has passed since its last presence; 100
        /// announces installs only with the regular presences.
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
        install_announce_pct: u32,
        /// Quiet time after the last invocation, for convergence, ms [default: 30,000;
        /// 180,000 with --faults, as anti-entropy repairs 30% loss in rounds of 10 s].
        #[arg(long)]
        settle_ms: Option<u64>,
        /// Faults: 30% loss, 5% duplication, reordering, a partition of one zone that heals
        /// after 20 s, churn (10% of peers crash, half restarting from their last snapshot,
        /// half without state as a new incarnation; 5% leave; 5% join late) and, with
        /// several tenants, 1% of deliveries misrouted to another tenant's topic.
        #[arg(long)]
        faults: bool,
        /// Tenants whose nodes share the machines (one engine per peer runs a node of each)
        /// and the gossip network; all deploy the same function. The run fails on any
        /// cross-tenant effect.
        #[arg(long, default_value_t = 1)]
        tenants: u32,
        /// IGN's compile knob: every node compiles for itself once the pooled count crosses
        /// the threshold (profiles shared, code not), instead of one elected compiler.
        #[arg(long)]
        every_node_compiles: bool,
        /// Queue every gossip frame as an event, also those whose receiver already has the
        /// message (by default they are counted, with every draw of the network model, but
        /// not queued): the same results but for `events`, with more CPU and memory.
        #[arg(long)]
        queue_seen_frames: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The sync-interval sweep: the scale scenario (with fewer invocations) at several
    /// profile publication intervals. Writes DIR/sweep.json, DIR/sweep.csv and the plots
    /// DIR/sweep_hot.svg (share of executions at tier 2) and DIR/sweep_bytes.svg.
    Sweep {
        /// Number of peers.
        #[arg(long, default_value_t = 30)]
        peers: u32,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Function invocations per run, fleet-wide.
        #[arg(long, default_value_t = 30_000)]
        invocations: u64,
        /// Publication intervals to run, ms.
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,5000,10000")]
        intervals: Vec<u64>,
    },
    /// The seed paper's Figure 5: 50 containers, one function, N requests (Poisson, 50/s
    /// fleet-wide); strategies NS (no sharing), CS (code sharing only) and IGN (profile and
    /// code sharing, the real engine) on the Hash, HTML and WordCount workloads, with the
    /// paper parameter set (assumptions), the calibration set and a sensitivity sweep.
    /// Writes DIR/figure5.json (byte-identical per seed), DIR/figure5.csv and SVG plots, and
    /// prints the comparison with the paper's numbers.
    Figure5 {
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Request counts (the x axis); every strategy runs once on the largest and is
        /// measured over the first N requests for each N.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200,500,1000,2000,5000,10000")]
        requests: Vec<usize>,
        /// Calibration file of the wasm host [default: calibration/wasm.json at the
        /// workspace root].
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The trace scenario: open-loop traffic over many functions of one tenant (Zipf(1.0)
    /// popularity, 8 methods each), a container per (peer, function) with a 10-20 min
    /// keep-alive, two hardware classes, and a speculation that breaks on 10% of the peers
    /// halfway through; Ignite and no sharing on the same invocations. Writes
    /// DIR/trace.json (simulated results, byte-identical per seed) and DIR/run.json (wall
    /// time, peak memory). Exits non-zero when a checker fails.
    Trace {
        /// Number of peers.
        #[arg(long, default_value_t = 50)]
        peers: u32,
        /// Number of functions of the tenant.
        #[arg(long, default_value_t = 50)]
        functions: u32,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Arrival process: `poisson` (constant fleet rate) or `azure` (bursty per-function
        /// ON/OFF arrivals, Azure-Functions-like).
        #[arg(long, value_enum, default_value_t = ArrivalKind::Azure)]
        arrivals: ArrivalKind,
        /// Function invocations to run, fleet-wide.
        #[arg(long, default_value_t = 100_000)]
        invocations: u64,
        /// Mean invocations per second per peer.
        #[arg(long, default_value_t = 1.0)]
        rate_per_peer: f64,
        /// When the speculation breaks, s after traffic starts [default: halfway through
        /// the expected traffic time].
        #[arg(long)]
        break_after_s: Option<u64>,
        /// Quiet time after the last invocation, for convergence, ms [default: 30,000;
        /// 180,000 with --faults].
        #[arg(long)]
        settle_ms: Option<u64>,
        /// Network faults: 30% loss, 5% duplication, reordering jitter up to 5 ms.
        #[arg(long)]
        faults: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Serialize)]
struct Run {
    wall_s: f64,
    peak_rss_bytes: Option<u64>,
}

/// A progress bar of `len` steps drawn with `template` (hidden when `quiet`).
fn progress(quiet: bool, len: u64, template: &str) -> Result<ProgressBar, Box<dyn std::error::Error>> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(ProgressStyle::with_template(template)?);
    Ok(bar)
}

/// Writes `run.json` (wall time since `started`, peak RSS) into `out`; returns the wall time.
fn write_run(out: &Path, started: Instant) -> Result<f64, Box<dyn std::error::Error>> {
    let wall_s = started.elapsed().as_secs_f64();
    write_json(
        &out.join("run.json"),
        &Run {
            wall_s,
            peak_rss_bytes: peak_rss_bytes(),
        },
    )?;
    Ok(wall_s)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        Command::Scale {
            peers,
            seed,
            out,
            invocations,
            sync_interval_ms,
            settled_publish_ms,
            predict_from_pct,
            install_announce_pct,
            faults,
            tenants,
            every_node_compiles,
            queue_seen_frames,
            settle_ms,
            quiet,
        } => {
            let mut c = ScaleConfig::new(peers, seed);
            c.faults = faults;
            c.tenants = tenants;
            c.every_node_compiles = every_node_compiles;
            c.queue_seen_frames = queue_seen_frames;
            c.settle_ms = settle_ms.unwrap_or(if faults { 180_000 } else { 30_000 });
            c.invocations = invocations;
            c.sync_interval_ms = sync_interval_ms;
            c.settled_publish_ms = settled_publish_ms;
            c.predict_from_pct = predict_from_pct;
            c.install_announce_pct = install_announce_pct;
            // Wall time is reported in run.json only; the simulation itself reads no clock
            // (scale.json is byte-identical per seed).
            let started = Instant::now();
            let bar = progress(
                quiet,
                invocations,
                "{elapsed_precise} [{bar:40}] {pos}/{len} invocations ({per_sec}, eta {eta})",
            )?;
            let r = scale::run(&c, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            write_json(&out.join("scale.json"), &r)?;
            std::fs::write(out.join("timeline.csv"), scale::timeline_csv(&r.timeline))?;
            let wall_s = write_run(&out, started)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            for tier in 1..=2 {
                println!("{}", scale::timeline_breakdown(&r.timeline, tier));
            }
            println!("wall {wall_s:.1} s; results in {}", out.display());
            // Checkers: a failing one makes the run fail.
            let failed = r.failed_checks(if faults { 2.0 } else { 1.01 });
            if !failed.is_empty() {
                return Err(format!("checker failed: {}", failed.join("; ")).into());
            }
        }
        Command::Sweep {
            peers,
            seed,
            out,
            invocations,
            intervals,
        } => {
            let mut c = ScaleConfig::new(peers, seed);
            c.invocations = invocations;
            let bar = progress(
                false,
                intervals.len() as u64,
                "{elapsed_precise} [{bar:40}] {pos}/{len} runs (eta {eta})",
            )?;
            let points = ignite_simnet::sweep::sweep(&c, &intervals, &out, |done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            println!(
                "{:>10} {:>12} {:>12} {:>14}",
                "interval", "hot share", "excess warm", "bytes/peer/s"
            );
            for p in &points {
                println!(
                    "{:>8}ms {:>12.4} {:>12.3} {:>14.0}",
                    p.sync_interval_ms, p.hot_fraction, p.excess_warm, p.bytes_per_peer_per_s
                );
            }
            println!("results in {}", out.display());
        }
        Command::Figure5 {
            seed,
            out,
            requests,
            calibration,
            quiet,
        } => {
            let mut c = Figure5Config::new(seed);
            c.requests = requests;
            if let Some(path) = calibration {
                c.calibration = path;
            }
            // Errors are printed with their message (a bad calibration file names the file
            // and the problem).
            let fail = |e: &dyn std::error::Error| -> ! {
                eprintln!("error: {e}");
                std::process::exit(1)
            };
            let calibration = paper::params::calibration_set(&c.calibration).unwrap_or_else(|e| fail(&e));
            // Wall time is printed only; figure5.json depends on the seed alone.
            let started = Instant::now();
            let total = paper::total_runs(&c, &calibration) as u64;
            let bar = progress(
                quiet,
                total,
                "{elapsed_precise} [{bar:40}] {pos}/{len} IGN runs (eta {eta})",
            )?;
            let f = paper::run(&c, &calibration, |done| bar.set_position(done as u64)).unwrap_or_else(|e| fail(&e));
            bar.finish_and_clear();
            paper::output::write(&out, &f).unwrap_or_else(|e| fail(&e));
            print!("{}", paper::output::table(&f));
            println!(
                "wall {:.1} s; results in {}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
        }
        Command::Trace {
            peers,
            functions,
            seed,
            out,
            arrivals,
            invocations,
            rate_per_peer,
            break_after_s,
            settle_ms,
            faults,
            quiet,
        } => {
            let mut c = TraceConfig::new(peers, seed);
            c.functions = functions;
            c.arrivals = arrivals;
            c.invocations = invocations;
            c.rate_per_peer = rate_per_peer;
            c.break_after_ms = break_after_s.map(|s| s * 1_000);
            c.faults = faults;
            c.settle_ms = settle_ms.unwrap_or(if faults { 180_000 } else { 30_000 });
            // Wall time is reported in run.json only; the simulation itself reads no clock
            // (trace.json is byte-identical per seed).
            let started = Instant::now();
            let bar = progress(
                quiet,
                invocations,
                "{elapsed_precise} [{bar:40}] {pos}/{len} invocations ({per_sec}, eta {eta})",
            )?;
            let r = trace::run(&c, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            write_json(&out.join("trace.json"), &r)?;
            let wall_s = write_run(&out, started)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            println!("wall {wall_s:.1} s; results in {}", out.display());
            if !r.checks.passed() {
                return Err(format!("checker failed: {:?}", r.checks).into());
            }
        }
    }
    Ok(())
}
