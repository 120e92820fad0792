//! metadata.json: what ran, where and when, how far it got, and which process runs it, so that a
//! `running` experiment whose process is gone (kill -9, a crash, a reboot) is told apart from one
//! that still runs: it is `crashed`.

use std::collections::BTreeMap;
use std::path::Path;

use aefm_collector::output::temp::ProcessStamp;
use serde::{Deserialize, Serialize};

use super::journal::{Entry, Status};
use super::{io, now_rfc3339, write_atomic, ResultsError};
use crate::config::Config;
use crate::validity::Validity;

/// The values of [`Metadata::status`] (and `crashed`, which is never written: it is what
/// `running` means once the process is gone, see [`Metadata::effective_status`]).
pub mod status {
    /// A run is going on (or crashed, when its process is gone).
    pub const RUNNING: &str = "running";
    /// Every case ran and is ok.
    pub const FINISHED: &str = "finished";
    /// The sweep ran to its end, some cases failed.
    pub const FINISHED_WITH_FAILURES: &str = "finished-with-failures";
    /// Ctrl-C (once or twice) or SIGTERM stopped the run.
    pub const INTERRUPTED: &str = "interrupted";
    /// Setting up failed, or `abort_on_error` / `on_invalid: abort` stopped the run.
    pub const FAILED: &str = "failed";
    /// A `running` experiment whose process is gone.
    pub const CRASHED: &str = "crashed";
}

/// metadata.json: what ran, where and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metadata {
    /// Experiment name.
    pub name: String,
    /// aefm version.
    pub aefm_version: String,
    /// Host name.
    pub host: String,
    /// Kernel (`uname -sr`).
    pub kernel: String,
    /// CPUs available.
    pub cpus: usize,
    /// The config file given on the command line (of the last run).
    pub config_file: String,
    /// Backend.
    pub backend: String,
    /// Test cases in the sweep.
    pub cases: usize,
    /// Start of the first run (RFC 3339, UTC).
    pub started: String,
    /// Starts of later `--resume` runs.
    #[serde(default)]
    pub resumed: Vec<String>,
    /// End of the last run (RFC 3339, UTC), once it ended.
    #[serde(default)]
    pub ended: Option<String>,
    /// One of [`status`]: `running`, `finished`, `finished-with-failures`, `interrupted` or
    /// `failed`.
    pub status: String,
    /// Cases that ran to their end (`status` ok), at the end of the last run.
    #[serde(default)]
    pub ok_cases: usize,
    /// Cases that failed.
    #[serde(default)]
    pub failed_cases: usize,
    /// Ok cases whose figures passed every validity check.
    #[serde(default)]
    pub valid_cases: usize,
    /// Ok cases with at least one validity reason.
    #[serde(default)]
    pub invalid_cases: usize,
    /// Process id of the aefm that ran (or runs) the last run.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22): a reused pid has
    /// another one.
    #[serde(default)]
    pub pid_start_ticks: Option<u64>,
    /// The boot it ran in (`/proc/sys/kernel/random/boot_id`): after a reboot it is gone.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The config's directory (relative paths in the config resolve against it).
    #[serde(default)]
    pub config_dir: Option<String>,
    /// Resumes that went on with a changed config (`--resume-anyway`), oldest first.
    #[serde(default)]
    pub config_changes: Vec<ConfigChange>,
}

/// A resume with a config that differs from the one the experiment ran with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The keys that differ: `key.path: old -> new`.
    pub changes: Vec<String>,
    /// Where the earlier resolved config was kept (`config.resolved.<n>.yaml`).
    pub previous: String,
    /// Finished cases not in the new sweep: kept in `journal.jsonl` and `cases/`, left out of
    /// `summary.csv` and the plots.
    #[serde(default)]
    pub set_aside: Vec<String>,
}

/// Whether the process of a `running` experiment still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (same host, same boot, same pid and start time).
    Alive,
    /// It is gone: the experiment crashed.
    Gone,
    /// It ran on another host; whether it still runs cannot be told from here.
    Elsewhere(String),
    /// An older aefm recorded no pid: cannot be told.
    Unknown,
}

impl Metadata {
    /// Metadata of a run starting now, by this process.
    pub fn start(cfg: &Config, config_file: &Path, cases: usize) -> Self {
        let mut m = Self {
            name: cfg.name.clone(),
            aefm_version: env!("CARGO_PKG_VERSION").to_string(),
            host: super::hostname(),
            kernel: super::kernel(),
            cpus: crate::config::available_cores(),
            config_file: config_file.display().to_string(),
            backend: format!("{:?}", cfg.backend).to_lowercase(),
            cases,
            started: now_rfc3339(),
            resumed: Vec::new(),
            ended: None,
            status: status::RUNNING.into(),
            ok_cases: 0,
            failed_cases: 0,
            valid_cases: 0,
            invalid_cases: 0,
            pid: None,
            pid_start_ticks: None,
            boot_id: None,
            config_dir: Some(cfg.base_dir.display().to_string()),
            config_changes: Vec::new(),
        };
        m.claim();
        m
    }

