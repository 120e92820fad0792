//! Local interference: one `aefm-stress` process per wanted level, pinned to the app's cores,
//! kept running while the level stays wanted, stopped when it no longer is. Every report line a
//! stressor prints is kept with the time it was read, so that [`InterferenceGenerator::verify`]
//! can judge each case's window from the stressor's own evidence.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStdout, Command};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use aefm_interference::verify::{self, Observed, Tolerances};
use aefm_interference::{ReportLine, Stressor};

use crate::components::{AppUnit, ComponentError, InterferenceGenerator, UnitRole, Window};
use crate::context::Context;
use crate::local::process::Child;
use crate::sweep::InterferenceLevel;
use crate::validity::Reason;

/// How long a stressor may take to have every worker at work (membw faults in gigabytes of
/// arrays first; on a busy machine that took 10 s here).
const WARM_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the stressor's reports say every worker is ready (`ready_workers` = `workers`,
/// for stressors that report them), so the settle time and the window start with the stressor at
/// work, not while it sets up. Stressors without those details are ready at their first line.
fn wait_workers_ready(reports: &Mutex<Reports>, ctx: &Context) -> Result<(), String> {
    let end = std::time::Instant::now() + WARM_TIMEOUT;
    loop {
        let (last, closed) = {
            let r = reports.lock().unwrap_or_else(|e| e.into_inner());
            (
                r.lines.back().map(|o| o.line.clone()),
                r.closed_at.is_some(),
            )
        };
        if last.as_ref().is_some_and(workers_ready) {
            return Ok(());
        }
        let last = last
            .map(|l| serde_json::to_string(&l).unwrap_or_default())
            .unwrap_or_default();
        if closed {
            return Err(format!(
                "the stressor exited while setting up (last report: {last})"
            ));
        }
        if ctx.cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        if std::time::Instant::now() >= end {
            return Err(format!("workers not ready (last report: {last})"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True unless the report line says some workers are not ready yet.
fn workers_ready(line: &ReportLine) -> bool {
    match (line.detail_f64("ready_workers"), line.detail_f64("workers")) {
        (Some(ready), Some(workers)) => ready >= workers,
        _ => true,
    }
}

/// How long a stressor may take to print its first report line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Report lines kept per stressor (one a second: two hours), so a stressor kept across many
/// cases holds bounded memory; [`InterferenceGenerator::verify`] also drops what precedes its
/// window, which no later case needs.
const KEEP_LINES: usize = 7200;

/// What a stressor reported: its lines with the time each was read, and when its report ended
/// (stdout closed: the process is gone).
#[derive(Default)]
struct Reports {
    lines: VecDeque<Observed>,
    closed_at: Option<SystemTime>,
}

struct Running {
    level: InterferenceLevel,
    /// The stressor as started (for its checks).
    stressor: Stressor,
    child: Child,
    /// Filled by the reader thread.
    reports: Arc<Mutex<Reports>>,
}

/// Reads a stressor's report lines until its stdout closes, keeping each with the time it was
/// read; sends the first line's text on `first` (dropping `first` unsent says it never reported).
fn read_reports(out: ChildStdout, reports: Arc<Mutex<Reports>>, first: mpsc::Sender<String>) {
    let mut first = Some(first);
    for text in BufReader::new(out).lines().map_while(Result::ok) {
        let at = SystemTime::now();
        let Ok(line) = serde_json::from_str::<ReportLine>(&text) else {
            continue;
        };
        {
            let mut r = reports.lock().unwrap_or_else(|e| e.into_inner());
            r.lines.push_back(Observed { at, line });
            while r.lines.len() > KEEP_LINES {
                r.lines.pop_front();
            }
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(text);
        }
    }
    reports.lock().unwrap_or_else(|e| e.into_inner()).closed_at = Some(SystemTime::now());
}

impl Running {
    /// The checks of [`verify::check`] for this stressor over `window`; then forgets the lines
    /// before the window (later cases have later windows).
    fn verify(&mut self, window: &Window, tol: &Tolerances) -> Vec<Reason> {
        let status = self.child.try_wait();
        if status.is_some() {
            // The reader sees the pipe close at the exit; give it a moment to say when.
            for _ in 0..50 {
                if self.closed_at().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let ended = match (r.closed_at, status) {
            (Some(at), _) if at > window.end => None,
            (Some(_), Some(st)) => Some(format!("exited: {st}")),
            (Some(_), None) => Some("its report stream closed".to_string()),
            (None, Some(st)) => Some(format!("exited: {st}")),
            (None, None) => None,
        };
        let lines: Vec<Observed> = r.lines.iter().cloned().collect();
        let findings = verify::check(
            &self.level.label,
            &self.stressor,
            &lines,
            (window.start, window.end),
            ended.as_deref(),
            tol,
        );
        let keep_from = window.start - tol.max_gap;
        while r.lines.front().is_some_and(|o| o.at < keep_from) {
            r.lines.pop_front();
        }
        findings
            .into_iter()
            .map(|f| Reason::new(f.code, f.message))
            .collect()
    }

    fn closed_at(&self) -> Option<SystemTime> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed_at
    }

    /// The last line read, as JSON, for the log.
    fn last_line(&self) -> String {
        let r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        r.lines
            .back()
            .and_then(|o| serde_json::to_string(&o.line).ok())
            .unwrap_or_default()
    }
}

/// Runs stressors as local processes.
#[derive(Default)]
pub struct LocalInterference {
    exe: Option<PathBuf>,
    running: Vec<Running>,
}

impl LocalInterference {
    /// A generator using the `aefm-stress` found by [`find_stress_binary`] when first needed.
    pub fn new() -> Self {
        Self::default()
    }

    /// A generator using this `aefm-stress` executable.
    pub fn with_exe(exe: PathBuf) -> Self {
        Self {
            exe: Some(exe),
            running: Vec::new(),
        }
    }
}

/// Finds `aefm-stress`: `$AEFM_STRESS`, else where [`aefm_interference::find_stress_binary`] looks
/// (beside the running executable or one level up, for test executables in `deps/`, then `$PATH`).
pub fn find_stress_binary() -> Option<PathBuf> {
    std::env::var_os("AEFM_STRESS")
        .map(PathBuf::from)
        .or_else(aefm_interference::find_stress_binary)
}

impl InterferenceGenerator for LocalInterference {
    fn apply(&mut self, ctx: &Context, wanted: &[InterferenceLevel]) -> Result<(), ComponentError> {
        // Stop what is no longer wanted; keep what is (no restart when only other dimensions changed).
        let mut keep = Vec::new();
        for mut r in std::mem::take(&mut self.running) {
            let still = wanted.contains(&r.level) && r.child.try_wait().is_none();
            if still {
                keep.push(r);
            } else {
                r.child.stop(Duration::from_secs(2));
                tracing::info!(level = %r.level.label, "interference stopped");
            }
        }
        self.running = keep;
        if self.exe.is_none() && !wanted.is_empty() {
            self.exe = find_stress_binary();
        }
        let cores = ctx.config.app.cores.clone();
        // Long enough for the rest of the experiment; AEFM stops it earlier, and the kernel kills it
        // if AEFM dies (PDEATHSIG), so this is only a last-resort bound.
        let remaining = ctx
            .cases
            .len()
            .saturating_sub(ctx.case.as_ref().map_or(0, |c| c.index));
        let per_case =
            ctx.config.warmup + ctx.config.duration + ctx.config.cooldown + ctx.config.settle;
        let duration = per_case * (remaining as u32 + 1) + Duration::from_secs(3600);
        for level in wanted {
            if self.running.iter().any(|r| &r.level == level) {
                continue;
            }
            let exe = self.exe.clone().ok_or_else(|| ComponentError::Start {
                what: format!("interference {}", level.label),
                reason: "aefm-stress not found (set AEFM_STRESS, put it beside aefm, or on PATH)"
                    .into(),
            })?;
            let spec = level.spec.beside(&cores, Some(duration));
            let args = spec.to_args();
            let mut cmd = Command::new(&exe);
            cmd.args(&args);
            let log_dir = ctx.experiment_dir.join("interference");
            std::fs::create_dir_all(&log_dir).ok();
            let log = log_dir.join(format!("{}.log", level.label));
            let what = format!(
                "interference {} ({} {})",
                level.label,
                exe.display(),
                args.join(" ")
            );
            let mut child = Child::spawn(&level.label, cmd, Some(cores.clone()), Some(&log), true)
                .map_err(|e| ComponentError::Start {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
            let (tx, rx) = mpsc::channel();
            let reports = Arc::new(Mutex::new(Reports::default()));
            if let Some(out) = child.take_stdout() {
                let r = reports.clone();
                std::thread::spawn(move || read_reports(out, r, tx));
            }
            // Running = it printed its first report line.
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    tracing::info!(level = %level.label, pid = child.pid(), first_report = %line, "interference running");
                    if line.contains("\"error\"") {
                        // Started, but failing (a net target that does not answer): the case's
                        // check will make it invalid unless it recovers before the window.
                        tracing::warn!(level = %level.label, report = %line, "interference reports an error");
                    }
                }
                Err(_) => {
                    let status = child.stop(Duration::from_secs(1));
                    let out = crate::local::process::tail(&log, 3);
                    return Err(ComponentError::NotReady {
                        what,
                        waited_s: START_TIMEOUT.as_secs_f64(),
                        reason: format!(
                            "no report line ({}){}",
                            status.map(|s| s.to_string()).unwrap_or_default(),
                            if out.is_empty() {
                                String::new()
                            } else {
                                format!("; stderr: {out}")
                            }
                        ),
                    });
                }
            }
            if let Err(reason) = wait_workers_ready(&reports, ctx) {
                child.stop(Duration::from_secs(1));
                return Err(ComponentError::NotReady {
                    what,
                    waited_s: WARM_TIMEOUT.as_secs_f64(),
                    reason,
                });
            }
            self.running.push(Running {
                level: level.clone(),
                stressor: spec.stressor,
                child,
                reports,
            });
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), ComponentError> {
        for mut r in self.running.drain(..) {
            r.child.stop(Duration::from_secs(2));
            tracing::info!(level = %r.level.label, last_report = %r.last_line(), "interference stopped");
        }
        Ok(())
    }

    fn units(&self) -> Vec<AppUnit> {
        self.running
            .iter()
            .map(|r| AppUnit {
                name: r.level.label.clone(),
                service: format!("interference-{}", r.level.dimension),
                pid: Some(r.child.pid()),
                node: None,
                role: UnitRole::Interference,
            })
            .collect()
    }

    /// Every running stressor judged from the report lines it printed during `window`.
    fn verify(&mut self, window: &Window, tol: &Tolerances) -> Vec<Reason> {
        self.running
            .iter_mut()
            .flat_map(|r| r.verify(window, tol))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::StressLevel;

    use super::*;

    #[test]
    fn workers_are_ready_when_the_report_says_so_or_says_nothing() {
        let line = |t: &str| serde_json::from_str::<ReportLine>(t).unwrap();
        let base = r#""elapsed_s":1,"target":0,"achieved":0,"unit":"GB/s""#;
        assert!(!workers_ready(&line(&format!(
            r#"{{"kind":"membw",{base},"ready_workers":0,"workers":2}}"#
        ))));
        assert!(workers_ready(&line(&format!(
            r#"{{"kind":"membw",{base},"ready_workers":2,"workers":2}}"#
        ))));
        assert!(workers_ready(&line(&format!(r#"{{"kind":"cpu",{base}}}"#))));
    }

    #[test]
    fn cpu_args_are_pinned() {
        // What `apply` runs: the level converted with the config, placed beside the app's cores.
        let level: StressLevel = serde_yaml::from_str("{kind: cpu, load: 80}").unwrap();
        let a = level
            .beside(&[0, 1], Some(Duration::from_secs(30)))
            .to_args();
        assert_eq!(
            a,
            [
                "cpu",
                "--workers",
                "2",
                "--load",
                "80",
                "--cpus",
                "0,1",
                "--duration",
                "30s"
            ]
        );
    }

    #[test]
    fn config_defaults_are_the_checker_defaults() {
        // Documented in two places (validity config, the library): they must agree.
        let t = crate::validity::ValidityConfig::default().tolerances();
        assert_eq!(t, Tolerances::default());
    }
}
