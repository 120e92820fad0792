//! The result of a run: [`Report`]. It is also the `--json` format (serde), and it merges exactly
//! with reports of other processes or machines because every histogram travels whole, as a
//! base64 HdrHistogram V2-deflate string.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram::{self, serde_base64};
use crate::spec::Model;

/// Error counters: wrk's four socket errors and the status count, plus aefm-load's own kinds
/// (`tls`, `protocol`; absent in older reports, read as 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Failed connects (each attempt).
    pub connect: u64,
    /// Read errors: resets and other socket errors while reading, and the server closing a
    /// connection before sending any byte of the response. Answers that were not HTTP or were
    /// cut short count as `protocol`.
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Requests whose response had not completed `timeout` after their send, each counted once
    /// (the response is still awaited and its latency recorded).
    pub timeout: u64,
    /// Responses with status > 399 (wrk's "Non-2xx or 3xx responses").
    pub status: u64,
    /// TLS handshakes (https) that failed or did not finish within the request timeout or before
    /// the run's end. Not counted in `connect`.
    #[serde(default)]
    pub tls: u64,
    /// Answers that are not HTTP, and responses the server cut short by closing the connection
    /// after some of their bytes (for example right after the headers). Not counted in `read`.
    #[serde(default)]
    pub protocol: u64,
}

impl Errors {
    /// Every kind added up: socket, status, TLS and protocol errors.
    pub fn total(&self) -> u64 {
        self.connect
            + self.read
            + self.write
            + self.timeout
            + self.status
            + self.tls
            + self.protocol
    }

    /// True when any of the four socket counters is non-zero (wrk prints the line then).
    pub fn any_socket(&self) -> bool {
        self.connect + self.read + self.write + self.timeout > 0
    }

    pub(crate) fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.status += o.status;
        self.tls += o.tls;
        self.protocol += o.protocol;
    }
}

/// Completed responses by status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClasses {
    /// 1xx.
    #[serde(rename = "1xx")]
    pub informational: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub redirection: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// Anything else.
    pub other: u64,
}

impl StatusClasses {
    /// Counts one response with `status`.
    pub fn count(&mut self, status: u16) {
        match status {
            100..=199 => self.informational += 1,
            200..=299 => self.success += 1,
            300..=399 => self.redirection += 1,
            400..=499 => self.client_error += 1,
            500..=599 => self.server_error += 1,
            _ => self.other += 1,
        }
    }

    pub(crate) fn add(&mut self, o: &StatusClasses) {
        self.informational += o.informational;
        self.success += o.success;
        self.redirection += o.redirection;
        self.client_error += o.client_error;
        self.server_error += o.server_error;
        self.other += o.other;
    }
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requested rate, requests/s (sum over merged reports).
    pub target_rate: f64,
    /// Completed responses per second of `duration_us` (sum over merged reports).
    pub achieved_rate: f64,
    /// Measured run time, µs, from the common start of all threads (max over merged reports).
    pub duration_us: u64,
    /// Completed responses (the `N requests` of the text report).
    pub requests: u64,
    /// Requests written (a pipelined batch counts each request).
    pub sent: u64,
    /// Bytes read, headers included.
    pub bytes: u64,
    /// Error counters.
    pub errors: Errors,
    /// Responses by status class.
    pub responses: StatusClasses,
    /// Connections the server closed with `Connection: close` (re-opened at once; not errors).
    pub reconnects: u64,
    /// True when the run was cancelled before its duration.
    pub cancelled: bool,
    /// Requests written whose response had not completed when the run ended (not in
    /// `requests`; those outstanding for longer than the timeout are also in `errors.timeout`).
    /// Absent in older reports (read as 0).
    #[serde(default)]
    pub outstanding: u64,
    /// The busiest generator thread's CPU time over the run's wall time (0..1; the largest over
    /// merged reports). Near 1 the generator was saturated, so part of every latency is its own.
    /// Absent in older reports (read as 0).
    #[serde(default)]
    pub generator_busy: f64,
    /// The first bytes (escaped, at most 64) of the first answer counted in `errors.protocol`,
    /// so a warning can show what the server sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_answer: Option<String>,
}

