//! The crate's error type: every variant names what was wrong and where (value, file, key, address).

use std::path::PathBuf;

/// Errors of the interference library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line or spec value could not be parsed (size, rate, duration, CPU list ...).
    #[error("invalid {what} {value:?}: {reason}")]
    Parse {
        /// What was being parsed ("size", "rate", "duration", ...).
        what: &'static str,
        /// The offending text.
        value: String,
        /// Why it was rejected and what is accepted.
        reason: String,
    },
    /// A value parsed but is outside the range the stressor accepts.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The parameter.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A file under /sys or /proc could not be read or understood.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A memory request larger than the memory limit of this process' cgroup (or the host).
    #[error(
        "requested {requested} bytes ({requested_mib:.1} MiB) exceeds the memory limit of \
         {limit} bytes ({limit_mib:.1} MiB) from {source_name}; nothing was allocated",
        requested_mib = *requested as f64 / 1048576.0,
        limit_mib = *limit as f64 / 1048576.0
    )]
    AboveMemoryLimit {
        /// Bytes requested.
        requested: u64,
        /// The limit in bytes.
        limit: u64,
        /// Where the limit came from (file path or "MemTotal in /proc/meminfo").
        source_name: String,
    },
    /// CPUs were requested that the process may not run on.
    #[error("CPUs {requested:?} are not all in the allowed set {allowed:?} (cpuset / affinity)")]
    CpusNotAllowed {
        /// The requested CPU ids.
        requested: Vec<usize>,
        /// The CPUs this process may use.
        allowed: Vec<usize>,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The call (with its main argument) that failed.
        call: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child program (iperf3, aefm-stress) could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A local stressor ended or misbehaved before reporting.
    #[error("stressor (pid {pid}) {reason}")]
    Stressor {
        /// The child's pid.
        pid: u32,
        /// What happened, including its stderr when it exited.
        reason: String,
    },
    /// Writing the report or serving metrics failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn parse(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Error::Parse {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn sys(call: impl Into<String>) -> Self {
        Error::Sys {
            call: call.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
