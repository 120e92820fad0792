//! Load-generator results in long format and as `loadgen_summary.csv`: from aefm-loadgen's report
//! (throughput per second; corrected, uncorrected and send-lag latency percentiles; errors) and,
//! for compatibility, from wrk and wrk2 text reports.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::output::Written;
use crate::output::{csv_field, fmt_f64, Labels, MetricRow};
use crate::wrk::WrkRun;

/// Header of `loadgen_summary.csv`: one row per run and latency kind (`corrected`,
/// `uncorrected`, `send_lag`); latencies in µs; NaN where the source does not report a value.
pub const SUMMARY_HEADER: &str =
    "source,run,kind,requests,errors,duration_s,throughput_rps,mean_us,p50_us,p75_us,p90_us,p99_us,p999_us,p9999_us,max_us";

/// One row of `loadgen_summary.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// `aefm-load`, `wrk`.
    pub source: String,
    /// Run index (several wrk processes per case), from 0.
    pub run: usize,
    /// `corrected`, `uncorrected` or `send_lag`.
    pub kind: String,
    /// Completed requests.
    pub requests: u64,
    /// Errors (socket errors, timeouts, non-2xx/3xx).
    pub errors: u64,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// p50, p75, p90, p99, p99.9, p99.99 and max, µs.
    pub percentiles_us: [f64; 7],
}

fn pct(list: &[(f64, f64)], p: f64) -> f64 {
    list.iter()
        .find(|(q, _)| (q - p).abs() < 1e-9)
        .map_or(f64::NAN, |x| x.1)
}

/// Rows and summary of wrk/wrk2 runs. `end` is the timestamp given to the long rows (the end of the
/// case's window; wrk prints no per-second series).
pub fn from_wrk(runs: &[WrkRun], end: f64) -> (Vec<MetricRow>, Vec<SummaryRow>) {
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let mut base = Labels::new();
        base.insert("run".into(), i.to_string());
        let mut push = |metric: &str, extra: &[(&str, String)], value: f64| {
            let mut labels = base.clone();
            for (k, v) in extra {
                labels.insert((*k).into(), v.clone());
            }
            rows.push(MetricRow {
                timestamp: end,
                source: "wrk".into(),
                metric: metric.into(),
                labels,
                value,
            });
        };
        push("requests", &[], r.requests as f64);
        push("throughput_rps", &[], r.requests_per_sec);
        push("bytes_read", &[], r.bytes_read);
        for (k, v) in ["connect", "read", "write", "timeout"]
            .iter()
            .zip(r.socket_errors)
        {
            push("errors", &[("type", (*k).into())], v as f64);
        }
        push(
            "errors",
            &[("type", "non_2xx_3xx".into())],
            r.non_2xx as f64,
        );
        for (kind, list) in [("corrected", &r.corrected), ("uncorrected", &r.uncorrected)] {
            for (p, v) in list.iter() {
                push(
                    "latency_us",
                    &[("kind", kind.into()), ("percentile", fmt_f64(*p))],
                    *v,
                );
            }
            if list.is_empty() && kind == "uncorrected" {
                continue;
            }
            summary.push(SummaryRow {
                source: "wrk".into(),
                run: i,
                kind: kind.into(),
                requests: r.requests,
                errors: r.errors(),
                duration_s: r.runtime_secs,
                throughput_rps: r.requests_per_sec,
                mean_us: if kind == "corrected" {
                    r.latency_mean_us
                } else {
                    f64::NAN
                },
                percentiles_us: [
                    pct(list, 50.0),
                    pct(list, 75.0),
                    pct(list, 90.0),
                    pct(list, 99.0),
                    pct(list, 99.9),
                    pct(list, 99.99),
                    if list.is_empty() {
                        r.latency_max_us
                    } else {
                        pct(list, 100.0)
                    },
                ],
            });
        }
    }
    (rows, summary)
}

