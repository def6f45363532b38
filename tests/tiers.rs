//! Classes per tier and compilation units: a portable tier-0 artifact asked for at
//! deployment and compiled once for the whole tenant, native classes for tiers 1 and 2,
//! and runtimes that compile a whole function as one unit.

mod common;

use common::code::{Fleet, NodeSpec, classes};
use ignite::code::HardwareClass;
use ignite::{CompileUnit, EngineError, FunctionPolicy, MethodId, Roles, Thresholds, Tier};

/// The portable bytecode class (tier 0 only).
fn portable() -> HardwareClass {
    HardwareClass::new("pulley64", "portable", "sim-runtime", "1.0", [3; 32])
        .unwrap()
        .for_tiers(&[Tier(0)])
        .unwrap()
}

/// `n` nodes: even ones x86-64-v2, odd ones aarch64, all with native classes for tiers 1
/// and 2 and the portable class for tier 0; all may compile.
fn tiered_fleet(seed: u64, n: usize) -> Fleet {
    let (v2, _, arm) = classes();
    let native = |c: HardwareClass| c.for_tiers(&[Tier(1), Tier(2)]).unwrap();
    let specs = (0..n)
        .map(|i| NodeSpec {
            hardware: vec![native(if i % 2 == 0 { v2.clone() } else { arm.clone() }), portable()],
            roles: Roles::ALL,
        })
        .collect();
    Fleet::new(seed, specs, 200, |_| {})
}

#[test]
fn wanted_tier0_code_is_compiled_once_for_the_portable_class_and_installed_everywhere() {
    let mut f = tiered_fleet(11, 12);
    let key = f.key(0, 0);
    let now = f.now();
    for e in &mut f.cluster.engines {
        e.want_code(now, &f.tenant, key).unwrap();
    }
    f.run_for(15_000);
    let compiles = f.publish_compiles();
    assert_eq!(compiles.len(), 1, "{compiles:?}");
    let who = &compiles[&(key, portable().id(), 1)];
    assert_eq!(who.len(), 1, "compiled by {who:?}");
    for i in 0..12 {
        assert_eq!(f.installed(i, &key), Some((portable().id(), 1)), "engine {i}");
    }
    // No invocation was needed, and no native class compiled tier 0.
    assert!(
        f.installs()
            .iter()
            .all(|(_, k, c, _)| *k == key && *c == portable().id())
    );
}

#[test]
fn thresholds_elect_native_classes_only_for_the_tiers_they_serve() {
    let (v2, _, arm) = classes();
    let native = |c: HardwareClass| c.for_tiers(&[Tier(1), Tier(2)]).unwrap().id();
    let mut f = tiered_fleet(12, 12);
    f.run_for(3_000);
    for i in 0..12 {
        f.invoke(i, 3, 20, 4);
    }
    f.run_for(20_000);
    let compiles = f.publish_compiles();
    let key = f.key(3, 1);
    let mut classes: Vec<_> = compiles.keys().map(|(k, c, g)| (*k, *c, *g)).collect();
    classes.sort();
    let mut want = vec![(key, native(v2), 1), (key, native(arm), 1)];
    want.sort();
    assert_eq!(classes, want, "tier 1 only, native classes only");
    for i in 0..12 {
        assert!(f.installed(i, &key).is_some(), "engine {i}");
        assert_ne!(f.installed(i, &key).map(|(c, _)| c), Some(portable().id()));
    }
}

#[test]
fn whole_function_unit_opens_elections_only_for_its_method() {
    let mut f = tiered_fleet(13, 6);
    let policy = FunctionPolicy {
        thresholds: Thresholds {
            tier1: 50,
            tier2: 5_000,
        },
        min_contributors: 1,
        unit: CompileUnit::Whole(MethodId(0)),
    };
    for e in &mut f.cluster.engines {
        e.set_function_policy(&f.tenant, f.function, policy).unwrap();
    }
    f.run_for(2_000);
    // Method 0 is the unit's counter; methods 1 and 2 are profile data of its parts.
    for i in 0..6 {
        f.invoke(i, 0, 20, 4);
        f.invoke(i, 1, 20, 4);
        f.invoke(i, 2, 20, 4);
    }
    f.run_for(20_000);
    let compiles = f.publish_compiles();
    assert!(!compiles.is_empty());
    assert!(
        compiles
            .keys()
            .all(|(k, _, _)| k.method == MethodId(0) && k.tier == Tier(1)),
        "{compiles:?}"
    );
}

#[test]
fn classes_refuse_invalid_tiers() {
    let (v2, _, _) = classes();
    assert!(v2.clone().for_tiers(&[]).is_err());
    assert!(v2.clone().for_tiers(&[Tier(3)]).is_err());
    let t0 = v2.clone().for_tiers(&[Tier(0)]).unwrap();
    assert!(t0.serves(Tier(0)) && !t0.serves(Tier(1)) && !t0.serves(Tier(9)));
    assert_ne!(t0.id(), v2.id(), "the tiers are part of the class identity");
    let mut f = tiered_fleet(14, 1);
    let now = f.now();
    let bad = ignite::CodeKey {
        tier: Tier(3),
        ..f.key(0, 0)
    };
    assert!(matches!(
        f.cluster.engines[0].want_code(now, &f.tenant, bad),
        Err(EngineError::TierOutOfRange(3))
    ));
}
