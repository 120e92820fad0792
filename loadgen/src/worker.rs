//! One worker thread: a current-thread tokio runtime (optionally pinned to a core) that opens its
//! share of the connections, paces requests on the precise timer, reads responses and records
//! latencies in its own histograms. It reports once per second (a [`Tick`]) and once at the end
//! ([`ThreadOutput`]) to the coordinator in `run`; nothing is shared between workers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::connection::{ConnectError, Connection, Endpoint};
use crate::histogram::{self, new_histogram, record};
use crate::report::{Calibration, Errors, StatusClasses};
use crate::request::Seed;
use crate::run::Error;
use crate::source::{RequestSource, SourceError, ThreadContext};
use crate::spec::Model;
use crate::timer::PreciseTimer;

mod exchange;
mod open;

use exchange::{exchange, Flight};
use open::open_dispatch;

/// Everything one worker needs, fixed before it starts.
pub(crate) struct ThreadConfig {
    pub index: usize,
    pub threads: usize,
    /// Connections this thread opens up front.
    pub connections: usize,
    /// This thread's share of the rate, requests/s.
    pub rate: f64,
    /// Offset of this thread's schedule, so threads interleave instead of sending together.
    pub phase: Duration,
    pub endpoint: Endpoint,
    pub timeout: Duration,
    pub model: Model,
    /// Connection cap of this thread in the open model.
    pub max_connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub batch_latency: bool,
    pub core: Option<usize>,
    pub pacing_tolerance: Duration,
}

/// Messages from workers to the coordinator.
pub(crate) enum Msg {
    /// Source built and connections opened (or why not).
    Ready(Result<(), Error>),
    /// One second (or the final part of one).
    Tick(Tick),
    /// The thread's totals.
    Done(usize, Box<Result<ThreadOutput, Error>>),
}

/// One thread's counters for one interval.
pub(crate) struct Tick {
    pub index: u64,
    pub duration: Duration,
    pub sent: u64,
    pub completed: u64,
    pub errors: u64,
    pub histogram: Histogram<u64>,
}

/// A thread's totals at the end of the run.
pub(crate) struct ThreadOutput {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub reqsec: Histogram<u64>,
    pub requests: u64,
    pub sent: u64,
    pub bytes: u64,
    pub errors: Errors,
    pub responses: StatusClasses,
    pub reconnects: u64,
    pub calibration: Option<Calibration>,
    /// Requests sent and not answered when the run ended.
    pub outstanding: u64,
    /// Description of the first answer counted as a protocol error.
    pub first_bad: Option<String>,
    /// Share of the run's wall time this thread spent on a CPU (0..1): near 1, the generator
    /// thread was saturated and its own delays are in the latencies.
    pub busy: f64,
}

/// Counters and histograms of one thread.
struct Stats {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    send_lag: Histogram<u64>,
    interval: Histogram<u64>,
    reqsec: Histogram<u64>,
    requests: u64,
    sent: u64,
    bytes: u64,
    errors: Errors,
    responses: StatusClasses,
    reconnects: u64,
    recording: bool,
    calibration: Option<Calibration>,
    tick_sent: u64,
    tick_completed: u64,
    tick_errors: u64,
    ticks: u64,
    /// Requests sent whose response has not completed yet.
    in_flight: u64,
    /// `in_flight` when the run ended.
    outstanding: u64,
    /// The first protocol error's description (kind and escaped bytes).
    first_bad: Option<String>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl Stats {
    fn new(recording: bool) -> Self {
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
            outstanding: 0,
            first_bad: None,
        }
    }

    fn take_tick(&mut self, duration: Duration) -> Tick {
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
}

/// State shared by the tasks of one worker thread.
struct Shared {
    stats: RefCell<Stats>,
    source: RefCell<Box<dyn RequestSource>>,
    collect: bool,
    timer: PreciseTimer,
    endpoint: Endpoint,
    timeout: Duration,
    batch_latency: bool,
    start: Cell<Instant>,
    stop_at: Cell<Instant>,
    /// Signalled on a source error or a source's stop request.
    end: Notify,
    fatal: RefCell<Option<SourceError>>,
    /// Every live flight of this thread, scanned by [`timeout_sweep`]. A flight whose only
    /// owner left is this list is dropped by the next scan.
    flights: RefCell<Vec<Rc<Cell<Flight>>>>,
}

impl Shared {
    fn fail(&self, e: SourceError) {
        self.fatal.borrow_mut().get_or_insert(e);
        self.end.notify_one();
    }

