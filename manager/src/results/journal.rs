//! journal.jsonl: one JSON line per finished case (ok or failed), appended and flushed as each
//! case ends, so `aefm run --resume` knows which cases to skip after a crash or Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io, ResultsError};
use crate::load::Percentiles;

/// The journal's file name in the experiment directory.
pub const FILE: &str = "journal.jsonl";

/// Outcome of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran to the end; its files are complete.
    Ok,
    /// A handler failed; the error is recorded. Rerun on `--resume`.
    Failed,
}

/// One journal line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Case name (its directory under `cases/`).
    pub case: String,
    /// Position in run order.
    pub index: usize,
    /// Outcome.
    pub status: Status,
    /// Error message when failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Dimension values (display form), in order.
    pub values: Vec<(String, String)>,
    /// Offered rate, req/s.
    pub offered: f64,
    /// Achieved rate, req/s.
    #[serde(default)]
    pub achieved: Option<f64>,
    /// Completed requests in the window.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Errors in the window.
    #[serde(default)]
    pub errors: Option<u64>,
    /// Corrected latency.
    #[serde(default)]
    pub latency: Option<Percentiles>,
    /// Mean app CPU over the window, percent of one core.
    #[serde(default)]
    pub app_cpu_percent: Option<f64>,
    /// Mean CPU over the window, in cores, of processes that are not the app, the stressors or
    /// AEFM (see [`crate::components::CollectSummary::other_cpu_cores`]); `None` where not
    /// measured (Kubernetes, journals written before it was).
    #[serde(default)]
    pub other_cpu_cores: Option<f64>,
    /// Case start (RFC 3339).
    pub started: String,
    /// Case end (RFC 3339).
    pub ended: String,
    /// Measured window start (RFC 3339), when load ran.
    #[serde(default)]
    pub window_start: Option<String>,
    /// Measured window end (RFC 3339), when load ran.
    #[serde(default)]
    pub window_end: Option<String>,
    /// Whether the figures can be believed (cases that ran; failed cases carry none).
    #[serde(default)]
    pub verdict: Option<crate::validity::Verdict>,
    /// Attempt number of this case (1 unless `on_invalid: rerun` ran it again).
    #[serde(default = "first_attempt")]
    pub attempt: usize,
}

fn first_attempt() -> usize {
    1
}

#[cfg(test)]
impl Entry {
    /// A test entry: case `case` at `index`, `status`, offered 10 req/s, nothing measured.
    pub(crate) fn sample(case: &str, index: usize, status: Status) -> Entry {
        Entry {
            case: case.into(),
            index,
            status,
            error: None,
            values: vec![],
            offered: 10.0,
            achieved: None,
            requests: None,
            errors: None,
            latency: None,
            app_cpu_percent: None,
            other_cpu_cores: None,
            started: "x".into(),
            ended: "y".into(),
            window_start: None,
            window_end: None,
            verdict: None,
            attempt: 1,
        }
    }

    /// A test entry of a stress x rate x round sweep that measured `p99_ms` (the other
    /// percentiles in fixed proportion) at an achieved rate of `achieved`.
    pub(crate) fn measured(
        index: usize,
        stress: &str,
        rate: f64,
        round: usize,
        p99_ms: f64,
        achieved: f64,
    ) -> Entry {
        let us = p99_ms * 1000.0;
        Entry {
            values: vec![
                ("round".into(), round.to_string()),
                ("stress".into(), stress.into()),
                ("rate".into(), rate.to_string()),
            ],
            offered: rate,
            achieved: Some(achieved),
            requests: Some(100),
            errors: Some(0),
            latency: Some(crate::load::Percentiles {
                p50_us: us * 0.5,
                p90_us: us * 0.8,
                p99_us: us,
                p999_us: us * 1.2,
                max_us: us * 1.5,
                mean_us: us * 0.6,
            }),
            verdict: Some(crate::validity::Verdict::default()),
            ..Entry::sample(
                &format!("round-{round}_stress-{stress}_rate-{rate}"),
                index,
                Status::Ok,
            )
        }
    }
}

/// Appends an entry and syncs it to disk.
pub fn append(dir: &Path, entry: &Entry) -> Result<(), ResultsError> {
    let p = dir.join(FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(io(&p))?;
    let mut line = serde_json::to_string(entry).unwrap_or_default();
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(io(&p))?;
    f.sync_data().map_err(io(&p))?;
    Ok(())
}

/// Reads the journal: the last entry per case. A torn last line (crash mid-write) is ignored.
pub fn read(dir: &Path) -> Result<BTreeMap<String, Entry>, ResultsError> {
    let p = dir.join(FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(&p)(e)),
    };
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => {
                out.insert(e.case.clone(), e);
            }
            Err(_) if i + 1 == lines.len() => {
                tracing::warn!(file = %p.display(), line = i + 1, "ignoring torn last journal line");
            }
            Err(e) => {
                return Err(ResultsError::Format {
                    path: p.clone(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(case: &str, status: Status) -> Entry {
        Entry {
            values: vec![("rate".into(), "10".into())],
            ..Entry::sample(case, 0, status)
        }
    }

    #[test]
    fn last_entry_wins_and_torn_line_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        append(d.path(), &entry("a", Status::Failed)).unwrap();
        append(d.path(), &entry("a", Status::Ok)).unwrap();
        append(d.path(), &entry("b", Status::Ok)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"case\": \"c\", \"ind").unwrap();
        let j = read(d.path()).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j["a"].status, Status::Ok);
    }

    #[test]
    fn a_journal_written_before_other_cpu_was_measured_still_loads() {
        let d = tempfile::tempdir().unwrap();
        let mut line = serde_json::to_value(entry("old", Status::Ok)).unwrap();
        line.as_object_mut().unwrap().remove("other_cpu_cores");
        std::fs::write(d.path().join(FILE), format!("{line}\n")).unwrap();
        assert_eq!(read(d.path()).unwrap()["old"].other_cpu_cores, None);
        let measured = Entry {
            other_cpu_cores: Some(0.25),
            ..entry("new", Status::Ok)
        };
        append(d.path(), &measured).unwrap();
        assert_eq!(read(d.path()).unwrap()["new"].other_cpu_cores, Some(0.25));
    }
}
