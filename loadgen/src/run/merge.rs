//! The end of a run: the threads' outputs added up into one [`Report`] (histograms added,
//! counters summed, the first bad answer kept, calibrations listed by thread).

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::histogram::new_histogram;
use crate::report::{HistogramReport, Report, Second, Summary};
use crate::spec::Spec;
use crate::traced::{sort_slowest, Traced};
use crate::worker::ThreadOutput;

/// How the run went, beside the threads' outputs.
pub(super) struct Ending {
    /// When the clock started, on the wall clock.
    pub start_wall: SystemTime,
    /// How long the load ran.
    pub duration: Duration,
    /// True when the run was cancelled.
    pub cancelled: bool,
}

/// The report of `spec` from the threads' `outputs` (in thread order) and the run's `seconds`.
pub(super) fn report(
    spec: &Spec,
    outputs: &[(usize, ThreadOutput)],
    seconds: Vec<Second>,
    ending: &Ending,
) -> Report {
    let h = Histograms::of(outputs);
    Report {
        tool: format!("aefm-load {}", env!("CARGO_PKG_VERSION")),
        url: spec.url.clone(),
        threads: spec.threads,
        connections: spec.connections,
        model: spec.model,
        warmup_us: spec.warmup.as_micros() as u64,
        start_time: ending
            .start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        summary: summary(spec, outputs, ending),
        corrected: HistogramReport::new(h.corrected),
        uncorrected: HistogramReport::new(h.uncorrected),
        send_lag: HistogramReport::new(h.send_lag),
        requests_per_thread: HistogramReport::new(h.reqsec),
        calibration: outputs.iter().filter_map(|(_, o)| o.calibration).collect(),
        per_second: with_offered(spec, seconds),
        traced: traced(spec, outputs, ending),
    }
}

/// The threads' slowest traced requests, their times made wall-clock, slowest first within the
/// run's bound; `None` when the run traced nothing.
fn traced(spec: &Spec, outputs: &[(usize, ThreadOutput)], ending: &Ending) -> Option<Traced> {
    if spec.traceparent <= 0.0 {
        return None;
    }
    let start_us = ending
        .start_wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut t = Traced {
        share: spec.traceparent,
        requests: 0,
        bound: spec.traced_bound(),
        slowest: Vec::new(),
    };
    for (_, o) in outputs {
        let Some((count, slowest)) = &o.traced else {
            continue;
        };
        t.requests += count;
        t.slowest.extend(slowest.iter().cloned().map(|mut r| {
            r.intended_us += start_us;
            r.sent_us += start_us;
            r
        }));
    }
    sort_slowest(&mut t.slowest);
    t.slowest.truncate(t.bound);
    Some(t)
}

/// The threads' histograms added up.
struct Histograms {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    send_lag: Histogram<u64>,
    reqsec: Histogram<u64>,
}

impl Histograms {
    fn of(outputs: &[(usize, ThreadOutput)]) -> Self {
        let mut h = Histograms {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            send_lag: new_histogram(),
            reqsec: new_histogram(),
        };
        // All histograms share one range, so adding never fails.
        for (_, o) in outputs {
            let _ = h.corrected.add(&o.corrected);
            let _ = h.uncorrected.add(&o.uncorrected);
            let _ = h.send_lag.add(&o.send_lag);
            let _ = h.reqsec.add(&o.reqsec);
        }
        h
    }
}

/// The run's counters: the threads' sums, the achieved rate over the run's duration.
fn summary(spec: &Spec, outputs: &[(usize, ThreadOutput)], ending: &Ending) -> Summary {
    let mut s = Summary {
        target_rate: spec.rate,
        duration_us: ending.duration.as_micros() as u64,
        cancelled: ending.cancelled,
        ..Summary::default()
    };
    for (_, o) in outputs {
        s.add_counts(&Summary {
            requests: o.requests,
            sent: o.sent,
            bytes: o.bytes,
            errors: o.errors,
            responses: o.responses,
            reconnects: o.reconnects,
            outstanding: o.outstanding,
            generator_busy: o.busy,
            first_bad_answer: o.first_bad.clone(),
            ..Summary::default()
        });
    }
    let secs = ending.duration.as_secs_f64();
    s.achieved_rate = if secs > 0.0 {
        s.requests as f64 / secs
    } else {
        0.0
    };
    s
}

/// Each second with the requests the spec's schedule offered in it (see [`crate::schedule`]).
fn with_offered(spec: &Spec, seconds: Vec<Second>) -> Vec<Second> {
    let Ok(profile) = spec.profile() else {
        return seconds;
    };
    let offered = |s: &Second| {
        let from = s.t as f64;
        profile.offered_between(from, from + s.duration_us as f64 / 1e6)
    };
    seconds
        .into_iter()
        .map(|s| {
            let o = offered(&s);
            s.with_offered(o)
        })
        .collect()
}
