//! Parameter sets of the Figure 5 experiment: per workload, the latencies of a cold start,
//! of warm (unoptimized) and hot (optimized) requests, the requests before a container's
//! code turns hot, the compile time and the artifact size.
//!
//! Two sets exist:
//! - [`paper_set`]: **assumptions**, fixed in code before any result was looked at and
//!   never tuned to reproduce the paper's numbers. They sit inside the ranges the paper
//!   reports for AWS Lambda (hot code 3.3-72x faster than warm on Java; WordCount's JIT
//!   speedup 55x on Java); the paper does not publish its simulator's parameters.
//! - [`calibration_set`]: read from the wasm host's calibration file
//!   (`calibration/wasm.json`, written by `ignite-wasm`'s `calibrate` binary), whose numbers
//!   are measured on wasmtime's tiers.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The parameters of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Workload name (`hash`, `html`, `wordcount`, `thumbnail`).
    pub name: String,
    /// Cold start cost on top of the first request's service time, ms.
    pub cold_init_ms: f64,
    /// Service time of a request running warm (unoptimized) code, ms.
    pub warm_ms: f64,
    /// Service time of a request running hot (optimized) code, ms.
    pub hot_ms: f64,
    /// Requests (per container without profile sharing, fleet-wide with it) before the code
    /// is compiled.
    pub hot_after: u64,
    /// CPU time of one compile of the hot code, ms.
    pub compile_ms: f64,
    /// Size of the compiled artifact, bytes.
    pub artifact_bytes: u64,
}

impl Workload {
    /// Checks that every value is usable: finite, non-negative times, positive warm and hot
    /// service times, `hot_after >= 1`.
    pub fn validate(&self) -> Result<(), String> {
        let times = [
            ("cold_init_ms", self.cold_init_ms),
            ("warm_ms", self.warm_ms),
            ("hot_ms", self.hot_ms),
            ("compile_ms", self.compile_ms),
        ];
        for (field, v) in times {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{field} = {v} is not a finite non-negative time"));
            }
        }
        if self.warm_ms <= 0.0 || self.hot_ms <= 0.0 {
            return Err("warm_ms and hot_ms must be positive".into());
        }
        if self.hot_after == 0 {
            return Err("hot_after must be at least 1".into());
        }
        Ok(())
    }

    /// `warm_ms / hot_ms`.
    pub fn speedup(&self) -> f64 {
        self.warm_ms / self.hot_ms
    }

    /// Compile time in µs (rounded to the nearest µs).
    pub fn compile_us(&self) -> u64 {
        (self.compile_ms * 1_000.0).round() as u64
    }
}

/// Artifact size assumed for the paper set (the paper gives none): 64 KiB.
pub const PAPER_ARTIFACT_BYTES: u64 = 64 * 1024;

/// Requests before the code turns hot in the calibration set (the calibration file measures
/// tiers, not a JIT's warm-up policy): 50, like the paper set's Hash and HTML.
pub const CALIBRATION_HOT_AFTER: u64 = 50;

/// The paper set: assumptions within the paper's reported ranges, fixed before any result
/// was looked at (see the module documentation).
///
/// | workload  | cold init | warm     | hot   | speedup | hot after | compile |
/// |-----------|-----------|----------|-------|---------|-----------|---------|
/// | hash      | 800 ms    | 250 ms   | 10 ms | 25x     | 50        | 400 ms  |
/// | html      | 800 ms    | 66 ms    | 20 ms | 3.3x    | 50        | 300 ms  |
/// | wordcount | 800 ms    | 1,100 ms | 20 ms | 55x     | 30        | 500 ms  |
pub fn paper_set() -> Vec<Workload> {
    let w = |name: &str, warm_ms: f64, hot_ms: f64, hot_after: u64, compile_ms: f64| Workload {
        name: name.to_string(),
        cold_init_ms: 800.0,
        warm_ms,
        hot_ms,
        hot_after,
        compile_ms,
        artifact_bytes: PAPER_ARTIFACT_BYTES,
    };
    vec![
        w("hash", 250.0, 10.0, 50, 400.0),
        w("html", 66.0, 20.0, 50, 300.0),
        w("wordcount", 1_100.0, 20.0, 30, 500.0),
    ]
}

/// Default path of the calibration file: `calibration/wasm.json` at the workspace root.
pub fn default_calibration_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../calibration/wasm.json")
}

/// Why the calibration set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// The file could not be read.
    #[error("cannot read calibration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a calibration file (bad JSON or missing fields).
    #[error("malformed calibration file {path}: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A required workload is missing or has unusable values.
    #[error("calibration file {path}: workload `{workload}`: {problem}")]
    Workload {
        /// The file.
        path: PathBuf,
        /// The workload.
        workload: String,
        /// What is wrong.
        problem: String,
    },
}

