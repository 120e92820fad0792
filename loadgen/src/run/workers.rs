//! The worker threads of one run, seen from the coordinator: each thread's configuration (its
//! share of the connections and the rate, its phase), spawning them, waiting until every one is
//! ready, releasing them on one common start instant, and joining them.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::connection::Endpoint;
use crate::error::Error;
use crate::request::Seed;
use crate::schedule::RateProfile;
use crate::spec::{CatchUp, Model, Spec, Target};
use crate::worker::{self, Msg, ThreadConfig};

/// A small margin between releasing the threads and their start, so every worker is waiting on
/// its timer when the first request is due (otherwise the first sends carry the threads'
/// wake-up time as send lag).
const START_MARGIN: Duration = Duration::from_millis(10);

/// The spawned worker threads and the coordinator's ends of their channels.
pub(super) struct Workers {
    /// Every worker's messages.
    pub msgs: Receiver<Msg>,
    /// Wakes a worker to end early.
    pub stops: Vec<worker::Waker>,
    starts: Vec<Sender<Option<Instant>>>,
    handles: Vec<JoinHandle<()>>,
}

/// When the run's clock started.
pub(super) struct Started {
    /// On the monotonic clock.
    pub at: Instant,
    /// On the wall clock (the report's `start_time`).
    pub wall: SystemTime,
}

/// The configuration of thread `index` of `spec`, connecting to `endpoint`.
fn thread_config(
    spec: &Spec,
    index: usize,
    endpoint: Endpoint,
    profile: &RateProfile,
) -> ThreadConfig {
    let threads = spec.threads;
    let per_thread = spec.connections_per_thread();
    let max_per_thread = match spec.model {
        Model::Wrk2 => per_thread,
        Model::Open { max_connections } => (max_connections / threads).max(per_thread),
    };
    ThreadConfig {
        index,
        threads,
        connections: per_thread,
        rate: spec.rate / threads as f64,
        // Threads interleave their schedules instead of sending together.
        phase: Duration::from_secs_f64(index as f64 / spec.rate),
        endpoint,
        timeout: spec.timeout,
        model: spec.model,
        max_connections: max_per_thread,
        warmup: spec.warmup,
        duration: spec.duration,
        batch_latency: spec.batch_latency,
        core: spec.pin.as_ref().map(|p| p[index % p.len()]),
        pacing_tolerance: spec.effective_pacing_tolerance(),
        profile: profile.clone(),
        distribution: spec.distribution,
        seed: spec.seed,
        catch_up_pipeline: spec.catch_up == CatchUp::Pipeline,
        traceparent: spec.traceparent,
        traced_bound: spec.traced_bound(),
    }
}

impl Workers {
    /// Spawns one worker per seed and waits until each built its request source and opened its
    /// connections. On any failure the threads already spawned are aborted and joined, and the
    /// first error is returned.
    pub fn spawn(
        spec: &Spec,
        target: &Target,
        seeds: Vec<(Seed, SocketAddr)>,
    ) -> Result<Workers, Error> {
        let tls_host = target.is_tls().then_some(target.host.as_str());
        let profile = spec.profile()?;
        let (tx, msgs) = mpsc::channel();
        let mut w = Workers {
            msgs,
            stops: Vec::with_capacity(seeds.len()),
            starts: Vec::with_capacity(seeds.len()),
            handles: Vec::with_capacity(seeds.len()),
        };
        let mut first_error = None;
        for (index, (seed, addr)) in seeds.into_iter().enumerate() {
            let endpoint = match Endpoint::new(addr, tls_host) {
                Ok(e) => e,
                Err(e) => {
                    first_error = Some(Error::Tls(e));
                    break;
                }
            };
            let (start_tx, start_rx) = mpsc::channel();
            let cfg = thread_config(spec, index, endpoint, &profile);
            let stop = match worker::spawn(cfg, seed, tx.clone(), start_rx) {
                Ok((h, stop)) => {
                    w.handles.push(h);
                    stop
                }
                Err(e) => {
                    first_error = Some(Error::Thread(index, e.to_string()));
                    break;
                }
            };
            w.starts.push(start_tx);
            w.stops.push(stop);
        }
        // Only the workers hold senders now: the channel disconnects once they are all gone.
        drop(tx);
        // Every spawned worker reports `Ready` even when another failed: wait for all of them.
        let ready = w.wait_ready();
        if let Some(e) = first_error.or(ready.err()) {
            w.abort();
            return Err(e);
        }
        Ok(w)
    }

    /// Number of running workers.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Waits for every spawned worker's `Ready`; the first error reported, if any.
    fn wait_ready(&self) -> Result<(), Error> {
        let mut first_error = None;
        let mut ready = 0;
        while ready < self.handles.len() {
            match self.msgs.recv() {
                Ok(Msg::Ready(r)) => {
                    ready += 1;
                    if let Err(e) = r {
                        first_error.get_or_insert(e);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Tells every worker not to start and joins them.
    fn abort(self) {
        for s in &self.starts {
            let _ = s.send(None);
        }
        self.join();
    }

    /// Releases every worker on one start instant: `at` when it is more than the start margin
    /// ahead, else just after now.
    pub fn start(&self, at: Option<SystemTime>) -> Started {
        let (now, now_wall) = (Instant::now(), SystemTime::now());
        let wait = at
            .and_then(|at| at.duration_since(now_wall).ok())
            .filter(|w| *w > START_MARGIN)
            .unwrap_or(START_MARGIN);
        let started = Started {
            at: now + wait,
            wall: now_wall + wait,
        };
        for s in &self.starts {
            let _ = s.send(Some(started.at));
        }
        started
    }

    /// Waits for every worker thread to end.
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}
