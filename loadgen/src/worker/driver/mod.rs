//! The worker loop: one thread, no async runtime, one readiness wait per wake-up.
//!
//! Each turn reads the clocks, takes in what the sockets have (responses, finished connects),
//! does the periodic chores (the per-second tick, the `Req/Sec` sample, the end of the warm-up,
//! the timeout sweep), reconnects what is due, sends every request due within the pacing
//! tolerance, and sleeps until the next thing due: on the quiet set when nothing waits on a
//! socket, on the full set when something does (see [`super::poller`]). Nothing on this path
//! allocates once the buffers have grown to their working size.
//!
//! [`links`] keeps the connections up (connect, handshake, close, reconnect); [`send`] decides
//! what goes out and when (dispatch, catch-up, writes).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::conn::{Conn, Now, Phase, ReadCtx};
use super::pace::{OpenPace, Pace, Wrk2Pace};
use super::poller::{Poller, WAKE};
use super::stats::Stats;
use super::traceparent::Tracer;
use super::{Msg, ThreadConfig};
use crate::source::{RequestSource, SourceError};

mod links;
mod send;

/// Most due batches one write carries when catching up (`--catch-up pipeline`). Deeper bursts
/// measured slower (256: +3 % over the open-loop model after a 4 s stall, 64: +1.6 %): the
/// server answers a burst in few large writes, whose bytes all arrive when the last is ready.
pub(super) const CATCH_UP_MAX: usize = 64;

/// The periodic chores' next times.
struct Chores {
    next_tick: Instant,
    sample_every: Duration,
    next_sample: Instant,
    last_sample: Instant,
    warmup_end: Option<Instant>,
    sweep_every: Duration,
    next_sweep: Instant,
}

/// One worker's whole state.
pub(super) struct Driver<'a> {
    cfg: &'a ThreadConfig,
    msgs: &'a Sender<Msg>,
    poller: Poller,
    pub conns: Vec<Conn>,
    pace: Pace,
    pub stats: Stats,
    source: Box<dyn RequestSource>,
    collect: bool,
    pub fatal: Option<SourceError>,
    start: Instant,
    stop_at: Instant,
    /// Connections whose socket events matter now (connecting, handshaking, writing).
    watching: usize,
    /// Connections holding part of a response.
    partial: usize,
    /// wrk2's model: connections to reconnect, by time.
    down: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The open model: connections that are down, to reuse.
    spare: Vec<usize>,
    chores: Chores,
    /// Tokens of the last wait.
    ready: Vec<u64>,
    /// Catch-up pipelining's write buffer.
    wbuf: Vec<u8>,
    stopped: bool,
    /// A read came without a kernel arrival time: wake for every response from now on.
    stampless: bool,
    /// How late the thread runs after a timed wake-up (smoothed); sleeps end this much early.
    wake_late: Duration,
    /// Puts `traceparent` headers on a share of the requests (`--traceparent`).
    tracer: Option<Tracer>,
}

/// The seed of which of thread `cfg.index`'s requests carry a `traceparent`: its own stream of
/// the run's seed, apart from the arrival processes' streams.
fn trace_stream(cfg: &ThreadConfig) -> u64 {
    const TRACE_STREAMS: u64 = 1 << 48;
    crate::schedule::stream_seed(cfg.seed, TRACE_STREAMS + cfg.index as u64)
}

impl<'a> Driver<'a> {
    /// A driver for `cfg`'s connections, its clock starting at `start`.
    pub(super) fn new(
        cfg: &'a ThreadConfig,
        msgs: &'a Sender<Msg>,
        poller: Poller,
        source: Box<dyn RequestSource>,
        pace: Pace,
        now: Instant,
    ) -> Driver<'a> {
        let collect = source.wants_responses();
        let conns = (0..cfg.connections)
            .map(|_| Conn::new(collect, now))
            .collect();
        let sweep_every =
            (cfg.timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
        Driver {
            cfg,
            msgs,
            poller,
            conns,
            pace,
            stats: Stats::new(
                cfg.warmup.is_zero(),
                (cfg.traceparent > 0.0).then_some(cfg.traced_bound),
            ),
            tracer: Tracer::new(cfg.traceparent, trace_stream(cfg)),
            source,
            collect,
            fatal: None,
            start: now,
            stop_at: now,
            watching: 0,
            partial: 0,
            down: BinaryHeap::new(),
            spare: Vec::new(),
            chores: Chores {
                next_tick: now,
                sample_every: Duration::from_millis(100),
                next_sample: now,
                last_sample: now,
                warmup_end: None,
                sweep_every,
                next_sweep: now,
            },
            ready: Vec::with_capacity(cfg.connections + 1),
            wbuf: Vec::new(),
            stopped: false,
            stampless: false,
            wake_late: Duration::ZERO,
        }
    }

