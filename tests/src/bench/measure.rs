//! What a run measured, read the same way from any generator: aefm-load's `--json` report when
//! the command wrote one (exact, with its start time and warm-up), else the text report on stdout
//! through [`super::wrkparse`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::model::PERCENTILES;
use super::wrkparse::{self, Block};

/// The figures the benchmarks use. Latencies in µs, keyed by the names of
/// [`PERCENTILES`] (`p50` … `max`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measured {
    /// Completed requests.
    pub requests: u64,
    /// Run time as the generator reports it, s.
    pub runtime_s: f64,
    /// Requests/sec as reported.
    pub achieved: f64,
    /// Errors: socket errors and non-2xx responses (and aefm-load's own kinds).
    pub errors: u64,
    /// Corrected latencies (wrk 4's block when there is no corrected one).
    pub corrected_us: BTreeMap<String, f64>,
    /// Uncorrected latencies (`-U`).
    pub uncorrected_us: BTreeMap<String, f64>,
    /// Start of the run, wall-clock s (aefm-load's JSON only).
    pub start_time: Option<f64>,
    /// Warm-up discarded, s (aefm-load's JSON only).
    pub warmup_s: Option<f64>,
    /// The report has wrk2's calibration lines (it discarded ~10 s).
    pub calibrated: bool,
}

impl Measured {
    /// A corrected percentile in seconds.
    pub fn corrected_s(&self, name: &str) -> Option<f64> {
        self.corrected_us.get(name).map(|us| us / 1e6)
    }

    /// An uncorrected percentile in seconds.
    pub fn uncorrected_s(&self, name: &str) -> Option<f64> {
        self.uncorrected_us.get(name).map(|us| us / 1e6)
    }
}

/// From aefm-load's `--json` document.
pub fn from_json(doc: &Value) -> Option<Measured> {
    let s = &doc["summary"];
    let stats = |which: &str| -> BTreeMap<String, f64> {
        let keys = ["p50", "p75", "p90", "p99", "p99_9", "p99_99", "max"];
        PERCENTILES
            .iter()
            .zip(keys)
            .filter_map(|(&(name, _), k)| {
                Some((name.to_string(), doc[which]["stats"][k].as_f64()?))
            })
            .collect()
    };
    let errors = s["errors"]
        .as_object()
        .map_or(0, |e| e.values().filter_map(Value::as_u64).sum());
    Some(Measured {
        requests: s["requests"].as_u64()?,
        runtime_s: s["duration_us"].as_f64()? / 1e6,
        achieved: s["achieved_rate"].as_f64()?,
        errors,
        corrected_us: stats("corrected"),
        uncorrected_us: stats("uncorrected"),
        start_time: doc["start_time"].as_f64(),
        warmup_s: doc["warmup_us"].as_f64().map(|us| us / 1e6),
        calibrated: false,
    })
}

/// From a wrk / wrk2 / aefm-load text report.
pub fn from_text(text: &str) -> Measured {
    let r = wrkparse::parse(text);
    let block = |kind: Block| -> BTreeMap<String, f64> {
        PERCENTILES
            .iter()
            .filter_map(|&(name, q)| Some((name.to_string(), r.percentile(kind, q * 100.0)?)))
            .collect()
    };
    let mut corrected = block(Block::Corrected);
    if corrected.is_empty() {
        corrected = block(Block::Wrk);
    }
    Measured {
        requests: r.requests.unwrap_or(0),
        runtime_s: r.runtime_s.unwrap_or(0.0),
        achieved: r.requests_per_sec.unwrap_or(0.0),
        errors: r.errors(),
        corrected_us: corrected,
        uncorrected_us: block(Block::Uncorrected),
        start_time: None,
        warmup_s: None,
        calibrated: !r.calibration.is_empty(),
    }
}

/// The JSON report at `path` if the run wrote one, else stdout's text report.
pub fn measure(json_path: Option<&std::path::Path>, stdout: &str) -> Measured {
    let doc = json_path
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    doc.as_ref()
        .and_then(from_json)
        .unwrap_or_else(|| from_text(stdout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_aefm_load_json() {
        let doc = json!({"start_time": 100.5, "warmup_us": 10_000_000u64,
            "summary": {"requests": 35000, "duration_us": 35_000_000u64, "achieved_rate": 1000.0,
                "errors": {"connect": 0, "read": 1, "write": 0, "timeout": 2, "status": 0}},
            "corrected": {"stats": {"p50": 900, "p90": 500_000, "max": 4_000_000}},
            "uncorrected": {"stats": {"p50": 80}}});
        let m = from_json(&doc).unwrap();
        assert_eq!((m.requests, m.errors, m.warmup_s), (35000, 3, Some(10.0)));
        assert_eq!(m.corrected_s("p90"), Some(0.5));
        assert_eq!(m.corrected_s("max"), Some(4.0));
        assert_eq!(m.uncorrected_s("p50"), Some(80e-6));
        assert_eq!(m.corrected_s("p75"), None);
    }

    #[test]
    fn falls_back_to_the_text_report() {
        let text = "  Thread calibration: mean lat.: 0.819ms, rate sampling interval: 10ms\n\
                    Latency Distribution (HdrHistogram - Recorded Latency)\n 90.000%    2.05s\n\
                    100.000%    5.00s\n---\n  10 requests in 1.00s, 1.00KB read\n";
        let m = measure(Some(std::path::Path::new("/nonexistent/x.json")), text);
        assert_eq!(m.corrected_s("p90"), Some(2.05));
        assert_eq!(m.corrected_s("max"), Some(5.0));
        assert!(m.calibrated);
        assert_eq!(m.requests, 10);
    }
}
