//! The Figure 5 experiment on short streams: byte-identical results per seed, one elected
//! compile per workload with the real engine, one NS compile per container that reached its
//! threshold, the shape of IGN's cost reduction, and clear errors for bad calibration files.

use ignite_simnet::paper::params::{Workload, calibration_set, paper_set};
use ignite_simnet::paper::strategies::{self, CONTAINERS};
use ignite_simnet::paper::{Figure5, Figure5Config, Figure5Error, output, run};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ignite-figure5-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The paper set on short streams, without the sensitivity sweep or the calibration set.
fn short(seed: u64, requests: &[usize]) -> Figure5Config {
    let mut c = Figure5Config::new(seed);
    c.requests = requests.to_vec();
    c.sensitivity = false;
    c
}

fn json(f: &Figure5, name: &str) -> Vec<u8> {
    let dir = scratch(name);
    output::write(&dir, f).expect("writes");
    let bytes = std::fs::read(dir.join("figure5.json")).unwrap();
    assert!(dir.join("figure5.csv").exists());
    assert!(dir.join("figure5_hash_cost.svg").exists());
    assert!(dir.join("figure5_cost_reduction.svg").exists());
    std::fs::remove_dir_all(dir).unwrap();
    bytes
}

#[test]
fn same_seed_same_bytes_another_seed_other_bytes() {
    let hash = |seed| {
        let mut c = short(seed, &[50, 200, 400]);
        c.workloads.truncate(1);
        run(&c, &[], |_| {}).expect("runs")
    };
    let a = json(&hash(3), "a");
    assert_eq!(a, json(&hash(3), "b"), "same seed, same bytes");
    assert_ne!(a, json(&hash(4), "other"), "another seed, another run");
}

#[test]
fn ign_compiles_once_per_workload() {
    // 400 requests last about 8 s: the fleet crosses each threshold after about 1 s and the
    // elected peer's code is compiled and spread within a few seconds more.
    let f = run(&short(3, &[50, 200, 400]), &[], |_| {}).expect("runs");
    assert_eq!(f.workloads.len(), 3);
    for w in &f.workloads {
        assert_eq!(w.ign_compiles, 1, "{}: one elected compile", w.name);
        assert!(w.ign_installs.installed > 0, "{}", w.name);
        let last = w.points.last().unwrap();
        assert_eq!(last.absolute.ign.compiles, 1);
        assert!(last.absolute.ign.hot_requests > 0);
        // No container reaches 30 requests of its own in 8 s: NS and CS never compile.
        assert_eq!(last.absolute.ns.compiles, 0);
        assert_eq!(last.absolute.ns.hot_requests, 0);
        assert_eq!(last.cs.cost_reduction, 1.0);
        assert!(last.ign.cost_reduction > 1.0, "{}: {:?}", w.name, last);
        // After 50 requests (1 s) nothing has been compiled anywhere: identical strategies.
        assert_eq!(w.points[0].ign.cost_reduction, 1.0);
        assert_eq!(w.points[0].ign.latency_reduction, 1.0);
    }
}

#[test]
fn ns_compiles_once_per_container_that_reached_its_threshold() {
    let stream = strategies::stream(1, 3_000);
    for w in paper_set() {
        let mut per = vec![0u64; CONTAINERS as usize];
        for r in &stream {
            per[r.container as usize] += 1;
        }
        let reached = per.iter().filter(|&&n| n >= w.hot_after).count();
        assert!(reached > 0, "{}: some containers reached their threshold", w.name);
        let ns = strategies::ns(&stream, &w);
        assert_eq!(ns.compiles_done_us.len(), reached, "{}", w.name);
        let cs = strategies::cs(&stream, &w);
        assert!(!cs.compiles_done_us.is_empty() && cs.compiles_done_us.len() < reached);
    }
}

#[test]
fn cost_reduction_rises_then_falls_back_toward_one() {
    // A workload whose containers reach their own threshold quickly (after 4 requests, about
    // 4 s), so that NS catches up within a short stream.
    let w = Workload {
        name: "quick".into(),
        cold_init_ms: 800.0,
        warm_ms: 100.0,
        hot_ms: 10.0,
        hot_after: 4,
        compile_ms: 100.0,
        artifact_bytes: 4_096,
    };
    let mut c = short(5, &[150, 300, 600, 1_200]);
    c.workloads = vec![w];
    let f = run(&c, &[], |_| {}).expect("runs");
    let r: Vec<f64> = f.workloads[0].points.iter().map(|p| p.ign.cost_reduction).collect();
    let peak = r.iter().copied().fold(f64::MIN, f64::max);
    assert!(r[0] > 1.0, "IGN is hot before NS at the smallest count: {r:?}");
    assert!(r[r.len() - 1] < peak, "the reduction falls from its peak: {r:?}");
    assert!(r[r.len() - 1] > 1.0, "and stays above 1: {r:?}");
    assert_eq!(f.workloads[0].ign_compiles, 1);
}

#[test]
fn calibration_file_errors_are_errors() {
    let dir = scratch("calibration");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{\"workloads\": [{\"name\": \"hash\"}]}").unwrap();
    let err = calibration_set(&bad).unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
    let err = calibration_set(&dir.join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    // The shipped file reads.
    let set = calibration_set(&Figure5Config::new(1).calibration).expect("calibration/wasm.json");
    assert!(set.len() >= 3);
    assert!(matches!(run(&short(1, &[]), &[], |_| {}), Err(Figure5Error::Requests)));
    std::fs::remove_dir_all(dir).unwrap();
}
