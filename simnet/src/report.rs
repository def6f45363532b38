//! Result files: pretty JSON, CSV, SVG line plots, and the process's peak memory.
//!
//! Every writer is deterministic: the same input gives the same bytes, so result files of
//! two runs with the same seed can be compared with `cmp`. Output types should keep that
//! property too (struct field order, `Vec`/`BTreeMap`, never `HashMap`).

use std::fmt::Write as _;
use std::io;
use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use serde::Serialize;

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Creating the output directory or file failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// plotters failed to lay out or draw the chart.
    #[error("plot error: {0}")]
    Plot(String),
}

/// Creates the parent directory of `path` if it has one.
fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// Writes `value` as pretty-printed JSON followed by a newline, creating the parent
/// directory if needed. Fields come out in declaration order, so the bytes depend only on
/// the value.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    create_parent(path)?;
    std::fs::write(path, bytes)
}

/// Quotes a CSV field if it contains a comma, a quote or a line break (RFC 4180).
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends one CSV record (fields joined by commas, `\n`-terminated).
fn csv_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field.as_ref());
    }
    out.push('\n');
}

/// Writes a CSV file: the header line then one line per row, `\n` line ends, fields quoted
/// only when needed (RFC 4180). Creates the parent directory if needed.
///
/// Fails with [`io::ErrorKind::InvalidInput`] (writing nothing) if a row's length differs
/// from the header's.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != header.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("csv row {i} has {} fields, header has {}", row.len(), header.len()),
        ));
    }
    let mut out = String::new();
    csv_record(&mut out, header);
    for row in rows {
        csv_record(&mut out, row);
    }
    create_parent(path)?;
    std::fs::write(path, out)
}

/// One named line of a plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, drawn in the given order; non-finite points (and, on a log x axis,
    /// points with `x <= 0`) are skipped.
    pub points: Vec<(f64, f64)>,
}

/// Series colours (Tableau 10), cycled.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Plot size in pixels.
const SIZE: (u32, u32) = (960, 600);

fn plot_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Plot(e.to_string())
}

/// `[min, max]` of `values` widened to a non-empty range (`default` when there are none).
fn bounds(values: impl Iterator<Item = f64>, default: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi { default } else { (lo, hi) }
}