    /// A new flight, registered with the timeout sweep.
    fn flight(&self) -> Rc<Cell<Flight>> {
        let f = Rc::new(Cell::new(Flight::Idle));
        self.flights.borrow_mut().push(f.clone());
        f
    }
}

/// Starts a worker thread. It reports `Ready`, waits for the common start instant on `start`
/// (`None` aborts), runs until the duration ends or `stop` is notified, then reports `Done`.
pub(crate) fn spawn(
    cfg: ThreadConfig,
    seed: Seed,
    msgs: Sender<Msg>,
    start: Receiver<Option<Instant>>,
    stop: Arc<Notify>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("aefm-load-{}", cfg.index))
        .spawn(move || thread_main(cfg, seed, msgs, start, stop))
}

fn thread_main(
    cfg: ThreadConfig,
    seed: Seed,
    msgs: Sender<Msg>,
    start: Receiver<Option<Instant>>,
    stop: Arc<Notify>,
) {
    let index = cfg.index;
    if let Some(core) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = msgs.send(Msg::Ready(Err(Error::Thread(index, e.to_string()))));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let ctx = ThreadContext {
        index,
        threads: cfg.threads,
        addr: cfg.endpoint.addr,
    };
    let source = match seed.build(&ctx) {
        Ok(s) => s,
        Err(e) => {
            let _ = msgs.send(Msg::Ready(Err(Error::Source(e))));
            return;
        }
    };
    let prepared = local.block_on(&rt, async {
        let timer = PreciseTimer::new(cfg.pacing_tolerance)
            .map_err(|e| Error::Thread(index, e.to_string()))?;
        let collect = source.wants_responses();
        let now = Instant::now();
        let shared = Rc::new(Shared {
            stats: RefCell::new(Stats::new(cfg.warmup.is_zero())),
            source: RefCell::new(source),
            collect,
            timer,
            endpoint: cfg.endpoint.clone(),
            timeout: cfg.timeout,
            batch_latency: cfg.batch_latency,
            start: Cell::new(now),
            stop_at: Cell::new(now),
            end: Notify::new(),
            fatal: RefCell::new(None),
            flights: RefCell::new(Vec::new()),
        });
        // Open the connections before the clock starts, so the first requests measure the
        // server, not the handshakes. Failures are counted and retried during the run.
        let mut conns = Vec::with_capacity(cfg.connections);
        let attempts: Vec<_> = (0..cfg.connections)
            .map(|_| {
                let sh = shared.clone();
                tokio::task::spawn_local(async move {
                    let deadline = Instant::now() + sh.timeout;
                    sh.open(deadline).await
                })
            })
            .collect();
        for a in attempts {
            conns.push(a.await.ok().flatten());
        }
        Ok::<_, Error>((shared, conns))
    });
    let (shared, conns) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = msgs.send(Msg::Ready(Err(e)));
            return;
        }
    };
    let _ = msgs.send(Msg::Ready(Ok(())));
    let Ok(Some(start_at)) = start.recv() else {
        return;
    };
    shared.start.set(start_at);
    shared.stop_at.set(start_at + cfg.duration);
    let (cpu0, wall0) = (crate::system::thread_cpu_time(), Instant::now());
    let result = local.block_on(&rt, run_thread(&cfg, shared.clone(), conns, &msgs, stop));
    let wall = wall0.elapsed().as_secs_f64();
    let busy = if wall > 0.0 {
        ((crate::system::thread_cpu_time() - cpu0).as_secs_f64() / wall).min(1.0)
    } else {
        0.0
    };
    // Cancel every task (in-flight requests are not counted, like wrk2 at the end of a run),
    // then drop the source before `done()` can run on the main thread.
    drop(local);
    let out = result.map(|()| {
        let st = shared.stats.replace(Stats::new(false));
        ThreadOutput {
            corrected: st.corrected,
            uncorrected: st.uncorrected,
            send_lag: st.send_lag,
            reqsec: st.reqsec,
            requests: st.requests,
            sent: st.sent,
            bytes: st.bytes,
            errors: st.errors,
            responses: st.responses,
            reconnects: st.reconnects,
            calibration: st.calibration,
            outstanding: st.outstanding,
            first_bad: st.first_bad,
            busy,
        }
    });
    drop(shared);
    drop(rt);
    let _ = msgs.send(Msg::Done(index, Box::new(out)));
}

