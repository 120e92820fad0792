//! What the operating system allows this process: the CPUs it may run on (for `--pin`) and the
//! open-file limit (one descriptor per connection). Checked before any load so that a run never
//! starts with settings the machine cannot honour.

use std::fmt::Write as _;
use std::time::Duration;

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`); zero when unavailable.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The CPUs this process may run on (`sched_getaffinity`), ascending; `None` when the kernel
/// does not say.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        (!cpus.is_empty()).then_some(cpus)
    }
}

/// A CPU list as ranges: `0-3,6,8-9`.
pub fn format_cpus(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j == i {
            let _ = write!(out, "{}", cpus[i]);
        } else {
            let _ = write!(out, "{}-{}", cpus[i], cpus[j]);
        }
        i = j + 1;
    }
    out
}

/// Descriptors a run needs besides its connections: each worker's runtime, timer and wake-up
/// descriptors, plus a margin for the process's own files (logs, output files, a script's).
pub fn fd_margin(threads: usize) -> u64 {
    64 + 8 * threads as u64
}

/// Descriptors this process has open now (`/proc/self/fd`); a guess of 16 when unknown.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(16)
}

/// The open-file limit (`RLIMIT_NOFILE`): soft and hard.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
fn nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0)
        .then_some((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// The open-file limit cannot hold the run's connections.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{connections} connections need about {need} open files, but the open-file limit (RLIMIT_NOFILE) is {soft} and cannot be raised above its hard limit {hard}; raise it (for example `ulimit -n {need}` in the shell that starts the run, after raising the hard limit as root or in /etc/security/limits.conf) or use fewer connections")]
pub struct OpenFilesError {
    /// Connections the run may open.
    pub connections: u64,
    /// Descriptors needed: connections, those open now, and a margin.
    pub need: u64,
    /// The soft limit after trying to raise it.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Makes sure `connections` connections (plus the descriptors open now and [`fd_margin`]) fit
/// the open-file limit: raises the soft limit towards the hard one when needed, and returns a
/// line saying so (for stderr), or an error when even the hard limit is too low.
pub fn ensure_open_files(
    connections: u64,
    threads: usize,
) -> Result<Option<String>, OpenFilesError> {
    let need = connections + open_fds() + fd_margin(threads);
    let Some((soft, hard)) = nofile() else {
        return Ok(None);
    };
    if need <= soft {
        return Ok(None);
    }
    // Up to what is needed, not to the hard limit: an unlimited hard limit cannot be a soft one.
    let target = need.min(hard);
    let raised = if raise_soft(target) { target } else { soft };
    if need > raised {
        return Err(OpenFilesError {
            connections,
            need,
            soft: raised,
            hard,
        });
    }
    Ok(Some(format!(
        "raised the open-file limit (RLIMIT_NOFILE) from {soft} to {raised} for {connections} connections"
    )))
}

/// Sets the soft open-file limit; true on success.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
fn raise_soft(to: u64) -> bool {
    let Some((_, hard)) = nofile() else {
        return false;
    };
    let lim = libc::rlimit {
        rlim_cur: to as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the local struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_format_as_ranges() {
        assert_eq!(format_cpus(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpus(&[1]), "1");
        assert_eq!(format_cpus(&[]), "");
    }

    #[test]
    fn allowed_cpus_include_the_current_one() {
        let cpus = allowed_cpus().expect("Linux reports the affinity");
        // SAFETY: sched_getcpu has no preconditions.
        let now = unsafe { libc::sched_getcpu() };
        assert!(cpus.contains(&(now as usize)), "{cpus:?} {now}");
    }

    #[test]
    fn open_files_beyond_the_hard_limit_are_refused_with_the_figures() {
        let (_, hard) = nofile().unwrap();
        if hard >= u64::MAX / 4 {
            return; // unlimited: nothing can exceed it
        }
        let e = ensure_open_files(hard + 1, 2).unwrap_err();
        assert_eq!(e.hard, hard);
        assert!(e.need > hard);
        let text = e.to_string();
        assert!(text.contains("ulimit -n"), "{text}");
        assert!(
            text.contains(&format!("{} connections", hard + 1)),
            "{text}"
        );
        // A handful of connections always fits.
        assert_eq!(ensure_open_files(4, 1), Ok(None));
    }
}
