//! Feedback from running code, end to end on real engines: deopt storms retire code
//! everywhere and cause exactly one recompile without the broken assumption (no loop);
//! too few reporting nodes retire nothing; slower code is replaced by re-promoting the
//! previous generation (once per lineage); a host cannot publish code relying on an
//! excluded assumption. Attestation is in `tests/attestation.rs`.

mod common;

use common::code::{Fleet, NodeSpec, classes, code_config};
use common::feedback::*;
use ignite::code::rules::backoff_ms;
use ignite::code::{CompileError, Manifest, Signed};
use ignite::harness::{SimHost, sim_compile};
use ignite::{CodeKey, Counter, Event, Refusal, Roles};

/// Records one deopt of the broken assumption on each engine in `nodes`.
fn deopt(f: &mut Fleet, nodes: impl IntoIterator<Item = usize>, key: CodeKey) {
    for i in nodes {
        f.cluster.engines[i]
            .record_deopt(&f.tenant, key, &broken())
            .expect("tenant joined");
    }
}

/// Merged fleet-wide deopt count of the broken assumption as engine `i` sees it.
fn deopt_count(f: &Fleet, i: usize, key: &CodeKey) -> u64 {
    f.cluster.engines[i].profile(&f.tenant, &key.function).map_or(0, |p| {
        p.count(key.method, key.tier, Counter::AssumptionBroken { id: broken().id() })
    })
}

/// Highest generation of any manifest any engine holds as current for `key`.
fn max_generation(f: &Fleet, key: &CodeKey) -> u32 {
    (0..f.cluster.engines.len())
        .filter_map(|i| current(f, i, key).map(|m| m.statement.generation))
        .max()
        .unwrap_or(0)
}

/// Total manifests signed by the whole fleet so far.
fn manifests_signed(f: &Fleet) -> u64 {
    f.cluster.engines.iter().map(|e| e.stats().manifests_published).sum()
}

