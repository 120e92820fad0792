//! The wrk2 text report, byte for byte (wrk2's `wrk.c` print functions and HdrHistogram_c's
//! `hdr_percentiles_print`), plus aefm-load's own additions after it.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::histogram::{self, spectrum};
use crate::report::Report;
use crate::units::{format_binary, format_metric, format_time_s, format_time_us};

/// What to print besides the always-present lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// `-L`: the corrected latency distribution block.
    pub latency: bool,
    /// `-U`: also the uncorrected block (implies `latency`).
    pub u_latency: bool,
    /// Print the send-lag line after `Transfer/sec` (aefm-load's addition).
    pub send_lag: bool,
}

/// The two banner lines wrk2 prints before the run.
pub fn render_banner(url: &str, duration_secs: f64, threads: usize, connections: usize) -> String {
    format!(
        "Running {} test @ {}\n  {} threads and {} connections\n",
        format_time_s(duration_secs),
        url,
        threads,
        connections
    )
}

/// wrk's `print_units`: the value right-aligned in `width` minus a pad of up to two spaces
/// (one less per trailing letter), truncated to the field like C's `%*.*s`.
fn units_field(out: &mut String, text: &str, width: usize) {
    let bytes = text.as_bytes();
    let mut pad = 2usize;
    if bytes.last().is_some_and(|b| b.is_ascii_alphabetic()) {
        pad -= 1;
    }
    if bytes.len() >= 2 && bytes[bytes.len() - 2].is_ascii_alphabetic() {
        pad -= 1;
    }
    let w = width - pad;
    let shown = &text[..text.len().min(w)];
    let _ = write!(out, "{shown:>w$}{}", &"  "[..pad]);
}

/// A `Thread Stats` row.
fn stats_row(out: &mut String, name: &str, h: &Histogram<u64>, fmt: fn(f64) -> String) {
    let mean = histogram::mean(h);
    let stdev = histogram::stdev(h);
    let max = histogram::max(h) as f64;
    let _ = write!(out, "    {name:<10}");
    units_field(out, &fmt(mean), 8);
    units_field(out, &fmt(stdev), 10);
    units_field(out, &fmt(max), 9);
    let within = if h.is_empty() {
        0.0
    } else {
        histogram::within_stdev(h, mean, stdev)
    };
    let _ = writeln!(out, "{within:8.2}%");
}

/// HdrHistogram_c's bucket layout for 1 µs to 24 h at 3 significant digits (all our histograms
/// have that shape); the footer prints it.
const BUCKETS: u32 = 27;
const SUB_BUCKETS: u32 = 2048;

/// wrk2's `print_hdr_latency` block.
fn latency_block(out: &mut String, h: &Histogram<u64>, title: &str) {
    let _ = writeln!(out, "  Latency Distribution (HdrHistogram - {title})");
    for p in [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0] {
        let v = histogram::value_at_percentile(h, p);
        let _ = write!(out, "{p:7.3}%");
        units_field(out, &format_time_us(v as f64), 10);
        out.push('\n');
    }
    out.push_str("\n  Detailed Percentile spectrum:\n");
    let _ = write!(
        out,
        "{:>12} {:>12} {:>12} {:>12}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in spectrum(h, 5) {
        let q = row.percentile / 100.0;
        let inv = 1.0 / (1.0 - q);
        let inv = if inv.is_infinite() {
            format!("{:>12}", "inf")
        } else {
            format!("{inv:12.2}")
        };
        let _ = writeln!(
            out,
            "{:12.3} {:12.6} {:12} {}",
            row.value as f64 / 1000.0,
            q,
            row.total_count,
            inv
        );
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (histogram::mean(h), histogram::stdev(h))
    };
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        mean / 1000.0,
        stdev / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        histogram::max(h) as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        BUCKETS, SUB_BUCKETS
    );
    out.push_str("----------------------------------------------------------\n");
}

