//! Running a [`Spec`]: resolve and test the target, build every thread's request source (and the
//! script's main state) before the clock starts, start the workers on a common instant, gather
//! their per-second ticks into progress reports, and merge their totals into a [`Report`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::connection::{ConnectError, Connection, Endpoint};
use crate::histogram::new_histogram;
use crate::report::{Errors, HistogramReport, Report, Second, StatusClasses, Summary};
use crate::request::{static_request, Seed};
use crate::script::{DoneInput, MainScript, ScriptTarget};
use crate::source::{SourceError, Workload};
use crate::spec::{Model, Spec, SpecError, Target};
use crate::worker::{self, Msg, ThreadConfig, ThreadOutput};

/// Why a run could not start or was stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The host name does not resolve.
    #[error("unable to resolve {host}:{port} {reason}")]
    Resolve {
        /// Host from the URL.
        host: String,
        /// Port.
        port: u16,
        /// Resolver message.
        reason: String,
    },
    /// No address of the host accepts connections.
    #[error("unable to connect to {host}:{port} {reason}")]
    Connect {
        /// Host from the URL.
        host: String,
        /// Port.
        port: u16,
        /// The last connect error.
        reason: String,
    },
    /// A request source (script or generator) failed: at load, or during the run. The message
    /// is the source's one line (not repeated as a cause).
    #[error("{0}")]
    Source(SourceError),
    /// A worker thread could not be set up.
    #[error("worker thread {0}: {1}")]
    Thread(usize, String),
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The test TLS handshake with the target failed or timed out (an https URL on a
    /// plain-HTTP port, or a server that never answers the handshake). The message names the
    /// address.
    #[error("{0}")]
    TlsHandshake(String),
    /// The open-file limit is too low for the connections.
    #[error(transparent)]
    OpenFiles(#[from] crate::system::OpenFilesError),
    /// [`Run::execute`] was called twice.
    #[error("this run has already been executed")]
    AlreadyExecuted,
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::Source(e)
    }
}

/// A cloneable cancellation flag. Cancelling stops the run at once; the partial report is
/// returned as usual (like wrk2's Ctrl-C).
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Progress, once per second of the run, on the thread that called `run`.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Time since the start, at the end of this second.
    pub elapsed: Duration,
    /// Requests sent so far.
    pub sent: u64,
    /// Responses completed so far.
    pub completed: u64,
    /// Errors so far (all kinds).
    pub errors: u64,
    /// Completed responses per second over this second.
    pub rate: f64,
    /// This second's entry (as it will appear in [`Report::per_second`]).
    pub second: Second,
}

type ProgressFn = dyn FnMut(&Progress) + Send;
type StartFn = dyn FnMut() + Send;

/// How the caller controls a run: cancellation and progress.
#[derive(Clone, Default)]
pub struct RunControl {
    /// Cancel through this token (or a clone of it).
    pub cancel: CancelToken,
    progress: Option<Arc<Mutex<Box<ProgressFn>>>>,
    on_start: Option<Arc<Mutex<Box<StartFn>>>>,
    start_at: Option<SystemTime>,
}

impl RunControl {
    /// No progress callback, a fresh token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` once per second of the run with the progress so far.
    pub fn with_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Arc::new(Mutex::new(Box::new(f))));
        self
    }

    /// Calls `f` once every thread has built its request source and opened its connections,
    /// just before the clock starts (wrk2 prints its banner at that point).
    pub fn on_start(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.on_start = Some(Arc::new(Mutex::new(Box::new(f))));
        self
    }

    /// Starts the run's clock at the wall-clock instant `at` (a start barrier shared with other
    /// processes) instead of just after the threads are ready: threads connect first, then wait
    /// for it, and the report's `start_time` is `at`. An instant already past starts at once
    /// (the report then says when).
    pub fn start_at(mut self, at: SystemTime) -> Self {
        self.start_at = Some(at);
        self
    }

    fn started(&self) {
        if let Some(f) = &self.on_start {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f();
        }
    }

    fn report(&self, p: &Progress) {
        if let Some(f) = &self.progress {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f(p);
        }
    }
}