    /// Marks the experiment as run by this process, on this host, now (`running`).
    pub fn claim(&mut self) {
        let me = ProcessStamp::current();
        self.status = status::RUNNING.into();
        self.ended = None;
        self.host = super::hostname();
        self.pid = Some(me.pid);
        self.pid_start_ticks = Some(me.start_ticks);
        self.boot_id = boot_id();
    }

    /// Whether the process of the last run still runs.
    pub fn liveness(&self) -> Liveness {
        let Some(pid) = self.pid else {
            return Liveness::Unknown;
        };
        if self.host != super::hostname() {
            return Liveness::Elsewhere(self.host.clone());
        }
        if self.boot_id.is_some() && self.boot_id != boot_id() {
            return Liveness::Gone;
        }
        let stamp = ProcessStamp {
            pid,
            start_ticks: self.pid_start_ticks.unwrap_or(0),
        };
        if stamp.is_running() {
            Liveness::Alive
        } else {
            Liveness::Gone
        }
    }

    /// The status as it is now: `crashed` for a `running` experiment whose process is gone,
    /// else [`Metadata::status`].
    pub fn effective_status(&self) -> &str {
        if self.status == status::RUNNING && self.liveness() == Liveness::Gone {
            status::CRASHED
        } else {
            &self.status
        }
    }

    /// Fills the case counts from the journal entries of the current sweep.
    pub fn count(&mut self, entries: &BTreeMap<String, Entry>) {
        let c = Counts::of(entries.values());
        self.ok_cases = c.ok;
        self.failed_cases = c.failed;
        self.valid_cases = c.valid;
        self.invalid_cases = c.invalid;
    }

    /// Writes metadata.json into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ResultsError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        write_atomic(&dir.join("metadata.json"), text.as_bytes())
    }

    /// Reads metadata.json from `dir`.
    pub fn read(dir: &Path) -> Result<Self, ResultsError> {
        let p = dir.join("metadata.json");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text).map_err(|e| ResultsError::Format {
            path: p.clone(),
            line: e.line(),
            message: e.to_string(),
        })
    }
}

/// Case counts of journal entries (the last entry of each case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Ran to their end.
    pub ok: usize,
    /// Failed (they run again on `--resume`).
    pub failed: usize,
    /// Ok and valid.
    pub valid: usize,
    /// Ok and invalid.
    pub invalid: usize,
}

impl Counts {
    /// Counts entries; an ok entry without a verdict (an older journal) is neither valid nor
    /// invalid.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut c = Counts::default();
        for e in entries {
            match e.status {
                Status::Failed => c.failed += 1,
                Status::Ok => {
                    c.ok += 1;
                    match e.verdict.as_ref().map(|v| v.validity) {
                        Some(Validity::Valid) => c.valid += 1,
                        Some(Validity::Invalid) => c.invalid += 1,
                        None => {}
                    }
                }
            }
        }
        c
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        let cfg =
            crate::config::Config::parse("name: t\nsweep: {rate: [10]}\n", Path::new("t.yaml"))
                .unwrap();
        Metadata::start(&cfg, Path::new("t.yaml"), 1)
    }

    #[test]
    fn this_run_is_alive_and_a_dead_or_reused_pid_is_crashed() {
        let mut m = meta();
        assert_eq!(m.liveness(), Liveness::Alive);
        assert_eq!(m.effective_status(), "running");
        m.pid_start_ticks = m.pid_start_ticks.map(|t| t + 1);
        assert_eq!(m.liveness(), Liveness::Gone);
        assert_eq!(m.effective_status(), "crashed");
        m.pid = Some((1 << 22) + 1);
        assert_eq!(m.effective_status(), "crashed");
        m.status = status::INTERRUPTED.into();
        assert_eq!(m.effective_status(), "interrupted");
        m.status = status::RUNNING.into();
        m.boot_id = Some("another boot".into());
        assert_eq!(m.liveness(), Liveness::Gone);
        m.host = "elsewhere".into();
        assert_eq!(m.liveness(), Liveness::Elsewhere("elsewhere".into()));
        m.pid = None;
        assert_eq!(m.liveness(), Liveness::Unknown);
        assert_eq!(m.effective_status(), "running");
    }

    #[test]
    fn metadata_of_an_older_aefm_still_reads() {
        let d = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(meta()).unwrap();
        for k in [
            "pid",
            "pid_start_ticks",
            "boot_id",
            "valid_cases",
            "config_changes",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        std::fs::write(d.path().join("metadata.json"), v.to_string()).unwrap();
        let m = Metadata::read(d.path()).unwrap();
        assert_eq!(m.pid, None);
        assert_eq!(m.valid_cases, 0);
        assert_eq!(m.liveness(), Liveness::Unknown);
    }
}
