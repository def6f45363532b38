//! The one-class fleet of the feedback and attestation tests: x86-64-v2 nodes whose hot
//! method speculates on one receiver, run in steps, with its manifests, compile requests
//! and installs read back.

use super::code::{Fleet, NodeSpec, classes};
use ignite::code::{Manifest, Purpose, Signed};
use ignite::{Assumption, CodeKey, CompileRequest, Config, Roles, Timestamp};

/// The receiver every invocation records at call site 0.
pub const TARGET: u32 = 7;
/// Simulated compile time.
pub const COMPILE_MS: u64 = 200;

/// What the simulated compiler speculates for the fleet's method (and what breaks here).
pub fn broken() -> Assumption {
    Assumption::MonomorphicCall {
        site: 0,
        target: TARGET,
    }
}

/// `n` nodes that all run (only) x86-64-v2; nodes listed in `profile_only` lack the compile
/// role.
pub fn v2_fleet(seed: u64, n: usize, profile_only: &[usize], tweak: impl Fn(&mut Config)) -> Fleet {
    let (v2, _, _) = classes();
    let specs = (0..n)
        .map(|i| NodeSpec {
            hardware: vec![v2.clone()],
            roles: if profile_only.contains(&i) {
                Roles::PROFILE
            } else {
                Roles::ALL
            },
        })
        .collect();
    Fleet::new(seed, specs, COMPILE_MS, tweak)
}

/// Runs in `step_ms` steps until `done` holds, for at most `max_ms`; returns whether it did.
pub fn run_until(f: &mut Fleet, step_ms: u64, max_ms: u64, done: impl Fn(&Fleet) -> bool) -> bool {
    run_timed(f, step_ms, max_ms, done, &mut Vec::new())
}

/// [`run_until`], also extending `times` so that `times[k]` bounds from above when event
/// `k` of the cluster was emitted (the end of the step it appeared in).
pub fn run_timed(
    f: &mut Fleet,
    step_ms: u64,
    max_ms: u64,
    done: impl Fn(&Fleet) -> bool,
    times: &mut Vec<Timestamp>,
) -> bool {
    let until = f.now().plus_ms(max_ms);
    times.resize(f.cluster.events.len(), f.now());
    while f.now() < until {
        if done(f) {
            return true;
        }
        f.run_for(step_ms);
        times.resize(f.cluster.events.len(), f.now());
    }
    done(f)
}

pub fn all_installed(f: &Fleet, key: &CodeKey, generation: u32) -> bool {
    (0..f.cluster.engines.len()).all(|i| f.installed(i, key).map(|(_, g)| g) == Some(generation))
}

/// The current manifest of `key` for the v2 class as engine `i` holds it.
pub fn current(f: &Fleet, i: usize, key: &CodeKey) -> Option<Signed<Manifest>> {
    let (v2, _, _) = classes();
    f.cluster.engines[i].manifests(&f.tenant).get(&(*key, v2.id())).cloned()
}

/// Publish compile requests of `key` at `generation`, with engine and time.
pub fn publish_requests(f: &Fleet, key: &CodeKey, generation: u32) -> Vec<(usize, Timestamp, CompileRequest)> {
    f.cluster
        .compiles
        .iter()
        .filter(|(_, _, r)| r.purpose == Purpose::Publish && r.key == *key && r.generation == generation)
        .cloned()
        .collect()
}

/// Makes `key` (method 1, tier 1) hot on every node and runs until every engine installed
/// generation 1; returns its manifest (identical on every engine).
pub fn install_generation_1(f: &mut Fleet) -> Signed<Manifest> {
    install_generation_1_timed(f, &mut Vec::new())
}

/// [`install_generation_1`], recording event times as [`run_timed`] does.
pub fn install_generation_1_timed(f: &mut Fleet, times: &mut Vec<Timestamp>) -> Signed<Manifest> {
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    f.run_for(3_000);
    // Over 400 invocations in all: above the tier-1 threshold (200) whatever the fleet size
    // but not the tier-2 one; every receiver at site 0 is TARGET, so the code speculates on it.
    for i in 0..n {
        f.invoke(i, 1, 400 / n as u64 + 1, TARGET);
    }
    assert!(
        run_timed(f, 10, 20_000, |f| all_installed(f, &key, 1), times),
        "generation 1 not installed everywhere: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    let m = current(f, 0, &key).expect("manifest held");
    for i in 0..n {
        assert_eq!(current(f, i, &key).map(|c| c.hash()), Some(m.hash()), "engine {i}");
    }
    assert_eq!(m.statement.generation, 1);
    assert_eq!(
        m.statement.assumptions,
        vec![broken()],
        "generation 1 speculates on the receiver"
    );
    assert_eq!(m.statement.repromotes, None);
    m
}
