//! Child processes AEFM starts: own process group, pinned to cores, killed with their group,
//! and killed by the kernel if AEFM itself dies (so a crash or SIGKILL leaves nothing behind).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Process groups of every running child, for the emergency stop on a second Ctrl-C.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Pins the calling thread to `cores` (ignored when the list is empty or invalid).
pub fn pin_current_thread(cores: &[usize]) {
    let _ = set_affinity(0, cores);
}

fn set_affinity(pid: libc::pid_t, cores: &[usize]) -> std::io::Result<()> {
    if cores.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it for indices < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c, &mut set);
            }
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A child process in its own process group.
#[derive(Debug)]
pub struct Child {
    /// Name used in messages.
    pub name: String,
    inner: std::process::Child,
    exited: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd` in a new process group, pinned to `cores`, dying with AEFM, output to `log`
    /// (or piped stdout when `pipe_stdout`).
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        cores: Option<Vec<usize>>,
        log: Option<&Path>,
        pipe_stdout: bool,
    ) -> std::io::Result<Child> {
        cmd.stdin(Stdio::null());
        match log {
            Some(p) => {
                let f = File::create(p)?;
                if !pipe_stdout {
                    cmd.stdout(f.try_clone()?);
                }
                cmd.stderr(f);
            }
            None => {
                if !pipe_stdout {
                    cmd.stdout(Stdio::null());
                }
                cmd.stderr(Stdio::null());
            }
        }
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        }
        Self::spawn_raw(name, cmd, cores)
    }

    /// Starts `cmd` as configured by the caller (stdio untouched), in a new process group,
    /// pinned to `cores`, dying with AEFM.
    pub fn spawn_raw(
        name: &str,
        mut cmd: Command,
        cores: Option<Vec<usize>>,
    ) -> std::io::Result<Child> {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Die with the thread that started us (the experiment's main thread).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if let Some(c) = &cores {
                    // Allocation-free: set_affinity builds the mask on the stack.
                    set_affinity(0, c)?;
                }
                Ok(())
            });
        }
        let inner = cmd.spawn()?;
        GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inner.id() as i32);
        Ok(Child {
            name: name.to_string(),
            inner,
            exited: None,
        })
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The piped stdout, if any.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// `Some(status)` once the process exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.inner.try_wait().ok().flatten();
        }
        self.exited
    }

    /// SIGTERM to the group, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let pgid = self.pid() as i32;
        if self.try_wait().is_none() {
            // SAFETY: signalling our own child's process group.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.try_wait().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Kill what is left of the group even if the leader exited (grandchildren).
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        if self.exited.is_none() {
            self.exited = self.inner.wait().ok();
        }
        GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g| *g != pgid);
        self.exited
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.stop(Duration::from_millis(500));
        }
    }
}

/// Kills every child group still registered (emergency stop: second Ctrl-C).
pub fn kill_all() {
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for g in groups {
        // SAFETY: signalling process groups we created.
        unsafe {
            libc::kill(-g, libc::SIGKILL);
        }
    }
}

/// The last `n` lines of a log file (for error messages about a process that died).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
