//! Settled counters (see `Config`, "Settled counters"): a busy lane publishes its changes
//! of counters no threshold reads at most every `settled_publish_ms`, a quiet lane publishes
//! them at once, and counts a threshold still reads go out every interval.
//! Two real engines on the harness network; the receiver's merged view shows what was
//! published when.

mod common;

use common::{T0, creds, function, tenant};
use ignite::harness::Cluster;
use ignite::{
    Config, Counter, CounterKey, Engine, FunctionId, Incarnation, MethodId, MethodProfiler, MethodShape, Roles,
    TenantId, Thresholds, Tier, Timestamp,
};

/// A sender (engine 0) and a receiver (engine 1) of one tenant; returns the cluster, the
/// tenant and the sender's profilers of methods 1 and 2 at tiers 0 and 2.
fn pair(settled_publish_ms: u64, thresholds: Thresholds) -> (Cluster, TenantId, FunctionId, [[MethodProfiler; 2]; 2]) {
    let (root, secrets) = tenant(7);
    let f = function("settled");
    let mut engines = Vec::new();
    let mut profilers = None;
    for i in 0..2u8 {
        let cfg = Config {
            seed: u64::from(i),
            groups: 1,
            settled_publish_ms,
            thresholds,
            // Thresholds here are reached on the signed counts, which the tests read; a
            // predicted threshold settles the counts below it as early as a signed one.
            predict_from_pct: 100,
            ..Config::default()
        };
        let mut e = Engine::new(cfg, Incarnation(1)).expect("valid config");
        let (rec, _) = e
            .join_tenant(T0, creds(&root, &secrets, i + 1, Roles::ALL))
            .expect("join");
        if i == 0 {
            let p = |m: u32, t: u8| {
                rec.method(f, MethodId(m), Tier(t), MethodShape::default())
                    .expect("method")
            };
            profilers = Some([[p(1, 0), p(1, 2)], [p(2, 0), p(2, 2)]]);
        }
        engines.push(e);
    }
    (
        Cluster::new(3, T0, engines),
        root.id(),
        f,
        profilers.expect("sender registered"),
    )
}

fn key(m: u32, tier: u8) -> CounterKey {
    CounterKey {
        method: MethodId(m),
        tier: Tier(tier),
        counter: Counter::Invocations,
    }
}

/// The receiver's merged count of one counter.
fn seen(c: &Cluster, tenant: &TenantId, f: &FunctionId, k: CounterKey) -> u64 {
    c.engines[1]
        .profile(tenant, f)
        .and_then(|v| v.counters().get(&k).copied())
        .unwrap_or(0)
}

/// Runs `ms` of virtual time in steps of 100 ms, calling `record` before each step;
/// returns how many times the receiver's merged count of each of `keys` changed.
fn drive<const N: usize>(
    c: &mut Cluster,
    tenant: &TenantId,
    f: &FunctionId,
    keys: [CounterKey; N],
    ms: u64,
    mut record: impl FnMut(),
) -> [usize; N] {
    let mut changes = [0; N];
    let mut last = keys.map(|k| seen(c, tenant, f, k));
    let end = c.now().plus_ms(ms);
    while c.now() < end {
        record();
        let next = Timestamp(c.now().0 + 100);
        c.run_until(next);
        for (i, k) in keys.iter().enumerate() {
            let now = seen(c, tenant, f, *k);
            if now != last[i] {
                changes[i] += 1;
                last[i] = now;
            }
        }
    }
    changes
}

