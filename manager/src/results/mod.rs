//! The experiment directory and everything written into it: the config as run, metadata, one
//! folder per case (load report, HdrHistogram log, percentile spectrum, collector files), the
//! journal, the summary CSV and the plots. Layout documented in `docs/results.md`.

pub mod case_files;
pub mod journal;
pub mod plots;
pub mod summary;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;

/// Errors writing or reading results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file or directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file has unexpected content.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `--resume` found nothing to resume.
    #[error("nothing to resume: {0}")]
    NoResume(String),
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Wraps an I/O error with its path.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically (temp file in the same directory, then rename), so a crash never
/// leaves a half-written result behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.persist(path).map_err(|e| ResultsError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// The directory for a new experiment: `<results_dir>/<name>-<YYYYmmdd-HHMMSS>` (suffixed `-2`,
/// `-3`... if it exists).
pub fn new_experiment_dir(cfg: &Config) -> Result<PathBuf, ResultsError> {
    let parent = cfg.resolve(&cfg.results_dir);
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let mut dir = parent.join(format!("{}-{stamp}", cfg.name));
    let mut n = 2;
    while dir.exists() {
        dir = parent.join(format!("{}-{stamp}-{n}", cfg.name));
        n += 1;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// The experiment to resume: `explicit` if given, else the newest `<name>-*` directory with a
/// journal under the results directory.
pub fn resume_dir(cfg: &Config, explicit: Option<&Path>) -> Result<PathBuf, ResultsError> {
    if let Some(d) = explicit {
        if d.join(journal::FILE).is_file() || d.join("metadata.json").is_file() {
            return Ok(d.to_path_buf());
        }
        return Err(ResultsError::NoResume(format!(
            "{} is not an experiment directory (no {} or metadata.json)",
            d.display(),
            journal::FILE
        )));
    }
    let parent = cfg.resolve(&cfg.results_dir);
    let prefix = format!("{}-", cfg.name);
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir(&parent) {
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with(&prefix) || !p.join("metadata.json").is_file() {
                continue;
            }
            let m = std::fs::metadata(p.join("metadata.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bm, _)| m > *bm) {
                best = Some((m, p));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        ResultsError::NoResume(format!(
            "no experiment named {:?} under {}",
            cfg.name,
            parent.display()
        ))
    })
}

/// metadata.json: what ran, where and when.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
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
    /// The config file given on the command line.
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
    /// `running`, `finished`, `finished-with-failures`, `interrupted` or `failed`.
    pub status: String,
    /// Cases finished (ok) / failed at the end of the last run.
    #[serde(default)]
    pub ok_cases: usize,
    /// Cases that failed.
    #[serde(default)]
    pub failed_cases: usize,
}

impl Metadata {
    /// Metadata of a run starting now.
    pub fn start(cfg: &Config, config_file: &Path, cases: usize) -> Self {
        Self {
            name: cfg.name.clone(),
            aefm_version: env!("CARGO_PKG_VERSION").to_string(),
            host: hostname(),
            kernel: kernel(),
            cpus: crate::config::available_cores(),
            config_file: config_file.display().to_string(),
            backend: format!("{:?}", cfg.backend).to_lowercase(),
            cases,
            started: now_rfc3339(),
            resumed: Vec::new(),
            ended: None,
            status: "running".into(),
            ok_cases: 0,
            failed_cases: 0,
        }
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

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A wall-clock time as RFC 3339 UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel() -> String {
    let t = std::fs::read_to_string("/proc/sys/kernel/ostype").unwrap_or_default();
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} {}", t.trim(), r.trim())
}
