//! Predicted thresholds (see `Config`, "Predicted thresholds") and the claim wait after
//! joining (`CodeConfig::claim_after_join_ms`), on real engines over the harness network.
//!
//! The prediction fleet: 20 engines publishing every 5 s (`max_deltas_per_s` 4), each
//! recording 100 tier-0 invocations per second of one method, so that the fleet's signed
//! counts lag the true counts by about 5,000 invocations.

mod common;

use common::code::{Fleet, NodeSpec, classes};
use common::{T0, creds, function, tenant};
use ignite::harness::Cluster;
use ignite::{
    Config, Engine, Event, Incarnation, MethodId, MethodProfiler, MethodShape, Roles, Thresholds, Tier, Timestamp,
};

const NODES: usize = 20;
/// Invocations each node records per 100 ms step.
const PER_STEP: u64 = 10;
const LIMIT: u64 = 20_000;

fn fleet(predict_from_pct: u32) -> (Cluster, Vec<MethodProfiler>) {
    fleet_with(predict_from_pct, 1)
}

fn fleet_with(predict_from_pct: u32, min_contributors: usize) -> (Cluster, Vec<MethodProfiler>) {
    fleet_limit(predict_from_pct, min_contributors, LIMIT)
}

fn fleet_limit(predict_from_pct: u32, min_contributors: usize, limit: u64) -> (Cluster, Vec<MethodProfiler>) {
    let (root, secrets) = tenant(9);
    let f = function("predicted");
    let mut engines = Vec::new();
    let mut profilers = Vec::new();
    for i in 0..NODES {
        let cfg = Config {
            seed: i as u64,
            max_deltas_per_s: 4,
            predict_from_pct,
            code: ignite::code::CodeConfig {
                min_contributors,
                ..Default::default()
            },
            thresholds: Thresholds {
                tier1: limit,
                tier2: 1 << 40,
            },
            ..Config::default()
        };
        let mut e = Engine::new(cfg, Incarnation(1)).expect("valid config");
        let (rec, _) = e
            .join_tenant(T0, creds(&root, &secrets, i as u8 + 1, Roles::ALL))
            .expect("join");
        profilers.push(
            rec.method(f, MethodId(1), Tier(0), MethodShape::default())
                .expect("method"),
        );
        engines.push(e);
    }
    (Cluster::new(5, T0, engines), profilers)
}

/// One tier-1 threshold event of an engine: (engine, the fleet's true count when it
/// fired, whether predicted, the count the event reports, ms since the start).
type Fire = (usize, u64, bool, u64, u64);

/// Records `per_step` invocations per profiler per 100 ms while the fleet's true count is
/// below `stop_at`, for `ms` in all; returns the tier-1 threshold events and how many
/// tier-1 thresholds were reported pending (too few contributors).
fn run_with(c: &mut Cluster, p: &[MethodProfiler], per_step: u64, stop_at: u64, ms: u64) -> (Vec<Fire>, usize) {
    let mut fires = Vec::new();
    let mut pending = 0;
    let mut truth = 0u64;
    let start = c.now();
    let end = c.now().plus_ms(ms);
    while c.now() < end {
        if truth < stop_at {
            for prof in p {
                prof.record_invocations(per_step);
            }
            truth += per_step * p.len() as u64;
        }
        // Steps of 10 ms (a tenth of the recording step) resolve when each engine fired.
        for _ in 0..10 {
            let next = Timestamp(c.now().0 + 10);
            c.run_until(next);
            let at = c.now().millis_since(start);
            for (i, e) in c.events.drain(..) {
                if matches!(e, Event::ThresholdPending { tier, .. } if tier == Tier(1)) {
                    pending += 1;
                }
                if let Event::ThresholdReached {
                    tier,
                    predicted,
                    invocations,
                    ..
                } = e
                    && tier == Tier(1)
                {
                    fires.push((i, truth, predicted, invocations, at));
                }
            }
        }
    }
    (fires, pending)
}

/// [`run_with`] at `PER_STEP` per node, threshold events only.
fn run(c: &mut Cluster, p: &[MethodProfiler], stop_at: u64, ms: u64) -> Vec<Fire> {
    run_with(c, p, PER_STEP, stop_at, ms).0
}

#[test]
fn predicted_thresholds_fire_near_the_true_crossing_long_before_the_signed_counts() {
    let (mut c, p) = fleet(10);
    let predicted = run(&mut c, &p, u64::MAX, 30_000);
    let (mut c, p) = fleet(100);
    let signed = run(&mut c, &p, u64::MAX, 30_000);
    for fires in [&predicted, &signed] {
        let mut who: Vec<usize> = fires.iter().map(|f| f.0).collect();
        who.sort_unstable();
        who.dedup();
        assert_eq!(who.len(), NODES, "every engine fires once: {fires:?}");
        assert_eq!(fires.len(), NODES, "and only once: {fires:?}");
    }
    // Without prediction the signed counts reach the threshold well after the fleet did.
    assert!(signed.iter().all(|f| !f.2 && f.3 >= LIMIT), "{signed:?}");
    let signed_first = signed.iter().map(|f| f.1).min().unwrap();
    assert!(
        signed_first >= LIMIT + LIMIT / 5,
        "the signed counts lag the fleet's: first signed fire at a true count of {signed_first}"
    );
    // With it every engine fires by prediction, near the true crossing (the measured rate
    // trails a rising count a little), and all of them before the first engine without
    // prediction.
    for (i, truth, was_predicted, reported, _) in &predicted {
        assert!(was_predicted, "engine {i} fired on signed counts: {predicted:?}");
        assert!(*reported >= LIMIT, "the event reports the predicted count: {reported}");
        assert!(
            (LIMIT - LIMIT / 10..=LIMIT + LIMIT * 3 / 20).contains(truth),
            "engine {i} fired at a true count of {truth} (threshold {LIMIT})"
        );
        assert!(*truth < signed_first, "{truth} vs {signed_first}");
    }
    assert_eq!(c.engines[0].stats().predicted_thresholds, 0);
}

