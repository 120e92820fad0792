//! Local interference: one `aefm-stress` process per wanted level, pinned to the app's cores,
//! kept running while the level stays wanted, stopped when it no longer is.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::components::{AppUnit, ComponentError, InterferenceGenerator, UnitRole};
use crate::config::{fmt_num, StressKind, StressSpec};
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

/// Finds `aefm-stress`: `$AEFM_STRESS`, beside the running executable (or one level up, for test
/// executables in `deps/`), then `$PATH`.
pub fn find_stress_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AEFM_STRESS") {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(PathBuf::from);
        for _ in 0..2 {
            if let Some(d) = dir {
                let c = d.join("aefm-stress");
                if c.is_file() {
                    return Some(c);
                }
                dir = d.parent().map(PathBuf::from);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("aefm-stress"))
            .find(|p| p.is_file())
    })
}

/// The `aefm-stress` arguments for a level, pinned to `cores`, lasting `duration`.
pub fn stress_args(spec: &StressSpec, cores: &[usize], duration: Duration) -> Vec<String> {
    let workers = spec.workers.unwrap_or(cores.len().max(1)).to_string();
    let mut a: Vec<String> = vec![spec.kind.to_string()];
    match spec.kind {
        StressKind::Cpu => {
            a.extend(["--workers".into(), workers]);
            a.extend(["--load".into(), fmt_num(spec.load.unwrap_or(100.0))]);
            let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
            a.extend(["--cpus".into(), list.join(",")]);
        }
        StressKind::Membw => {
            a.extend([
                "--rate".into(),
                spec.rate.clone().unwrap_or_else(|| "max".into()),
            ]);
            a.extend(["--workers".into(), workers]);
        }
        StressKind::Memcap => {
            a.extend(["--size".into(), spec.size.clone().unwrap_or_default()]);
        }
        StressKind::Cache => {
            a.extend([
                "--level".into(),
                spec.level.clone().unwrap_or_else(|| "llc".into()),
            ]);
            a.extend(["--fraction".into(), fmt_num(spec.fraction.unwrap_or(1.0))]);
        }
        StressKind::Net => {
            a.extend(["--target".into(), spec.target.clone().unwrap_or_default()]);
            a.extend([
                "--bandwidth".into(),
                spec.bandwidth.clone().unwrap_or_else(|| "1G".into()),
            ]);
            a.extend(["--streams".into(), spec.streams.unwrap_or(1).to_string()]);
        }
    }
    a.extend([
        "--duration".into(),
        format!("{}s", duration.as_secs().max(1)),
    ]);
    a
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
            let args = stress_args(&level.spec, &cores, duration);
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
    use super::*;

    #[test]
    fn cpu_args_are_pinned() {
        let spec = StressSpec {
            kind: StressKind::Cpu,
            label: None,
            workers: None,
            load: Some(80.0),
            rate: None,
            size: None,
            level: None,
            fraction: None,
            target: None,
            bandwidth: None,
            streams: None,
        };
        let a = stress_args(&spec, &[0, 1], Duration::from_secs(30));
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
