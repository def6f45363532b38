//! The scale scenario on a small fleet: byte-identical results per seed, exact totals,
//! one compile per key, warm executions between the physical floor and no sharing; faults
//! with churn; several tenants sharing machines and the mesh without any cross-tenant
//! effect.

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
    assert_eq!(r.churn, Default::default(), "no churn without faults");
    assert_eq!(r.misrouted, (0, 0));
    assert!(r.compiles_per_key_mean > 0.0, "methods got hot");
    assert_eq!(r.compiles_per_key_mean, 1.0, "one compile per key without faults");
    // The floor holds, and sharing beats no sharing.
    assert!(r.warm_invocations as f64 >= 0.95 * r.warm_min, "{r:?}");
    assert!(r.warm_invocations < r.ns_warm_invocations, "{r:?}");
    assert!(r.dissemination_hops_p99 >= 1);
    // Each unique signature was verified once and reused by the other engines.
    assert!(r.signatures_reused > r.signatures_verified, "{r:?}");
    // Each delta's lane merge was made by the first engine applying it and taken by most
    // of the others.
    assert!(r.merges > 0 && r.merges_reused > 4 * r.merges, "{r:?}");
}

/// Publish frames to peers that already have the message are not queued; with faults and
/// churn (crashes, restarts, joins, loss, duplication) every result is the same as when
/// they are, but the number of events (and the end of the run's last event).
#[test]
fn frames_to_peers_that_have_the_message_change_nothing_but_events() {
    let mut c = small(11);
    c.faults = true;
    let skipped = run(&c, |_| {}).expect("runs");
    c.queue_seen_frames = true;
    let queued = run(&c, |_| {}).expect("runs");
    assert!(skipped.churn.restarts_from_snapshot + skipped.churn.restarts_without_state > 0);
    assert!(
        skipped.events < queued.events * 9 / 10,
        "{} events against {}",
        skipped.events,
        queued.events
    );
    // `sim_seconds` ends at the last event handled, which may be a frame not queued.
    let without_events = |r: &ScaleResult| {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("events");
        v.as_object_mut().unwrap().remove("sim_seconds");
        v
    };
    assert_eq!(without_events(&skipped), without_events(&queued));
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
    // Churn happened: a crash restarted from its snapshot, one without state, a leave and
    // a late join; the crashes lost what was recorded but not yet signed, and the totals
    // above account for exactly that.
    assert!(r.churn.restarts_from_snapshot >= 1, "{:?}", r.churn);
    assert!(r.churn.restarts_without_state >= 1, "{:?}", r.churn);
    assert_eq!((r.churn.leaves, r.churn.joins), (1, 1), "{:?}", r.churn);
    assert!(r.lost_unpublished > 0, "{r:?}");
    assert!(r.failed_checks(2.0).is_empty(), "{:?}", r.failed_checks(2.0));
}

#[test]
fn tenants_sharing_machines_and_mesh_stay_isolated() {
    let mut c = small(11);
    c.tenants = 3;
    c.invocations = 6_000;
    c.faults = true;
    c.settle_ms = 180_000;
    let r = run(&c, |_| {}).expect("runs");
    assert_eq!(r.tenants, 3);
    // Every tenant's merged counts equal its own recorded totals: the same function id in
    // three tenants, with different volumes, and nothing crossed.
    assert_eq!(r.tenant_totals_exact, vec![true; 3], "{r:?}");
    assert_eq!(r.install_violations, 0);
    // Misrouted deliveries were tried and none was accepted.
    assert!(r.misrouted.0 > 0, "{r:?}");
    assert_eq!(r.misrouted.1, 0, "{r:?}");
    assert!(r.failed_checks(2.0).is_empty(), "{:?}", r.failed_checks(2.0));
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

#[test]
fn every_node_compiles_knob_compiles_once_per_peer_and_keeps_totals() {
    let mut c = small(13);
    c.every_node_compiles = true;
    let r = run(&c, |_| {}).expect("runs");
    let (elected, _) = result(13);
    assert!(r.every_node_compiles);
    assert!(
        r.totals_exact,
        "host-declared tiers publish what was counted below them: {r:?}"
    );
    // Every peer compiled every hot key itself; the elected run compiled each once.
    assert_eq!(r.compiles_per_key_mean, f64::from(c.peers), "{r:?}");
    assert_eq!(elected.compiles_per_key_mean, 1.0);
    // No code travels: fewer bytes than the elected run, which ships artifacts.
    assert!(
        r.bytes_per_peer_per_s < elected.bytes_per_peer_per_s,
        "{r:?} vs {elected:?}"
    );
    assert!(r.failed_checks(1.01).is_empty(), "{:?}", r.failed_checks(1.01));
}
