//! The trace scenario on a small fleet with short keep-alives and bursts: byte-identical
//! results per seed, evictions and hot starts, installs per hardware class, the speculation
//! break (retire, recompile without it, no broken install afterwards), exact totals, and the
//! Azure duration distribution.

use ignite_core::Thresholds;
use ignite_simnet::report::write_json;
use ignite_simnet::rng::Rng;
use ignite_simnet::trace::{ArrivalKind, AzureShape, TraceConfig, TraceResult, base_duration_s, run};

/// 12 peers, 6 functions of 4 methods, thresholds 20 / 100, keep-alive 5–10 s, bursts of
/// 5 s every 25 s on average; the speculation breaks on 3 peers after 40 s.
fn small(seed: u64) -> TraceConfig {
    let mut c = TraceConfig::new(12, seed);
    c.functions = 6;
    c.methods = 4;
    c.calls = 4;
    c.invocations = 3_000;
    c.rate_per_peer = 2.0;
    c.thresholds = Thresholds { tier1: 20, tier2: 100 };
    c.keep_alive_ms = (5_000, 10_000);
    c.azure = AzureShape {
        on_mean_s: 5.0,
        off_mean_s: 20.0,
        off_alpha: 1.5,
        off_max_s: 120.0,
    };
    c.break_after_ms = Some(40_000);
    c.break_fraction = 0.25;
    c.settle_ms = 20_000;
    c
}

fn result(c: &TraceConfig) -> TraceResult {
    let r = run(c, |_| {}).expect("runs");
    assert_eq!(r.invocations, c.invocations);
    r
}

fn json_bytes(r: &TraceResult, name: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("ignite-trace-{}-{name}/trace.json", std::process::id()));
    write_json(&path, r).expect("written");
    let bytes = std::fs::read(&path).expect("read");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    bytes
}

#[test]
fn same_seed_gives_byte_identical_trace_json() {
    let a = json_bytes(&result(&small(5)), "a");
    let b = json_bytes(&result(&small(5)), "b");
    assert_eq!(a, b, "same seed, same bytes");
    let other = json_bytes(&result(&small(6)), "c");
    assert_ne!(a, other, "another seed, another run");
}

#[test]
fn evictions_cause_cold_starts_and_ign_starts_hot_where_ns_cannot() {
    let r = result(&small(7));
    assert!(r.checks.passed(), "{r:?}");
    assert!(r.evictions > 0, "{r:?}");
    // Beyond the first container of each (peer, function), every cold start follows an
    // eviction.
    assert!(
        r.cold_starts > 12 * 6 / 2 && r.cold_starts <= 12 * 6 + r.evictions,
        "{r:?}"
    );
    assert!(r.hot_starts > 0, "the engines' code outlives containers: {r:?}");
    assert!(r.hot_start_share > 0.0 && r.hot_start_share <= 1.0);
    assert_eq!(r.ns_hot_starts, 0, "a new NS container starts at tier 0");
    assert!(r.warm_executions < r.ns_warm_executions, "{r:?}");
    assert!(r.latency_p50_ms <= r.ns_latency_p50_ms, "{r:?}");
}

#[test]
fn installs_only_on_runnable_classes_and_compiles_per_class() {
    let r = result(&small(8));
    assert!(r.checks.installs_runnable, "{r:?}");
    for class in ["x86-64-v2", "x86-64-v3"] {
        assert!(r.compiles_by_class.get(class).is_some_and(|n| *n > 0), "{class}: {r:?}");
        assert!(r.installs_by_class.get(class).is_some_and(|n| *n > 0), "{class}: {r:?}");
    }
    // Each class compiles the same hot keys (up to keys that got hot near the end).
    let v2 = r.compiles_by_class["x86-64-v2"] as f64;
    let v3 = r.compiles_by_class["x86-64-v3"] as f64;
    assert!((v2 / v3 - 1.0).abs() < 0.2, "{r:?}");
    assert!(
        r.compiles_per_key_mean >= 1.0 && r.compiles_per_key_mean <= 1.01,
        "{r:?}"
    );
}

#[test]
fn speculation_break_retires_and_recompiles_without_it() {
    let r = result(&small(9));
    assert_eq!(r.breaking_peers, 3);
    assert!(r.deopts >= 3, "{r:?}");
    assert!(r.retired > 0, "deopts from 3 nodes retire the code: {r:?}");
    assert!(r.uninstalls > 0, "{r:?}");
    assert!(
        r.recompiled_without_speculation > 0,
        "a later generation without the speculation is installed: {r:?}"
    );
    assert!(r.checks.no_broken_install_after_break, "{r:?}");
    assert!(r.checks.passed(), "{r:?}");

    // Without the break nothing deopts or retires.
    let mut c = small(9);
    c.break_after_ms = Some(u64::MAX / 4_000);
    let quiet = result(&c);
    assert_eq!(
        (quiet.deopts, quiet.retired, quiet.recompiled_without_speculation),
        (0, 0, 0)
    );
}

#[test]
fn totals_exact_with_poisson_arrivals_and_with_faults() {
    let mut c = small(10);
    c.arrivals = ArrivalKind::Poisson;
    let r = result(&c);
    assert!(r.totals_exact && r.checks.passed(), "{r:?}");
    c.faults = true;
    c.invocations = 1_500;
    c.settle_ms = 180_000;
    let r = result(&c);
    assert!(r.totals_exact, "anti-entropy repairs 30% loss: {r:?}");
    assert!(r.checks.passed(), "{r:?}");
}

#[test]
fn azure_durations_have_the_trace_median() {
    let mut rng = Rng::new(11);
    let mut v: Vec<f64> = (0..200_001).map(|_| base_duration_s(&mut rng)).collect();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let want = (-0.38f64).exp();
    assert!((median / want - 1.0).abs() < 0.03, "median {median} s, want {want} s");
    assert!(v[0] >= 0.001 && v[v.len() - 1] <= 300.0);
    // σ = 2.36: the 84th percentile is about e^(−0.38 + 2.36) ≈ 7.2 s.
    let p84 = v[(v.len() as f64 * 0.8413) as usize];
    assert!((p84 / (2.36f64 - 0.38).exp() - 1.0).abs() < 0.06, "p84 {p84}");
}