/// Generation 1 installed, then every node reports deopts of its assumption: retirement,
/// one recompile at generation 2 after the backoff, installed everywhere. Returns the
/// manifests of generations 1 and 2.
fn retire_generation_1(f: &mut Fleet) -> (Signed<Manifest>, Signed<Manifest>) {
    let n = f.cluster.engines.len();
    let (v2, _, _) = classes();
    let key = f.key(1, 1);
    let cfg = code_config(Vec::new());
    assert!(
        n > cfg.retire_min_nodes,
        "the storm must come from more than retire_min_nodes nodes"
    );
    let m1 = install_generation_1(f);
    let created = m1.statement.created_at;
    let ready = created.plus_ms(backoff_ms(cfg.recompile_backoff_ms, 1));
    assert!(
        f.now().plus_ms(3_000) < ready,
        "the storm must start well before the backoff ends (now {:?}, ready {ready:?})",
        f.now()
    );
    assert!(publish_requests(f, &key, 2).is_empty());

    // The storm: every node reports a deopt of the assumption.
    deopt(f, 0..n, key);
    // Until just before the backoff ends: retired (uninstalled) everywhere, no recompile yet.
    let before = ready.as_millis() - 500 - f.now().as_millis();
    f.run_for(before);
    for i in 0..n {
        assert_eq!(f.installed(i, &key), None, "engine {i} still runs retired code");
        assert!(
            f.cluster.events.iter().any(|(j, e)| *j == i
                && matches!(e, Event::Uninstall { key: k, generation: 1, class, .. }
                    if *k == key && *class == v2.id())),
            "engine {i}: no Uninstall of generation 1"
        );
    }
    for (i, k, g, reason) in f.refusals() {
        if let Refusal::Retired { assumption, nodes } = reason {
            assert_eq!((k, g, assumption), (key, 1, broken().id()), "engine {i}");
            assert!(nodes >= cfg.retire_min_nodes, "engine {i}: retired by {nodes} nodes");
        }
    }
    for i in 0..n {
        assert!(
            f.refusals()
                .iter()
                .any(|(j, _, g, r)| *j == i && *g == 1 && matches!(r, Refusal::Retired { .. })),
            "engine {i}: no Refused::Retired for generation 1"
        );
    }
    assert!(
        publish_requests(f, &key, 2).is_empty(),
        "recompile requested before the backoff ended: {:?}",
        publish_requests(f, &key, 2)
            .iter()
            .map(|(i, t, _)| (i, t))
            .collect::<Vec<_>>()
    );

    // After the backoff: exactly one recompile, without the broken assumption.
    assert!(
        run_until(f, 100, 10_000, |f| all_installed(f, &key, 2)),
        "generation 2 not installed everywhere: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    let reqs = publish_requests(f, &key, 2);
    assert_eq!(
        reqs.len(),
        1,
        "recompiles: {:?}",
        reqs.iter().map(|(i, t, _)| (i, t)).collect::<Vec<_>>()
    );
    let (_, at, req) = &reqs[0];
    assert!(
        *at >= ready,
        "recompile at {at:?}, before the backoff ended at {ready:?}"
    );
    assert!(req.excluded.contains(&broken()), "excluded: {:?}", req.excluded);
    // The exclusion is what keeps the assumption out: the profile still shows one receiver,
    // so the same request without exclusions would speculate on it again.
    let mut unexcluded = req.clone();
    unexcluded.excluded.clear();
    assert!(sim_compile(&unexcluded).assumptions.contains(&broken()));

    let m2 = current(f, 0, &key).expect("manifest held");
    assert_eq!(m2.statement.generation, 2);
    assert!(
        !m2.statement.assumptions.contains(&broken()),
        "{:?}",
        m2.statement.assumptions
    );
    assert_ne!(m2.statement.blob_hash, m1.statement.blob_hash);
    for i in 0..n {
        assert_eq!(current(f, i, &key).map(|c| c.hash()), Some(m2.hash()), "engine {i}");
    }
    (m1, m2)
}

#[test]
fn deopt_storm_retires_everywhere_and_recompiles_once_without_the_assumption() {
    let mut f = v2_fleet(11, 8, &[], |_| {});
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let (_, m2) = retire_generation_1(&mut f);
    let gen2_backoff = backoff_ms(code_config(Vec::new()).recompile_backoff_ms, 2);

    // Deopts of the broken assumption never stop, on every node, for several backoff periods
    // of generation 2: no generation 3 (the broken assumption is not in generation 2).
    let start = f.now();
    let mut recorded = 0;
    while f.now().millis_since(start) < 3 * gen2_backoff {
        deopt(&mut f, 0..n, key);
        recorded += 1;
        f.run_for(2_000);
    }
    f.run_for(3_000);
    // The continued deopts did reach every engine (1 storm + `recorded` rounds on n nodes).
    for i in 0..n {
        assert_eq!(deopt_count(&f, i, &key), (recorded + 1) * n as u64, "engine {i}");
    }
    assert_eq!(max_generation(&f, &key), 2);
    let later: Vec<_> = f
        .cluster
        .compiles
        .iter()
        .filter(|(_, _, r)| r.key == key && r.generation > 2)
        .map(|(i, t, r)| (*i, *t, r.generation))
        .collect();
    assert!(later.is_empty(), "compiles after generation 2: {later:?}");
    assert_eq!(publish_requests(&f, &key, 2).len(), 1);
    assert_eq!(manifests_signed(&f), 2, "generations 1 and 2 only");
    for i in 0..n {
        assert_eq!(f.installed(i, &key).map(|(_, g)| g), Some(2), "engine {i}");
        assert_eq!(current(&f, i, &key).map(|c| c.hash()), Some(m2.hash()), "engine {i}");
    }
    // Generation 2 is installed exactly once per engine and never withdrawn.
    for i in 0..n {
        let installs = f.installs().iter().filter(|(j, _, _, g)| *j == i && *g == 2).count();
        assert_eq!(installs, 1, "engine {i}");
    }
    assert!(
        !f.cluster
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Uninstall { generation: 2, .. })),
        "generation 2 was withdrawn"
    );
}

