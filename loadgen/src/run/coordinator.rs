//! The coordinator's side of a running run: it receives the workers' messages, adds each
//! second's ticks of all threads up into one [`Second`] (calling the progress callback and
//! updating the live metrics), keeps the threads' final outputs, and stops every worker on the
//! first error or on cancellation.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::{Progress, RunControl};
use crate::error::Error;
use crate::histogram::new_histogram;
use crate::report::Second;
use crate::worker::{Msg, ThreadOutput, Tick};

/// How often the coordinator looks at the cancel token while no message arrives.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// What the workers sent, once all of them are done.
pub(super) struct Gathered {
    /// Every second of the run, in order (the last ones possibly partial).
    pub seconds: Vec<Second>,
    /// The threads' totals, by thread index.
    pub outputs: Vec<(usize, ThreadOutput)>,
    /// The first error a worker ended with.
    pub error: Option<Error>,
    /// True when the run was cancelled through the control's token.
    pub cancelled: bool,
}

/// Receives until every one of `threads` workers is done (or all of them are gone), and
/// returns what they sent. `stops` wake the workers to end early.
pub(super) fn gather(
    msgs: &Receiver<Msg>,
    stops: &[crate::worker::Waker],
    threads: usize,
    control: &RunControl,
) -> Gathered {
    let mut c = Coordinator::new(stops, threads, control);
    c.check_cancel();
    while c.done < threads {
        match msgs.recv_timeout(CANCEL_POLL) {
            Ok(Msg::Tick(t)) => c.on_tick(t),
            Ok(Msg::Done(index, out)) => c.on_done(index, *out),
            Ok(Msg::Ready(..)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        c.check_cancel();
    }
    c.finish()
}

/// Running totals over all threads, for [`Progress`].
#[derive(Default)]
struct Totals {
    sent: u64,
    completed: u64,
    errors: u64,
}

/// The state of [`gather`].
struct Coordinator<'a> {
    control: &'a RunControl,
    stops: &'a [crate::worker::Waker],
    threads: usize,
    /// Seconds some threads have not reported yet: (ticks received, sum so far).
    pending: BTreeMap<u64, (usize, Second)>,
    seconds: Vec<Second>,
    outputs: Vec<(usize, ThreadOutput)>,
    error: Option<Error>,
    cancelled: bool,
    done: usize,
    totals: Totals,
}

impl<'a> Coordinator<'a> {
    fn new(stops: &'a [crate::worker::Waker], threads: usize, control: &'a RunControl) -> Self {
        Coordinator {
            control,
            stops,
            threads,
            pending: BTreeMap::new(),
            seconds: Vec::new(),
            outputs: Vec::new(),
            error: None,
            cancelled: false,
            done: 0,
            totals: Totals::default(),
        }
    }

    fn stop_all(&self) {
        for s in self.stops {
            s.wake();
        }
    }

    /// Stops the workers once, the first time the token is seen cancelled.
    fn check_cancel(&mut self) {
        if !self.cancelled && self.control.cancel.is_cancelled() {
            self.cancelled = true;
            self.stop_all();
        }
    }

    /// Adds one thread's tick to its second; the second is complete once every thread
    /// reported it.
    fn on_tick(&mut self, t: Tick) {
        self.totals.sent += t.sent;
        self.totals.completed += t.completed;
        self.totals.errors += t.errors;
        if let Some(m) = self.control.metrics() {
            m.record_tick(t.sent, t.completed, t.errors, &t.histogram);
        }
        let entry = self
            .pending
            .entry(t.index)
            .or_insert_with(|| (0, Second::new(t.index, 0, 0, 0, 0, new_histogram())));
        entry.0 += 1;
        let s = &mut entry.1;
        s.duration_us = s.duration_us.max(t.duration.as_micros() as u64);
        s.sent += t.sent;
        s.completed += t.completed;
        s.errors += t.errors;
        let _ = s.histogram.add(&t.histogram);
        if entry.0 == self.threads {
            self.second_complete(t.index);
        }
    }

    /// Reports the complete second `index` and keeps it.
    fn second_complete(&mut self, index: u64) {
        let (_, s) = self
            .pending
            .remove(&index)
            .expect("the entry was just updated");
        let s = finish_second(s);
        let rate = if s.duration_us > 0 {
            s.completed as f64 * 1e6 / s.duration_us as f64
        } else {
            0.0
        };
        if let Some(m) = self.control.metrics() {
            m.record_second_rate(rate);
        }
        self.control.report(&Progress {
            elapsed: Duration::from_secs(s.t) + Duration::from_micros(s.duration_us),
            sent: self.totals.sent,
            completed: self.totals.completed,
            errors: self.totals.errors,
            rate,
            second: s.clone(),
        });
        self.seconds.push(s);
    }

    /// Keeps a thread's totals, or its error (which stops the others).
    fn on_done(&mut self, index: usize, out: Result<ThreadOutput, Error>) {
        self.done += 1;
        match out {
            Ok(o) => self.outputs.push((index, o)),
            Err(e) => {
                self.error.get_or_insert(e);
                self.stop_all();
            }
        }
    }

    /// Seconds some thread never finished (a run that ended early) are kept as they are.
    fn finish(mut self) -> Gathered {
        let rest = std::mem::take(&mut self.pending);
        self.seconds
            .extend(rest.into_values().map(|(_, s)| finish_second(s)));
        self.seconds.sort_by_key(|s| s.t);
        self.outputs.sort_by_key(|(i, _)| *i);
        Gathered {
            seconds: self.seconds,
            outputs: self.outputs,
            error: self.error,
            cancelled: self.cancelled,
        }
    }
}

/// Recomputes a summed second's statistics (p50, p99, max) from its histogram.
fn finish_second(s: Second) -> Second {
    Second::new(
        s.t,
        s.duration_us,
        s.sent,
        s.completed,
        s.errors,
        s.histogram,
    )
}
