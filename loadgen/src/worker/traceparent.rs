//! `--traceparent`: a W3C `traceparent` header on a share of the requests, and the slowest of
//! those requests kept for the report (see [`crate::traced`]).
//!
//! Which requests carry the header is drawn from the run's seed (the same seed traces the same
//! requests); the ids are drawn from the operating system's randomness, because a trace id must
//! be unique across runs: a tracing backend keeps every run's spans, and a repeated id would mix
//! two requests' trees. The header goes right after the request line, so it works for any request
//! a script builds; of a pipelined batch only the first request carries it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::stats::micros;
use crate::traced::{sort_slowest, TracedRequest};

/// The ids one traced request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TraceContext {
    /// 128-bit trace id (never 0, which W3C calls invalid).
    pub trace_id: u128,
    /// 64-bit parent (client-side span) id (never 0).
    pub span_id: u64,
}

impl TraceContext {
    /// The header line, CRLF included: `traceparent: 00-<32 hex>-<16 hex>-01\r\n`.
    pub fn header_line(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(70);
        let _ = write!(
            v,
            "traceparent: 00-{:032x}-{:016x}-01\r\n",
            self.trace_id, self.span_id
        );
        v
    }
}

/// Decides which requests carry a `traceparent` and makes their ids.
pub(super) struct Tracer {
    share: f64,
    pick: SmallRng,
    ids: SmallRng,
}

impl Tracer {
    /// A tracer for `share` (0..=1) of a thread's requests; `None` when `share` is 0. `stream` is
    /// the thread's seed for the choice.
    pub fn new(share: f64, stream: u64) -> Option<Tracer> {
        (share > 0.0).then(|| Tracer {
            share,
            pick: SmallRng::seed_from_u64(stream),
            ids: SmallRng::from_os_rng(),
        })
    }

    /// Whether the next request is traced, and with which ids.
    pub fn pick(&mut self) -> Option<TraceContext> {
        if self.share < 1.0 && self.pick.random::<f64>() >= self.share {
            return None;
        }
        Some(TraceContext {
            trace_id: self.ids.random::<u128>().max(1),
            span_id: self.ids.random::<u64>().max(1),
        })
    }
}

/// `request` with `ctx`'s header after its request line; `None` when it has no line end (not an
/// HTTP/1 request: sent as it is, untraced).
pub(super) fn with_header(request: &[u8], ctx: &TraceContext) -> Option<Bytes> {
    let end = request.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = ctx.header_line();
    let mut out = Vec::with_capacity(request.len() + line.len());
    out.extend_from_slice(&request[..end]);
    out.extend_from_slice(&line);
    out.extend_from_slice(&request[end..]);
    Some(Bytes::from(out))
}

/// One traced request as a worker keeps it (ordered by corrected latency, then ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Kept {
    latency_us: u64,
    ctx: TraceContext,
    intended: Instant,
    sent: Instant,
    uncorrected_us: u64,
    status: u16,
}

/// The slowest traced requests of one thread, at most `bound` (a min-heap: the fastest kept is
/// the one a slower request replaces).
pub(super) struct Slowest {
    heap: BinaryHeap<Reverse<Kept>>,
    bound: usize,
    /// Traced requests recorded.
    pub count: u64,
}

impl Slowest {
    /// An empty set keeping at most `bound`.
    pub fn new(bound: usize) -> Slowest {
        Slowest {
            heap: BinaryHeap::with_capacity(bound.min(4096)),
            bound,
            count: 0,
        }
    }

    /// Records one answered traced request.
    pub fn add(
        &mut self,
        ctx: TraceContext,
        intended: Instant,
        sent: Instant,
        at: Instant,
        status: u16,
    ) {
        self.count += 1;
        let k = Kept {
            latency_us: micros(at.saturating_duration_since(intended.min(sent))),
            ctx,
            intended,
            sent,
            uncorrected_us: micros(at.saturating_duration_since(sent)),
            status,
        };
        if self.heap.len() < self.bound {
            self.heap.push(Reverse(k));
        } else if self.heap.peek().is_some_and(|Reverse(min)| k > *min) {
            self.heap.pop();
            self.heap.push(Reverse(k));
        }
    }

    /// The kept requests, slowest first, their times in µs after `origin` (the run's start; the
    /// report adds its wall-clock start).
    pub fn into_requests(self, origin: Instant) -> Vec<TracedRequest> {
        let mut v: Vec<TracedRequest> = self
            .heap
            .into_iter()
            .map(|Reverse(k)| TracedRequest {
                trace_id: format!("{:032x}", k.ctx.trace_id),
                span_id: format!("{:016x}", k.ctx.span_id),
                intended_us: micros(k.intended.saturating_duration_since(origin)),
                sent_us: micros(k.sent.saturating_duration_since(origin)),
                latency_us: k.latency_us,
                uncorrected_us: k.uncorrected_us,
                status: k.status,
            })
            .collect();
        sort_slowest(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_goes_after_the_request_line_and_parses_back() {
        let ctx = TraceContext {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
        };
        let req = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let out = with_header(req, &ctx).unwrap();
        assert_eq!(
            &out[..],
            &b"GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nHost: h\r\n\r\n"[..]
        );
        assert!(with_header(b"no line end", &ctx).is_none());
    }

    #[test]
    fn share_is_drawn_from_the_seed_and_ids_are_unique() {
        let count = |seed| {
            let mut t = Tracer::new(0.25, seed).unwrap();
            (0..40_000).filter(|_| t.pick().is_some()).count()
        };
        let n = count(7);
        assert_eq!(n, count(7), "same seed, same choice");
        // 0.25 of 40,000 = 10,000, sd ~87: 6 sd either side.
        assert!((9_480..=10_520).contains(&n), "{n}");
        assert!(Tracer::new(0.0, 1).is_none());
        let mut all = Tracer::new(1.0, 1).unwrap();
        let ids: std::collections::HashSet<u128> =
            (0..10_000).map(|_| all.pick().unwrap().trace_id).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn slowest_keeps_the_bound_slowest_in_order() {
        let t0 = Instant::now();
        let mut s = Slowest::new(3);
        for (i, ms) in [5u64, 1, 9, 3, 7, 2].iter().enumerate() {
            let ctx = TraceContext {
                trace_id: i as u128 + 1,
                span_id: 1,
            };
            s.add(ctx, t0, t0, t0 + Duration::from_millis(*ms), 200);
        }
        assert_eq!(s.count, 6);
        let v = s.into_requests(t0);
        let lat: Vec<u64> = v.iter().map(|r| r.latency_us).collect();
        assert_eq!(lat, vec![9_000, 7_000, 5_000]);
        assert_eq!(v[0].trace_id, format!("{:032x}", 3));
    }
}