/// The report as wrk2 prints it after the run (everything after the banner), then aefm-load's
/// additions (send-lag line) when asked.
pub fn render_wrk2(report: &Report, opts: &ReportOptions) -> String {
    let mut out = String::new();
    for c in &report.calibration {
        let _ = writeln!(
            out,
            "  Thread calibration: mean lat.: {:.3}ms, rate sampling interval: {}ms",
            c.mean_latency_ms, c.sampling_interval_ms
        );
    }
    let _ = writeln!(
        out,
        "  Thread Stats{:>6}{:>11}{:>8}{:>12}",
        "Avg", "Stdev", "Max", "+/- Stdev"
    );
    stats_row(&mut out, "Latency", report.corrected(), format_time_us);
    stats_row(
        &mut out,
        "Req/Sec",
        &report.requests_per_thread.histogram,
        format_metric,
    );
    if opts.latency || opts.u_latency {
        latency_block(&mut out, report.corrected(), "Recorded Latency");
    }
    if opts.u_latency {
        out.push('\n');
        latency_block(
            &mut out,
            report.uncorrected(),
            "Uncorrected Latency (measured without taking delayed starts into account)",
        );
    }
    let s = &report.summary;
    let secs = s.duration_us as f64 / 1e6;
    let _ = writeln!(
        out,
        "  {} requests in {}, {}B read",
        s.requests,
        format_time_us(s.duration_us as f64),
        format_binary(s.bytes as f64)
    );
    if s.errors.any_socket() {
        let _ = writeln!(
            out,
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            s.errors.connect, s.errors.read, s.errors.write, s.errors.timeout
        );
    }
    if s.errors.status > 0 {
        let _ = writeln!(out, "  Non-2xx or 3xx responses: {}", s.errors.status);
    }
    // aefm-load's own counters, only when non-zero so that wrk2's text is unchanged otherwise.
    if s.errors.tls > 0 {
        let _ = writeln!(out, "  TLS handshake errors: {}", s.errors.tls);
    }
    if s.errors.protocol > 0 {
        let _ = writeln!(
            out,
            "  Protocol errors (not HTTP or cut short): {}",
            s.errors.protocol
        );
    }
    if s.outstanding > 0 {
        let _ = writeln!(
            out,
            "  {} requests outstanding at the end (sent, not answered)",
            s.outstanding
        );
    }
    if let Some(t) = &report.traced {
        let slowest = t.slowest.first().map_or(String::new(), |r| {
            format!(
                ", slowest {} (trace {})",
                format_time_us(r.latency_us as f64),
                r.trace_id
            )
        });
        let _ = writeln!(
            out,
            "  Traced requests: {} ({:.0}%), {} slowest kept{slowest}",
            t.requests,
            t.share * 100.0,
            t.slowest.len()
        );
    }
    let (rps, bps) = if secs > 0.0 {
        (s.requests as f64 / secs, s.bytes as f64 / secs)
    } else {
        (0.0, 0.0)
    };
    let _ = writeln!(out, "Requests/sec: {rps:9.2}");
    let _ = writeln!(out, "Transfer/sec: {:>10}B", format_binary(bps));
    if opts.send_lag {
        let l = &report.send_lag.stats;
        let _ = writeln!(
            out,
            "Send lag (generator): p50 {}, p99 {}, p99.9 {}, max {}",
            format_time_us(l.p50 as f64),
            format_time_us(l.p99 as f64),
            format_time_us(l.p99_9 as f64),
            format_time_us(l.max as f64)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fields_pad_like_wrk() {
        let mut s = String::new();
        units_field(&mut s, "814.15us", 8);
        assert_eq!(s, "814.15us");
        let mut s = String::new();
        units_field(&mut s, "5.17k", 8);
        assert_eq!(s, "  5.17k ");
        let mut s = String::new();
        units_field(&mut s, "381.44", 10);
        assert_eq!(s, "  381.44  ");
    }

    /// wrk2.md §5.2, second sample: nothing recorded after calibration, false timeouts.
    #[test]
    fn empty_latency_sample_matches_wrk2_byte_for_byte() {
        use crate::histogram::new_histogram;
        use crate::report::{Errors, HistogramReport, Summary};
        let mut reqsec = new_histogram();
        for _ in 0..5 {
            reqsec.record(0).unwrap();
        }
        let report = Report {
            tool: "t".into(),
            url: "http://127.0.0.1:8080/index.html".into(),
            threads: 1,
            connections: 10,
            model: crate::Model::Wrk2,
            warmup_us: 10_000_000,
            start_time: 0.0,
            summary: Summary {
                requests: 30,
                duration_us: 12_060_000,
                bytes: 10_947,
                errors: Errors {
                    timeout: 40,
                    ..Errors::default()
                },
                ..Summary::default()
            },
            corrected: HistogramReport::default(),
            uncorrected: HistogramReport::default(),
            send_lag: HistogramReport::default(),
            requests_per_thread: HistogramReport::new(reqsec),
            calibration: vec![crate::Calibration {
                mean_latency_ms: 0.823,
                sampling_interval_ms: 10,
            }],
            per_second: vec![],
            traced: None,
        };
        let expected = "  Thread calibration: mean lat.: 0.823ms, rate sampling interval: 10ms
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     -nanus    -nanus   0.00us    0.00%
    Req/Sec     0.00      0.00     0.00    100.00%
  30 requests in 12.06s, 10.69KB read
  Socket errors: connect 0, read 0, write 0, timeout 40
Requests/sec:      2.49
Transfer/sec:      0.89KB
";
        assert_eq!(render_wrk2(&report, &ReportOptions::default()), expected);
        // aefm-load's own counters appear, after wrk2's error lines, only when non-zero.
        let mut extra = report.clone();
        extra.summary.outstanding = 3;
        extra.summary.errors.tls = 2;
        extra.summary.errors.protocol = 5;
        let text = render_wrk2(&extra, &ReportOptions::default());
        assert_eq!(
            text,
            expected.replace(
                "timeout 40\n",
                "timeout 40\n  TLS handshake errors: 2\n  Protocol errors (not HTTP or cut short): 5\n  3 requests outstanding at the end (sent, not answered)\n"
            )
        );
        let banner = render_banner(&report.url, 12.0, 1, 10);
        assert_eq!(
            banner,
            "Running 12s test @ http://127.0.0.1:8080/index.html\n  1 threads and 10 connections\n"
        );
    }

    /// The layout of wrk2.md §5.2's first sample (values differ: the histogram is synthetic).
    #[test]
    fn latency_block_layout_matches_wrk2() {
        use crate::histogram::new_histogram;
        let mut h = new_histogram();
        for v in 1..=23_750u64 {
            h.record(55 + v * 3618 / 23_750).unwrap();
        }
        let mut out = String::new();
        latency_block(&mut out, &h, "Recorded Latency");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "  Latency Distribution (HdrHistogram - Recorded Latency)"
        );
        assert_eq!(lines[1], " 50.000%    1.86ms");
        assert_eq!(lines[8], "100.000%    3.67ms");
        assert_eq!(lines[9], "");
        assert_eq!(lines[10], "  Detailed Percentile spectrum:");
        assert_eq!(
            lines[11],
            "       Value   Percentile   TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[12], "");
        assert_eq!(
            lines[13],
            "       0.055     0.000000            6         1.00"
        );
        assert_eq!(lines[14].len(), 51);
        assert!(
            lines[14].ends_with("     0.100000         2376         1.11"),
            "{}",
            lines[14]
        );
        let n = lines.len();
        assert!(lines[n - 5].ends_with("     1.000000        23750          inf"));
        assert!(lines[n - 4].starts_with("#[Mean    =        1.8"));
        assert_eq!(
            lines[n - 3],
            "#[Max     =        3.672, Total count    =        23750]"
        );
        assert_eq!(
            lines[n - 2],
            "#[Buckets =           27, SubBuckets     =         2048]"
        );
        assert_eq!(lines[n - 1], "-".repeat(58));
    }

    #[test]
    fn banner() {
        assert_eq!(
            render_banner("http://127.0.0.1:8080/index.html", 15.0, 1, 50),
            "Running 15s test @ http://127.0.0.1:8080/index.html\n  1 threads and 50 connections\n"
        );
        assert!(render_banner("u", 90.0, 2, 2).starts_with("Running 2m test"));
    }
}
