//! One worker thread: its own event loop (no async runtime), optionally pinned to a core, that
//! opens its share of the connections, paces requests on its arrival processes, reads responses
//! and records latencies in its own histograms. It reports once per second (a [`Tick`]) and once
//! at the end ([`ThreadOutput`]) to the coordinator in `run`; nothing is shared between workers.
//!
//! The loop is built for few wake-ups and few system calls per request, because on a virtual
//! machine those are most of a generator's CPU:
//! - [`poller`]: two epoll sets, so that the thread sleeps through responses unless a send waits
//!   on one, with nanosecond deadlines (`epoll_pwait2`);
//! - [`socket`]: non-blocking sockets whose reads carry the kernel's arrival time
//!   (`SO_TIMESTAMPNS`), so a response read late is still timed exactly; rustls for https;
//! - [`conn`]: a connection's state, its requests in flight and the response parser;
//! - [`pace`]: the two load models and their arrival processes;
//! - [`stats`]: counters, histograms and the one rule that records a latency;
//! - [`driver`]: the loop that ties them together.

use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::connection::Endpoint;
use crate::error::Error;
use crate::report::{Calibration, Errors, StatusClasses};
use crate::request::Seed;
use crate::schedule::{stream_seed, Distribution, RateProfile, Schedule};
use crate::source::ThreadContext;
use crate::spec::Model;

mod conn;
mod driver;
mod pace;
mod poller;
pub(crate) mod socket;
mod stats;
mod traceparent;

pub(crate) use poller::Waker;

/// Everything one worker needs, fixed before it starts.
pub(crate) struct ThreadConfig {
    pub index: usize,
    pub threads: usize,
    /// Connections this thread opens up front.
    pub connections: usize,
    /// This thread's share of the (initial) rate, requests/s: spaces its connections' phases.
    pub rate: f64,
    /// Offset of this thread's schedule, so threads interleave instead of sending together.
    pub phase: Duration,
    /// The offered rate of the whole run over time.
    pub profile: RateProfile,
    /// Gap distribution of every arrival process.
    pub distribution: Distribution,
    /// The run's seed (each arrival process draws its own stream from it).
    pub seed: u64,
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
    /// A connection behind its schedule sends its due requests pipelined in one write.
    pub catch_up_pipeline: bool,
    /// Share of requests that carry a `traceparent` header (0: none).
    pub traceparent: f64,
    /// How many of its slowest traced requests the thread keeps.
    pub traced_bound: usize,
}

impl ThreadConfig {
    /// wrk2's model: connection `j`'s arrival process. Together the thread's connections send on
    /// an even grid at the thread's rate: connection j starts j/r_t after the thread (wrk2
    /// staggers connects by 5 ms instead, which loses requests and bunches sends).
    fn connection_schedule(&self, j: usize) -> Schedule {
        let total = (self.threads * self.connections).max(1);
        let offset = if self.rate > 0.0 {
            Duration::from_secs_f64(j as f64 / self.rate)
        } else {
            Duration::ZERO
        };
        let stream = (self.index * self.connections + j) as u64;
        Schedule::new(
            &self.profile,
            self.distribution,
            1.0 / total as f64,
            self.phase + offset,
            stream_seed(self.seed, stream),
        )
    }

    /// The open model: the thread's one arrival process.
    fn thread_schedule(&self) -> Schedule {
        Schedule::new(
            &self.profile,
            self.distribution,
            1.0 / self.threads.max(1) as f64,
            self.phase,
            stream_seed(self.seed, self.index as u64),
        )
    }
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
    /// Traced requests recorded and the slowest of them, times in µs after the run's start
    /// (`None` without `--traceparent`).
    pub traced: Option<(u64, Vec<crate::traced::TracedRequest>)>,
}

/// Starts a worker thread. It reports `Ready`, waits for the common start instant on `start`
/// (`None` aborts), runs until the duration ends or the returned [`Waker`] is woken, then
/// reports `Done`.
pub(crate) fn spawn(
    cfg: ThreadConfig,
    seed: Seed,
    msgs: Sender<Msg>,
    start: Receiver<Option<Instant>>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Waker)> {
    let poller = poller::Poller::new(cfg.connections)?;
    let waker = poller.waker();
    let handle = std::thread::Builder::new()
        .name(format!("aefm-load-{}", cfg.index))
        .spawn(move || thread_main(cfg, seed, msgs, start, poller))?;
    Ok((handle, waker))
}

fn thread_main(
    cfg: ThreadConfig,
    seed: Seed,
    msgs: Sender<Msg>,
    start: Receiver<Option<Instant>>,
    poller: poller::Poller,
) {
    let index = cfg.index;
    if let Some(core) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
    // Sleeps end when asked: the default 50 µs timer slack would make every send late.
    // SAFETY: prctl on the calling thread with a plain integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
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
    let now = Instant::now();
    let placeholder = driver::pace_for(&cfg, now);
    let mut d = driver::Driver::new(&cfg, &msgs, poller, source, placeholder, now);
    d.open_all();
    let _ = msgs.send(Msg::Ready(Ok(())));
    let Ok(Some(start_at)) = start.recv() else {
        return;
    };
    let (cpu0, wall0) = (crate::system::thread_cpu_time(), Instant::now());
    let outstanding = d.run(start_at, driver::pace_for(&cfg, start_at));
    let wall = wall0.elapsed().as_secs_f64();
    let busy = if wall > 0.0 {
        ((crate::system::thread_cpu_time() - cpu0).as_secs_f64() / wall).min(1.0)
    } else {
        0.0
    };
    let out = match d.fatal.take() {
        Some(e) => Err(Error::Source(e)),
        None => Ok(d.into_output(outstanding, busy)),
    };
    // The source (a Lua state) is dropped here, before `done()` can run on the main thread.
    let _ = msgs.send(Msg::Done(index, Box::new(out)));
}
