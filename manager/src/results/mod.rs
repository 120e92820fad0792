//! The experiment directory and everything written into it: the config as run, metadata, one
//! folder per case (load report, HdrHistogram log, percentile spectrum, collector files), the
//! journal, the summary CSV and the plots. Layout documented in `docs/results.md`.

pub mod capacity;
pub mod case_files;
pub mod journal;
pub mod metadata;
pub mod plots;
pub mod points;
pub mod resume;
pub mod status;
pub mod summary;

pub use metadata::Metadata;

use std::path::{Path, PathBuf};

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
    /// `--resume` refused: the experiment still runs, runs elsewhere, or the config changed.
    #[error("cannot resume {dir}: {message}")]
    ResumeRefused {
        /// The experiment directory.
        dir: PathBuf,
        /// Why, and what to do.
        message: String,
    },
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
/// leaves a half-written result behind. The temp file is the collector's
/// ([`aefm_collector::output::temp`]): one recognisable name, removed by the next writer if this
/// one is killed, and mode 0666 less the umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = aefm_collector::output::temp::create(dir, name).map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.persist(path).map_err(|e| ResultsError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// The command that resumes the experiment in `dir`, for messages (quoted for a POSIX shell).
pub fn resume_command(config_file: &str, dir: &Path) -> String {
    format!(
        "aefm run {} --resume={}",
        shell_quote(config_file),
        shell_quote(&dir.display().to_string())
    )
}

fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./=-:+,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
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

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A wall-clock time as RFC 3339 UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn kernel() -> String {
    let t = std::fs::read_to_string("/proc/sys/kernel/ostype").unwrap_or_default();
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} {}", t.trim(), r.trim())
}
