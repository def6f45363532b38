//! The calibration measures real code: every path runs, outputs are checked against the
//! references, speculation happens exactly where the profile is monomorphic, and the file
//! round-trips.

use ignite_wasm::calibrate::{Calibration, measure};
use ignite_wasm::tiers::{Compiler, DEFAULT_LEVELS, host_cpu, tier_engines};
use ignite_wasm::workloads::{Mix, Workload, hash_input, html_input};
use std::time::Duration;

#[test]
fn calibration_measures_every_tier_and_speculates_only_on_monomorphic_sites() {
    let tiers = tier_engines(&host_cpu(), DEFAULT_LEVELS).unwrap();
    let pick = |c: Compiler| tiers.iter().find(|t| t.compiler == c).unwrap();
    let three = [pick(Compiler::Pulley), pick(Compiler::Winch), pick(Compiler::Cranelift)];
    let none = Duration::ZERO;
    let hash = measure("hash", Workload::Hash, &hash_input(1, 8), three, 2, none).unwrap();
    let mono = measure(
        "html_monomorphic",
        Workload::Html,
        &html_input(2, 60, Mix::Monomorphic),
        three,
        2,
        none,
    )
    .unwrap();
    let varied = measure("html", Workload::Html, &html_input(3, 60, Mix::Varied), three, 2, none).unwrap();
    assert_eq!(
        (hash.speculated_sites, mono.speculated_sites, varied.speculated_sites),
        (0, 1, 0)
    );
    for w in [&hash, &mono, &varied] {
        let l = &w.latency_us;
        for v in [
            l.tier0,
            l.tier0_plain,
            l.tier1,
            l.tier1_plain,
            l.tier2_generic,
            l.tier2_specialized,
        ] {
            assert!(v > 0.0 && v.is_finite(), "{}: {l:?}", w.name);
        }
        assert!(w.compile_ms.tier0_pulley > 0.0 && w.compile_ms.tier2_specialized > 0.0);
        assert!(w.artifact_bytes.iter().all(|b| *b > 0));
        assert!(w.instrumentation_overhead.iter().all(|x| *x > 0.0));
    }
    let c = Calibration {
        wasmtime: "48".into(),
        classes: vec!["x".into()],
        min_runs: 2,
        workloads: vec![hash, mono],
    };
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Calibration>(&json).unwrap(), c);
}