/// A prepared run: target resolved, script loaded, per-thread sources ready to build.
/// Use [`run`] unless you need to print between the run and the script's `done()`.
pub struct Run {
    spec: Spec,
    target: Target,
    seeds: Option<Vec<(Seed, SocketAddr)>>,
    script: Option<MainScript>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Resolves the host and keeps the first address that accepts a test connection (like wrk).
fn resolve(target: &Target, timeout: Duration) -> Result<SocketAddr, Error> {
    let port = target.port_number;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Error::Resolve {
            host: target.host.clone(),
            port,
            reason: e.to_string(),
        })?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(addr),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::Connect {
        host: target.host.clone(),
        port,
        reason: last,
    })
}

/// For https: one TLS handshake with `addr`, as the run would make it, so that an https URL on a
/// plain-HTTP port or a server that never completes a handshake fails here, before any load,
/// instead of turning every request of the run into a connect error.
fn probe_tls(target: &Target, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let endpoint = Endpoint::new(addr, Some(&target.host)).map_err(Error::Tls)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Tls(format!("cannot start the handshake runtime: {e}")))?;
    match rt.block_on(Connection::connect(&endpoint, false, timeout)) {
        Ok(_) => Ok(()),
        Err(e @ ConnectError::Tls { .. }) => Err(Error::TlsHandshake(e.to_string())),
        Err(ConnectError::Tcp { source, .. }) => Err(Error::Connect {
            host: target.host.clone(),
            port: target.port_number,
            reason: source.to_string(),
        }),
    }
}

/// Connections a run may hold open at once.
fn max_open_connections(spec: &Spec) -> u64 {
    match spec.model {
        Model::Wrk2 => spec.connections as u64,
        Model::Open { max_connections } => max_connections as u64,
    }
}

impl Run {
    /// Validates the spec, makes sure the open-file limit holds the connections (raising the
    /// soft limit if needed, with a warning saying so), resolves and test-connects the target
    /// (with a TLS handshake for https), loads the script (calling its `setup` per thread). Any
    /// error here happens before load is sent.
    pub fn prepare(spec: &Spec) -> Result<Run, Error> {
        spec.validate()?;
        let target = Target::parse(&spec.url)?;
        let mut warnings = spec.warnings();
        let connections = max_open_connections(spec);
        warnings.extend(crate::system::ensure_open_files(connections, spec.threads)?);
        // The script loads first, as in wrk: a syntax error is reported even when the server is
        // down, and nothing is connected for a script that cannot run.
        let mut script = match &spec.workload {
            Workload::Script { path, args } => {
                let st = ScriptTarget::of(&target, spec.headers.clone());
                let main = MainScript::load(path, args, &st)?;
                warnings.extend(main.warnings().iter().cloned());
                Some(main)
            }
            _ => None,
        };
        let addr = resolve(&target, spec.timeout.max(Duration::from_secs(1)))?;
        if target.is_tls() {
            probe_tls(&target, addr, spec.timeout.max(Duration::from_secs(1)))?;
        }
        let seeds = match &spec.workload {
            Workload::Static => {
                let batch = static_request(&target, &spec.headers);
                (0..spec.threads)
                    .map(|_| (Seed::Static(batch.clone()), addr))
                    .collect()
            }
            Workload::Generator(f) => (0..spec.threads)
                .map(|_| (Seed::Generator(f.clone()), addr))
                .collect(),
            Workload::Script { .. } => {
                let main = script.as_mut().expect("a script workload was loaded above");
                let mut seeds = Vec::with_capacity(spec.threads);
                for i in 0..spec.threads {
                    let mut a = addr;
                    let seed = main.setup_thread(i, &mut a)?;
                    seeds.push((Seed::Script(seed), a));
                }
                seeds
            }
        };
        Ok(Run {
            spec: spec.clone(),
            target,
            seeds: Some(seeds),
            script,
            warnings,
        })
    }

