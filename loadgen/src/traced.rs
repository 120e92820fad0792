//! Traced requests: what a report keeps of the requests that carried a W3C `traceparent`
//! header (`--traceparent RATE`, [`crate::Spec::traceparent`]), so each slow client request can
//! be joined with its server-side trace.
//!
//! A run keeps the slowest traced requests by corrected latency, up to a bound
//! ([`slowest_bound`]) sized so that everything above the 99th percentile of the traced requests
//! fits with room to spare, and never more than [`MAX_SLOWEST`]. Each entry has the trace id the
//! request carried, when it was due and when it left (wall clock, µs since the Unix epoch), its
//! corrected and uncorrected latency and its status. Reports of simultaneous runs merge by
//! keeping the slowest of both ([`Traced::merge`]).
//!
//! The header sent is `traceparent: 00-<trace id>-<span id>-01`: version 00, a random 128-bit
//! trace id and 64-bit parent span id, the sampled flag set so that every tracer downstream
//! records the trace. The server's first span is a child of that (client-side) span id.

use serde::{Deserialize, Serialize};

/// The most traced requests a report keeps, whatever the run's length.
pub const MAX_SLOWEST: usize = 100_000;

/// The fewest a report keeps room for (short runs keep all their traced requests up to this).
pub const MIN_SLOWEST: usize = 1_000;

/// How many of the slowest traced requests a run keeps: twice the expected number above the
/// 99th percentile (`expected` traced requests / 100), within [`MIN_SLOWEST`]..=[`MAX_SLOWEST`].
pub fn slowest_bound(expected: f64) -> usize {
    let above_p99 = (expected.max(0.0) / 100.0).ceil();
    ((above_p99 * 2.0) as usize).clamp(MIN_SLOWEST, MAX_SLOWEST)
}

/// One traced request among a run's slowest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedRequest {
    /// The `traceparent` trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The `traceparent` parent id (the client-side span), 16 lowercase hex digits.
    pub span_id: String,
    /// When the request was due, µs since the Unix epoch.
    pub intended_us: u64,
    /// When it was written, µs since the Unix epoch.
    pub sent_us: u64,
    /// Latency from the intended time (coordinated-omission corrected), µs.
    pub latency_us: u64,
    /// Latency from the write, µs.
    pub uncorrected_us: u64,
    /// The response's status code.
    pub status: u16,
}

/// The traced requests of a run (the report's `traced`, present when `--traceparent` was on).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traced {
    /// Share of requests that carried a `traceparent` header (0..=1; merged reports: the
    /// request-weighted share).
    pub share: f64,
    /// Traced requests answered and recorded (after the warm-up).
    pub requests: u64,
    /// How many of the slowest this report keeps at most.
    pub bound: usize,
    /// The slowest traced requests, slowest first (ties: by trace id).
    pub slowest: Vec<TracedRequest>,
}

impl Traced {
    /// Adds a simultaneous run's traced requests: counts add, the slowest of both are kept up to
    /// the larger bound.
    pub fn merge(&mut self, other: &Traced) {
        let total = self.requests + other.requests;
        if total > 0 {
            self.share = (self.share * self.requests as f64 + other.share * other.requests as f64)
                / total as f64;
        } else {
            self.share = self.share.max(other.share);
        }
        self.requests = total;
        self.bound = self.bound.max(other.bound);
        self.slowest.extend(other.slowest.iter().cloned());
        sort_slowest(&mut self.slowest);
        self.slowest.truncate(self.bound);
    }
}

/// Orders traced requests slowest first, ties by trace id (a stable order for merged reports).
pub fn sort_slowest(v: &mut [TracedRequest]) {
    v.sort_by(|a, b| {
        b.latency_us
            .cmp(&a.latency_us)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u8, latency: u64) -> TracedRequest {
        TracedRequest {
            trace_id: format!("{id:032x}"),
            span_id: format!("{id:016x}"),
            intended_us: 1,
            sent_us: 2,
            latency_us: latency,
            uncorrected_us: latency / 2,
            status: 200,
        }
    }

    #[test]
    fn bound_covers_everything_above_p99_twice() {
        assert_eq!(slowest_bound(0.0), MIN_SLOWEST);
        assert_eq!(slowest_bound(120_000.0), 2_400);
        assert_eq!(slowest_bound(1e12), MAX_SLOWEST);
    }

    #[test]
    fn merge_keeps_the_slowest_of_both_and_weights_the_share() {
        let mut a = Traced {
            share: 1.0,
            requests: 3,
            bound: 2,
            slowest: vec![req(1, 50), req(2, 10)],
        };
        let b = Traced {
            share: 0.5,
            requests: 1,
            bound: 2,
            slowest: vec![req(3, 30)],
        };
        a.merge(&b);
        assert_eq!(a.requests, 4);
        assert!((a.share - 0.875).abs() < 1e-12);
        let lat: Vec<u64> = a.slowest.iter().map(|r| r.latency_us).collect();
        assert_eq!(lat, vec![50, 30]);
    }
}
