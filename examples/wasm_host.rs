//! Two Wasm hosts in one process, their engines connected in memory. Host A takes the
//! traffic while the function warms up: tier-0 Pulley code (compiled once for the tenant),
//! then Winch, then Cranelift code specialized from the merged profile, each compiled by
//! the node the fleet elected. Host B has never run the function: its first invocation runs
//! the tier-2 code host A's fleet produced.
//!
//! Run: `cargo run --release --example wasm_host`

use ignite::Tier;
use ignite_wasm::fleet::Fleet;
use ignite_wasm::host::{Handled, HostConfig};
use ignite_wasm::tiers::DEFAULT_LEVELS;
use ignite_wasm::workloads::{Mix, Workload, html_input};

fn main() -> anyhow::Result<()> {
    let config = HostConfig {
        thresholds: ignite::Thresholds { tier1: 20, tier2: 60 },
        monomorphic_min_samples: 100,
        ..HostConfig::default()
    };
    let mut fleet = Fleet::new(1, 2, DEFAULT_LEVELS, config, |_| {})?;
    let wasm = Workload::Html.wasm();
    let function = fleet.deploy_all("html", &wasm)?;
    // Presence and the tier-0 election.
    fleet.run_for(8_000, 250)?;

    // Every item uses formatter 0: the call site is monomorphic.
    let input = html_input(1, 200, Mix::Monomorphic);
    let expected = Workload::Html.reference(&input);
    let mut by_tier: [Vec<u64>; 3] = Default::default();
    let mut first_tier = [None; 3];
    for n in 0..200 {
        let r = fleet.invoke(0, &function, &input)?;
        anyhow::ensure!(
            r.output == expected,
            "host A output differs from the reference at tier {}",
            r.tier.0
        );
        let t = usize::from(r.tier.0);
        by_tier[t].push(r.micros);
        first_tier[t].get_or_insert(n);
        // Publication and elections run in virtual time between invocations.
        fleet.run_for(100, 100)?;
    }
    fleet.run_for(5_000, 250)?;

    println!(
        "host A, {} invocations of html (200 items, monomorphic formatter):",
        200
    );
    for (t, runs) in by_tier.iter().enumerate() {
        if runs.is_empty() {
            continue;
        }
        let mut sorted = runs.clone();
        sorted.sort_unstable();
        println!(
            "  tier {t}: {:>4} invocations, first at #{:<3}, median {:>7} µs",
            runs.len(),
            first_tier[t].unwrap_or(0),
            sorted[sorted.len() / 2]
        );
    }
    for (i, h) in &fleet.log {
        match h {
            Handled::Compiled { key, micros, .. } => {
                println!(
                    "  host {}: elected, compiled tier {} in {} µs",
                    name(*i),
                    key.tier.0,
                    micros
                )
            }
            Handled::Installed {
                key,
                generation,
                micros,
            } => println!(
                "  host {}: installed tier {} generation {} (load {} µs)",
                name(*i),
                key.tier.0,
                generation,
                micros
            ),
            other => println!("  host {}: {other:?}", name(*i)),
        }
    }

    let r = fleet.invoke(1, &function, &input)?;
    anyhow::ensure!(r.output == expected, "host B output differs from the reference");
    println!(
        "host B, first invocation ever: tier {} (generation {:?}), {} µs, output identical to the reference",
        r.tier.0, r.generation, r.micros
    );
    anyhow::ensure!(r.tier == Tier(2), "host B's first invocation did not run tier-2 code");
    println!(
        "compiles: {} elected on A, {} on B; local fallback compiles: {} / {}",
        fleet.hosts[0].stats().elected_compiles,
        fleet.hosts[1].stats().elected_compiles,
        fleet.hosts[0].stats().local_compiles,
        fleet.hosts[1].stats().local_compiles
    );
    Ok(())
}

fn name(i: usize) -> char {
    (b'A' + i as u8) as char
}
