//! Ctrl-C, SIGTERM and SIGHUP (a closed terminal or SSH session): the first stops the current case
//! and cleans up; the second kills everything AEFM started (local processes, and through the hooks
//! backends register with [`on_abort`], e.g. Kubernetes stress pods and load Jobs), records the
//! experiment as `interrupted` and prints the resume command before exiting at once (so a double
//! Ctrl-C never leaves a `running` experiment or a stressor behind).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::load::CancelToken;
use crate::results::{self, journal, metadata::status, resume, Metadata};
use crate::schedule::Schedule;

static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Cleanups a second interrupt runs before exiting.
type AbortHook = Box<dyn Fn() + Send + Sync>;
static ABORT_HOOKS: std::sync::Mutex<Vec<AbortHook>> = std::sync::Mutex::new(Vec::new());

/// Registers a cleanup the second interrupt runs before the process exits (it must bound its own
/// waiting: the user asked to exit now).
pub fn on_abort(hook: impl Fn() + Send + Sync + 'static) {
    ABORT_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(hook));
}

/// Runs the registered abort cleanups, in registration order.
fn run_abort_hooks() {
    let hooks = ABORT_HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    for h in hooks.iter() {
        h();
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic increment: async-signal-safe.
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM/SIGHUP handlers (idempotent).
pub fn install() {
    // SAFETY: the handler only touches an atomic; sigaction with a zeroed mask is valid.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut());
    }
}

/// How many interrupts arrived so far.
pub fn count() -> usize {
    COUNT.load(Ordering::SeqCst)
}

/// The experiment a second interrupt must record before exiting.
#[derive(Clone, Debug)]
pub struct Running {
    /// The experiment directory.
    pub dir: PathBuf,
    /// The config file as given (for the resume command).
    pub config_file: String,
    /// The sweep's schedule, to count the journal's cases as the run does.
    pub schedule: Schedule,
}

/// The thread that turns interrupts into cancellation; stop it when the run ends.
pub struct Watcher {
    stop: Arc<AtomicBool>,
}

impl Watcher {
    /// Stops watching (a later interrupt is no longer this run's).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches interrupts arriving from now on: the first cancels `cancel` (the current case); the
/// second kills every child AEFM started, records `running` as interrupted, prints the resume
/// command and exits with 130.
pub fn watch(cancel: CancelToken, running: Running) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let base = count();
    std::thread::spawn(move || {
        let mut warned = false;
        while !s.load(Ordering::SeqCst) {
            let n = count().saturating_sub(base);
            if n >= 1 && !warned {
                warned = true;
                cancel.cancel();
                tracing::warn!("interrupted: stopping the current case and cleaning up (Ctrl-C again to exit at once)");
            }
            if n >= 2 {
                crate::local::process::kill_all();
                crate::ui::finish_progress();
                run_abort_hooks();
                let resume = record_interrupted(&running);
                eprintln!("aefm: second interrupt: killed everything AEFM started; finished cases are kept. Resume with: {resume}");
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Watcher { stop }
}

/// Records the experiment as interrupted now, with the journal's counts; returns the resume
/// command. Failures are logged: the process exits anyway.
fn record_interrupted(r: &Running) -> String {
    let command = results::resume_command(&r.config_file, &r.dir);
    let mut meta = match Metadata::read(&r.dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "metadata.json not updated");
            return command;
        }
    };
    match journal::read(&r.dir) {
        Ok(entries) => meta.count(&resume::remap(entries, &r.schedule).0),
        Err(e) => tracing::error!(error = %e, "case counts not updated"),
    }
    meta.status = status::INTERRUPTED.into();
    meta.ended = Some(results::now_rfc3339());
    if let Err(e) = meta.write(&r.dir) {
        tracing::error!(error = %e, "metadata.json not updated");
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupt_is_recorded_with_counts_and_a_resume_command() {
        let d = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::parse(
            "name: s\nsweep: {rate: [10, 20]}\n",
            std::path::Path::new("s.yaml"),
        )
        .unwrap();
        let cases = crate::sweep::expand(&cfg);
        Metadata::start(&cfg, "s.yaml".as_ref(), 2)
            .write(d.path())
            .unwrap();
        let r = Running {
            dir: d.path().to_path_buf(),
            config_file: "s.yaml".into(),
            schedule: crate::schedule::Schedule::new(&cfg, &cases),
        };
        let cmd = record_interrupted(&r);
        assert_eq!(
            cmd,
            format!("aefm run s.yaml --resume={}", d.path().display())
        );
        let m = Metadata::read(d.path()).unwrap();
        assert_eq!(m.status, "interrupted");
        assert!(m.ended.is_some());
        assert_eq!((m.ok_cases, m.failed_cases), (0, 0));
    }
}
