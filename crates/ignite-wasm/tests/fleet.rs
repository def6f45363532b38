//! Hosts on an in-memory network running real code: tier-up through elected compiles,
//! hot starts from the fleet's code, and a speculation that breaks, retires and recompiles.

use ignite_wasm::fleet::Fleet;
use ignite_wasm::host::{Handled, HostConfig};
use ignite_wasm::ignite_core::code::ClassId;
use ignite_wasm::ignite_core::{Assumption, Thresholds, Tier};
use ignite_wasm::tiers::{Compiler, DEFAULT_LEVELS, host_cpu, tier_engines};
use ignite_wasm::workloads::{Mix, Workload, html_input};
use std::collections::BTreeMap;

fn config() -> HostConfig {
    HostConfig {
        thresholds: Thresholds { tier1: 20, tier2: 60 },
        monomorphic_min_samples: 50,
        ..HostConfig::default()
    }
}

/// Compiles per (tier, class), from the hosts' logs.
fn compiles(f: &Fleet) -> BTreeMap<(Tier, usize), usize> {
    let mut out = BTreeMap::new();
    for (i, h) in &f.log {
        if let Handled::Compiled { key, .. } = h {
            *out.entry((key.tier, *i)).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn a_new_hosts_first_invocation_runs_tier2_code_the_fleet_compiled() {
    let mut f = Fleet::new(3, 3, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let wasm = Workload::Html.wasm();
    let function = f.deploy_all("html", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    // Tier 0 arrived before any invocation: nobody needed the local fallback.
    for h in &f.hosts {
        assert_eq!(
            h.installed(&function).keys().copied().collect::<Vec<_>>(),
            vec![Tier(0)]
        );
    }
    let input = html_input(1, 150, Mix::Monomorphic);
    let want = Workload::Html.reference(&input);
    let mut tiers_seen = Vec::new();
    for _ in 0..150 {
        let r = f.invoke(0, &function, &input).unwrap();
        assert_eq!(r.output, want, "tier {}", r.tier.0);
        if tiers_seen.last() != Some(&r.tier) {
            tiers_seen.push(r.tier);
        }
        f.run_for(100, 100).unwrap();
    }
    f.run_for(5_000, 250).unwrap();
    assert_eq!(tiers_seen, vec![Tier(0), Tier(1), Tier(2)], "host 0 tiered up in order");
    // Host 2 never ran the function: its first invocation is hot.
    let r = f.invoke(2, &function, &input).unwrap();
    assert_eq!((r.tier, r.output == want), (Tier(2), true));
    assert_eq!(r.generation, Some(1));
    // One compile per (tier, class) across the fleet; nobody compiled locally.
    let per_tier: BTreeMap<Tier, usize> = compiles(&f).into_iter().fold(BTreeMap::new(), |mut m, ((t, _), n)| {
        *m.entry(t).or_insert(0) += n;
        m
    });
    assert_eq!(per_tier, BTreeMap::from([(Tier(0), 1), (Tier(1), 1), (Tier(2), 1)]));
    assert!(f.hosts.iter().all(|h| h.stats().local_compiles == 0));
    // The tier-2 code speculates on the renderer's call site.
    let installed: Vec<(usize, Tier, ClassId)> = (0..3)
        .flat_map(|i| {
            let inst = f.hosts[i].installed(&function);
            inst.into_iter().map(move |(t, (c, _))| (i, t, c))
        })
        .collect();
    assert_eq!(installed.len(), 9, "{installed:?}");
    let tiers = tier_engines(&host_cpu(), DEFAULT_LEVELS).unwrap();
    let best = |c: Compiler| tiers.iter().find(|t| t.compiler == c).unwrap().class.id();
    for (_, t, c) in installed {
        let want = best(Compiler::of_tier(t).unwrap());
        assert_eq!(c, want, "tier {} installed the best class this machine runs", t.0);
    }
    let manifests = f.cluster.engines[2].manifests(&f.tenant);
    let tier2 = manifests
        .iter()
        .find(|((k, _), _)| k.tier == Tier(2))
        .map(|(_, m)| m.statement.assumptions.clone())
        .unwrap();
    assert_eq!(tier2, vec![Assumption::MonomorphicCall { site: 0, target: 0 }]);
}

#[test]
fn a_first_invocation_before_any_code_uses_the_local_fallback_once() {
    let mut f = Fleet::new(4, 2, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let wasm = Workload::Hash.wasm();
    let function = f.deploy_all("hash", &wasm).unwrap();
    let input = ignite_wasm::workloads::hash_input(5, 4);
    let r = f.invoke(0, &function, &input).unwrap();
    assert_eq!((r.tier, r.generation), (Tier(0), None));
    assert_eq!(r.output, Workload::Hash.reference(&input));
    let r = f.invoke(0, &function, &input).unwrap();
    assert_eq!(r.generation, None);
    assert_eq!(f.hosts[0].stats().local_compiles, 1);
    f.run_for(8_000, 250).unwrap();
    let r = f.invoke(0, &function, &input).unwrap();
    assert_eq!(
        (r.tier, r.generation),
        (Tier(0), Some(1)),
        "the fleet's tier-0 code replaced it"
    );
}

#[test]
fn a_broken_speculation_deopts_retires_and_is_recompiled_without_it() {
    // Every host reports deopts; retirement needs 3 distinct nodes.
    let mut f = Fleet::new(5, 3, DEFAULT_LEVELS, config(), |c| {
        c.code.retire_min_nodes = 3;
        c.code.recompile_backoff_ms = 2_000;
    })
    .unwrap();
    let wasm = Workload::Html.wasm();
    let function = f.deploy_all("html", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    let mono = html_input(1, 120, Mix::Monomorphic);
    for n in 0..120 {
        let r = f.invoke(n % 3, &function, &mono).unwrap();
        assert_eq!(r.output, Workload::Html.reference(&mono));
        f.run_for(100, 100).unwrap();
    }
    f.run_for(5_000, 250).unwrap();
    assert!((0..3).all(|i| f.hosts[i].current_tier(&function) == Some(Tier(2))));
    // The formatter mix changes: the guard misses on every host.
    let varied = html_input(2, 120, Mix::Varied);
    let want = Workload::Html.reference(&varied);
    let mut deopts = 0;
    for i in 0..3 {
        let r = f.invoke(i, &function, &varied).unwrap();
        assert_eq!(r.output, want, "the generic path is exact");
        assert_eq!(r.generation, Some(1));
        assert!(r.deopts > 0);
        deopts += r.deopts;
    }
    assert!(deopts > 0);
    // Deopts are published, the code retires everywhere, one recompile follows.
    let mut saw_uninstall = false;
    for _ in 0..60 {
        f.run_for(500, 250).unwrap();
        saw_uninstall |= f
            .log
            .iter()
            .any(|(_, h)| matches!(h, Handled::Uninstalled(k) if k.tier == Tier(2)));
        for i in 0..3 {
            assert_eq!(f.invoke(i, &function, &varied).unwrap().output, want);
        }
        if (0..3).all(|i| {
            f.hosts[i]
                .installed(&function)
                .get(&Tier(2))
                .is_some_and(|(_, g)| *g == Some(2))
        }) {
            break;
        }
    }
    assert!(saw_uninstall, "retired code was unloaded");
    let manifests = f.cluster.engines[0].manifests(&f.tenant);
    let (_, m2) = manifests.iter().find(|((k, _), _)| k.tier == Tier(2)).unwrap();
    assert_eq!(m2.statement.generation, 2);
    assert!(
        m2.statement.assumptions.is_empty(),
        "recompiled without the broken speculation"
    );
    let tier2_compiles = compiles(&f)
        .into_iter()
        .filter(|((t, _), _)| *t == Tier(2))
        .map(|(_, n)| n)
        .sum::<usize>();
    assert_eq!(tier2_compiles, 2, "generation 1 and one recompile");
    // Generic tier-2 code: no guard, no more deopts.
    for i in 0..3 {
        let r = f.invoke(i, &function, &varied).unwrap();
        assert_eq!((r.tier, r.generation, r.deopts), (Tier(2), Some(2), 0));
    }
}

#[test]
fn a_host_elected_for_a_function_it_does_not_run_gives_the_election_up() {
    let mut f = Fleet::new(6, 4, DEFAULT_LEVELS, config(), |_| {}).unwrap();
    let wasm = Workload::Hash.wasm();
    // Hosts 2 and 3 never deploy the function, but their engines see its merged counts.
    let function = f.deploy(0, "hash", &wasm).unwrap();
    f.deploy(1, "hash", &wasm).unwrap();
    f.run_for(8_000, 250).unwrap();
    let input = ignite_wasm::workloads::hash_input(7, 2);
    for n in 0..100 {
        let r = f.invoke(n % 2, &function, &input).unwrap();
        assert_eq!(r.output, Workload::Hash.reference(&input));
        f.run_for(100, 100).unwrap();
    }
    f.run_for(10_000, 250).unwrap();
    for i in 0..2 {
        assert_eq!(f.hosts[i].current_tier(&function), Some(Tier(2)), "host {i}");
    }
    assert!(
        f.log
            .iter()
            .all(|(i, h)| *i < 2 || !matches!(h, Handled::Compiled { .. })),
        "only hosts that run the function compile it"
    );
    // Tier 0 was asked for only by hosts 0 and 1 (`want_code`): members ranked above them
    // that never ask delay it by one lease each (30 s), until then the first invocations
    // ran on the local fallback.
    f.run_for(70_000, 1_000).unwrap();
    let per_tier: Vec<Tier> = compiles(&f).keys().map(|(t, _)| *t).collect();
    let mut tiers = per_tier.clone();
    tiers.dedup();
    assert_eq!(tiers, vec![Tier(0), Tier(1), Tier(2)]);
    assert_eq!(compiles(&f).values().sum::<usize>(), 3, "one compile per tier");
    assert!(f.hosts[0].installed(&function).contains_key(&Tier(0)));
}