    /// Opens every connection before the clock starts, so the first requests measure the
    /// server, not the handshakes. Failures are counted and retried during the run.
    pub(super) fn open_all(&mut self) {
        let now = Instant::now();
        let deadline = now + self.cfg.timeout;
        for i in 0..self.conns.len() {
            self.connect(i, now, deadline);
        }
        while self.watching > 0 && !self.stopped {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.wait(Some(deadline), true);
            let now = Now::read();
            self.take_events(&now);
        }
        // Whatever is still connecting has missed its deadline.
        self.expire_connects(Instant::now() + self.cfg.timeout * 2);
    }

    /// Runs from `start` for the configured duration, or until stopped; returns the requests
    /// still unanswered at the end.
    pub(super) fn run(&mut self, start: Instant, pace: Pace) -> u64 {
        self.start_clock(start);
        self.pace = pace;
        for i in 0..self.conns.len() {
            if self.conns[i].phase == Phase::Up {
                self.free(i, start);
            }
        }
        while let Some(next) = self.turn() {
            let lead = self.wake_late.min(self.cfg.pacing_tolerance / 2);
            let target = next.checked_sub(lead).unwrap_or(next);
            let sockets = self.needs_sockets();
            let before = self.ready.len();
            self.wait(Some(target), sockets);
            if self.ready.len() == before && self.ready.is_empty() {
                self.learn_lateness(target);
            }
        }
        // Answers that came before the end still count.
        let now = Now::read();
        self.take_events(&now);
        let outstanding = self.stats.in_flight;
        let end = Instant::now();
        let since = self.start + Duration::from_secs(self.stats.ticks);
        let tick = self.stats.take_tick(end.saturating_duration_since(since));
        let _ = self.msgs.send(Msg::Tick(tick));
        outstanding
    }

    /// The thread's totals.
    pub(super) fn into_output(self, outstanding: u64, busy: f64) -> super::ThreadOutput {
        self.stats.into_output(outstanding, busy, self.start)
    }

    fn start_clock(&mut self, start: Instant) {
        self.start = start;
        self.stop_at = start + self.cfg.duration;
        let c = &mut self.chores;
        c.next_tick = start + Duration::from_secs(1);
        c.next_sample = start + c.sample_every;
        c.last_sample = start;
        c.next_sweep = start + c.sweep_every;
        if !self.cfg.warmup.is_zero() {
            c.warmup_end = Some(start + self.cfg.warmup);
            c.next_sample = self.stop_at + Duration::from_secs(3600);
        }
    }

    /// One turn of the loop; `None` when the run is over, else the next time something is due.
    fn turn(&mut self) -> Option<Instant> {
        let now = Now::read();
        if self.stopped || self.fatal.is_some() || now.instant >= self.stop_at {
            return None;
        }
        self.take_events(&now);
        let t = now.instant;
        self.chores(t);
        self.reconnect_due(t);
        self.dispatch(t);
        if self.source.stop_requested() {
            self.stopped = true;
        }
        Some(self.next_deadline())
    }

    /// Sleeps (see the module docs) and keeps the ready tokens.
    fn wait(&mut self, until: Option<Instant>, sockets: bool) {
        self.ready.clear();
        match self.poller.wait(until, sockets) {
            Ok(tokens) => self.ready.extend_from_slice(tokens),
            Err(e) => {
                self.fatal
                    .get_or_insert(SourceError::new(format!("epoll failed: {e}")));
            }
        }
    }

    fn learn_lateness(&mut self, target: Instant) {
        let late = Instant::now().saturating_duration_since(target);
        let late = late.min(Duration::from_millis(1));
        self.wake_late = self.wake_late - self.wake_late / 8 + late / 8;
    }

    /// True when a socket event would let the thread do something at once.
    fn needs_sockets(&self) -> bool {
        self.watching > 0
            || self.partial > 0
            || (self.stampless && self.stats.in_flight > 0)
            || match &self.pace {
                Pace::Wrk2(p) => p.blocked > 0,
                Pace::Open(p) => !p.queue.is_empty(),
            }
    }

    /// Handles the tokens of the last wait, or (when that wait did not look at sockets) what
    /// the sockets have now.
    fn take_events(&mut self, now: &Now) {
        if self.ready.is_empty() && (self.stats.in_flight > 0 || self.watching > 0) {
            if let Ok(tokens) = self.poller.ready_now() {
                self.ready.extend_from_slice(tokens);
            }
        }
        let mut k = 0;
        while k < self.ready.len() {
            let token = self.ready[k];
            k += 1;
            if token == WAKE {
                self.stopped = true;
            } else {
                self.on_event(token as usize, now);
            }
        }
        self.ready.clear();
    }