#[test]
fn deopt_storm_retires_the_code_of_every_class_and_each_class_recompiles_once() {
    let (v2, v3, _) = classes();
    // Nodes 0..4 run [v3, v2], nodes 4..8 run [v2]: code is needed for both classes.
    let specs = (0..8)
        .map(|i| NodeSpec {
            hardware: if i < 4 {
                vec![v3.clone(), v2.clone()]
            } else {
                vec![v2.clone()]
            },
            roles: Roles::ALL,
        })
        .collect();
    let mut f = Fleet::new(19, specs, COMPILE_MS, |_| {});
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let best = |i: usize| if i < 4 { v3.id() } else { v2.id() };
    f.run_for(3_000);
    for i in 0..n {
        f.invoke(i, 1, 30, TARGET);
    }
    let installed_best = |f: &Fleet, g: u32| (0..n).all(|i| f.installed(i, &key) == Some((best(i), g)));
    assert!(
        run_until(&mut f, 100, 20_000, |f| installed_best(f, 1)),
        "generation 1 not installed"
    );
    let m1: Vec<Signed<Manifest>> = [v2.id(), v3.id()]
        .iter()
        .map(|c| f.cluster.engines[0].manifests(&f.tenant)[&(key, *c)].clone())
        .collect();
    for m in &m1 {
        assert_eq!(m.statement.assumptions, vec![broken()]);
    }
    // Deopts reported against whichever code each node runs count together (ids are
    // class-independent); only the v3 nodes and one v2 node report.
    deopt(&mut f, [0, 1, 2, 3, 4], key);
    let latest = m1.iter().map(|m| m.statement.created_at).max().unwrap();
    let ready = latest.plus_ms(backoff_ms(code_config(Vec::new()).recompile_backoff_ms, 1));
    assert!(
        run_until(&mut f, 100, 25_000, |f| f.now() >= ready && installed_best(f, 2)),
        "generation 2 not installed: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    for _ in 0..10 {
        deopt(&mut f, 0..n, key);
        f.run_for(3_000);
    }
    let compiles = f.publish_compiles();
    for class in [v2.id(), v3.id()] {
        assert_eq!(compiles.get(&(key, class, 1)).map(Vec::len), Some(1), "{class:?}");
        assert_eq!(compiles.get(&(key, class, 2)).map(Vec::len), Some(1), "{class:?}");
        let m = &f.cluster.engines[n - 1].manifests(&f.tenant)[&(key, class)];
        assert_eq!(m.statement.generation, 2);
        assert!(!m.statement.assumptions.contains(&broken()));
    }
    assert!(
        compiles.keys().all(|(_, _, g)| *g <= 2),
        "{:?}",
        compiles.keys().collect::<Vec<_>>()
    );
    assert!(installed_best(&f, 2));
    for i in 0..n {
        // Every node dropped the retired code it ran.
        assert!(
            f.cluster.events.iter().any(
                |(j, e)| *j == i && matches!(e, Event::Uninstall { generation: 1, class, .. } if *class == best(i))
            ),
            "engine {i}"
        );
    }
}