impl Summary {
    /// Adds `o`'s counters (requests, bytes, errors, responses, reconnects, outstanding), keeps
    /// the busier generator and the first bad answer: what the parts of one run, or several
    /// runs, sum to.
    pub(crate) fn add_counts(&mut self, o: &Summary) {
        self.requests += o.requests;
        self.sent += o.sent;
        self.bytes += o.bytes;
        self.errors.add(&o.errors);
        self.responses.add(&o.responses);
        self.reconnects += o.reconnects;
        self.outstanding += o.outstanding;
        self.generator_busy = self.generator_busy.max(o.generator_busy);
        if self.first_bad_answer.is_none() {
            self.first_bad_answer.clone_from(&o.first_bad_answer);
        }
    }
}

/// Precomputed statistics of one histogram, in the histogram's unit (µs for latencies).
/// Percentiles use HdrHistogram_c's rank rule, as the text report does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest recorded value.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 75th percentile.
    pub p75: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
    /// Largest recorded value (lowest equivalent of its bucket, as wrk2 prints it).
    pub max: u64,
    /// Mean (0 when empty).
    pub mean: f64,
    /// Standard deviation (0 when empty).
    pub stdev: f64,
}

impl Percentiles {
    /// Computes the statistics of `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let p = |q| histogram::value_at_percentile(h, q);
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        Percentiles {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            p50: p(50.0),
            p75: p(75.0),
            p90: p(90.0),
            p99: p(99.0),
            p99_9: p(99.9),
            p99_99: p(99.99),
            max: histogram::max(h),
            mean: finite(histogram::mean(h)),
            stdev: finite(histogram::stdev(h)),
        }
    }
}

/// A histogram with its statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    /// Statistics of `histogram`.
    pub stats: Percentiles,
    /// The full histogram, base64 of the HdrHistogram V2-deflate encoding.
    #[serde(with = "serde_base64")]
    pub histogram: Histogram<u64>,
}

impl HistogramReport {
    /// Wraps a histogram and computes its statistics.
    pub fn new(histogram: Histogram<u64>) -> Self {
        Self {
            stats: Percentiles::of(&histogram),
            histogram,
        }
    }

    /// Adds `other`'s values (exact) and recomputes the statistics.
    pub fn merge(&mut self, other: &HistogramReport) {
        // Both share wrk2's bounds (decode re-homes foreign ones), so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.stats = Percentiles::of(&self.histogram);
    }
}

impl Default for HistogramReport {
    fn default() -> Self {
        Self::new(histogram::new_histogram())
    }
}

/// One second of the run (the last one may be shorter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Start of the second, seconds since the run's start.
    pub t: u64,
    /// Length of this interval, µs (1 000 000 except maybe the last).
    pub duration_us: u64,
    /// Requests written in this interval.
    pub sent: u64,
    /// Responses completed in this interval.
    pub completed: u64,
    /// Errors (all kinds) in this interval.
    pub errors: u64,
    /// Requests the schedule offered in this interval: `Λ(t + duration) - Λ(t)` of the rate
    /// profile (fractional; see [`crate::schedule`]). 0 in reports that predate it.
    #[serde(default)]
    pub offered: f64,
    /// Corrected latency median of responses completed in this interval, µs.
    pub p50: u64,
    /// Corrected latency 99th percentile, µs.
    pub p99: u64,
    /// Corrected latency maximum, µs.
    pub max: u64,
    /// Corrected latencies of this interval (warm-up included), base64 V2-deflate.
    #[serde(with = "serde_base64")]
    pub histogram: Histogram<u64>,
}

impl Second {
    /// An interval from its counters and histogram.
    pub fn new(
        t: u64,
        duration_us: u64,
        sent: u64,
        completed: u64,
        errors: u64,
        histogram: Histogram<u64>,
    ) -> Self {
        Second {
            t,
            duration_us,
            sent,
            completed,
            errors,
            offered: 0.0,
            p50: histogram::value_at_percentile(&histogram, 50.0),
            p99: histogram::value_at_percentile(&histogram, 99.0),
            max: histogram::max(&histogram),
            histogram,
        }
    }

    /// The same second with the offered request count set.
    pub fn with_offered(mut self, offered: f64) -> Self {
        self.offered = offered;
        self
    }

    fn merge(&mut self, o: &Second) {
        let offered = self.offered + o.offered;
        self.duration_us = self.duration_us.max(o.duration_us);
        self.sent += o.sent;
        self.completed += o.completed;
        self.errors += o.errors;
        let _ = self.histogram.add(&o.histogram);
        *self = Second::new(
            self.t,
            self.duration_us,
            self.sent,
            self.completed,
            self.errors,
            std::mem::replace(&mut self.histogram, histogram::new_histogram()),
        )
        .with_offered(offered);
    }
}

