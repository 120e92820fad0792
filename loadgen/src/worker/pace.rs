//! The two load models, as the worker loop sees them: which request a free connection sends
//! next, and when the next one falls due.
//!
//! - **wrk2's model** ([`Wrk2Pace`]): every connection has its own arrival process and at most
//!   one batch in flight; a connection that falls behind sends its backlog back to back as soon
//!   as it is free (or, with catch-up pipelining, several due batches in one write). A heap holds
//!   each connection's next due time; a connection found busy when its time comes is *blocked*
//!   and sends the moment its answer arrives.
//! - **the open model** ([`OpenPace`]): the thread has one arrival process and sends each request
//!   on any idle connection, opening new ones up to a cap; requests with no connection free
//!   wait in a queue (their latency still counts from their intended time).
//!
//! Intended times come from [`crate::schedule::Schedule`] (rate profile, gap distribution, seed).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use super::conn::Pending;
use crate::schedule::Schedule;

/// An arrival process on the monotonic clock, with its next time looked at.
pub(super) struct Arrivals {
    sched: Schedule,
    start: Instant,
    next: Option<Instant>,
}

impl Arrivals {
    /// The process `sched`, its offsets counted from `start`.
    pub(super) fn new(mut sched: Schedule, start: Instant) -> Arrivals {
        let next = sched.next().map(|d| start + d);
        Arrivals { sched, start, next }
    }

    /// The next intended time, if any is left.
    pub(super) fn peek(&self) -> Option<Instant> {
        self.next
    }

    /// Takes the next intended time.
    pub(super) fn take(&mut self) -> Option<Instant> {
        let t = self.next?;
        self.next = self.sched.next().map(|d| self.start + d);
        Some(t)
    }

    /// Skips `n` arrivals (the extra requests of a pipelined batch use their slots).
    pub(super) fn skip(&mut self, n: usize) {
        for _ in 0..n {
            if self.take().is_none() {
                return;
            }
        }
    }
}

/// One connection's requests in wrk2's model: those to send again first, then its arrivals.
pub(super) struct ConnSlots {
    arrivals: Arrivals,
    /// Requests given back by a failed or closed connection, oldest first.
    pub again: VecDeque<Pending>,
    /// The due time this connection is queued under in the heap, if it is.
    queued: Option<Instant>,
    /// Its time came while it was busy: it sends as soon as it is free.
    pub blocked: bool,
}

impl ConnSlots {
    /// When its next request is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.again
            .front()
            .map(|p| p.intended)
            .or(self.arrivals.peek())
    }

    /// Its next request; `fresh` tells the caller to ask the source for a batch and to skip the
    /// slots of its extra requests with [`ConnSlots::skip`].
    pub(super) fn take(&mut self) -> Option<Pending> {
        if let Some(p) = self.again.pop_front() {
            return Some(p);
        }
        self.arrivals.take().map(|intended| Pending {
            intended,
            batch: None,
            resent: false,
            trace: None,
        })
    }

    /// Skips the slots of a pipelined batch's extra requests.
    pub(super) fn skip(&mut self, n: usize) {
        self.arrivals.skip(n);
    }
}

/// wrk2's model for one thread.
pub(super) struct Wrk2Pace {
    pub slots: Vec<ConnSlots>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connections whose time came while they were busy.
    pub blocked: usize,
}

impl Wrk2Pace {
    /// One arrival process per connection.
    pub(super) fn new(arrivals: Vec<Arrivals>) -> Wrk2Pace {
        let n = arrivals.len();
        Wrk2Pace {
            slots: arrivals
                .into_iter()
                .map(|arrivals| ConnSlots {
                    arrivals,
                    again: VecDeque::new(),
                    queued: None,
                    blocked: false,
                })
                .collect(),
            heap: BinaryHeap::with_capacity(n),
            blocked: 0,
        }
    }

    /// Queues connection `i` under its next due time (once).
    pub(super) fn queue(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.queued.is_some() || s.blocked {
            return;
        }
        if let Some(due) = s.next_due() {
            s.queued = Some(due);
            self.heap.push(Reverse((due, i)));
        }
    }

    /// Forgets connection `i`'s place in the heap and its blocked state (it went down).
    pub(super) fn unqueue(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.queued = None;
        if s.blocked {
            s.blocked = false;
            self.blocked -= 1;
        }
    }

    /// Marks connection `i` blocked: its time came while it was busy.
    pub(super) fn block(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if !s.blocked {
            s.blocked = true;
            self.blocked += 1;
        }
    }

    /// Clears connection `i`'s blocked state; true if it was blocked.
    pub(super) fn unblock(&mut self, i: usize) -> bool {
        let s = &mut self.slots[i];
        let was = s.blocked;
        if was {
            s.blocked = false;
            self.blocked -= 1;
        }
        was
    }