async fn run_thread(
    cfg: &ThreadConfig,
    sh: Rc<Shared>,
    conns: Vec<Option<Connection>>,
    msgs: &Sender<Msg>,
    stop: Arc<Notify>,
) -> Result<(), Error> {
    let start = sh.start.get();
    let stop_at = sh.stop_at.get();
    tokio::task::spawn_local(sh.timer.clone().drive());
    tokio::task::spawn_local(ticker(sh.clone(), msgs.clone()));
    tokio::task::spawn_local(sampler(sh.clone(), cfg.warmup));
    tokio::task::spawn_local(timeout_sweep(sh.clone()));
    let thread_period = 1.0 / cfg.rate;
    let first = start + cfg.phase;
    match cfg.model {
        Model::Wrk2 => {
            let n = conns.len().max(1);
            let period = thread_period * n as f64;
            for (i, conn) in conns.into_iter().enumerate() {
                // Connection i starts i/r_t after the thread: together the connections send on
                // an even grid at the thread's rate (wrk2 staggers connects by 5 ms instead, which
                // loses requests and bunches sends).
                let t0 = first + Duration::from_secs_f64(thread_period * i as f64);
                tokio::task::spawn_local(wrk2_connection(sh.clone(), conn, t0, period));
            }
        }
        Model::Open { .. } => {
            let pool: Vec<Connection> = conns.into_iter().flatten().collect();
            tokio::task::spawn_local(open_dispatch(
                sh.clone(),
                pool,
                cfg.max_connections.max(1),
                first,
                thread_period,
            ));
        }
    }
    tokio::select! {
        _ = sh.timer.sleep_until(stop_at) => {}
        _ = stop.notified() => {}
        _ = sh.end.notified() => {}
    }
    let end = Instant::now();
    let tick = {
        let mut st = sh.stats.borrow_mut();
        // Read before the tasks are dropped (dropping them takes their requests out).
        st.outstanding = st.in_flight;
        let since = start + Duration::from_secs(st.ticks);
        st.take_tick(end.saturating_duration_since(since))
    };
    let _ = msgs.send(Msg::Tick(tick));
    if let Some(e) = sh.fatal.borrow_mut().take() {
        return Err(Error::Source(e));
    }
    Ok(())
}

/// Sends a [`Tick`] at every full second of the run that ends before the stop time.
async fn ticker(sh: Rc<Shared>, msgs: Sender<Msg>) {
    let start = sh.start.get();
    let stop_at = sh.stop_at.get();
    loop {
        let n = sh.stats.borrow().ticks + 1;
        let at = start + Duration::from_secs(n);
        if at >= stop_at {
            return;
        }
        tokio::time::sleep_until(at.into()).await;
        let tick = sh.stats.borrow_mut().take_tick(Duration::from_secs(1));
        let _ = msgs.send(Msg::Tick(tick));
    }
}

/// Ends the warm-up (wrk2's calibration: print-worthy mean, sampling interval, histogram reset),
/// then samples this thread's request rate for the `Req/Sec` row.
async fn sampler(sh: Rc<Shared>, warmup: Duration) {
    // Without a warm-up there is no calibration to derive wrk2's interval from: sample every
    // 100 ms (wrk2's interval is 10 ms or more; 100 ms keeps low rates from quantising to 0).
    let mut interval = Duration::from_millis(100);
    if !warmup.is_zero() {
        tokio::time::sleep_until((sh.start.get() + warmup).into()).await;
        let mut st = sh.stats.borrow_mut();
        let mean = histogram::mean(&st.corrected);
        let mean = if mean.is_finite() { mean } else { 0.0 };
        let p90_ms = histogram::value_at_percentile(&st.corrected, 90.0) as f64 / 1000.0;
        let ms = ((2.0 * p90_ms) as u64).max(10);
        st.calibration = Some(Calibration {
            mean_latency_ms: mean / 1000.0,
            sampling_interval_ms: ms,
        });
        st.corrected.reset();
        st.uncorrected.reset();
        st.send_lag.reset();
        st.recording = true;
        interval = Duration::from_millis(ms);
    }
    let mut last_requests = sh.stats.borrow().requests;
    let mut last = Instant::now().max(sh.start.get());
    loop {
        tokio::time::sleep_until((last + interval).into()).await;
        let now = Instant::now();
        let mut st = sh.stats.borrow_mut();
        let elapsed_ms = now.duration_since(last).as_secs_f64() * 1000.0;
        if elapsed_ms > 0.0 {
            let rate = (st.requests - last_requests) as f64 / elapsed_ms * 1000.0;
            record(&mut st.reqsec, rate as u64);
        }
        last_requests = st.requests;
        last = now;
    }
}

