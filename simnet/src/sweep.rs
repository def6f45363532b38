//! The sync-interval sweep: the scale scenario at several profile publication intervals,
//! measuring what sharing profiles costs (bytes per peer) against what it buys (the share
//! of method executions that ran hot, at tier 2) — the "coordination overhead" trade-off.

use crate::report::{ReportError, Series, line_plot_svg, write_csv, write_json};
use crate::scale::{ScaleConfig, ScaleResult, run};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One point of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Publication interval, ms.
    pub sync_interval_ms: u64,
    /// Share of method executions at tier 2.
    pub hot_fraction: f64,
    /// `warm_invocations / warm_min`.
    pub excess_warm: f64,
    /// Bytes sent per peer per second while invocations ran.
    pub bytes_per_peer_per_s: f64,
    /// Messages sent per peer per second while invocations ran.
    pub msgs_per_peer_per_s: f64,
    /// Whether every peer's merged counts equal the recorded totals.
    pub totals_exact: bool,
}

/// Errors of a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A run failed.
    #[error(transparent)]
    Scale(#[from] crate::scale::ScaleError),
    /// Writing results failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Writing results failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn point(interval: u64, c: &ScaleConfig, r: &ScaleResult) -> SweepPoint {
    let executions = (r.invocations * u64::from(c.calls)) as f64;
    SweepPoint {
        sync_interval_ms: interval,
        hot_fraction: 1.0 - r.warm_invocations as f64 / executions.max(1.0),
        excess_warm: r.excess_warm,
        bytes_per_peer_per_s: r.bytes_per_peer_per_s,
        msgs_per_peer_per_s: r.msgs_per_peer_per_s,
        totals_exact: r.totals_exact,
    }
}

/// Runs `base` at each interval of `intervals` and writes `sweep.json`, `sweep.csv`,
/// `sweep_hot.svg` and `sweep_bytes.svg` into `out`. `progress(done, total)` after each run.
pub fn sweep(
    base: &ScaleConfig,
    intervals: &[u64],
    out: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<SweepPoint>, SweepError> {
    let mut points = Vec::new();
    for (i, &ms) in intervals.iter().enumerate() {
        let mut c = base.clone();
        c.sync_interval_ms = ms;
        let r = run(&c, |_| {})?;
        points.push(point(ms, &c, &r));
        progress(i + 1, intervals.len());
    }
    write_json(&out.join("sweep.json"), &points)?;
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                p.sync_interval_ms.to_string(),
                format!("{:.6}", p.hot_fraction),
                format!("{:.6}", p.excess_warm),
                format!("{:.1}", p.bytes_per_peer_per_s),
                format!("{:.1}", p.msgs_per_peer_per_s),
                p.totals_exact.to_string(),
            ]
        })
        .collect();
    write_csv(
        &out.join("sweep.csv"),
        &[
            "sync_interval_ms",
            "hot_fraction",
            "excess_warm",
            "bytes_per_peer_per_s",
            "msgs_per_peer_per_s",
            "totals_exact",
        ],
        &rows,
    )?;
    let series = |name: &str, f: fn(&SweepPoint) -> f64| Series {
        name: name.to_string(),
        points: points.iter().map(|p| (p.sync_interval_ms as f64, f(p))).collect(),
    };
    line_plot_svg(
        &out.join("sweep_hot.svg"),
        "Hot fraction vs sync interval",
        "sync interval (ms)",
        "share of method executions at tier 2",
        &[series("IGN", |p| p.hot_fraction)],
        true,
    )?;
    line_plot_svg(
        &out.join("sweep_bytes.svg"),
        "Bytes per peer vs sync interval",
        "sync interval (ms)",
        "bytes per peer per second",
        &[series("IGN", |p| p.bytes_per_peer_per_s)],
        true,
    )?;
    Ok(points)
}