#[test]
fn recompiled_code_relying_on_the_excluded_assumption_is_refused() {
    let mut f = v2_fleet(18, 6, &[], |_| {});
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let m1 = install_generation_1(&mut f);
    // The host now answers by hand.
    f.cluster.host = None;
    deopt(&mut f, 0..n, key);
    let ready = m1
        .statement
        .created_at
        .plus_ms(backoff_ms(code_config(Vec::new()).recompile_backoff_ms, 1));
    assert!(
        run_until(&mut f, 100, 15_000, |f| !publish_requests(f, &key, 2).is_empty()),
        "no recompile requested"
    );
    let (i, at, req) = publish_requests(&f, &key, 2).remove(0);
    assert!(at >= ready);
    assert!(req.excluded.contains(&broken()));
    // A host that ignores the exclusion and speculates on the broken assumption anyway.
    let mut ignoring = req.clone();
    ignoring.excluded.clear();
    let bad = sim_compile(&ignoring);
    assert!(bad.assumptions.contains(&broken()));
    let now = f.now();
    let tenant = f.tenant;
    assert_eq!(
        f.cluster.engines[i].compiled(now, &tenant, req.id, bad),
        Err(CompileError::ExcludedAssumption(broken()))
    );
    // The request is consumed: a later answer to it is refused too.
    assert_eq!(
        f.cluster.engines[i].compiled(now, &tenant, req.id, sim_compile(&req)),
        Err(CompileError::UnknownRequest)
    );
    f.run_for(1_000);
    for j in 0..n {
        assert!(
            current(&f, j, &key).is_some_and(|m| m.statement.generation == 1),
            "engine {j}: a generation 2 manifest was published"
        );
    }
    // With an honest host again, the election is retried and generation 2 comes without it.
    f.cluster.host = Some(SimHost::new(COMPILE_MS));
    for (j, _, r) in publish_requests(&f, &key, 2) {
        if f.cluster.engines[j]
            .pending_compiles(&tenant)
            .iter()
            .any(|(id, _)| *id == r.id)
        {
            let now = f.now();
            f.cluster.engines[j]
                .compiled(now, &tenant, r.id, sim_compile(&r))
                .expect("honest answer accepted");
        }
    }
    assert!(
        run_until(&mut f, 100, 20_000, |f| all_installed(f, &key, 2)),
        "generation 2 not installed everywhere: {:?}",
        (0..n).map(|j| f.installed(j, &key)).collect::<Vec<_>>()
    );
    let m2 = current(&f, 0, &key).unwrap();
    assert!(!m2.statement.assumptions.contains(&broken()));
    assert!(
        publish_requests(&f, &key, 2)
            .iter()
            .all(|(_, _, r)| r.excluded.contains(&broken()))
    );
}

#[test]
fn deopts_from_fewer_than_retire_min_nodes_do_not_retire() {
    let mut f = v2_fleet(12, 8, &[], |_| {});
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let cfg = code_config(Vec::new());
    assert_eq!(cfg.retire_min_nodes, 3);
    install_generation_1(&mut f);
    // Two nodes (one fewer than required) report deopts over and over, well past the
    // backoff a retirement would wait.
    let reporters = [2usize, 5];
    let start = f.now();
    let mut rounds = 0;
    while f.now().millis_since(start) < 3 * cfg.recompile_backoff_ms {
        deopt(&mut f, reporters, key);
        rounds += 1;
        f.run_for(2_000);
    }
    f.run_for(3_000);
    for i in 0..n {
        // Every engine merged the deopts: they count, but from two nodes only.
        assert_eq!(deopt_count(&f, i, &key), rounds * 2, "engine {i}");
        assert_eq!(f.installed(i, &key).map(|(_, g)| g), Some(1), "engine {i}");
    }
    assert!(
        !f.cluster
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Uninstall { .. })),
        "code withdrawn"
    );
    assert!(
        !f.refusals()
            .iter()
            .any(|(_, _, _, r)| matches!(r, Refusal::Retired { .. })),
        "{:?}",
        f.refusals()
    );
    assert!(publish_requests(&f, &key, 2).is_empty());
    assert_eq!(max_generation(&f, &key), 1);

    // The boundary: one deopt from a third node retires it everywhere.
    deopt(&mut f, [7], key);
    assert!(
        run_until(&mut f, 100, 5_000, |f| (0..n).all(|i| f.installed(i, &key).is_none())),
        "a third reporting node did not retire the code: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    for i in 0..n {
        assert!(
            f.refusals().iter().any(|(j, _, g, r)| *j == i
                && *g == 1
                && *r
                    == Refusal::Retired {
                        assumption: broken().id(),
                        nodes: 3
                    }),
            "engine {i}"
        );
    }
}

