//! One batch exchange on one connection: write the batch, read and record its responses, and
//! classify how it ended. A failure says whether the batch may be re-sent at once (a reused
//! connection closed before any byte came back: most likely the server's keep-alive timeout) or
//! whether its slots are lost (anything else), so a broken server is never retried faster than
//! the schedule.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use super::{micros, Shared, Stats};
use crate::connection::{Connection, ReadError};
use crate::histogram::record;
use crate::parser::escape_bytes;
use crate::source::{Batch, Response};

/// Most bytes of a bad answer kept for the warning.
const SAMPLE: usize = 64;

/// Where the exchange on one connection stands, for the timeout sweep.
#[derive(Clone, Copy)]
pub(super) enum Flight {
    /// Nothing outstanding.
    Idle,
    /// A batch was sent at this instant and its responses are not all in.
    Since(Instant),
    /// Outstanding and already counted as a timeout.
    Late,
}

/// Marks a flight idle when the exchange ends, however it ends (including cancellation).
struct Landing<'a>(&'a Cell<Flight>);

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.0.set(Flight::Idle);
    }
}

/// The requests of a batch still awaiting their response, kept in [`Stats::in_flight`] so the
/// run's end can count what was left unanswered. Dropping it (the exchange ended, or its task was
/// cancelled) takes the rest out.
struct Pending<'a> {
    stats: &'a RefCell<Stats>,
    left: u64,
}

impl<'a> Pending<'a> {
    fn new(stats: &'a RefCell<Stats>, depth: u64) -> Self {
        stats.borrow_mut().in_flight += depth;
        Pending { stats, left: depth }
    }

    fn answered(&mut self) {
        self.left -= 1;
        self.stats.borrow_mut().in_flight -= 1;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.stats.try_borrow_mut() {
            st.in_flight -= self.left;
        }
    }
}

/// How one batch exchange ended.
pub(super) struct Outcome {
    /// Responses completed.
    pub completed: usize,
    /// The connection can carry the next batch.
    pub reusable: bool,
    /// A source error stopped the run.
    pub fatal: bool,
    /// The exchange failed (an error was counted): the batch's slots are used up, unless
    /// `resend`.
    pub error: bool,
    /// The failure looks like a keep-alive race (a reused connection closed or reset before any
    /// byte of the first response): the batch may be re-sent at once on a new connection.
    pub resend: bool,
    /// The last clock reading of the exchange (when the connection became free again).
    pub at: Instant,
}

impl Outcome {
    fn ended(completed: usize, error: bool, resend: bool) -> Self {
        Outcome {
            completed,
            reusable: false,
            fatal: false,
            error,
            resend,
            at: Instant::now(),
        }
    }

    /// Schedule slots this exchange used up: all of the batch after an error (its requests are
    /// lost, not retried ahead of the schedule), otherwise one per completed response.
    pub fn slots(&self, depth: usize) -> u64 {
        if self.error && !self.resend {
            depth.max(1) as u64
        } else {
            self.completed as u64
        }
    }
}

impl Shared {
    /// Counts an answer that is not HTTP or was cut short; keeps the first one's description.
    fn protocol_error(&self, what: impl FnOnce() -> String) {
        let mut st = self.stats.borrow_mut();
        st.errors.protocol += 1;
        if st.first_bad.is_none() {
            st.first_bad = Some(what());
        }
    }
}