    fn on_event(&mut self, i: usize, now: &Now) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        match conn.phase {
            Phase::Down(_) => {}
            Phase::Connecting(_) => match conn.sock.as_ref().map(|s| s.connect_result()) {
                Some(Ok(true)) => self.connected(i, now.instant),
                Some(Ok(false)) | None => {}
                Some(Err(_)) => self.connect_failed(i, false, now.instant),
            },
            Phase::Handshaking(_) => self.handshake(i, now.instant),
            Phase::Up => {
                if conn.writing {
                    self.flush(i);
                }
                self.read(i, now);
            }
        }
    }

    fn read(&mut self, i: usize, now: &Now) {
        let conn = &mut self.conns[i];
        let was_busy = !conn.flights.is_empty();
        let mut ctx = ReadCtx {
            stats: &mut self.stats,
            source: self.source.as_mut(),
            collect: self.collect,
            batch_latency: self.cfg.batch_latency,
            fatal: &mut self.fatal,
            stampless: &mut self.stampless,
        };
        let result = conn.read(&mut ctx, now);
        let partial = result.is_ok() && conn.needs_attention();
        self.set_partial(i, partial);
        match result {
            Ok(()) if was_busy && self.conns[i].idle() => self.free(i, now.instant),
            Ok(()) => {}
            Err(end) => self.close(i, end, now.instant),
        }
    }

    /// Keeps count of the connections that need attention (see [`Conn::needs_attention`]):
    /// while there are any, the thread wakes on their data.
    fn set_partial(&mut self, i: usize, on: bool) {
        let conn = &mut self.conns[i];
        match (conn.partial, on) {
            (false, true) => self.partial += 1,
            (true, false) => self.partial -= 1,
            _ => {}
        }
        conn.partial = on;
    }

    /// Starts connecting connection `i`.
    /// The per-second tick, the `Req/Sec` sample, the end of the warm-up and the timeout sweep.
    fn chores(&mut self, now: Instant) {
        let c = &mut self.chores;
        if c.warmup_end.is_some_and(|t| t <= now) {
            c.warmup_end = None;
            c.sample_every = self.stats.end_warmup();
            c.last_sample = now;
            c.next_sample = now + c.sample_every;
        }
        if c.next_sample <= now {
            self.stats
                .sample_rate(now.saturating_duration_since(c.last_sample));
            c.last_sample = now;
            c.next_sample = now + c.sample_every;
        }
        if c.next_tick <= now && c.next_tick < self.stop_at {
            let tick = self.stats.take_tick(Duration::from_secs(1));
            let _ = self.msgs.send(Msg::Tick(tick));
            c.next_tick += Duration::from_secs(1);
        }
        if c.next_sweep <= now {
            c.next_sweep = now + c.sweep_every;
            for conn in &mut self.conns {
                conn.sweep(now, self.cfg.timeout, &mut self.stats);
            }
            self.expire_connects(now);
        }
    }

    /// The earliest of: the next send, chore, reconnect and the end of the run.
    fn next_deadline(&mut self) -> Instant {
        let c = &self.chores;
        let mut next = self.stop_at.min(c.next_sample).min(c.next_sweep);
        if c.next_tick < self.stop_at {
            next = next.min(c.next_tick);
        }
        if let Some(t) = c.warmup_end {
            next = next.min(t);
        }
        if let Some(Reverse((t, _))) = self.down.peek() {
            next = next.min(*t);
        }
        match &mut self.pace {
            Pace::Wrk2(p) => {
                if let Some(t) = p.next_due() {
                    next = next.min(t);
                }
            }
            Pace::Open(p) => {
                if let Some(t) = p.arrivals.peek() {
                    next = next.min(t);
                }
            }
        }
        next
    }
}

/// The pacing of a thread: one arrival process per connection (wrk2's model) or one for the
/// thread (the open model).
pub(super) fn pace_for(cfg: &ThreadConfig, start: Instant) -> Pace {
    use super::pace::Arrivals;
    match cfg.model {
        crate::spec::Model::Wrk2 => {
            let arrivals = (0..cfg.connections)
                .map(|j| Arrivals::new(cfg.connection_schedule(j), start))
                .collect();
            Pace::Wrk2(Wrk2Pace::new(arrivals))
        }
        crate::spec::Model::Open { .. } => Pace::Open(Box::new(OpenPace {
            arrivals: Arrivals::new(cfg.thread_schedule(), start),
            queue: Default::default(),
            idle: Vec::new(),
            cap: cfg.max_connections.max(1),
            skip: 0,
        })),
    }
}
