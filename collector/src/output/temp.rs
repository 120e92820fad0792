//! Temp files of the atomic writes, the collector's and the manager's alike: one recognisable
//! name, mode `0666` less the umask, and removal of the ones a killed writer left behind.
//!
//! Every result file is written to a temp file in its destination directory and renamed into
//! place. A writer killed in between (kill -9, a crash, power loss) leaves its temp file behind,
//! and a trace table's can be tens of MB. So a temp file is named
//! `.aefm-tmp.<pid>.<start>.<name>.<random>`: `<pid>` and `<start>` (the writer process's start
//! time in clock ticks since boot, field 22 of `/proc/<pid>/stat`) name the writer, and the file
//! is stale once no process has that pid *and* that start time (a reused pid has another start
//! time), or when it is older than the last boot. The first temp file a process creates in a
//! directory removes that directory's stale ones first; [`remove_stale_tree`] sweeps a whole tree
//! (the manager does when an experiment starts or resumes). Temp files of earlier versions
//! (`.tmpXXXXXX` of the manager, `.<name>.XXXXXX` of the collector) carry no writer, so they are
//! removed only when last modified before this process started.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// What every temp file's name starts with.
pub const PREFIX: &str = ".aefm-tmp.";

/// A process as the kernel knows it: pid plus start time, so a reused pid is a different process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStamp {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks since boot (`/proc/<pid>/stat` field 22; 0 where there is no
    /// `/proc`).
    pub start_ticks: u64,
}

impl ProcessStamp {
    /// This process.
    pub fn current() -> ProcessStamp {
        static ME: OnceLock<ProcessStamp> = OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id();
            ProcessStamp::of(pid).unwrap_or(ProcessStamp {
                pid,
                start_ticks: 0,
            })
        })
    }

    /// The process that has `pid` now, if one does (a zombie has exited: `None`).
    #[cfg(target_os = "linux")]
    pub fn of(pid: u32) -> Option<ProcessStamp> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: fields restart after the
        // last ')'. There, field 3 (state) is first and field 22 (starttime) the 20th.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        if state == "Z" || state == "X" {
            return None;
        }
        let start_ticks = fields.nth(18)?.parse().ok()?;
        Some(ProcessStamp { pid, start_ticks })
    }

    /// The process that has `pid` now, if one does (no start time without `/proc`).
    #[cfg(not(target_os = "linux"))]
    pub fn of(pid: u32) -> Option<ProcessStamp> {
        let pid_t = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid_t, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        alive.then_some(ProcessStamp {
            pid,
            start_ticks: 0,
        })
    }

    /// Whether this very process still runs (same pid and same start time).
    pub fn is_running(&self) -> bool {
        ProcessStamp::of(self.pid) == Some(*self)
    }

    /// The wall-clock start time, to about a second (boot time has whole seconds).
    pub fn started(&self) -> Option<SystemTime> {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz <= 0 || self.start_ticks == 0 {
            return None;
        }
        Some(boot_time()? + Duration::from_secs_f64(self.start_ticks as f64 / hz as f64))
    }
}

/// When the machine booted (`btime` of `/proc/stat`).
pub fn boot_time() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Creates the temp file that will become `dir/name`, after removing the stale temp files of
/// `dir` if this process has not yet done so. The file is created with mode `0666` less the
/// umask, as any file (tempfile's default is `0600`), and the rename keeps that mode.
pub fn create(dir: &Path, name: &str) -> io::Result<tempfile::NamedTempFile> {
    sweep_once(dir);
    let me = ProcessStamp::current();
    let prefix = format!("{PREFIX}{}.{}.{name}.", me.pid, me.start_ticks);
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    b.tempfile_in(dir)
}

/// Removes stale temp files of `dir` (not below); returns the paths removed. Files that are not
/// temp files, and temp files of a live writer, are never touched.
pub fn remove_stale(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_file || !is_stale(name, &e.path()) {
            continue;
        }
        match std::fs::remove_file(e.path()) {
            Ok(()) => {
                tracing::info!(file = %e.path().display(), "removed a temp file a killed writer left");
                removed.push(e.path());
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

/// [`remove_stale`] in `dir` and every directory below it (symbolic links are not followed);
/// directories that cannot be read are skipped with a warning.
pub fn remove_stale_tree(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        match remove_stale(&d) {
            Ok(r) => removed.extend(r),
            Err(e) => tracing::warn!(dir = %d.display(), error = %e, "not cleaned of temp files"),
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            todo.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    removed
}

/// Sweeps `dir` the first time this process writes there (later temp files there are its own).
fn sweep_once(dir: &Path) {
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let first = SWEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(dir.to_path_buf());
    if first {
        if let Err(e) = remove_stale(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "not cleaned of temp files");
        }
    }
}

/// Whether the file `name` at `path` is a temp file whose writer is gone.
fn is_stale(name: &str, path: &Path) -> bool {
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified());
    let Ok(modified) = modified else { return false };
    if let Some(rest) = name.strip_prefix(PREFIX) {
        let mut parts = rest.splitn(3, '.');
        let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(pid), Ok(start_ticks)) = (pid.parse(), start.parse()) else {
            return false;
        };
        let before_boot = boot_time().is_some_and(|b| modified < b);
        return before_boot || !ProcessStamp { pid, start_ticks }.is_running();
    }
    // An earlier version's name: stale when older than this process (with a margin, as the
    // start time is known to a second).
    is_legacy(name)
        && ProcessStamp::current()
            .started()
            .is_some_and(|s| modified + Duration::from_secs(2) < s)
}

/// `.tmpXXXXXX` (the manager's) or `.<name>.XXXXXX` with a result-file extension (the
/// collector's): the names of earlier versions.
fn is_legacy(name: &str) -> bool {
    let random = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some(r) = name.strip_prefix(".tmp") {
        return random(r);
    }
    let Some(inner) = name.strip_prefix('.') else {
        return false;
    };
    match inner.rsplit_once('.') {
        Some((file, r)) if random(r) => [".csv", ".json", ".jsonl", ".yaml", ".svg", ".log"]
            .iter()
            .any(|ext| file.ends_with(ext)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