#[test]
fn engines_predict_the_crossing_at_nearly_the_same_time() {
    // The members sample the fleet's rate at the same window starts and look again when
    // their prediction may reach the limit, so they fire within one recording step (100 ms,
    // 2,000 invocations at this rate) of each other, not passes (`code.tick_ms`, 250 ms)
    // and differently timed samples apart (910 ms without either): whichever of them is
    // elected claims about as early as the first.
    let (mut c, p) = fleet(10);
    let fires = run(&mut c, &p, u64::MAX, 30_000);
    assert_eq!(fires.len(), NODES, "{fires:?}");
    assert!(fires.iter().all(|f| f.2), "all predicted: {fires:?}");
    let first = fires.iter().map(|f| f.4).min().unwrap();
    let last = fires.iter().map(|f| f.4).max().unwrap();
    assert!(last - first <= 100, "fired from {first} ms to {last} ms: {fires:?}");
}

#[test]
fn traffic_that_stops_short_of_the_threshold_fires_nothing() {
    // Stops at 40% of the threshold: the signed counts settle there and the measured rate
    // falls to zero; neither the prediction nor the signed counts reach the threshold.
    let (mut c, p) = fleet(10);
    let fires = run(&mut c, &p, LIMIT * 2 / 5, 60_000);
    assert!(fires.is_empty(), "{fires:?}");
    // Below the smallest signed share nothing is predicted either, however fast the rate:
    // 1,000 invocations per node at once, a 5% signed share when first published.
    let (mut c, p) = fleet(50);
    for prof in &p {
        prof.record_invocations(1_000 / NODES as u64);
    }
    let fires = run(&mut c, &p, LIMIT * 2 / 5, 60_000);
    assert!(fires.is_empty(), "{fires:?}");
}

#[test]
fn prediction_does_not_lower_the_contributor_minimum() {
    // One node records what the whole fleet did above; two contributors are required.
    let (mut c, p) = fleet_with(10, 2);
    let (fires, pending) = run_with(&mut c, &p[..1], PER_STEP * NODES as u64, u64::MAX, 30_000);
    assert!(fires.is_empty(), "{fires:?}");
    assert_eq!(
        pending, NODES,
        "every engine saw the signed count pass the threshold, from one node"
    );
    assert_eq!(c.engines.iter().map(|e| e.stats().predicted_thresholds).sum::<u64>(), 0);
}

#[test]
fn a_fleet_started_together_claims_after_the_join_wait_not_after_a_presence_interval() {
    let (v2, _, _) = classes();
    let specs = vec![
        NodeSpec {
            hardware: vec![v2],
            roles: Roles::ALL,
        };
        8
    ];
    let mut f = Fleet::new(21, specs, 50, |c| {
        c.code.presence_interval_ms = 5_000;
        c.code.presence_ttl_ms = 16_000;
    });
    // Every node crosses the tier-1 threshold (200) on its own first publication.
    for i in 0..8 {
        f.invoke(i, 3, 30, 4);
    }
    f.run_for(4_000);
    let compiles = f.publish_compiles();
    let key = f.key(3, 1);
    assert_eq!(compiles.len(), 1, "{compiles:?}");
    let ((k, _, _), who) = compiles.first_key_value().expect("a compile");
    assert_eq!((*k, who.len()), (key, 1), "one compile, by one node: {compiles:?}");
    let at = f
        .cluster
        .compiles
        .iter()
        .map(|(_, t, _)| t.millis_since(T0))
        .min()
        .expect("compiled");
    assert!(
        (1_000..2_000).contains(&at),
        "claimed once the join wait passed with every member's presence in hand, not after the 5 s presence interval: {at} ms"
    );
    for i in 0..8 {
        assert!(f.installed(i, &key).is_some(), "engine {i} installed the code");
    }
}

#[test]
fn the_rate_accounts_for_a_fleet_that_publishes_less_often_as_it_grows() {
    // The fleet's members become known over the first seconds, and the publication interval
    // grows with them (to 5 s): the signed count then grows slower than the fleet's true
    // count. Thresholds crossed meanwhile (8,000 at 4 s to 16,000 at 8 s) are still
    // predicted near the crossing: the median engine between 5% before and 10% after it,
    // every engine by 15% after (the rate without the staleness gained makes the first
    // engine fire 9-35% late here).
    for limit in [8_000u64, 10_000, 12_000, 14_000, 16_000] {
        let (mut c, p) = fleet_limit(10, 1, limit);
        let fires = run(&mut c, &p, u64::MAX, 30_000);
        assert_eq!(fires.len(), NODES, "{fires:?}");
        for (i, truth, was_predicted, _, at) in &fires {
            assert!(was_predicted, "engine {i}: {fires:?}");
            assert!(
                (limit - limit / 20..=limit + limit * 3 / 20).contains(truth),
                "threshold {limit}: engine {i} fired at {at} ms at a true count of {truth}: {fires:?}"
            );
        }
        let mut truths: Vec<u64> = fires.iter().map(|f| f.1).collect();
        truths.sort_unstable();
        let median = truths[NODES / 2];
        assert!(
            (limit - limit / 20..=limit + limit / 10).contains(&median),
            "threshold {limit}: the median engine fired at a true count of {median}: {fires:?}"
        );
    }
}
