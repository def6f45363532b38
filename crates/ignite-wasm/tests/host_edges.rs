//! Edge cases of the Wasm host: code keyed by another method, redeployment, a module
//! without the ABI, a new version of a name, attestation counts, no code yet, bounds.

use ignite_wasm::calibrate::measure;
use ignite_wasm::fleet::Fleet;
use ignite_wasm::host::{Handled, HostConfig, HostError, MODULE_METHOD, WasmHost, run_once};
use ignite_wasm::ignite_core::{Assumption, Counter, Thresholds, Tier};
use ignite_wasm::tiers::{Compiler, DEFAULT_LEVELS, host_cpu, tier_engines};
use ignite_wasm::workloads::{Mix, Workload, hash_input, html_input};
use std::time::Duration;

fn config() -> HostConfig {
    HostConfig {
        thresholds: Thresholds { tier1: 20, tier2: 60 },
        monomorphic_min_samples: 50,
        ..HostConfig::default()
    }
}

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

/// A valid module that does not follow the byte ABI (no memory, no globals, no `run`).
fn no_abi() -> Vec<u8> {
    wat(r#"(module (func (export "f") (result i32) i32.const 7))"#)
}

/// Installed/compiled keys of a method other than the module method, from the log.
fn foreign_method_events(f: &Fleet) -> Vec<(usize, Handled)> {
    f.log
        .iter()
        .filter(|(_, h)| match h {
            Handled::Compiled { key, .. } | Handled::Installed { key, .. } | Handled::Uninstalled(key) => {
                key.method != MODULE_METHOD
            }
            Handled::Ignored => false,
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// Defects
// ---------------------------------------------------------------------------------------

/// `WasmHost::deploy` replaces the function's entry (`functions.insert`) with one that has
/// no code. The engine still holds the installed manifest and never emits `Install` again,
/// so the host runs its local Pulley fallback for good (and the engine, which believes
/// tier 0 is current, keeps the fleet's view of it).
#[test]

fn redeploying_the_same_module_keeps_the_fleet_code() {
    let mut f = Fleet::new(11, 2, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let wasm = Workload::Hash.wasm();
    let function = f.deploy_all("hash", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    assert_eq!(f.hosts[0].current_tier(&function), Some(Tier(0)));
    // The same deployment again (a restarted worker, an idempotent deploy call).
    let again = f.deploy(0, "hash", &wasm).unwrap();
    assert_eq!(again, function);
    f.run_for(8_000, 250).unwrap();
    let input = hash_input(1, 2);
    let r = f.invoke(0, &function, &input).unwrap();
    assert_eq!(r.output, Workload::Hash.reference(&input));
    assert_eq!(
        (r.generation, f.hosts[0].stats().local_compiles),
        (Some(1), 0),
        "installed: {:?}",
        f.hosts[0].installed(&function)
    );
}

/// The host keys its code by tier only: `compile` ignores `req.key.method`, `install`
/// stores any manifest under `m.key.tier`, and `Uninstall` removes `code[key.tier]`
/// whatever the method. A node that saw the function hot before deploying it (its engine
/// had the default per-method policy, so method 1's thresholds fired too) is elected for
/// (function, RUN_METHOD, tier) after it deploys, compiles the whole module for that key,
/// and every host installs it over the module method's code of the same tier.
#[test]

fn code_of_another_method_is_neither_compiled_nor_installed() {
    let mut f = Fleet::new(12, 2, DEFAULT_LEVELS, config(), |c| {
        c.thresholds = Thresholds { tier1: 20, tier2: 60 };
        c.code.lease_ms = 2_000;
    })
    .unwrap();
    let wasm = Workload::Hash.wasm();
    let function = f.deploy(0, "hash", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    let input = hash_input(2, 1);
    for _ in 0..80 {
        f.invoke(0, &function, &input).unwrap();
        f.run_for(100, 100).unwrap();
    }
    f.run_for(5_000, 250).unwrap();
    // Host 1 joins the function late.
    f.deploy(1, "hash", &wasm).unwrap();
    f.run_for(20_000, 250).unwrap();
    for i in 0..2 {
        let r = f.invoke(i, &function, &input).unwrap();
        assert_eq!(r.output, Workload::Hash.reference(&input));
    }
    let foreign = foreign_method_events(&f);
    assert!(foreign.is_empty(), "{foreign:#?}");
}

/// `deploy` only instruments the module; it never checks the byte ABI. The fleet then
/// elects a compiler for it, publishes code every host fails to load (`Warm::new` ->
/// `HostError::Abi` out of `handle_event`, so `Fleet::run_for` errors), while every
/// engine records the code as installed. The ABI is static (exports and global types):
/// deploy can refuse it up front.
#[test]

fn deploy_refuses_a_module_without_the_byte_abi() {
    let mut f = Fleet::new(13, 1, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let r = f.deploy(0, "no-abi", &no_abi());
    assert!(r.is_err(), "deployed: {r:?}");
}

/// Redeploying a name with new code (a new version) makes the engine drop every other
/// deployment of the name (`set_deployment`), but the host keeps the old `Function` (its
/// code, warm instances and memories) for ever and still serves it.
#[test]

fn a_new_version_of_a_name_retires_the_old_deployment() {
    let mut f = Fleet::new(14, 1, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let v1 = f.deploy(0, "svc", &Workload::Hash.wasm()).unwrap();
    f.run_for(8_000, 250).unwrap();
    let v2 = f.deploy(0, "svc", &Workload::Html.wasm()).unwrap();
    assert_ne!(v1, v2);
    f.run_for(8_000, 250).unwrap();
    assert!(f.hosts[0].installed(&v1).is_empty(), "{:?}", f.hosts[0].installed(&v1));
    let input = hash_input(3, 1);
    assert!(matches!(
        f.invoke(0, &v1, &input),
        Err(ignite_wasm::fleet::FleetError::Host(0, HostError::UnknownFunction))
    ));
}

/// With `local_fallback: false`, an invocation before any code arrived fails with
/// `HostError::Abi` ("The module does not follow the byte ABI"), though the module is
/// fine: callers cannot tell "retry later" from "this module is broken".
#[test]

fn no_code_yet_is_not_reported_as_an_abi_error() {
    let mut f = Fleet::new(
        15,
        1,
        DEFAULT_LEVELS,
        HostConfig {
            local_fallback: false,
            ..config()
        },
        |_| {},
    )
    .unwrap();
    let function = f.deploy(0, "hash", &Workload::Hash.wasm()).unwrap();
    let e = f.invoke(0, &function, &hash_input(1, 1)).unwrap_err();
    assert!(
        !matches!(e, ignite_wasm::fleet::FleetError::Host(_, HostError::Abi(_))),
        "{e}"
    );
}

/// `calibrate::measure` is public; with `min_runs = 0` and a zero budget `warm_median`
/// times nothing and indexes `times[0]` of an empty vector.
#[test]

fn measure_with_no_runs_does_not_panic() {
    let tiers = tier_engines(&host_cpu(), DEFAULT_LEVELS).unwrap();
    let pick = |c: Compiler| tiers.iter().find(|t| t.compiler == c).unwrap();
    let three = [pick(Compiler::Pulley), pick(Compiler::Winch), pick(Compiler::Cranelift)];
    // Panics today; an error or a one-run measurement would both be fine.
    let _ = measure("hash", Workload::Hash, &hash_input(1, 1), three, 0, Duration::ZERO);
}

/// `HostStats::elected_compiles` is documented as "modules compiled because the fleet
/// elected this node", but `handle_event` counts every `Event::Compile`, including
/// attestation compiles (`Purpose::Attest`), which are not elections.
#[test]

fn elected_compiles_do_not_count_attestations() {
    let mut f = Fleet::new(21, 2, DEFAULT_LEVELS, config(), |c| {
        c.code.min_attestations = 1;
    })
    .unwrap();
    let function = f.deploy_all("hash", &Workload::Hash.wasm()).unwrap();
    f.run_for(10_000, 250).unwrap();
    assert!(f.hosts.iter().all(|h| h.current_tier(&function) == Some(Tier(0))));
    let elected: u64 = f.hosts.iter().map(|h| h.stats().elected_compiles).sum();
    assert_eq!(
        elected, 1,
        "one election (tier 0); the other compile was an attestation"
    );
}

// ---------------------------------------------------------------------------------------
// Checks that hold
// ---------------------------------------------------------------------------------------

/// A module without the ABI is refused at deployment: nothing is compiled for it, and the
/// fleet keeps working.
#[test]
fn a_module_without_the_abi_is_refused_before_anything_is_compiled() {
    let mut f = Fleet::new(16, 2, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    assert!(f.deploy_all("no-abi", &no_abi()).is_err());
    f.run_for(10_000, 250).unwrap();
    assert!(f.log.is_empty(), "{:?}", f.log);
    assert!(f.cluster.engines[0].installed(&f.tenant).is_empty());
}

/// Input growth beyond the memory's maximum, an output length outside memory and a
/// negative output length are errors, not panics; memory grows to fit a large input.
#[test]
fn memory_growth_and_output_bounds_are_errors_not_panics() {
    let tiers = tier_engines(&host_cpu(), DEFAULT_LEVELS).unwrap();
    let pulley = tiers.iter().find(|t| t.compiler == Compiler::Pulley).unwrap();
    let module = |src: &str| wasmtime::Module::new(&pulley.engine, wat(src)).unwrap();
    let abi = |mem: &str, ret: &str| {
        format!(
            r#"(module (memory (export "memory") {mem})
                 (global (export "input_ptr") i32 (i32.const 1024))
                 (global (export "output_ptr") i32 (i32.const 0))
                 (func (export "run") (param i32) (result i32) {ret}))"#
        )
    };
    // Echo length: grows memory for a 200 KiB input from one page.
    let echo = module(&abi("1", "local.get 0"));
    let big = vec![1u8; 200 * 1024];
    assert_eq!(run_once(&echo, &big).unwrap().len(), big.len());
    // Bounded memory: the input does not fit.
    let bounded = module(&abi("1 1", "i32.const 0"));
    assert!(run_once(&bounded, &big).is_err());
    // Output outside memory, and a negative length.
    let outside = module(&abi("1", "i32.const 70000"));
    assert!(run_once(&outside, b"x").is_err());
    let negative = module(&abi("1", "i32.const -1"));
    assert!(run_once(&negative, b"x").is_err());
}

/// Tier choice and counters: every invocation runs on the best installed tier, is
/// counted once at that tier (host stats and the engine's merged invocation counters of
/// the module method), and tier 0 runs the fleet's code (not the fallback).
#[test]
fn invocations_run_on_the_best_tier_and_count_once_at_it() {
    let mut f = Fleet::new(17, 2, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let wasm = Workload::Hash.wasm();
    let function = f.deploy_all("hash", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    let input = hash_input(4, 1);
    let mut per_tier = [0u64; 3];
    for _ in 0..90 {
        let best = f.hosts[0].current_tier(&function);
        let r = f.invoke(0, &function, &input).unwrap();
        assert_eq!(Some(r.tier), best, "ran on the best installed tier");
        assert!(r.generation.is_some());
        per_tier[usize::from(r.tier.0)] += 1;
        f.run_for(100, 100).unwrap();
    }
    f.run_for(5_000, 250).unwrap();
    assert_eq!(f.hosts[0].stats().invocations, per_tier);
    assert_eq!(f.hosts[0].current_tier(&function), Some(Tier(2)));
    assert_eq!(f.hosts[0].stats().local_compiles, 0);
    // The engine of host 1 (which ran nothing) sees host 0's counts per tier: tier 0 up
    // to the tier-1 threshold at least, and never more than host 0 ran there.
    let view = f.cluster.engines[1].profile(&f.tenant, &function).unwrap();
    for t in 0..3u8 {
        let merged = view.count(MODULE_METHOD, Tier(t), Counter::Invocations);
        assert!(merged <= per_tier[usize::from(t)], "tier {t}: {merged} > {per_tier:?}");
    }
    assert!(view.count(MODULE_METHOD, Tier(0), Counter::Invocations) >= 20);
}

/// Deopts are reported under the manifest's key (module method, tier 2) and assumption,
/// so the engine counts them for retirement.
#[test]
fn deopts_are_keyed_by_the_manifests_key_and_assumption() {
    let mut f = Fleet::new(18, 2, DEFAULT_LEVELS, config(), |c| {
        c.code.retire_min_nodes = 3;
    })
    .unwrap();
    let function = f.deploy_all("html", &Workload::Html.wasm()).unwrap();
    f.run_for(8_000, 250).unwrap();
    let mono = html_input(1, 100, Mix::Monomorphic);
    for n in 0..100 {
        f.invoke(n % 2, &function, &mono).unwrap();
        f.run_for(100, 100).unwrap();
    }
    f.run_for(5_000, 250).unwrap();
    assert_eq!(f.hosts[0].current_tier(&function), Some(Tier(2)));
    let manifests = f.cluster.engines[0].manifests(&f.tenant);
    let (key, m) = manifests
        .iter()
        .find(|((k, _), _)| k.tier == Tier(2))
        .map(|((k, _), m)| (*k, m.statement.assumptions.clone()))
        .unwrap();
    assert_eq!(m, vec![Assumption::MonomorphicCall { site: 0, target: 0 }]);
    assert_eq!(key, WasmHost::key(function, Tier(2)));
    let varied = html_input(2, 100, Mix::Varied);
    let r = f.invoke(0, &function, &varied).unwrap();
    assert_eq!((r.tier, r.output == Workload::Html.reference(&varied)), (Tier(2), true));
    assert!(r.deopts > 0);
    f.run_for(3_000, 250).unwrap();
    let view = f.cluster.engines[1].profile(&f.tenant, &function).unwrap();
    let id = m[0].id();
    assert_eq!(
        view.count(key.method, key.tier, Counter::AssumptionBroken { id }),
        1,
        "one node's deopt of the manifest's assumption, merged at host 1"
    );
}

/// With attestation on, every compile is reproduced by another member (same bytes), and
/// the function still tiers up to speculated tier-2 code.
#[test]
fn attested_fleet_tiers_up_with_speculation() {
    let mut f = Fleet::new(19, 2, DEFAULT_LEVELS, config(), |c| {
        c.code.min_attestations = 1;
    })
    .unwrap();
    let function = f.deploy_all("html", &Workload::Html.wasm()).unwrap();
    f.run_for(10_000, 250).unwrap();
    let mono = html_input(3, 100, Mix::Monomorphic);
    for n in 0..100 {
        let r = f.invoke(n % 2, &function, &mono).unwrap();
        assert_eq!(r.output, Workload::Html.reference(&mono));
        f.run_for(100, 100).unwrap();
    }
    f.run_for(10_000, 250).unwrap();
    for i in 0..2 {
        assert_eq!(f.hosts[i].current_tier(&function), Some(Tier(2)), "host {i}");
    }
    let manifests = f.cluster.engines[0].manifests(&f.tenant);
    let tier2 = manifests.iter().find(|((k, _), _)| k.tier == Tier(2)).unwrap().1;
    assert_eq!(tier2.statement.assumptions.len(), 1);
}

/// The local fallback is compiled once, runs at tier 0 with generation `None`, and is
/// dropped when the fleet's tier-0 code arrives.
#[test]
fn the_local_fallback_is_used_once_then_dropped() {
    let mut f = Fleet::new(20, 2, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let function = f.deploy_all("hash", &Workload::Hash.wasm()).unwrap();
    let input = hash_input(5, 1);
    for _ in 0..3 {
        let r = f.invoke(0, &function, &input).unwrap();
        assert_eq!((r.tier, r.generation), (Tier(0), None));
    }
    assert_eq!(f.hosts[0].stats().local_compiles, 1);
    assert_eq!(f.hosts[0].stats().invocations, [3, 0, 0]);
    f.run_for(8_000, 250).unwrap();
    let r = f.invoke(0, &function, &input).unwrap();
    assert_eq!((r.tier, r.generation), (Tier(0), Some(1)));
    assert_eq!(f.hosts[0].stats().local_compiles, 1);
}