/// wrk2's per-thread calibration at the end of the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Mean corrected latency during the warm-up, ms.
    pub mean_latency_ms: f64,
    /// Req/Sec sampling interval chosen from it, ms (`max(2 * p90, 10)`).
    pub sampling_interval_ms: u64,
}

/// Everything a run measured. This is the `--json` document; every field is documented on its
/// type. Latencies are in µs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Generator name and version.
    pub tool: String,
    /// The target URL.
    pub url: String,
    /// Worker threads (sum over merged reports).
    pub threads: usize,
    /// Connections requested (sum over merged reports).
    pub connections: usize,
    /// Pacing model.
    pub model: Model,
    /// Warm-up whose latencies were discarded, µs.
    pub warmup_us: u64,
    /// Wall-clock start of the run, seconds since the Unix epoch (earliest over merged reports).
    pub start_time: f64,
    /// Totals.
    pub summary: Summary,
    /// Latency from each request's intended send time (coordinated-omission corrected).
    pub corrected: HistogramReport,
    /// Latency from the actual write of each batch (service time, with coordinated omission).
    pub uncorrected: HistogramReport,
    /// The generator's own lateness: actual send minus the earliest moment it could have sent
    /// (the intended time, or when the connection became free if it was still busy). Large
    /// values mean the generator, not the server, was the bottleneck.
    pub send_lag: HistogramReport,
    /// Per-thread Req/Sec samples (wrk's `Req/Sec` row and `done()`'s `requests`), requests/s.
    pub requests_per_thread: HistogramReport,
    /// One entry per thread when a warm-up was configured.
    pub calibration: Vec<Calibration>,
    /// Per-second throughput and corrected latency.
    pub per_second: Vec<Second>,
    /// The slowest requests that carried a `traceparent` header (`--traceparent`), with their
    /// trace ids; absent when no request was traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traced: Option<crate::traced::Traced>,
}

impl Report {
    /// The corrected latency histogram (µs).
    pub fn corrected(&self) -> &Histogram<u64> {
        &self.corrected.histogram
    }

    /// The uncorrected latency histogram (µs).
    pub fn uncorrected(&self) -> &Histogram<u64> {
        &self.uncorrected.histogram
    }

    /// The send-lag histogram (µs).
    pub fn send_lag(&self) -> &Histogram<u64> {
        &self.send_lag.histogram
    }

    /// Merges a report of a run that ran at the same time (another process or machine):
    /// histograms and counters are added exactly; rates add up. Time is absolute: the merged run
    /// starts at the earliest `start_time` and lasts until the latest end, and each per-second
    /// entry goes to the merged second its own wall-clock start (`start_time + t`) is nearest to,
    /// so runs that started at different instants line up (every entry is kept whole, so the
    /// per-second sums stay exact).
    pub fn merge(&mut self, other: &Report) {
        let start = self.start_time.min(other.start_time);
        let end = |r: &Report| r.start_time + r.summary.duration_us as f64 / 1e6;
        let span_us = ((end(self).max(end(other)) - start) * 1e6).round().max(0.0) as u64;
        let mine = std::mem::take(&mut self.per_second);
        let shift = |r: &Report| (r.start_time - start).round().max(0.0) as u64;
        let (my_shift, other_shift) = (shift(self), shift(other));
        for sec in mine {
            self.add_second(sec, my_shift);
        }
        for sec in &other.per_second {
            self.add_second(sec.clone(), other_shift);
        }
        self.per_second.sort_by_key(|s| s.t);
        self.threads += other.threads;
        self.start_time = start;
        self.connections += other.connections;
        let s = &mut self.summary;
        let o = &other.summary;
        s.target_rate += o.target_rate;
        s.achieved_rate += o.achieved_rate;
        s.duration_us = span_us;
        s.cancelled |= o.cancelled;
        s.add_counts(o);
        self.corrected.merge(&other.corrected);
        self.uncorrected.merge(&other.uncorrected);
        self.send_lag.merge(&other.send_lag);
        self.requests_per_thread.merge(&other.requests_per_thread);
        self.calibration.extend_from_slice(&other.calibration);
        match (&mut self.traced, &other.traced) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.traced = Some(theirs.clone()),
            _ => {}
        }
    }

    /// Adds one second at its index shifted by `shift` whole seconds.
    fn add_second(&mut self, mut sec: Second, shift: u64) {
        sec.t += shift;
        match self.per_second.iter_mut().find(|x| x.t == sec.t) {
            Some(mine) => mine.merge(&sec),
            None => self.per_second.push(sec),
        }
    }

    /// Reads a report written by `--json`.
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The `--json` document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// Warnings a user should see after a run: a broken server or port (see the error kinds), a rate
/// not reached, or a generator so late that the latencies measure it rather than the server.
pub fn diagnose(report: &Report) -> Vec<String> {
    let mut out = broken_server(&report.summary);
    let s = &report.summary;
    if !s.cancelled && s.target_rate > 0.0 && s.achieved_rate < s.target_rate * 0.98 {
        // Requests that failed (not just slow ones) explain a shortfall better than "keep up".
        let failed = s.errors.total() - s.errors.status - s.errors.timeout;
        let why = if failed > 0 {
            format!("{failed} requests or connections failed")
        } else {
            "the server or the generator could not keep up".to_string()
        };
        out.push(format!(
            "achieved {:.2} req/s, {:.1}% below the target {} req/s: {why}",
            s.achieved_rate,
            100.0 * (1.0 - s.achieved_rate / s.target_rate),
            s.target_rate
        ));
    }
    let lag = &report.send_lag.stats;
    let corrected = &report.corrected.stats;
    // Enough samples, over 1 ms and over a tenth of the corrected p99: the generator's own delay is a visible
    // part of the measured latency.
    if lag.count >= 100 && lag.p99 > 1_000 && lag.p99 * 10 > corrected.p99 {
        out.push(format!(
            "generator send lag p99 is {:.2}ms (corrected latency p99 {:.2}ms): the generator was overloaded and its own delay is part of the latencies; use more threads or a lower rate",
            lag.p99 as f64 / 1000.0,
            corrected.p99 as f64 / 1000.0
        ));
    }
    out
}