    /// The earliest due time in the heap.
    pub(super) fn next_due(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The next connection due by `by`, taken out of the heap.
    pub(super) fn pop_due(&mut self, by: Instant) -> Option<usize> {
        self.drop_stale();
        let Reverse((t, i)) = *self.heap.peek()?;
        if t > by {
            return None;
        }
        self.heap.pop();
        self.slots[i].queued = None;
        Some(i)
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((t, i))) = self.heap.peek() {
            if self.slots[*i].queued == Some(*t) {
                return;
            }
            self.heap.pop();
        }
    }
}

/// The open model for one thread.
pub(super) struct OpenPace {
    pub arrivals: Arrivals,
    /// Requests due and not sent yet (no connection was free), oldest first.
    pub queue: VecDeque<Pending>,
    /// Idle connections.
    pub idle: Vec<usize>,
    /// Most connections this thread may have.
    pub cap: usize,
    /// Arrivals to skip (slots of a pipelined batch's extra requests).
    pub skip: usize,
}

impl OpenPace {
    /// Moves every arrival due by `by` into the queue.
    pub(super) fn admit(&mut self, by: Instant) {
        while let Some(t) = self.arrivals.peek() {
            if t > by {
                return;
            }
            self.arrivals.take();
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            self.queue.push_back(Pending {
                intended: t,
                batch: None,
                resent: false,
                trace: None,
            });
        }
    }
}

/// The pacing of one thread.
pub(super) enum Pace {
    Wrk2(Wrk2Pace),
    Open(Box<OpenPace>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Distribution, RateProfile};
    use std::time::Duration;

    fn arrivals(rate: f64, start: Instant) -> Arrivals {
        let profile = RateProfile::constant(rate).unwrap();
        Arrivals::new(
            Schedule::new(&profile, Distribution::Fixed, 1.0, Duration::ZERO, 1),
            start,
        )
    }

    #[test]
    fn the_heap_gives_connections_in_due_order_and_forgets_stale_entries() {
        let t0 = Instant::now();
        // Connection 0 every 10 ms from 0, connection 1 every 5 ms from 0.
        let mut p = Wrk2Pace::new(vec![arrivals(100.0, t0), arrivals(200.0, t0)]);
        p.queue(0);
        p.queue(1);
        p.queue(1); // queued once only
        assert_eq!(p.pop_due(t0), Some(0));
        assert_eq!(p.pop_due(t0), Some(1));
        assert_eq!(p.pop_due(t0), None);
        // Both take their slot 0, then queue again: 1 is due at 5 ms, 0 at 10 ms.
        p.slots[0].take();
        p.slots[1].take();
        p.queue(0);
        p.queue(1);
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(5)));
        p.unqueue(1); // went down: its heap entry is stale now
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(p.pop_due(t0 + Duration::from_millis(9)), None);
        assert_eq!(p.pop_due(t0 + Duration::from_millis(10)), Some(0));
    }

    #[test]
    fn a_blocked_connection_is_counted_once_and_not_queued_until_unblocked() {
        let t0 = Instant::now();
        let mut p = Wrk2Pace::new(vec![arrivals(100.0, t0)]);
        p.block(0);
        p.block(0);
        assert_eq!(p.blocked, 1);
        p.queue(0);
        assert_eq!(p.next_due(), None);
        assert!(p.unblock(0));
        assert!(!p.unblock(0));
        assert_eq!(p.blocked, 0);
        p.queue(0);
        assert_eq!(p.next_due(), Some(t0));
    }

    #[test]
    fn requests_given_back_go_before_new_arrivals_and_keep_their_time() {
        let t0 = Instant::now();
        let mut p = Wrk2Pace::new(vec![arrivals(1000.0, t0)]);
        let first = p.slots[0].take().unwrap();
        assert_eq!(first.intended, t0);
        p.slots[0].again.push_back(Pending {
            intended: first.intended,
            batch: None,
            resent: true,
            trace: None,
        });
        assert_eq!(p.slots[0].next_due(), Some(t0));
        let again = p.slots[0].take().unwrap();
        assert!(again.resent);
        // A pipelined batch of 3 uses its slots: the next arrival is slot 4 (4 ms).
        let next = p.slots[0].take().unwrap();
        assert_eq!(next.intended, t0 + Duration::from_millis(1));
        p.slots[0].skip(2);
        assert_eq!(p.slots[0].next_due(), Some(t0 + Duration::from_millis(4)));
    }

    #[test]
    fn the_open_model_admits_what_is_due_and_skips_pipelined_slots() {
        let t0 = Instant::now();
        let mut p = OpenPace {
            arrivals: arrivals(1000.0, t0),
            queue: VecDeque::new(),
            idle: Vec::new(),
            cap: 4,
            skip: 1,
        };
        p.admit(t0 + Duration::from_micros(2500));
        // Arrivals at 0, 1, 2 ms; the first is skipped.
        let times: Vec<_> = p.queue.iter().map(|q| q.intended - t0).collect();
        assert_eq!(times, [Duration::from_millis(1), Duration::from_millis(2)]);
        assert_eq!(p.arrivals.peek(), Some(t0 + Duration::from_millis(3)));
    }
}
