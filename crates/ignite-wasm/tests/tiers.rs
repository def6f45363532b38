//! Every workload on every tier (Pulley, Winch, Cranelift), instrumented, generic and
//! specialized, against its plain Rust reference; and reproducible compilation per class.

use ignite_wasm::host::run_once;
use ignite_wasm::rewrite::{Speculation, instrument, specialize};
use ignite_wasm::tiers::{Compiler, DEFAULT_LEVELS, TierEngine, host_cpu, tier_engines};
use ignite_wasm::workloads::{Mix, Workload, hash_input, html_input, thumbnail_input, wordcount_input};

/// Inputs small enough for a debug build, with the shapes of the defaults.
fn inputs(w: Workload) -> Vec<Vec<u8>> {
    match w {
        Workload::Hash => vec![hash_input(1, 16), hash_input(2, 0)],
        Workload::WordCount => vec![wordcount_input(3, 5_000)],
        Workload::Html => vec![html_input(4, 120, Mix::Monomorphic), html_input(5, 100, Mix::Varied)],
        Workload::Thumbnail => vec![thumbnail_input(6, 400, 300)],
    }
}

fn tiers() -> Vec<TierEngine> {
    tier_engines(&host_cpu(), DEFAULT_LEVELS).expect("tier engines")
}

fn run(te: &TierEngine, wasm: &[u8], input: &[u8]) -> Vec<u8> {
    let module = wasmtime::Module::new(&te.engine, wasm).expect("compiles");
    run_once(&module, input).expect("runs")
}

#[test]
fn this_machine_runs_all_three_compilers() {
    let tiers = tiers();
    for c in Compiler::ALL {
        assert!(tiers.iter().any(|t| t.compiler == c), "{c:?} missing");
    }
    let pulley = tiers.iter().find(|t| t.compiler == Compiler::Pulley).unwrap();
    assert_eq!(pulley.class.arch, "pulley64");
    assert!(pulley.class.serves(ignite_wasm::ignite_core::Tier(0)));
    for t in tiers.iter().filter(|t| t.compiler != Compiler::Pulley) {
        assert_eq!(t.class.arch, std::env::consts::ARCH);
        assert!(t.class.serves(t.compiler.tier()) && t.class.tiers.count_ones() == 1);
    }
}

#[test]
fn every_workload_matches_its_reference_on_every_tier() {
    let tiers = tiers();
    for w in Workload::ALL {
        let wasm = w.wasm();
        let instrumented = instrument(&wasm).expect("instruments").wasm;
        for input in inputs(w) {
            let want = w.reference(&input);
            for te in &tiers {
                assert_eq!(
                    run(te, &wasm, &input),
                    want,
                    "{} on {:?} {}",
                    w.name(),
                    te.compiler,
                    te.class.level
                );
                assert_eq!(
                    run(te, &instrumented, &input),
                    want,
                    "{} instrumented on {:?} {}",
                    w.name(),
                    te.compiler,
                    te.class.level
                );
            }
        }
    }
}

#[test]
fn specialized_html_is_exact_whether_the_guard_holds_or_misses() {
    let tiers = tiers();
    let wasm = Workload::Html.wasm();
    let sites = ignite_wasm::rewrite::analyze(&wasm).unwrap();
    assert!(sites.call_sites >= 1, "the renderer dispatches through call_indirect");
    let spec = specialize(&wasm, &[Speculation { site: 0, slot: 0 }]).unwrap();
    assert_eq!(spec.guards.len(), 1, "{:?}", spec.skipped);
    for te in tiers.iter().filter(|t| t.compiler == Compiler::Cranelift) {
        for mix in [Mix::Monomorphic, Mix::Varied] {
            let input = html_input(9, 150, mix);
            let module = wasmtime::Module::new(&te.engine, &spec.wasm).unwrap();
            assert_eq!(
                run_once(&module, &input).unwrap(),
                Workload::Html.reference(&input),
                "{mix:?}"
            );
        }
    }
}

#[test]
fn the_same_module_compiles_to_identical_bytes_per_class() {
    let first = tiers();
    let second = tiers();
    for w in [Workload::Hash, Workload::Html] {
        let wasm = instrument(&w.wasm()).unwrap().wasm;
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.class, b.class);
            assert_eq!(a.class.id(), b.class.id());
            let x = a.compile(&wasm).unwrap();
            assert_eq!(x, a.compile(&wasm).unwrap(), "{:?} twice on one engine", a.compiler);
            assert_eq!(
                x,
                b.compile(&wasm).unwrap(),
                "{:?} on two engines of a class",
                a.compiler
            );
        }
    }
    // Different classes have different identities (different compilers or levels).
    let ids: std::collections::BTreeSet<_> = first.iter().map(|t| t.class.id()).collect();
    assert_eq!(ids.len(), first.len());
}

#[test]
fn code_of_one_class_is_refused_by_another_classes_engine() {
    let tiers = tiers();
    let wasm = Workload::Hash.wasm();
    let pulley = tiers.iter().find(|t| t.compiler == Compiler::Pulley).unwrap();
    let native = tiers.iter().find(|t| t.compiler == Compiler::Cranelift).unwrap();
    let bytes = pulley.compile(&wasm).unwrap();
    // SAFETY: the bytes were just produced by wasmtime in this process.
    let wrong = unsafe { wasmtime::Module::deserialize(&native.engine, &bytes) };
    assert!(wrong.is_err(), "Pulley bytecode loaded by a native engine");
    // SAFETY: as above.
    let right = unsafe { wasmtime::Module::deserialize(&pulley.engine, &bytes) }.unwrap();
    let input = hash_input(3, 4);
    assert_eq!(run_once(&right, &input).unwrap(), Workload::Hash.reference(&input));
}
