//! Running a [`Spec`]: resolve and test the target, build every thread's request source (and the
//! script's main state) before the clock starts, start the workers on a common instant
//! (submodule `workers`), gather their per-second ticks into progress reports and live metrics
//! (`coordinator`), and merge their totals into a [`Report`] (`merge`).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::connection::{ConnectError, Endpoint};
use crate::metrics::MetricsServer;
use crate::report::{Report, Second};
use crate::request::{static_request, Seed};
use crate::script::{DoneInput, MainScript, ScriptTarget};
use crate::source::Workload;
use crate::spec::{Model, Spec, Target};

mod coordinator;
mod merge;
mod workers;

pub use crate::error::Error;

use merge::Ending;
use workers::Workers;

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
    metrics: Option<Arc<MetricsServer>>,
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

    /// Serves the run's live metrics on `server` (see [`crate::metrics`]), updated once per
    /// worker tick. Bind the server before [`Run::prepare`] so that an address in use fails
    /// before anything else. The server stops when the run ends: it serves one run.
    pub fn with_metrics(mut self, server: MetricsServer) -> Self {
        self.metrics = Some(Arc::new(server));
        self
    }

    /// Where the live metrics are served (the port actually bound), if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    pub(crate) fn metrics(&self) -> Option<&MetricsServer> {
        self.metrics.as_deref()
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
    match crate::connection::probe(&endpoint, timeout) {
        Ok(()) => Ok(()),
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
    /// run early with a partial report. Can be called once. The live metrics, if any, stop
    /// with it, whatever the outcome.
    pub fn execute(&mut self, control: &RunControl) -> Result<Report, Error> {
        let result = self.execute_load(control);
        if let Some(m) = control.metrics() {
            m.run_ended();
        }
        result
    }

    fn execute_load(&mut self, control: &RunControl) -> Result<Report, Error> {
        let seeds = self.seeds.take().ok_or(Error::AlreadyExecuted)?;
        let spec = &self.spec;
        let workers = Workers::spawn(spec, &self.target, seeds)?;
        control.started();
        let start = workers.start(control.start_at);
        if let Some(m) = control.metrics() {
            m.run_started(spec.rate, spec.duration, start.at, start.wall);
        }
        let gathered = coordinator::gather(&workers.msgs, &workers.stops, workers.len(), control);
        let ended = Instant::now().max(start.at);
        workers.join();
        if let Some(e) = gathered.error {
            return Err(e);
        }
        let ran = ended.duration_since(start.at);
        let ending = Ending {
            start_wall: start.wall,
            // A cancelled run lasted what it lasted; a full one, its duration (the last tick
            // arrives a little after it).
            duration: if gathered.cancelled {
                ran
            } else {
                ran.min(spec.duration)
            },
            cancelled: gathered.cancelled,
        };
        Ok(merge::report(
            spec,
            &gathered.outputs,
            gathered.seconds,
            &ending,
        ))
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

/// Runs `spec` to completion (blocking): prepare, execute, then the script's `done()`.
pub fn run(spec: &Spec, control: &RunControl) -> Result<Report, Error> {
    let mut r = Run::prepare(spec)?;
    let report = r.execute(control)?;
    r.finish(&report)?;
    Ok(report)
}