    /// Warnings about the spec (and the script) worth showing the user before the run.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Runs the load (blocking) and returns the report. Cancelling through `control` ends the
    /// run early with a partial report. Can be called once.
    pub fn execute(&mut self, control: &RunControl) -> Result<Report, Error> {
        let seeds = self.seeds.take().ok_or(Error::AlreadyExecuted)?;
        let spec = &self.spec;
        let threads = spec.threads;
        let per_thread = spec.connections_per_thread();
        let thread_rate = spec.rate / threads as f64;
        let max_per_thread = match spec.model {
            Model::Wrk2 => per_thread,
            Model::Open { max_connections } => (max_connections / threads).max(per_thread),
        };
        let tls_host = self.target.is_tls().then_some(self.target.host.as_str());
        let (tx, rx) = mpsc::channel();
        let mut starts = Vec::with_capacity(threads);
        let mut stops = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        let mut spawn_error = None;
        for (index, (seed, addr)) in seeds.into_iter().enumerate() {
            let endpoint = Endpoint::new(addr, tls_host).map_err(Error::Tls)?;
            let cfg = ThreadConfig {
                index,
                threads,
                connections: per_thread,
                rate: thread_rate,
                phase: Duration::from_secs_f64(index as f64 / spec.rate),
                endpoint,
                timeout: spec.timeout,
                model: spec.model,
                max_connections: max_per_thread,
                warmup: spec.warmup,
                duration: spec.duration,
                batch_latency: spec.batch_latency,
                core: spec.pin.as_ref().map(|p| p[index % p.len()]),
                pacing_tolerance: spec.pacing_tolerance,
            };
            let (stx, srx) = mpsc::channel();
            let stop = Arc::new(Notify::new());
            match worker::spawn(cfg, seed, tx.clone(), srx, stop.clone()) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(Error::Thread(index, e.to_string()));
                    break;
                }
            }
            starts.push(stx);
            stops.push(stop);
        }
        drop(tx);
        let spawned = handles.len();
        let mut first_error = spawn_error;
        let mut ready = 0;
        while ready < spawned {
            match rx.recv() {
                Ok(Msg::Ready(Ok(()))) => ready += 1,
                Ok(Msg::Ready(Err(e))) => {
                    first_error.get_or_insert(e);
                    ready += 1;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some(e) = first_error {
            for s in &starts {
                let _ = s.send(None);
            }
            for h in handles {
                let _ = h.join();
            }
            return Err(e);
        }
        control.started();
        // A small margin so every worker is waiting on its timer when the first request is due
        // (otherwise the first sends carry the threads' wake-up time as send lag).
        let margin = Duration::from_millis(10);
        let (now, now_wall) = (Instant::now(), SystemTime::now());
        let wait = control
            .start_at
            .and_then(|at| at.duration_since(now_wall).ok())
            .filter(|w| *w > margin)
            .unwrap_or(margin);
        let start = now + wait;
        let start_wall = now_wall + wait;
        for s in &starts {
            let _ = s.send(Some(start));
        }

        let mut pending: BTreeMap<u64, (usize, Second)> = BTreeMap::new();
        let mut seconds: Vec<Second> = Vec::new();
        let mut outputs: Vec<(usize, ThreadOutput)> = Vec::new();
        let mut run_error: Option<Error> = None;
        let mut cancelled = false;
        let mut done = 0;
        let (mut sent, mut completed, mut errors) = (0u64, 0u64, 0u64);
        let stop_all = |stops: &[Arc<Notify>]| {
            for s in stops {
                s.notify_one();
            }
        };
        if control.cancel.is_cancelled() {
            cancelled = true;
            stop_all(&stops);
        }
        while done < spawned {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Tick(t)) => {
                    sent += t.sent;
                    completed += t.completed;
                    errors += t.errors;
                    let entry = pending
                        .entry(t.index)
                        .or_insert_with(|| (0, Second::new(t.index, 0, 0, 0, 0, new_histogram())));
                    entry.0 += 1;
                    let s = &mut entry.1;
                    s.duration_us = s.duration_us.max(t.duration.as_micros() as u64);
                    s.sent += t.sent;
                    s.completed += t.completed;
                    s.errors += t.errors;
                    let _ = s.histogram.add(&t.histogram);
                    if entry.0 == spawned {
                        let (_, s) = pending.remove(&t.index).expect("entry exists");
                        let s = finish_second(s);
                        control.report(&Progress {
                            elapsed: Duration::from_secs(s.t)
                                + Duration::from_micros(s.duration_us),
                            sent,
                            completed,
                            errors,
                            rate: if s.duration_us > 0 {
                                s.completed as f64 * 1e6 / s.duration_us as f64
                            } else {
                                0.0
                            },
                            second: s.clone(),
                        });
                        seconds.push(s);
                    }
                }
                Ok(Msg::Done(index, out)) => {
                    done += 1;
                    match *out {
                        Ok(o) => outputs.push((index, o)),
                        Err(e) => {
                            run_error.get_or_insert(e);
                            stop_all(&stops);
                        }
                    }
                }
                Ok(Msg::Ready(..)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !cancelled && control.cancel.is_cancelled() {
                cancelled = true;
                stop_all(&stops);
            }
        }
        let ended = Instant::now().max(start);
        for h in handles {
            let _ = h.join();
        }
        if let Some(e) = run_error {
            return Err(e);
        }
        seconds.extend(pending.into_values().map(|(_, s)| finish_second(s)));
        seconds.sort_by_key(|s| s.t);
        outputs.sort_by_key(|(i, _)| *i);

        let duration = if cancelled {
            ended.duration_since(start)
        } else {
            ended.duration_since(start).min(spec.duration)
        };
        let mut corrected = new_histogram();
        let mut uncorrected = new_histogram();
        let mut send_lag = new_histogram();
        let mut reqsec = new_histogram();
        let mut summary = Summary {
            target_rate: spec.rate,
            duration_us: duration.as_micros() as u64,
            cancelled,
            errors: Errors::default(),
            responses: StatusClasses::default(),
            ..Summary::default()
        };
        let mut calibration = Vec::new();
        for (_, o) in &outputs {
            let _ = corrected.add(&o.corrected);
            let _ = uncorrected.add(&o.uncorrected);
            let _ = send_lag.add(&o.send_lag);
            let _ = reqsec.add(&o.reqsec);
            summary.requests += o.requests;
            summary.sent += o.sent;
            summary.bytes += o.bytes;
            let e = &mut summary.errors;
            e.connect += o.errors.connect;
            e.read += o.errors.read;
            e.write += o.errors.write;
            e.timeout += o.errors.timeout;
            e.status += o.errors.status;
            let r = &mut summary.responses;
            r.informational += o.responses.informational;
            r.success += o.responses.success;
            r.redirection += o.responses.redirection;
            r.client_error += o.responses.client_error;
            r.server_error += o.responses.server_error;
            r.other += o.responses.other;
            e.tls += o.errors.tls;
            e.protocol += o.errors.protocol;
            summary.reconnects += o.reconnects;
            summary.outstanding += o.outstanding;
            summary.generator_busy = summary.generator_busy.max(o.busy);
            if summary.first_bad_answer.is_none() {
                summary.first_bad_answer.clone_from(&o.first_bad);
            }
            calibration.extend(o.calibration);
        }
        let secs = duration.as_secs_f64();
        summary.achieved_rate = if secs > 0.0 {
            summary.requests as f64 / secs
        } else {
            0.0
        };
        Ok(Report {
            tool: format!("aefm-load {}", env!("CARGO_PKG_VERSION")),
            url: spec.url.clone(),
            threads,
            connections: spec.connections,
            model: spec.model,
            warmup_us: spec.warmup.as_micros() as u64,
            start_time: start_wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            summary,
            corrected: HistogramReport::new(corrected),
            uncorrected: HistogramReport::new(uncorrected),
            send_lag: HistogramReport::new(send_lag),
            requests_per_thread: HistogramReport::new(reqsec),
            calibration,
            per_second: seconds,
        })
    }

    /// Calls the script's `done(summary, latency, requests)` (after the report was printed).
    /// Does nothing without a script.
    pub fn finish(&mut self, report: &Report) -> Result<(), Error> {
        let Some(main) = self.script.as_mut() else {
            return Ok(());
        };
        main.done(&DoneInput::from_report(report))?;
        Ok(())
    }
}

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

/// Runs `spec` to completion (blocking): prepare, execute, then the script's `done()`.
pub fn run(spec: &Spec, control: &RunControl) -> Result<Report, Error> {
    let mut r = Run::prepare(spec)?;
    let report = r.execute(control)?;
    r.finish(&report)?;
    Ok(report)
}
