//! A stressor as a local child process: `aefm-stress` started in its own process group with its
//! report piped back, parsed line by line on a reader thread. Dropping a [`LocalStressor`] kills
//! the whole group, so no stressor (or its iperf3) outlives the caller.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::report::ReportLine;
use crate::spec::InterferenceSpec;

#[derive(Default)]
struct State {
    lines: Vec<ReportLine>,
    eof: bool,
}

/// A running local `aefm-stress` process.
pub struct LocalStressor {
    child: Option<Child>,
    pid: u32,
    state: Arc<(Mutex<State>, Condvar)>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl InterferenceSpec {
    /// Starts `exe` (the `aefm-stress` binary, see [`crate::find_stress_binary`]) with this spec's
    /// arguments as a child in its own process group, restricted to `placement.cpus` if set.
    pub fn spawn_local(&self, exe: &Path) -> Result<LocalStressor> {
        let mut cmd = Command::new(exe);
        cmd.args(self.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cpus) = self.placement.cpus.clone().filter(|c| !c.is_empty()) {
            // SAFETY: only sched_setaffinity (async-signal-safe) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for &c in &cpus {
                        libc::CPU_SET(c, &mut set);
                    }
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: exe.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let st = state.clone();
            readers.push(std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if let Ok(r) = serde_json::from_str::<ReportLine>(&l) {
                        let (m, cv) = &*st;
                        m.lock().unwrap_or_else(|e| e.into_inner()).lines.push(r);
                        cv.notify_all();
                    }
                }
                let (m, cv) = &*st;
                m.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
                cv.notify_all();
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let buf = stderr.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                    if b.len() < 64 * 1024 {
                        b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            }));
        }
        Ok(LocalStressor {
            child: Some(child),
            pid,
            state,
            stderr,
            readers,
        })
    }
}

impl LocalStressor {
    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn exited_error(&mut self, what: &str) -> Error {
        let status = self.child.as_mut().and_then(|c| c.wait().ok());
        // The pipes are closed now: join the readers so stderr is complete.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Error::Stressor {
            pid: self.pid,
            reason: format!(
                "{what} ({}): {}",
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "status unknown".into()),
                self.stderr().trim()
            ),
        }
    }

    /// Waits until the first report line (the stressor runs), or fails if it exits first or the
    /// timeout passes.
    pub fn wait_running(&mut self, timeout: Duration) -> Result<ReportLine> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.state.clone();
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(first) = st.lines.first() {
                return Ok(first.clone());
            }
            if st.eof {
                drop(st);
                return Err(self.exited_error("exited before reporting"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Stressor {
                    pid: self.pid,
                    reason: format!("no report within {timeout:?}"),
                });
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Report lines seen so far.
    pub fn reports(&self) -> Vec<ReportLine> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// True once the child has exited (reaps it).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Waits for the child to end by itself (its duration), up to `timeout`; returns the final line.
    pub fn wait(mut self, timeout: Duration) -> Result<Option<ReportLine>> {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                return Err(Error::Stressor {
                    pid: self.pid,
                    reason: format!("still running after {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self.finish())
    }

    /// Sends SIGTERM, waits up to `timeout` for the exit (then SIGKILLs the process group), and
    /// returns the final report line if the stressor wrote one.
    pub fn stop(mut self, timeout: Duration) -> Result<Option<ReportLine>> {
        if !self.has_exited() {
            // SAFETY: signalling our own child, not yet reaped (so the pid is still ours).
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                // SAFETY: the child leads its own process group.
                unsafe { libc::killpg(self.pid as i32, libc::SIGKILL) };
                if let Some(c) = self.child.as_mut() {
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self.finish())
    }

    /// Joins the readers (the pipes closed with the exit) and returns the final line.
    fn finish(&mut self) -> Option<ReportLine> {
        // The child is reaped here; its iperf3 (if any) died with it (PR_SET_PDEATHSIG).
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        st.lines.iter().rev().find(|l| l.r#final).cloned()
    }
}

impl Drop for LocalStressor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if !matches!(c.try_wait(), Ok(Some(_))) {
                // SAFETY: the child leads its own process group; best effort.
                unsafe { libc::killpg(self.pid as i32, libc::SIGKILL) };
                let _ = c.wait();
            }
        }
    }
}