/// Writes an SVG line plot of `series` (one colour per series, lines with a dot at each
/// point, a legend with the series names, axis labels and a title), with a logarithmic x
/// axis if `log_x`. Creates the parent directory if needed. The same input gives the same
/// bytes.
pub fn line_plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<(), ReportError> {
    let kept: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!log_x || x > 0.0))
                .collect()
        })
        .collect();
    let all = || kept.iter().flatten();

    let (mut y_lo, mut y_hi) = bounds(all().map(|p| p.1), (0.0, 1.0));
    if y_lo == y_hi {
        y_lo -= 0.5_f64.max(y_lo.abs() * 0.1);
        y_hi += 0.5_f64.max(y_hi.abs() * 0.1);
    } else {
        let pad = (y_hi - y_lo) * 0.05;
        // Keep a zero baseline when all values are non-negative.
        y_lo = if y_lo >= 0.0 {
            0.0_f64.max(y_lo - pad)
        } else {
            y_lo - pad
        };
        y_hi += pad;
    }
    let y_range = y_lo..y_hi;

    create_parent(path)?;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    if log_x {
        let (lo, hi) = bounds(all().map(|p| p.0), (1.0, 10.0));
        let (lo, hi) = if lo == hi { (lo / 2.0, hi * 2.0) } else { (lo, hi) };
        draw_chart(
            &root,
            (lo..hi).log_scale(),
            y_range,
            title,
            x_label,
            y_label,
            series,
            &kept,
        )?;
    } else {
        let (lo, hi) = bounds(all().map(|p| p.0), (0.0, 1.0));
        let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
        draw_chart(&root, lo..hi, y_range, title, x_label, y_label, series, &kept)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Draws the chart on `root` for either kind of x axis.
#[allow(clippy::too_many_arguments)]
fn draw_chart<X>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    x_range: X,
    y_range: Range<f64>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    kept: &[Vec<(f64, f64)>],
) -> Result<(), ReportError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 28))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .max_light_lines(4)
        .x_label_formatter(&|x| short_number(*x))
        .y_label_formatter(&|y| short_number(*y))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(plot_err)?;
    for (i, (s, points)) in series.iter().zip(kept).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(plot_err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(plot_err)?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// A compact axis label: integers without decimals, otherwise up to 4 significant digits.
fn short_number(v: f64) -> String {
    let mut s = String::new();
    if v == v.trunc() && v.abs() < 1e15 {
        let _ = write!(s, "{}", v as i64);
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        let _ = write!(s, "{v:.3e}");
    } else {
        let _ = write!(s, "{}", (v * 1e4).round() / 1e4);
    }
    s
}

/// The process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`), or
/// `None` where that is unavailable (non-Linux systems).
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let mut parts = line["VmHWM:".len()..].split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        let scale = match parts.next() {
            Some("kB") | None => 1024,
            Some("mB") => 1024 * 1024,
            Some("gB") => 1024 * 1024 * 1024,
            Some(_) => return None,
        };
        Some(value * scale)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// A fresh scratch directory under the system temp directory (removed by each test).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ignite-simnet-report-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        peers: u32,
        ratio: f64,
        by_zone: BTreeMap<u32, u64>,
        tail: Option<Vec<f64>>,
    }

    #[test]
    fn json_exact_bytes_and_round_trip() {
        let dir = scratch("json");
        let value = Sample {
            name: "run".into(),
            peers: 3,
            ratio: 0.1,
            by_zone: [(1, 10), (0, 5)].into_iter().collect(),
            tail: None,
        };
        let path = dir.join("nested/out.json");
        write_json(&path, &value).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\n  \"name\": \"run\",\n  \"peers\": 3,\n  \"ratio\": 0.1,\n  \"by_zone\": {\n    \"0\": 5,\n    \"1\": 10\n  },\n  \"tail\": null\n}\n"
        );
        let back: Sample = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        write_json(&path, &value).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn csv_exact_bytes() {
        let dir = scratch("csv");
        let path = dir.join("out.csv");
        let rows = vec![
            vec!["1".to_string(), "plain".to_string()],
            vec!["2".to_string(), "a,b \"q\"".to_string()],
            vec!["3".to_string(), "two\nlines".to_string()],
        ];
        write_csv(&path, &["id", "text"], &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,text\n1,plain\n2,\"a,b \"\"q\"\"\"\n3,\"two\nlines\"\n"
        );
        let bad = vec![vec!["only one".to_string()]];
        let err = write_csv(&dir.join("bad.csv"), &["a", "b"], &bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!dir.join("bad.csv").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn sample_series() -> Vec<Series> {
        vec![
            Series {
                name: "gossip p50".into(),
                points: (1..=20).map(|i| (f64::from(i) * 100.0, f64::from(i).sqrt())).collect(),
            },
            Series {
                name: "lower bound".into(),
                points: (1..=20)
                    .map(|i| (f64::from(i) * 100.0, f64::from(i).ln() + 0.5))
                    .chain([(f64::NAN, 1.0)])
                    .collect(),
            },
        ]
    }

    #[test]
    fn svg_written_deterministic_with_names() {
        let dir = scratch("svg");
        for log_x in [false, true] {
            let a = dir.join(format!("a-{log_x}.svg"));
            let b = dir.join(format!("b-{log_x}.svg"));
            let series = sample_series();
            line_plot_svg(&a, "Propagation", "peers", "time (ms)", &series, log_x).unwrap();
            line_plot_svg(&b, "Propagation", "peers", "time (ms)", &series, log_x).unwrap();
            let bytes_a = std::fs::read(&a).unwrap();
            let bytes_b = std::fs::read(&b).unwrap();
            assert!(!bytes_a.is_empty());
            assert_eq!(bytes_a, bytes_b);
            let text = String::from_utf8(bytes_a).unwrap();
            assert!(text.starts_with("<svg"));
            for s in &series {
                assert!(text.contains(&s.name), "missing {}", s.name);
            }
            assert!(text.contains("Propagation") && text.contains("time (ms)"));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn svg_degenerate_inputs() {
        let dir = scratch("svg-edge");
        line_plot_svg(&dir.join("empty.svg"), "t", "x", "y", &[], false).unwrap();
        let one = [Series {
            name: "single".into(),
            points: vec![(5.0, 5.0)],
        }];
        line_plot_svg(&dir.join("one.svg"), "t", "x", "y", &one, true).unwrap();
        let none = [Series {
            name: "nothing".into(),
            points: vec![],
        }];
        line_plot_svg(&dir.join("none.svg"), "t", "x", "y", &none, true).unwrap();
        assert!(std::fs::metadata(dir.join("none.svg")).unwrap().len() > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(3.0), "3");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(1.0 / 3.0), "0.3333");
    }

    #[test]
    fn peak_rss() {
        let rss = peak_rss_bytes();
        if cfg!(target_os = "linux") {
            assert!(rss.unwrap() > 0);
        } else {
            assert!(rss.is_none());
        }
    }
}
