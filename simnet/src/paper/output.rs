//! The result files of the Figure 5 experiment (`figure5.json`, `figure5.csv`, SVG plots)
//! and the comparison table with the paper's numbers.

use super::{Figure5, Figure5Error, Point, WorkloadResult};
use crate::report::{Series, line_plot_svg, write_csv, write_json};
use std::fmt::Write as _;
use std::path::Path;

/// The paper's reported reductions of IGN over NS: (workload, cost, latency); `None` where
/// the paper gives no number (WordCount).
pub const PAPER: [(&str, Option<f64>, Option<f64>); 3] = [
    ("hash", Some(5.5), Some(14.9)),
    ("html", Some(1.26), Some(1.37)),
    ("wordcount", None, None),
];

/// CSV header: one row per set × workload × requests × strategy.
const CSV_HEADER: [&str; 10] = [
    "set",
    "workload",
    "requests",
    "strategy",
    "cost_s",
    "median_ms",
    "compiles",
    "hot_requests",
    "cost_reduction",
    "latency_reduction",
];

fn csv_rows(set: &str, results: &[WorkloadResult], rows: &mut Vec<Vec<String>>) {
    for w in results {
        for p in &w.points {
            let a = &p.absolute;
            let strategies = [
                ("ns", &a.ns, 1.0, 1.0),
                ("cs", &a.cs, p.cs.cost_reduction, p.cs.latency_reduction),
                ("ign", &a.ign, p.ign.cost_reduction, p.ign.latency_reduction),
            ];
            for (name, m, cost_r, lat_r) in strategies {
                rows.push(vec![
                    set.to_string(),
                    w.name.clone(),
                    p.requests.to_string(),
                    name.to_string(),
                    format!("{:.6}", m.cost_s),
                    format!("{:.6}", m.median_ms),
                    m.compiles.to_string(),
                    m.hot_requests.to_string(),
                    format!("{cost_r:.6}"),
                    format!("{lat_r:.6}"),
                ]);
            }
        }
    }
}

fn plots(out: &Path, prefix: &str, label: &str, results: &[WorkloadResult]) -> Result<(), Figure5Error> {
    type Get = fn(&Point) -> f64;
    for w in results {
        let series = |f: [(&str, Get); 3]| -> Vec<Series> {
            f.iter()
                .map(|(name, get)| Series {
                    name: (*name).to_string(),
                    points: w.points.iter().map(|p| (p.requests as f64, get(p))).collect(),
                })
                .collect()
        };
        line_plot_svg(
            &out.join(format!("{prefix}{}_cost.svg", w.name)),
            &format!("{label}{}: cost (total CPU time)", w.name),
            "requests",
            "CPU time (s)",
            &series([
                ("NS", |p| p.absolute.ns.cost_s),
                ("CS", |p| p.absolute.cs.cost_s),
                ("IGN", |p| p.absolute.ign.cost_s),
            ]),
            true,
        )?;
        line_plot_svg(
            &out.join(format!("{prefix}{}_latency.svg", w.name)),
            &format!("{label}{}: median request latency", w.name),
            "requests",
            "median latency (ms)",
            &series([
                ("NS", |p| p.absolute.ns.median_ms),
                ("CS", |p| p.absolute.cs.median_ms),
                ("IGN", |p| p.absolute.ign.median_ms),
            ]),
            true,
        )?;
    }
    // The paper's Figure 5 itself: IGN's reductions over NS, one line per workload.
    let reduction = |get: fn(&Point) -> f64| -> Vec<Series> {
        results
            .iter()
            .map(|w| Series {
                name: w.name.clone(),
                points: w.points.iter().map(|p| (p.requests as f64, get(p))).collect(),
            })
            .collect()
    };
    line_plot_svg(
        &out.join(format!("{prefix}cost_reduction.svg")),
        &format!("{label}IGN cost reduction over NS"),
        "requests",
        "NS cost / IGN cost",
        &reduction(|p| p.ign.cost_reduction),
        true,
    )?;
    line_plot_svg(
        &out.join(format!("{prefix}latency_reduction.svg")),
        &format!("{label}IGN latency reduction over NS"),
        "requests",
        "NS median / IGN median",
        &reduction(|p| p.ign.latency_reduction),
        true,
    )?;
    Ok(())
}

/// Writes `figure5.json`, `figure5.csv` and the plots into `out`: per workload of each set
/// `figure5_<workload>_cost.svg` and `_latency.svg` (NS, CS and IGN against requests), and
/// `figure5_cost_reduction.svg` / `figure5_latency_reduction.svg` (IGN over NS, a line per
/// workload); the calibration set's plots start with `figure5_calibration_`.
pub fn write(out: &Path, f: &Figure5) -> Result<(), Figure5Error> {
    write_json(&out.join("figure5.json"), f)?;
    let mut rows = Vec::new();
    csv_rows("paper", &f.workloads, &mut rows);
    csv_rows("calibration", &f.calibration, &mut rows);
    write_csv(&out.join("figure5.csv"), &CSV_HEADER, &rows)?;
    plots(out, "figure5_", "", &f.workloads)?;
    plots(out, "figure5_calibration_", "calibration: ", &f.calibration)?;
    Ok(())
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v}x"))
}

/// IGN's reduction at the smallest count and its largest over counts (with that count).
fn ours(w: &WorkloadResult, get: fn(&Point) -> f64) -> String {
    let (Some(first), Some(best)) = (
        w.points.first(),
        w.points.iter().max_by(|a, b| get(a).total_cmp(&get(b))),
    ) else {
        return "–".to_string();
    };
    format!(
        "{:.2}x at {}; max {:.2}x at {}",
        get(first),
        first.requests,
        get(best),
        best.requests
    )
}

/// The comparison table: per workload, the paper's cost and latency reductions of IGN over
/// NS and ours (at the smallest request count, and the largest over counts); then the same
/// for the calibration set, which the paper has no numbers for.
pub fn table(f: &Figure5) -> String {
    let mut s = String::new();
    let header = |s: &mut String, title: &str| {
        let _ = writeln!(s, "{title}");
        let _ = writeln!(
            s,
            "| workload | paper cost reduction | ours (IGN/NS) | paper latency reduction | ours (IGN/NS) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
    };
    header(&mut s, "paper parameter set (assumptions):");
    for w in &f.workloads {
        let (cost, latency) = PAPER
            .iter()
            .find(|(n, _, _)| *n == w.name)
            .map_or((None, None), |(_, c, l)| (*c, *l));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            w.name,
            ratio(cost),
            ours(w, |p| p.ign.cost_reduction),
            ratio(latency),
            ours(w, |p| p.ign.latency_reduction)
        );
    }
    header(&mut s, "\ncalibration set (calibration/wasm.json):");
    for w in &f.calibration {
        let _ = writeln!(
            s,
            "| {} | – | {} | – | {} |",
            w.name,
            ours(w, |p| p.ign.cost_reduction),
            ours(w, |p| p.ign.latency_reduction)
        );
    }
    s
}