#[test]
fn slower_generation_is_replaced_by_repromoting_the_previous_code_once() {
    const MIN_SAMPLES: u64 = 40;
    let mut f = v2_fleet(13, 8, &[], |c| c.code.min_latency_samples = MIN_SAMPLES);
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let (m1, m2) = retire_generation_1(&mut f);
    let signed_before = manifests_signed(&f);
    assert_eq!(signed_before, 2);

    // Generation 1 ran at ~100 us (bucket 6), generation 2 runs at ~1 ms (bucket 9): first
    // with too few samples (4 per node on 8 nodes = 32 < 40 per generation).
    let record = |f: &mut Fleet, generation: u32, micros: u64, per_node: u64| {
        for i in 0..n {
            f.cluster.engines[i]
                .record_code_runs(&f.tenant, key, generation, micros, per_node)
                .expect("tenant joined");
        }
    };
    record(&mut f, 1, 100, 4);
    record(&mut f, 2, 1_000, 4);
    f.run_for(8_000);
    assert_eq!(
        max_generation(&f, &key),
        2,
        "re-promoted with fewer than min_latency_samples"
    );
    assert_eq!(manifests_signed(&f), signed_before);

    // One more sample each per node: 40 per generation.
    record(&mut f, 1, 100, 1);
    record(&mut f, 2, 1_000, 1);
    assert!(
        run_until(&mut f, 100, 10_000, |f| all_installed(f, &key, 3)),
        "generation 3 not installed everywhere: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    let m3 = current(&f, 0, &key).expect("manifest held");
    let s = &m3.statement;
    assert_eq!(s.generation, 3);
    assert_eq!(s.repromotes, Some(1));
    assert_eq!(s.blob_hash, m1.statement.blob_hash, "generation 1's code re-published");
    assert_eq!(s.blob_size, m1.statement.blob_size);
    assert_eq!(s.assumptions, m1.statement.assumptions);
    // Its broken assumption is tolerated: the code is not retired again.
    assert_eq!(s.tolerated, vec![broken().id()]);
    assert_ne!(s.blob_hash, m2.statement.blob_hash);
    for i in 0..n {
        assert_eq!(current(&f, i, &key).map(|c| c.hash()), Some(m3.hash()), "engine {i}");
    }
    for (i, e) in &f.cluster.events {
        if let Event::Install(ins) = e
            && ins.manifest.statement.generation == 3
        {
            assert_eq!(ins.manifest.hash(), m3.hash(), "engine {i}");
            assert_eq!(
                *blake3::hash(&ins.blob).as_bytes(),
                m1.statement.blob_hash,
                "engine {i}"
            );
        }
    }
    // A re-promotion re-publishes code: nothing is compiled for it.
    assert!(publish_requests(&f, &key, 3).is_empty());

    // Generation 3 turns out slower still than generation 2 (and its tolerated assumption
    // keeps breaking everywhere): still no generation 4, the lineage was re-promoted once.
    record(&mut f, 3, 100_000, 10);
    record(&mut f, 2, 1_000, 10);
    for _ in 0..10 {
        deopt(&mut f, 0..n, key);
        f.run_for(3_000);
    }
    assert_eq!(max_generation(&f, &key), 3);
    assert_eq!(manifests_signed(&f), 3, "generations 1, 2 and the re-promotion only");
    assert!(
        !f.cluster.compiles.iter().any(|(_, _, r)| r.generation > 2),
        "compile requested after generation 2"
    );
    for i in 0..n {
        assert_eq!(f.installed(i, &key).map(|(_, g)| g), Some(3), "engine {i}");
        let installs = f.installs().iter().filter(|(j, _, _, g)| *j == i && *g == 3).count();
        assert_eq!(installs, 1, "engine {i}");
    }
}
