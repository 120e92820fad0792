//! Files of one test case: the load report (JSON), the HdrHistogram interval log, the percentile
//! spectrum (wrk2's `--latency` text), and the per-second latency series.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::{write_atomic, ResultsError};
use crate::load::LoadReport;

/// File names inside a case directory.
pub const LOADGEN_JSON: &str = "loadgen.json";
/// HdrHistogram V2 interval log of corrected latency (µs), one interval per second.
pub const HLOG: &str = "latency.hlog";
/// Percentile spectrum of corrected latency, milliseconds.
pub const SPECTRUM: &str = "latency_percentiles.txt";
/// The load generator's wrk2-format text report (with the detailed spectrum).
pub const WRK2_TEXT: &str = "loadgen.txt";
/// Per-second series.
pub const PER_SECOND: &str = "latency_per_second.csv";

/// Writes the load files of a case; returns their paths.
pub fn write_load_files(dir: &Path, report: &LoadReport) -> Result<Vec<PathBuf>, ResultsError> {
    let mut out = Vec::new();
    let json = match &report.raw {
        Some(raw) => raw.to_json(),
        None => serde_json::to_string_pretty(report).unwrap_or_default(),
    };
    let p = dir.join(LOADGEN_JSON);
    write_atomic(&p, json.as_bytes())?;
    out.push(p);

    let p = dir.join(HLOG);
    write_atomic(
        &p,
        &interval_log(report).map_err(|message| ResultsError::Format {
            path: p.clone(),
            line: 0,
            message,
        })?,
    )?;
    out.push(p);

    if let Some(raw) = &report.raw {
        let p = dir.join(WRK2_TEXT);
        let text = aefm_loadgen::render_wrk2(
            raw,
            &aefm_loadgen::ReportOptions {
                latency: true,
                ..Default::default()
            },
        );
        write_atomic(&p, text.as_bytes())?;
        out.push(p);
    }

    let p = dir.join(SPECTRUM);
    write_atomic(&p, spectrum(&report.histogram).as_bytes())?;
    out.push(p);

    let p = dir.join(PER_SECOND);
    let mut csv = String::from("second,completed,errors,p50_ms,p90_ms,p99_ms,max_ms\n");
    for s in &report.per_second {
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.3},{:.3},{:.3}",
            s.t,
            s.completed,
            s.errors,
            s.latency.p50_us / 1000.0,
            s.latency.p90_us / 1000.0,
            s.latency.p99_us / 1000.0,
            s.latency.max_us / 1000.0
        );
    }
    write_atomic(&p, csv.as_bytes())?;
    out.push(p);
    Ok(out)
}

/// The HdrHistogram V2 (deflate) interval log: the generator's per-second log when its report
/// is there, else one interval with the whole window.
pub fn interval_log(report: &LoadReport) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    if let Some(raw) = &report.raw {
        aefm_loadgen::write_interval_log(raw, &mut buf).map_err(|e| e.to_string())?;
        return Ok(buf);
    }
    let mut ser = V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .with_base_time(report.started)
        .with_start_time(report.started)
        .add_comment("aefm: corrected latency in microseconds")
        .begin_log_with(&mut buf, &mut ser)
        .map_err(|e| e.to_string())?;
    w.write_histogram(
        &report.histogram,
        Duration::ZERO,
        Duration::from_secs_f64(report.window_s),
        None,
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(buf)
}

/// wrk2's detailed percentile spectrum (values in milliseconds).
pub fn spectrum(h: &Histogram<u64>) -> String {
    let mut s = String::from(
        "  Detailed Percentile spectrum:\n       Value   Percentile   TotalCount 1/(1-Percentile)\n\n",
    );
    if h.is_empty() {
        s.push_str("#[Mean    =        0.000, StdDeviation   =        0.000]\n#[Max     =        0.000, Total count    =            0]\n");
        return s;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(1) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:12.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{:12.3} {:12.6} {:12} {}",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            total,
            inv
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_ends_with_max_and_count() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in [1000u64, 2000, 3000] {
            h.record(v).unwrap();
        }
        let s = spectrum(&h);
        assert!(s.contains("Total count    =            3"), "{s}");
        assert!(s.contains("#[Max     =        3.0"), "{s}");
    }
}
