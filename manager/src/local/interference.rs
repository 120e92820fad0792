//! Local interference: one `aefm-stress` process per wanted level, pinned to the app's cores,
//! kept running while the level stays wanted, stopped when it no longer is.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::components::{AppUnit, ComponentError, InterferenceGenerator, UnitRole};
use crate::context::Context;
use crate::local::process::Child;
use crate::sweep::InterferenceLevel;

/// How long a stressor may take to print its first report line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

struct Running {
    level: InterferenceLevel,
    child: Child,
    /// Report lines (JSON) the stressor printed, in order.
    lines: mpsc::Receiver<String>,
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
            let args = level
                .spec
                .to_interference(Some(&cores), Some(duration))
                .map_err(|e| ComponentError::Start {
                    what: format!("interference {}", level.label),
                    reason: e.to_string(),
                })?
                .to_args();
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
            if let Some(out) = child.take_stdout() {
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
            }
            // Running = it printed its first report line.
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    tracing::info!(level = %level.label, pid = child.pid(), first_report = %line, "interference running");
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
            self.running.push(Running {
                level: level.clone(),
                child,
                lines: rx,
            });
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), ComponentError> {
        for mut r in self.running.drain(..) {
            r.child.stop(Duration::from_secs(2));
            let last: Vec<String> = r.lines.try_iter().collect();
            tracing::info!(level = %r.level.label, last_report = %last.last().cloned().unwrap_or_default(), "interference stopped");
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
}

#[cfg(test)]
mod tests {
    use crate::config::StressSpec;

    use super::*;

    #[test]
    fn cpu_args_are_pinned() {
        // What `apply` runs: the config's conversion, rendered by the library.
        let spec: StressSpec = serde_yaml::from_str("{kind: cpu, load: 80}").unwrap();
        let a = spec
            .to_interference(Some(&[0, 1]), Some(Duration::from_secs(30)))
            .unwrap()
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
}
