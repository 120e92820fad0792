//! A worker's counters and histograms, and the one rule for recording a response's latency.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::traceparent::{Slowest, TraceContext};
use super::{ThreadOutput, Tick};
use crate::histogram::{self, new_histogram, record};
use crate::report::{Calibration, Errors, StatusClasses};

/// Microseconds, saturating.
pub(super) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Counters and histograms of one thread.
pub(super) struct Stats {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    send_lag: Histogram<u64>,
    interval: Histogram<u64>,
    reqsec: Histogram<u64>,
    /// Responses completed.
    pub requests: u64,
    /// Requests written.
    pub sent: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Errors by kind.
    pub errors: Errors,
    responses: StatusClasses,
    /// Connections closed by an announced `Connection: close`.
    pub reconnects: u64,
    recording: bool,
    calibration: Option<Calibration>,
    tick_sent: u64,
    tick_completed: u64,
    tick_errors: u64,
    /// Ticks sent so far.
    pub ticks: u64,
    /// Requests sent whose response has not completed yet.
    pub in_flight: u64,
    /// The first protocol error's description (kind and escaped bytes).
    pub first_bad: Option<String>,
    /// Reading of `requests` at the last `Req/Sec` sample.
    sampled: u64,
    /// The slowest traced requests (`--traceparent`).
    slowest: Option<Slowest>,
}

/// One answered request, as the recording rule needs it.
pub(super) struct Answer {
    /// When it was due.
    pub intended: Instant,
    /// When it left.
    pub sent: Instant,
    /// When the response arrived.
    pub at: Instant,
    /// Its status code.
    pub status: u16,
    /// False for the non-last responses of a batch under `-B`.
    pub timed: bool,
    /// The ids it carried in a `traceparent` header, if it did.
    pub trace: Option<TraceContext>,
}

impl Stats {
    /// Empty counters; `recording` is false during a warm-up; `traced_bound` is how many traced
    /// requests to keep (`None`: the run traces nothing).
    pub(super) fn new(recording: bool, traced_bound: Option<usize>) -> Self {
        Stats {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            send_lag: new_histogram(),
            interval: new_histogram(),
            reqsec: new_histogram(),
            requests: 0,
            sent: 0,
            bytes: 0,
            errors: Errors::default(),
            responses: StatusClasses::default(),
            reconnects: 0,
            recording,
            calibration: None,
            tick_sent: 0,
            tick_completed: 0,
            tick_errors: 0,
            ticks: 0,
            in_flight: 0,
            first_bad: None,
            sampled: 0,
            slowest: traced_bound.map(Slowest::new),
        }
    }

    /// Records a send: its lag behind the later of its due time and its connection's
    /// readiness (the generator's own lateness, kept apart from the server's latency).
    pub(super) fn sent(&mut self, depth: usize, intended: Instant, ready: Instant, now: Instant) {
        self.sent += depth as u64;
        self.in_flight += depth as u64;
        if self.recording {
            let lag = now.saturating_duration_since(intended.max(ready));
            record(&mut self.send_lag, micros(lag));
        }
    }

    /// Records a response. Corrected latency runs from the intended time, or from the actual
    /// send when the pacing tolerance let the request leave early: never less than the service
    /// time itself.
    pub(super) fn answered(&mut self, a: &Answer) {
        self.requests += 1;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.responses.count(a.status);
        if a.status > 399 {
            self.errors.status += 1;
        }
        if !a.timed {
            return;
        }
        let c = micros(a.at.saturating_duration_since(a.intended.min(a.sent)));
        record(&mut self.interval, c);
        if self.recording {
            record(&mut self.corrected, c);
            record(
                &mut self.uncorrected,
                micros(a.at.saturating_duration_since(a.sent)),
            );
            if let (Some(ctx), Some(s)) = (a.trace, self.slowest.as_mut()) {
                s.add(ctx, a.intended, a.sent, a.at, a.status);
            }
        }
    }

    /// Counts an answer that is not HTTP or was cut short; keeps the first one's description.
    pub(super) fn protocol_error(&mut self, what: impl FnOnce() -> String) {
        self.errors.protocol += 1;
        if self.first_bad.is_none() {
            self.first_bad = Some(what());
        }
    }

    /// Ends the warm-up (wrk2's calibration: print-worthy mean, sampling interval, histogram
    /// reset); returns the `Req/Sec` sampling interval it implies.
    pub(super) fn end_warmup(&mut self) -> Duration {
        let mean = histogram::mean(&self.corrected);
        let mean = if mean.is_finite() { mean } else { 0.0 };
        let p90_ms = histogram::value_at_percentile(&self.corrected, 90.0) as f64 / 1000.0;
        let ms = ((2.0 * p90_ms) as u64).max(10);
        self.calibration = Some(Calibration {
            mean_latency_ms: mean / 1000.0,
            sampling_interval_ms: ms,
        });
        self.corrected.reset();
        self.uncorrected.reset();
        self.send_lag.reset();
        self.recording = true;
        Duration::from_millis(ms)
    }

    /// Samples the request rate over `elapsed` for the `Req/Sec` row.
    pub(super) fn sample_rate(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 {
            let rate = (self.requests - self.sampled) as f64 / secs;
            record(&mut self.reqsec, rate as u64);
        }
        self.sampled = self.requests;
    }

    /// The counters of the interval since the last tick.
    pub(super) fn take_tick(&mut self, duration: Duration) -> Tick {
        let total_errors = self.errors.total();
        let tick = Tick {
            index: self.ticks,
            duration,
            sent: self.sent - self.tick_sent,
            completed: self.requests - self.tick_completed,
            errors: total_errors - self.tick_errors,
            histogram: std::mem::replace(&mut self.interval, new_histogram()),
        };
        self.ticks += 1;
        self.tick_sent = self.sent;
        self.tick_completed = self.requests;
        self.tick_errors = total_errors;
        tick
    }

    /// The thread's totals; `outstanding` requests were unanswered at the end; traced requests'
    /// times are made relative to `origin`, the run's start.
    pub(super) fn into_output(self, outstanding: u64, busy: f64, origin: Instant) -> ThreadOutput {
        ThreadOutput {
            corrected: self.corrected,
            uncorrected: self.uncorrected,
            send_lag: self.send_lag,
            reqsec: self.reqsec,
            requests: self.requests,
            sent: self.sent,
            bytes: self.bytes,
            errors: self.errors,
            responses: self.responses,
            reconnects: self.reconnects,
            calibration: self.calibration,
            outstanding,
            first_bad: self.first_bad,
            busy,
            traced: self.slowest.map(|s| (s.count, s.into_requests(origin))),
        }
    }
}