/// Reads until the next response is complete, or says how the exchange failed (counting the
/// error). `first` is true for the batch's first response.
async fn next_response(
    sh: &Shared,
    conn: &mut Connection,
    first: bool,
) -> Result<crate::parser::Parsed, Outcome> {
    let reused = conn.reused();
    let mut got = 0u64;
    loop {
        match conn.parse_buffered() {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => {
                let why = match e {
                    ReadError::Parse(p) => p.0,
                    ReadError::Io(e) => e.to_string(),
                    ReadError::Eof => "end of stream".into(),
                };
                sh.protocol_error(|| {
                    format!(
                        "not HTTP ({why}): {}",
                        escape_bytes(conn.buffered(), SAMPLE)
                    )
                });
                return Err(Outcome::ended(0, true, false));
            }
        }
        match conn.fill().await {
            Ok(0) | Err(ReadError::Eof) => {
                if let Some(p) = conn.finish_at_eof() {
                    return Ok(p);
                }
                if got == 0 && !conn.mid_response() && conn.buffered().is_empty() {
                    sh.stats.borrow_mut().errors.read += 1;
                    return Err(Outcome::ended(0, true, reused && first));
                }
                let part = if conn.mid_response() {
                    "after the response head"
                } else {
                    "inside the response head"
                };
                sh.protocol_error(|| {
                    format!(
                        "cut short: the server closed the connection {part} ({got} bytes read, unparsed: {})",
                        escape_bytes(conn.buffered(), SAMPLE)
                    )
                });
                return Err(Outcome::ended(0, true, false));
            }
            Ok(n) => {
                sh.stats.borrow_mut().bytes += n as u64;
                got += n as u64;
            }
            Err(_) => {
                sh.stats.borrow_mut().errors.read += 1;
                return Err(Outcome::ended(0, true, reused && first && got == 0));
            }
        }
    }
}

/// Writes one batch and reads its responses, recording each one.
/// `ready` is when the connection became free to send (for the send-lag histogram); `actual` is
/// now (the caller has just read the clock). `flight` tells the timeout sweep what is outstanding.
pub(super) async fn exchange(
    sh: &Shared,
    conn: &mut Connection,
    batch: &Batch,
    (intended, ready, actual): (Instant, Instant, Instant),
    flight: &Cell<Flight>,
) -> Outcome {
    flight.set(Flight::Since(actual));
    let _landing = Landing(flight);
    let depth = batch.depth.max(1);
    {
        let mut st = sh.stats.borrow_mut();
        st.sent += batch.depth as u64;
        if st.recording {
            let lag = actual.saturating_duration_since(intended.max(ready));
            record(&mut st.send_lag, micros(lag));
        }
    }
    let mut pending = Pending::new(&sh.stats, depth as u64);
    if conn.write_all(&batch.bytes).await.is_err() {
        sh.stats.borrow_mut().errors.write += 1;
        return Outcome::ended(0, true, conn.reused());
    }
    let mut last = actual;
    for i in 0..depth {
        let parsed = match next_response(sh, conn, i == 0).await {
            Ok(p) => p,
            Err(mut failed) => {
                failed.completed = i;
                return failed;
            }
        };
        pending.answered();
        let now = Instant::now();
        last = now;
        {
            let mut st = sh.stats.borrow_mut();
            st.requests += 1;
            st.responses.count(parsed.status);
            if parsed.status > 399 {
                st.errors.status += 1;
            }
            if !sh.batch_latency || i + 1 == depth {
                // From the intended time, or from the actual send when the pacing tolerance let
                // the request leave early: never less than the service time itself.
                let c = micros(now.saturating_duration_since(intended.min(actual)));
                record(&mut st.interval, c);
                if st.recording {
                    record(&mut st.corrected, c);
                    record(
                        &mut st.uncorrected,
                        micros(now.saturating_duration_since(actual)),
                    );
                }
            }
        }
        if sh.collect {
            let resp = Response {
                status: parsed.status,
                headers: &parsed.headers,
                body: &parsed.body,
            };
            let r = sh.source.borrow_mut().on_response(&resp);
            if let Err(e) = r {
                sh.fail(e);
                return Outcome {
                    fatal: true,
                    ..Outcome::ended(i + 1, false, false)
                };
            }
        }
        if !parsed.keep_alive {
            // An announced close: reconnect and go on with the rest of the batch (not an error).
            sh.stats.borrow_mut().reconnects += 1;
            return Outcome::ended(i + 1, false, false);
        }
    }
    Outcome {
        completed: depth,
        reusable: true,
        fatal: false,
        error: false,
        resend: false,
        // A script's response() ran after the last reading: its time is the generator's.
        at: if sh.collect { Instant::now() } else { last },
    }
}
