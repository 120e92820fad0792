//! Shell hooks from the config: `sh -c` commands run at events, with the experiment and the
//! current case in `AEFM_*` environment variables; output goes to `hooks.log`.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::components::Components;
use crate::config::HookConfig;
use crate::context::Context;
use crate::events::{Event, HandlerError, Handlers};
use crate::local::process::Child;

/// A hook as a handler.
pub struct Hook {
    /// Position in `hooks:`.
    pub index: usize,
    /// The hook's settings.
    pub config: HookConfig,
}

/// The error of a failing hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The command could not be started.
    #[error("hooks[{index}] ({cmd:?}): cannot start sh: {source}")]
    Spawn {
        /// Index in `hooks:`.
        index: usize,
        /// The command.
        cmd: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The command failed.
    #[error("hooks[{index}] ({cmd:?}) failed: {status}; see hooks.log")]
    Failed {
        /// Index in `hooks:`.
        index: usize,
        /// The command.
        cmd: String,
        /// Exit status or "timed out after ...".
        status: String,
    },
}

impl crate::events::Handler for Hook {
    fn handle(&mut self, ctx: &mut Context, _c: &mut Components) -> Result<(), HandlerError> {
        let log_path = ctx.experiment_dir.join("hooks.log");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            let _ = writeln!(
                f,
                "--- {} hooks[{}] {} case={}",
                crate::results::now_rfc3339(),
                self.index,
                self.config.on,
                ctx.case.as_ref().map(|c| c.name.as_str()).unwrap_or("-")
            );
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.config.run);
        cmd.current_dir(&ctx.config.base_dir);
        cmd.envs(ctx.env());
        cmd.env("AEFM_EVENT", &self.config.on);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| HookError::Spawn {
                index: self.index,
                cmd: self.config.run.clone(),
                source,
            })?;
        cmd.stdout(log_file.try_clone().map_err(|source| HookError::Spawn {
            index: self.index,
            cmd: self.config.run.clone(),
            source,
        })?);
        cmd.stderr(log_file);
        cmd.stdin(std::process::Stdio::null());
        // Own process group so a timeout kills the whole command, and it dies with AEFM.
        let mut child = spawn_hook(cmd).map_err(|source| HookError::Spawn {
            index: self.index,
            cmd: self.config.run.clone(),
            source,
        })?;
        let deadline = Instant::now() + self.config.timeout;
        loop {
            if let Some(st) = child.try_wait() {
                if st.success() {
                    return Ok(());
                }
                return Err(Box::new(HookError::Failed {
                    index: self.index,
                    cmd: self.config.run.clone(),
                    status: st.to_string(),
                }));
            }
            if Instant::now() >= deadline {
                child.stop(Duration::from_millis(500));
                return Err(Box::new(HookError::Failed {
                    index: self.index,
                    cmd: self.config.run.clone(),
                    status: format!(
                        "timed out after {}",
                        crate::config::format_duration(self.config.timeout)
                    ),
                }));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn spawn_hook(cmd: Command) -> std::io::Result<Child> {
    Child::spawn_raw("hook", cmd, None)
}

/// Appends every hook of the config to its event's handler list.
pub fn register(handlers: &mut Handlers, hooks: &[HookConfig]) {
    for (index, h) in hooks.iter().enumerate() {
        handlers.append(
            Event::from_name(&h.on),
            format!("hooks[{index}]"),
            Hook {
                index,
                config: h.clone(),
            },
        );
    }
}