/// The fields of `calibration/wasm.json` this experiment reads (others are ignored).
#[derive(Deserialize)]
struct File {
    workloads: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    compile_ms: CompileMs,
    cold_us: ColdUs,
    latency_us: LatencyUs,
    #[serde(default)]
    artifact_bytes: Vec<u64>,
}

#[derive(Deserialize)]
struct CompileMs {
    tier2_generic: f64,
}

#[derive(Deserialize)]
struct ColdUs {
    local_compile: f64,
}

#[derive(Deserialize)]
struct LatencyUs {
    tier0: f64,
    tier2_generic: f64,
}

/// Workloads taken from the calibration file, in this order; `thumbnail` only if present.
const REQUIRED: [&str; 3] = ["hash", "html", "wordcount"];
const OPTIONAL: [&str; 1] = ["thumbnail"];

/// Reads the calibration set from `path`: per workload, warm = `latency_us.tier0`, hot =
/// `latency_us.tier2_generic`, cold init = `cold_us.local_compile - latency_us.tier0`
/// (clamped at 0), compile = `compile_ms.tier2_generic`, hot after =
/// [`CALIBRATION_HOT_AFTER`], artifact = the tier-2 size in `artifact_bytes` (the third
/// entry; [`PAPER_ARTIFACT_BYTES`] when absent).
pub fn calibration_set(path: &Path) -> Result<Vec<Workload>, CalibrationError> {
    let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_calibration(&text, path)
}

/// [`calibration_set`] on the file's text (`path` only names it in errors).
pub fn parse_calibration(text: &str, path: &Path) -> Result<Vec<Workload>, CalibrationError> {
    let file: File = serde_json::from_str(text).map_err(|source| CalibrationError::Malformed {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (name, required) in REQUIRED
        .iter()
        .map(|n| (n, true))
        .chain(OPTIONAL.iter().map(|n| (n, false)))
    {
        let Some(e) = file.workloads.iter().find(|e| e.name == *name) else {
            if required {
                return Err(CalibrationError::Workload {
                    path: path.to_path_buf(),
                    workload: name.to_string(),
                    problem: "missing".into(),
                });
            }
            continue;
        };
        let w = Workload {
            name: e.name.clone(),
            cold_init_ms: ((e.cold_us.local_compile - e.latency_us.tier0) / 1_000.0).max(0.0),
            warm_ms: e.latency_us.tier0 / 1_000.0,
            hot_ms: e.latency_us.tier2_generic / 1_000.0,
            hot_after: CALIBRATION_HOT_AFTER,
            compile_ms: e.compile_ms.tier2_generic,
            artifact_bytes: e.artifact_bytes.get(2).copied().unwrap_or(PAPER_ARTIFACT_BYTES),
        };
        w.validate().map_err(|problem| CalibrationError::Workload {
            path: path.to_path_buf(),
            workload: name.to_string(),
            problem,
        })?;
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_set_is_valid_and_as_documented() {
        let set = paper_set();
        assert_eq!(set.len(), 3);
        for w in &set {
            w.validate().unwrap();
        }
        assert_eq!(set[0].speedup(), 25.0);
        assert!((set[1].speedup() - 3.3).abs() < 1e-9);
        assert_eq!(set[2].speedup(), 55.0);
    }

    #[test]
    fn calibration_maps_fields_and_rejects_bad_files() {
        let text = r#"{"workloads":[
            {"name":"hash","compile_ms":{"tier2_generic":0.5},"cold_us":{"local_compile":3000},
             "latency_us":{"tier0":2000,"tier2_generic":250},"artifact_bytes":[1,2,3]},
            {"name":"html","compile_ms":{"tier2_generic":1},"cold_us":{"local_compile":100},
             "latency_us":{"tier0":200,"tier2_generic":50}},
            {"name":"wordcount","compile_ms":{"tier2_generic":1},"cold_us":{"local_compile":900},
             "latency_us":{"tier0":800,"tier2_generic":40}}]}"#;
        let p = Path::new("x.json");
        let set = parse_calibration(text, p).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set[0].warm_ms, 2.0);
        assert_eq!(set[0].hot_ms, 0.25);
        assert_eq!(set[0].cold_init_ms, 1.0);
        assert_eq!(set[0].artifact_bytes, 3);
        assert_eq!(set[1].cold_init_ms, 0.0, "clamped");
        assert_eq!(set[1].artifact_bytes, PAPER_ARTIFACT_BYTES);
        assert!(matches!(
            parse_calibration("{", p),
            Err(CalibrationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_calibration(r#"{"workloads":[]}"#, p),
            Err(CalibrationError::Workload { .. })
        ));
    }
}
