//! The scale scenario on a small fleet: byte-identical results per seed, exact totals,
//! one compile per key, and warm executions between the physical floor and no sharing.

use ignite_core::Thresholds;
use ignite_simnet::scale::{ScaleConfig, ScaleResult, run};

fn small(seed: u64) -> ScaleConfig {
    let mut c = ScaleConfig::new(12, seed);
    c.invocations = 4_000;
    c.methods = 30;
    c.thresholds = Thresholds { tier1: 50, tier2: 400 };
    c.settle_ms = 20_000;
    c
}

fn result(seed: u64) -> (ScaleResult, String) {
    let r = run(&small(seed), |_| {}).expect("runs");
    let json = serde_json::to_string_pretty(&r).unwrap();
    (r, json)
}

#[test]
fn same_seed_gives_byte_identical_results_and_exact_totals() {
    let (r, a) = result(5);
    let (_, b) = result(5);
    assert_eq!(a, b, "same seed, same bytes");
    let (_, other) = result(6);
    assert_ne!(a, other, "another seed, another run");

    assert_eq!(r.invocations, 4_000);
    assert!(r.totals_exact, "every peer's merged counts equal the recorded totals");
    assert_eq!(r.lost_unpublished, 0);
    assert!(r.compiles_per_key_mean > 0.0, "methods got hot");
    assert_eq!(r.compiles_per_key_mean, 1.0, "one compile per key without faults");
    // The floor holds, and sharing beats no sharing.
    assert!(r.warm_invocations as f64 >= 0.95 * r.warm_min, "{r:?}");
    assert!(r.warm_invocations < r.ns_warm_invocations, "{r:?}");
    assert!(r.dissemination_hops_p99 >= 1);
    // Each unique signature was verified once and reused by the other engines.
    assert!(r.signatures_reused > r.signatures_verified, "{r:?}");
}

#[test]
fn faults_keep_totals_exact_and_compiles_bounded() {
    let mut c = small(7);
    c.faults = true;
    c.settle_ms = 180_000;
    let r = run(&c, |_| {}).expect("runs");
    assert!(
        r.totals_exact,
        "anti-entropy repairs 30% loss and a healed partition: {r:?}"
    );
    assert!(r.compiles_per_key_mean <= 2.0, "{r:?}");
    assert!(r.compiles_per_key_mean >= 1.0, "{r:?}");
}

#[test]
fn sweep_writes_its_files_and_shorter_intervals_cost_more_bytes() {
    let dir = std::env::temp_dir().join(format!("ignite-sweep-{}", std::process::id()));
    let points = ignite_simnet::sweep::sweep(&small(9), &[500, 4_000], &dir, |_, _| {}).expect("sweep");
    assert_eq!(points.len(), 2);
    assert!(
        points
            .iter()
            .all(|p| p.totals_exact && p.hot_fraction > 0.0 && p.hot_fraction < 1.0)
    );
    assert!(
        points[0].bytes_per_peer_per_s > points[1].bytes_per_peer_per_s,
        "{points:?}"
    );
    for f in ["sweep.json", "sweep.csv", "sweep_hot.svg", "sweep_bytes.svg"] {
        let bytes = std::fs::read(dir.join(f)).expect(f);
        assert!(!bytes.is_empty(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