/// Counts requests outstanding longer than the timeout, each once. A periodic scan instead of a
/// timer per request: arming and clearing a tokio timer on every read was a measurable share of
/// the per-request cost, and a timeout only needs to be counted, not acted on (the response is
/// still awaited so that its real latency is recorded). The scan runs every 1/20 of the timeout
/// (1 ms to 100 ms), so a count is at most 5 % of the timeout late.
async fn timeout_sweep(sh: Rc<Shared>) {
    let every = (sh.timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let mut late = 0;
        sh.flights.borrow_mut().retain(|f| {
            if let Flight::Since(sent) = f.get() {
                if now.saturating_duration_since(sent) >= sh.timeout {
                    f.set(Flight::Late);
                    late += 1;
                }
            }
            Rc::strong_count(f) > 1
        });
        if late > 0 {
            sh.stats.borrow_mut().errors.timeout += late;
        }
    }
}

impl Shared {
    /// Opens a connection (TCP, and the TLS handshake for https) that must be ready by
    /// `deadline`; counts a failure as a connect or a TLS error.
    async fn open(&self, deadline: Instant) -> Option<Connection> {
        match Connection::connect_by(&self.endpoint, self.collect, deadline).await {
            Ok(c) => Some(c),
            Err(e) => {
                let mut st = self.stats.borrow_mut();
                match e {
                    ConnectError::Tcp { .. } => st.errors.connect += 1,
                    ConnectError::Tls { .. } => st.errors.tls += 1,
                }
                None
            }
        }
    }

    /// The deadline of a connect during the run: the request timeout, and never past the end.
    fn connect_deadline(&self) -> Instant {
        (Instant::now() + self.timeout).min(self.stop_at.get())
    }
}

/// Connects, retrying with a capped back-off (never spinning); counts each failure. Each
/// attempt ends by the run's end; after it, nothing more is tried.
async fn connect_retry(sh: &Shared) -> Connection {
    let mut backoff = Duration::from_millis(1);
    loop {
        if Instant::now() >= sh.stop_at.get() {
            // The run is over; the worker drops this task.
            std::future::pending::<()>().await;
        }
        if let Some(c) = sh.open(sh.connect_deadline()).await {
            return c;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// wrk2's per-connection schedule: request slot k is due at `t0 + k * period`; at most one batch
/// in flight; a late connection sends its backlog back to back.
async fn wrk2_connection(sh: Rc<Shared>, mut conn: Option<Connection>, t0: Instant, period: f64) {
    let stop_at = sh.stop_at.get();
    let flight = sh.flight();
    let mut k: u64 = 0;
    let mut ready = t0;
    loop {
        let intended = t0 + Duration::from_secs_f64(k as f64 * period);
        if intended >= stop_at {
            return;
        }
        let mut now = Instant::now();
        if now < intended {
            sh.timer.sleep_until(intended).await;
            now = Instant::now();
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let c = connect_retry(&sh).await;
                // Connection set-up is the server's time, not the generator's lag.
                now = Instant::now();
                ready = now;
                conn.insert(c)
            }
        };
        let batch = match sh.source.borrow_mut().next_batch() {
            Ok(b) => b,
            Err(e) => return sh.fail(e),
        };
        let out = exchange(&sh, c, &batch, (intended, ready, now), &flight).await;
        ready = out.at;
        // After an error the batch's slots are used up: the next send waits for its own slot,
        // so a server that fails every request is not hammered faster than the schedule.
        k += out.slots(batch.depth);
        if out.fatal {
            return;
        }
        if !out.reusable {
            conn = None;
        }
        if sh.source.borrow().stop_requested() {
            sh.end.notify_one();
            return;
        }
    }
}