/// Writes a summary file (`loadgen_summary.csv`, `wrk_summary.csv`) with [`SUMMARY_HEADER`].
pub fn write_summary_named(dir: &Path, name: &str, rows: &[SummaryRow]) -> Result<PathBuf> {
    crate::output::write_atomic(dir, name, |w| {
        writeln!(w, "{SUMMARY_HEADER}")?;
        for r in rows {
            csv_field(w, &r.source)?;
            write!(
                w,
                ",{},{},{},{},{},{},{}",
                r.run,
                r.kind,
                r.requests,
                r.errors,
                fmt_f64(r.duration_s),
                fmt_f64(r.throughput_rps),
                fmt_f64(r.mean_us)
            )?;
            for p in r.percentiles_us {
                write!(w, ",{}", fmt_f64(p))?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// aefm-loadgen's report (its `--json` file).
pub type LoadgenReport = aefm_loadgen::Report;

/// Requests the generator sent (the denominator of trace coverage).
pub fn requests_sent(report: &LoadgenReport) -> u64 {
    report.summary.sent.max(report.summary.requests)
}

/// Rows and summary of an aefm-loadgen report: per second `throughput_rps` (completed),
/// `sent_rps`, `errors` and corrected `latency_us` (p50, p99, max); for the whole run
/// `latency_us` of every kind at p50…max and `latency_mean_us`, `requests`, `errors` per type.
pub fn from_report(r: &LoadgenReport) -> (Vec<MetricRow>, Vec<SummaryRow>) {
    let mut rows = Vec::new();
    let src = "loadgen";
    let mut push = |t: f64, metric: &str, extra: &[(&str, &str)], value: f64| {
        let labels: Labels = extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        rows.push(MetricRow {
            timestamp: t,
            source: src.into(),
            metric: metric.into(),
            labels,
            value,
        });
    };
    for s in &r.per_second {
        let t = r.start_time + s.t as f64;
        let secs = (s.duration_us as f64 / 1e6).max(1e-6);
        push(t, "throughput_rps", &[], s.completed as f64 / secs);
        push(t, "sent_rps", &[], s.sent as f64 / secs);
        push(t, "errors", &[("type", "all")], s.errors as f64);
        push(
            t,
            "latency_us",
            &[("kind", "corrected"), ("percentile", "50")],
            s.p50 as f64,
        );
        push(
            t,
            "latency_us",
            &[("kind", "corrected"), ("percentile", "99")],
            s.p99 as f64,
        );
        push(
            t,
            "latency_us",
            &[("kind", "corrected"), ("percentile", "100")],
            s.max as f64,
        );
    }
    let sm = &r.summary;
    let duration_s = sm.duration_us as f64 / 1e6;
    let end = r.start_time + duration_s;
    push(
        end,
        "requests",
        &[("type", "completed")],
        sm.requests as f64,
    );
    push(end, "requests", &[("type", "sent")], sm.sent as f64);
    push(
        end,
        "throughput_rps",
        &[("type", "achieved")],
        sm.achieved_rate,
    );
    push(end, "throughput_rps", &[("type", "target")], sm.target_rate);
    let e = &sm.errors;
    for (k, v) in [
        ("connect", e.connect),
        ("read", e.read),
        ("write", e.write),
        ("timeout", e.timeout),
        ("status", e.status),
    ] {
        push(end, "errors", &[("type", k)], v as f64);
    }
    let mut summary = Vec::new();
    for (kind, h) in [
        ("corrected", &r.corrected),
        ("uncorrected", &r.uncorrected),
        ("send_lag", &r.send_lag),
    ] {
        let p = &h.stats;
        let list = [
            ("50", p.p50),
            ("75", p.p75),
            ("90", p.p90),
            ("99", p.p99),
            ("99.9", p.p99_9),
            ("99.99", p.p99_99),
            ("100", p.max),
        ];
        for (q, v) in list {
            push(
                end,
                "latency_us",
                &[("kind", kind), ("percentile", q)],
                v as f64,
            );
        }
        push(end, "latency_mean_us", &[("kind", kind)], p.mean);
        summary.push(SummaryRow {
            source: "aefm-load".into(),
            run: 0,
            kind: kind.into(),
            requests: sm.requests,
            errors: e.total(),
            duration_s,
            throughput_rps: sm.achieved_rate,
            mean_us: p.mean,
            percentiles_us: list.map(|(_, v)| v as f64),
        });
    }
    (rows, summary)
}

/// Writes `loadgen.csv` and `loadgen_summary.csv` from an aefm-loadgen report.
pub fn write_report(dir: &Path, report: &LoadgenReport) -> Result<Vec<Written>> {
    let (rows, summary) = from_report(report);
    Ok(vec![
        Written {
            path: crate::output::write_long(dir, "loadgen.csv", &rows)?,
            what: format!(
                "load generator: {} seconds of throughput and latency",
                report.per_second.len()
            ),
        },
        Written {
            path: write_summary_named(dir, "loadgen_summary.csv", &summary)?,
            what: "corrected, uncorrected and send-lag latency percentiles, throughput, errors"
                .into(),
        },
    ])
}

/// Parses a report file: aefm-loadgen JSON (starts with `{`) or wrk/wrk2 text. Returns the rows,
/// the summary and the source name (`aefm-load` or `wrk`).
pub fn read_any(
    path: &Path,
    end_hint: f64,
) -> Result<(Vec<MetricRow>, Vec<SummaryRow>, &'static str)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| crate::error::Error::io("reading", path, e))?;
    if text.trim_start().starts_with('{') {
        let r = LoadgenReport::from_json(&text).map_err(|e| crate::error::Error::Parse {
            path: path.display().to_string(),
            line: e.line(),
            message: format!("not an aefm-load --json report: {e}"),
        })?;
        let (rows, summary) = from_report(&r);
        Ok((rows, summary, "aefm-load"))
    } else {
        let runs = crate::wrk::parse(&text, &path.display().to_string())?;
        let (rows, summary) = from_wrk(&runs, end_hint);
        Ok((rows, summary, "wrk"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aefm_loadgen::histogram::{new_histogram, record};
    use aefm_loadgen::report::{HistogramReport, Second, Summary};

    fn report() -> LoadgenReport {
        let (mut c, mut u, mut l) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..=1000u64 {
            record(&mut c, v * 10);
            record(&mut u, v);
            record(&mut l, v / 10);
        }
        let mut s1 = new_histogram();
        record(&mut s1, 500);
        let summary = Summary {
            target_rate: 1000.0,
            achieved_rate: 500.0,
            duration_us: 2_000_000,
            requests: 1000,
            sent: 1002,
            ..Default::default()
        };
        let mut r = LoadgenReport {
            tool: "aefm-load test".into(),
            url: "http://127.0.0.1:1/".into(),
            threads: 1,
            connections: 1,
            model: Default::default(),
            warmup_us: 0,
            start_time: 1000.0,
            summary,
            corrected: HistogramReport::new(c),
            uncorrected: HistogramReport::new(u),
            send_lag: HistogramReport::new(l),
            requests_per_thread: HistogramReport::default(),
            calibration: vec![],
            per_second: vec![
                Second::new(0, 1_000_000, 501, 500, 0, s1.clone()),
                Second::new(1, 500_000, 501, 500, 3, s1),
            ],
            traced: None,
        };
        r.summary.errors.timeout = 3;
        r
    }

    #[test]
    fn report_becomes_per_second_rows_and_three_summary_rows() {
        let r = report();
        assert_eq!(requests_sent(&r), 1002);
        let (rows, summary) = from_report(&r);
        let tput: Vec<(f64, f64)> = rows
            .iter()
            .filter(|x| x.metric == "throughput_rps" && x.labels.is_empty())
            .map(|x| (x.timestamp, x.value))
            .collect();
        // The second interval is half a second long: 500 responses in it are 1000/s.
        assert_eq!(tput, vec![(1000.0, 500.0), (1001.0, 1000.0)]);
        let kinds: Vec<&str> = summary.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["corrected", "uncorrected", "send_lag"]);
        let c = &summary[0];
        assert_eq!(
            (c.requests, c.errors, c.duration_s, c.throughput_rps),
            (1000, 3, 2.0, 500.0)
        );
        // p50 of 10..=10000 step 10 is about 5000 µs (HdrHistogram precision: 3 digits).
        assert!(
            (c.percentiles_us[0] - 5000.0).abs() <= 10.0,
            "{:?}",
            c.percentiles_us
        );
        assert!(
            (summary[1].percentiles_us[3] - 990.0).abs() <= 2.0,
            "{:?}",
            summary[1].percentiles_us
        );
        assert!(rows.iter().any(|x| x.metric == "errors"
            && x.labels.get("type").map(String::as_str) == Some("timeout")
            && x.value == 3.0));
    }

    #[test]
    fn reads_json_reports_and_wrk_text_and_writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r.json");
        std::fs::write(&json, report().to_json()).unwrap();
        let (rows, summary, source) = read_any(&json, 0.0).unwrap();
        assert_eq!(source, "aefm-load");
        assert!(!rows.is_empty());
        assert_eq!(summary.len(), 3);
        let written = write_report(dir.path(), &report()).unwrap();
        let text = std::fs::read_to_string(&written[1].path).unwrap();
        assert!(text.starts_with(SUMMARY_HEADER));
        assert_eq!(text.lines().count(), 4);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"tool\": 3}").unwrap();
        let e = read_any(&bad, 0.0).unwrap_err().to_string();
        assert!(e.contains("bad.json:1:") && e.contains("aefm-load"), "{e}");
    }
}