/// Warnings naming a broken server or port: answers that are not HTTP or cut short, repeated
/// read errors, failed TLS handshakes, requests left unanswered. Each names its count.
fn broken_server(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let e = &s.errors;
    if e.protocol > 0 {
        out.push(format!(
            "{} answers were not valid HTTP responses or were cut short by the server closing the connection (first: {}); is this an HTTP server?",
            e.protocol,
            s.first_bad_answer.as_deref().unwrap_or("not recorded")
        ));
    }
    // One read error can be a benign race with a keep-alive timeout; repeated ones are not.
    if e.read > 1 {
        out.push(format!(
            "{} read errors: connections were reset or closed by the server before any byte of the response",
            e.read
        ));
    }
    if e.tls > 0 {
        out.push(format!(
            "{} TLS handshakes failed or did not finish in time",
            e.tls
        ));
    }
    out
}

/// A report for tests: `values` (µs) recorded once in every histogram, `seconds` per-second
/// entries of `requests` requests each.
#[cfg(test)]
pub(crate) fn sample_report(values: &[u64], requests: u64, seconds: u64) -> Report {
    let mut h = histogram::new_histogram();
    for v in values {
        histogram::record(&mut h, *v);
    }
    Report {
        tool: "t".into(),
        url: "http://x/".into(),
        threads: 1,
        connections: 1,
        model: Model::Wrk2,
        warmup_us: 0,
        start_time: 1.0e9,
        summary: Summary {
            target_rate: 10.0,
            achieved_rate: 9.0,
            duration_us: 1_000_000,
            requests,
            ..Summary::default()
        },
        corrected: HistogramReport::new(h.clone()),
        uncorrected: HistogramReport::new(h.clone()),
        send_lag: HistogramReport::default(),
        requests_per_thread: HistogramReport::default(),
        calibration: vec![],
        per_second: (0..seconds)
            .map(|t| Second::new(t, 1_000_000, requests, requests, 0, h.clone()))
            .collect(),
        traced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &[u64], requests: u64) -> Report {
        sample_report(values, requests, 1)
    }

    #[test]
    fn summary_percentiles_never_exceed_max() {
        // Values in wide buckets (4 µs at 5 ms, 64 µs at 100 ms): the top percentiles land in the
        // max's bucket, whose highest equivalent is above the reported max.
        let r = sample(&[100, 200, 5_000, 5_001, 100_000, 100_030], 6);
        for stats in [&r.corrected.stats, &r.per_second_stats()] {
            assert_eq!(stats.max, 99_968, "{stats:?}");
            for p in [
                stats.p50,
                stats.p75,
                stats.p90,
                stats.p99,
                stats.p99_9,
                stats.p99_99,
            ] {
                assert!(p <= stats.max, "{stats:?}");
            }
        }
        assert!(r.per_second[0].p99 <= r.per_second[0].max);
    }

    impl Report {
        fn per_second_stats(&self) -> Percentiles {
            Percentiles::of(&self.per_second[0].histogram)
        }
    }

    #[test]
    fn old_json_without_new_fields_still_parses() {
        let mut r = sample(&[100], 1);
        r.summary.outstanding = 4;
        r.summary.errors.protocol = 2;
        r.summary.first_bad_answer = Some("not HTTP: \"xx\"".into());
        let mut value: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let summary = value["summary"].as_object_mut().unwrap();
        assert_eq!(summary["outstanding"], 4);
        summary.remove("outstanding");
        summary.remove("first_bad_answer");
        let errors = summary["errors"].as_object_mut().unwrap();
        errors.remove("tls");
        errors.remove("protocol");
        let old = Report::from_json(&value.to_string()).unwrap();
        assert_eq!(old.summary.outstanding, 0);
        assert_eq!(old.summary.errors, Errors::default());
        let mut merged = old.clone();
        merged.merge(&r);
        assert_eq!(merged.summary.outstanding, 4);
        assert_eq!(merged.summary.errors.total(), 2);
        assert_eq!(merged.summary.first_bad_answer, r.summary.first_bad_answer);
        let warnings = diagnose(&merged);
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("2 answers were not valid HTTP")
                    && w.contains("not HTTP: \"xx\"")),
            "{warnings:?}"
        );
        // The shortfall is put down to the failures, not to "could not keep up".
        assert!(
            warnings
                .iter()
                .any(|w| w.ends_with("below the target 20 req/s: 2 requests or connections failed")),
            "{warnings:?}"
        );
    }

    #[test]
    fn json_roundtrip_and_exact_merge() {
        let a = sample(&[100, 200, 300], 3);
        let b = sample(&[1000, 5000], 2);
        let back = Report::from_json(&a.to_json()).unwrap();
        assert_eq!(back, a);
        let mut m = back;
        m.merge(&b);
        assert_eq!(m.summary.requests, 5);
        assert_eq!(m.corrected().len(), 5);
        assert_eq!(m.corrected.stats.max, 5000);
        assert_eq!(m.per_second.len(), 1);
        assert_eq!(m.per_second[0].completed, 5);
        assert_eq!(m.per_second[0].max, 5000);
        assert_eq!(m.summary.target_rate, 20.0);
        let mut direct = histogram::new_histogram();
        for v in [100, 200, 300, 1000, 5000] {
            histogram::record(&mut direct, v);
        }
        assert_eq!(m.corrected(), &direct);
    }

    #[test]
    fn merge_lines_seconds_up_by_wall_clock() {
        // b started 2.2 s after a: its second 0 is a's second 2, and the run spans both.
        let mut a = sample(&[100], 1);
        a.per_second = (0..4)
            .map(|t| Second::new(t, 1_000_000, 10, 10, 0, a.corrected().clone()))
            .collect();
        a.summary.duration_us = 4_000_000;
        let mut b = a.clone();
        b.start_time = a.start_time + 2.2;
        b.per_second.iter_mut().for_each(|s| s.completed = 1);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        for m in [&ab, &ba] {
            assert_eq!(m.start_time, a.start_time);
            assert_eq!(m.summary.duration_us, 6_200_000);
            let completed: Vec<u64> = m.per_second.iter().map(|s| s.completed).collect();
            assert_eq!(completed, [10, 10, 11, 11, 1, 1], "{:?}", m.per_second);
            let ts: Vec<u64> = m.per_second.iter().map(|s| s.t).collect();
            assert_eq!(ts, [0, 1, 2, 3, 4, 5]);
            let hist: u64 = m.per_second.iter().map(|s| s.histogram.len()).sum();
            assert_eq!(hist, 8, "every per-second sample kept");
        }
    }

    #[test]
    fn offered_adds_up_and_defaults_to_zero() {
        let mut a = sample(&[100], 1);
        let h = a.corrected().clone();
        a.per_second = vec![Second::new(0, 1_000_000, 10, 10, 0, h).with_offered(12.5)];
        let mut m = a.clone();
        m.merge(&a);
        assert_eq!(m.per_second[0].offered, 25.0);
        assert_eq!(m.per_second[0].completed, 20);
        let json = a.to_json();
        assert_eq!(Report::from_json(&json).unwrap(), a);
        // Reports written before the field existed still read.
        let old = json.replace("\"offered\": 12.5,", "");
        assert_ne!(old, json);
        assert_eq!(Report::from_json(&old).unwrap().per_second[0].offered, 0.0);
    }
}
