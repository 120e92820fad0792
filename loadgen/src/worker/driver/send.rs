//! What goes out and when: a freed connection sends what waits for it, every request due within
//! the pacing tolerance is dispatched (wrk2's per-connection heap, or the open model's queue and
//! pool), and one write carries a batch (or, catching up with pipelining, several).

use std::time::Instant;

use super::{Driver, CATCH_UP_MAX};
use crate::source::Batch;
use crate::worker::conn::{Conn, End, Flight, Pending, Phase};
use crate::worker::pace::Pace;
use crate::worker::poller::Interest;
use crate::worker::traceparent::{with_header, TraceContext};

impl Driver<'_> {
    /// Connection `i` is free: it sends at once if it was blocked or requests are queued.
    pub(super) fn free(&mut self, i: usize, now: Instant) {
        match &mut self.pace {
            Pace::Wrk2(p) => {
                if p.unblock(i) {
                    self.send(i, now);
                }
                if let Pace::Wrk2(p) = &mut self.pace {
                    p.queue(i);
                }
            }
            Pace::Open(p) => {
                if p.queue.is_empty() {
                    p.idle.push(i);
                } else {
                    self.send(i, now);
                }
            }
        }
    }

    /// Sends everything due by `now` (within the pacing tolerance).
    pub(super) fn dispatch(&mut self, now: Instant) {
        let by = now + self.cfg.pacing_tolerance;
        match &mut self.pace {
            Pace::Wrk2(_) => self.dispatch_wrk2(now, by),
            Pace::Open(p) => {
                p.admit(by);
                self.dispatch_open(now);
            }
        }
    }

    pub(super) fn dispatch_wrk2(&mut self, now: Instant, by: Instant) {
        loop {
            let Pace::Wrk2(p) = &mut self.pace else {
                return;
            };
            let Some(i) = p.pop_due(by) else { return };
            if self.conns[i].idle() {
                self.send(i, now);
                if let Pace::Wrk2(p) = &mut self.pace {
                    p.queue(i);
                }
            } else if self.conns[i].phase == Phase::Up {
                p.block(i);
            }
            if self.stopped {
                return;
            }
        }
    }

    pub(super) fn dispatch_open(&mut self, now: Instant) {
        loop {
            let Pace::Open(p) = &mut self.pace else {
                return;
            };
            if p.queue.is_empty() || self.stopped {
                return;
            }
            if let Some(i) = p.idle.pop() {
                if self.conns[i].idle() {
                    self.send(i, now);
                }
                continue;
            }
            return self.grow(now);
        }
    }

    /// The open model opens connections for queued requests, up to its cap.
    pub(super) fn grow(&mut self, now: Instant) {
        let Pace::Open(p) = &self.pace else { return };
        let connecting = self.watching;
        let open = self.conns.len() - self.spare.len();
        if p.queue.len() <= connecting || open >= p.cap {
            return;
        }
        let deadline = (now + self.cfg.timeout).min(self.stop_at);
        let ready = self
            .spare
            .iter()
            .position(|&i| matches!(self.conns[i].phase, Phase::Down(t) if t <= now));
        let i = match ready {
            Some(k) => self.spare.swap_remove(k),
            None if self.conns.len() < p.cap => {
                self.conns.push(Conn::new(self.collect, now));
                self.conns.len() - 1
            }
            None => return,
        };
        self.connect(i, now, deadline);
    }

    /// Sends connection `i`'s next request (and, catching up with pipelining, every other
    /// request of it that is due) in one write.
    pub(super) fn send(&mut self, i: usize, now: Instant) {
        let by = now + self.cfg.pacing_tolerance;
        let max = if self.cfg.catch_up_pipeline {
            CATCH_UP_MAX
        } else {
            1
        };
        let mut first: Option<Batch> = None;
        self.wbuf.clear();
        let mut n = 0;
        while n < max {
            if n > 0 && !self.due_again(i, by) {
                break;
            }
            let Some(p) = self.next_request(i) else { break };
            let (batch, trace) = match p.batch {
                Some(b) => (b, p.trace),
                None => match self.source.next_batch() {
                    Ok(b) => {
                        self.skip_slots(i, b.depth.max(1) - 1);
                        self.traced(b)
                    }
                    Err(e) => {
                        self.fatal.get_or_insert(e);
                        self.stopped = true;
                        return;
                    }
                },
            };
            let conn = &mut self.conns[i];
            self.stats.sent(batch.depth, p.intended, conn.ready, now);
            if n == 0 {
                first = Some(batch.clone());
            } else {
                if n == 1 {
                    self.wbuf
                        .extend_from_slice(&first.as_ref().expect("first batch").bytes);
                }
                self.wbuf.extend_from_slice(&batch.bytes);
            }
            conn.flights.push_back(Flight {
                intended: p.intended,
                sent: now,
                batch,
                answered: 0,
                late: false,
                resent: p.resent,
                trace,
            });
            n += 1;
        }
        let Some(first) = first else { return };
        let wbuf = std::mem::take(&mut self.wbuf);
        let bytes: &[u8] = if n == 1 { &first.bytes } else { &wbuf };
        let result = self.conns[i].write(bytes);
        self.wbuf = wbuf;
        match result {
            Ok(true) => {}
            Ok(false) => self.start_writing(i),
            Err(_) => {
                self.stats.errors.write += 1;
                let end = if self.conns[i].reused() {
                    End::Race
                } else {
                    End::Lost
                };
                self.close(i, end, now);
            }
        }
    }

    /// A fresh batch, with a `traceparent` header when `--traceparent` picks it.
    fn traced(&mut self, b: Batch) -> (Batch, Option<TraceContext>) {
        let Some(ctx) = self.tracer.as_mut().and_then(|t| t.pick()) else {
            return (b, None);
        };
        match with_header(&b.bytes, &ctx) {
            Some(bytes) => (
                Batch {
                    bytes,
                    depth: b.depth,
                },
                Some(ctx),
            ),
            None => (b, None),
        }
    }

    pub(super) fn due_again(&self, i: usize, by: Instant) -> bool {
        match &self.pace {
            Pace::Wrk2(p) => p.slots[i].next_due().is_some_and(|t| t <= by),
            Pace::Open(p) => !p.queue.is_empty(),
        }
    }

    pub(super) fn next_request(&mut self, i: usize) -> Option<Pending> {
        match &mut self.pace {
            Pace::Wrk2(p) => p.slots[i].take(),
            Pace::Open(p) => p.queue.pop_front(),
        }
    }

    pub(super) fn skip_slots(&mut self, i: usize, n: usize) {
        match &mut self.pace {
            Pace::Wrk2(p) => p.slots[i].skip(n),
            Pace::Open(p) => p.skip += n,
        }
    }

    pub(super) fn start_writing(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.writing = true;
        if let Some(s) = conn.sock.as_ref() {
            let _ = self.poller.modify(s.fd(), i as u64, Interest::ReadWrite);
        }
        self.watch(i, true);
    }

    pub(super) fn flush(&mut self, i: usize) {
        let now = Instant::now();
        match self.conns[i].flush() {
            Ok(false) => {}
            Ok(true) => {
                let conn = &mut self.conns[i];
                conn.writing = false;
                if let Some(s) = conn.sock.as_ref() {
                    let _ = self.poller.modify(s.fd(), i as u64, Interest::Read);
                }
                self.watch(i, false);
            }
            Err(_) => {
                self.stats.errors.write += 1;
                self.close(i, End::Lost, now);
            }
        }
    }
}