#[test]
fn busy_settled_lanes_wait_for_the_settled_interval_and_flush_once_quiet() {
    let top = key(1, 2);
    let mut updates = Vec::new();
    for settled_ms in [30_000, 0] {
        let (mut c, tenant, f, p) = pair(settled_ms, Thresholds::default());
        // Tier-2 invocations: no threshold reads them.
        let [changes] = drive(&mut c, &tenant, &f, [top], 60_000, || p[0][1].record_invocation());
        // Traffic stops: the lane is quiet one interval later and publishes what waited.
        c.run_until(c.now().plus_ms(2_500));
        assert_eq!(
            seen(&c, &tenant, &f, top),
            600,
            "settled_publish_ms {settled_ms}: every count arrives once the lane is quiet"
        );
        updates.push((changes, c.engines[0].stats().deferred_entries));
    }
    let [(slow, deferred), (every, not_deferred)] = updates[..] else {
        unreachable!()
    };
    assert!(
        (1..=3).contains(&slow),
        "a busy lane of settled counts publishes every 30 s at most: {slow} updates in 60 s"
    );
    assert!(
        every >= 55,
        "with settled_publish_ms 0 it publishes every second: {every}"
    );
    assert!(deferred >= 50, "deferred lane publications are counted: {deferred}");
    assert_eq!(not_deferred, 0);
}

#[test]
fn unsettled_counts_go_out_every_interval_and_settled_ones_in_the_same_lane_wait() {
    let (mut c, tenant, f, p) = pair(30_000, Thresholds::default());
    // Tier-0 invocations of method 1 (read by both thresholds, neither reached) and tier-2
    // invocations of method 2, in the same lane.
    let [low_changes, top_changes] = drive(&mut c, &tenant, &f, [key(1, 0), key(2, 2)], 10_000, || {
        p[0][0].record_invocation();
        p[1][1].record_invocation();
    });
    assert!(
        low_changes >= 8,
        "unsettled counts go out every interval: {low_changes}"
    );
    assert!(
        top_changes <= 1,
        "settled counts wait for the settled interval: {top_changes} updates"
    );
    assert!(c.engines[0].stats().deferred_entries >= 8);
    c.run_until(c.now().plus_ms(2_500));
    assert_eq!(seen(&c, &tenant, &f, key(1, 0)), 100);
    assert_eq!(seen(&c, &tenant, &f, key(2, 2)), 100, "totals exact once quiet");
}

#[test]
fn counts_become_settled_once_every_threshold_above_them_is_reached() {
    // No hardware class: thresholds fire, nothing compiles, tier-0 code stays current.
    let thresholds = Thresholds { tier1: 50, tier2: 100 };
    let (mut c, tenant, f, p) = pair(30_000, thresholds);
    let low = key(1, 0);
    // 10 invocations per second: both thresholds are reached after about 10 s.
    let [before] = drive(&mut c, &tenant, &f, [low], 15_000, || p[0][0].record_invocation());
    assert!(
        before >= 10,
        "counts below an unreached threshold go out every interval: {before}"
    );
    assert!(seen(&c, &tenant, &f, low) >= thresholds.tier2);
    let deferred_before = c.engines[0].stats().deferred_entries;
    let [after] = drive(&mut c, &tenant, &f, [low], 20_000, || p[0][0].record_invocation());
    assert!(
        after <= 2,
        "past every threshold the same counts wait for the settled interval: {after} updates in 20 s"
    );
    assert!(c.engines[0].stats().deferred_entries > deferred_before + 10);
    c.run_until(c.now().plus_ms(2_500));
    assert_eq!(seen(&c, &tenant, &f, low), 350, "totals exact once quiet");
}

#[test]
fn flush_publishes_settled_changes_at_once() {
    let (mut c, tenant, f, p) = pair(30_000, Thresholds::default());
    let top = key(1, 2);
    // The first publication carries the first counts; the next ones wait.
    drive(&mut c, &tenant, &f, [top], 5_000, || p[0][1].record_invocation());
    let before = seen(&c, &tenant, &f, top);
    assert!(before < 50, "busy settled counts wait: {before} of 50 seen");
    let now = c.now();
    c.engines[0].flush(now);
    c.run_until(now.plus_ms(100));
    assert_eq!(
        seen(&c, &tenant, &f, top),
        50,
        "a flush (graceful leave) publishes them"
    );
}
