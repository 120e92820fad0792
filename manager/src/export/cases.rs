//! Which cases an export takes, and their test-case columns: the journal of each experiment
//! (last attempt per case; cases set aside by `--resume-anyway` left out, as in `summary.csv`),
//! each case's `case.json` for its interference levels, and the union of the columns over every
//! experiment, in the original's order: `round`, `throughput`, one column per interference kind,
//! then the custom dimensions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{io, ExportError};
use crate::config::{Config, StressKind, StressSpec};
use crate::results::journal::{self, Entry, Status};
use crate::results::resume;

/// A case to export.
#[derive(Clone, Debug)]
pub struct Case {
    /// The experiment directory it belongs to.
    pub experiment: PathBuf,
    /// Its directory, `<experiment>/cases/<name>`.
    pub dir: PathBuf,
    /// The case name.
    pub name: String,
    /// Achieved rate over the measured window, req/s.
    pub achieved: Option<f64>,
    /// Values of its test-case columns, by column name.
    values: BTreeMap<String, String>,
    /// One cell per column of the [`ColumnSet`], in its order (filled by [`select`]).
    pub cells: Vec<String>,
}

impl Case {
    /// `<experiment dir name>/<case>`, for notes.
    pub fn label(&self) -> String {
        let exp = self
            .experiment
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.experiment.display().to_string());
        format!("{exp}/{}", self.name)
    }
}

/// The test-case columns of an export, in the original's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnSet {
    /// Interference kind columns (`cpu`, `mem_capacity`, `mem_bandwidth`, `network`, `cache`),
    /// in the order they first appear.
    pub interference: Vec<String>,
    /// Custom dimensions, in the order they first appear (renamed `custom_<name>` when the name
    /// is taken by another column).
    pub custom: Vec<String>,
}

impl ColumnSet {
    /// Every column name: `round`, `throughput`, interference kinds, custom dimensions.
    pub fn names(&self) -> Vec<String> {
        let mut v = vec!["round".to_string(), "throughput".to_string()];
        v.extend(self.interference.iter().cloned());
        v.extend(self.custom.iter().cloned());
        v
    }

    fn add(list: &mut Vec<String>, name: &str) {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_string());
        }
    }
}

/// The cases of an export and their columns.
#[derive(Clone, Debug, Default)]
pub struct Selected {
    /// Cases in export order: experiments as given, cases in run order.
    pub cases: Vec<Case>,
    /// The union of the test-case columns.
    pub columns: ColumnSet,
}

/// The original's name for the interference a stressor makes (`cache` has none: it keeps ours).
pub fn original_kind(kind: StressKind) -> &'static str {
    match kind {
        StressKind::Cpu => "cpu",
        StressKind::Memcap => "mem_capacity",
        StressKind::Membw => "mem_bandwidth",
        StressKind::Net => "network",
        StressKind::Cache => "cache",
    }
}

/// Every interference kind column an export may have.
const KIND_COLUMNS: [&str; 5] = ["cpu", "mem_capacity", "mem_bandwidth", "network", "cache"];

/// Whether a custom dimension may not take `name` as its column: the other test-case columns
/// and every data column of the five files (pandas' `assign` would have overwritten them).
fn reserved(name: &str) -> bool {
    use super::traces::{END_TO_END_COLUMNS, RAW_COLUMNS, STATISTICAL_COLUMNS};
    ["round", "throughput", "real_throughput"].contains(&name)
        || RAW_COLUMNS.contains(&name)
        || STATISTICAL_COLUMNS.contains(&name)
        || END_TO_END_COLUMNS.contains(&name)
        || super::hardware::COLUMNS.contains(&name)
}

/// Reads the experiments in `dirs` and picks the cases to export: status ok, and valid unless
/// `include_invalid`. What is left out is counted in `notes`.
pub fn select(
    dirs: &[PathBuf],
    include_invalid: bool,
    notes: &mut Vec<String>,
) -> Result<Selected, ExportError> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Selected::default();
    for dir in dirs {
        let canonical = check_dir(dir)?;
        if seen.contains(&canonical) {
            return Err(ExportError::Duplicate { dir: dir.clone() });
        }
        seen.push(canonical);
        read_experiment(dir, include_invalid, &mut out, notes)?;
    }
    for c in &mut out.cases {
        c.cells = out
            .columns
            .names()
            .iter()
            .map(|n| c.values.get(n).cloned().unwrap_or_else(|| absent(n)))
            .collect();
    }
    Ok(out)
}

/// The cell of a column a case has no value for: `none` for an interference kind (that kind did
/// not run), empty for a custom dimension of another experiment.
fn absent(column: &str) -> String {
    if KIND_COLUMNS.contains(&column) {
        "none".into()
    } else {
        String::new()
    }
}

/// The canonical path of an experiment directory, or why it is not one.
fn check_dir(dir: &Path) -> Result<PathBuf, ExportError> {
    let not = |reason: &str| ExportError::NotResults {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    };
    if !dir.is_dir() {
        return Err(not("not a directory"));
    }
    if !dir.join(journal::FILE).is_file() {
        return Err(not(&format!(
            "no {}; give the directory `aefm run` printed as `results:`",
            journal::FILE
        )));
    }
    dir.canonicalize().map_err(io(dir))
}

/// Adds one experiment's cases and columns to `out`.
fn read_experiment(
    dir: &Path,
    include_invalid: bool,
    out: &mut Selected,
    notes: &mut Vec<String>,
) -> Result<(), ExportError> {
    let entries = in_sweep(dir, journal::read(dir)?, notes);
    let mut entries: Vec<Entry> = entries.into_values().collect();
    entries.sort_by_key(|e| e.index);
    let (mut failed, mut invalid) = (0, 0);
    for e in entries {
        let case_dir = dir.join("cases").join(&e.case);
        let levels = match interference_levels(&case_dir.join("case.json")) {
            Ok(l) => l,
            Err(err) if e.status == Status::Ok => {
                notes.push(format!("{}: not exported: {err}", dir.display()));
                continue;
            }
            // A failed case is never exported; its columns are not needed.
            Err(_) => continue,
        };
        let values = case_values(&e, &levels, &mut out.columns, notes);
        if e.status == Status::Failed {
            failed += 1;
            continue;
        }
        let valid = e.verdict.as_ref().is_some_and(|v| v.is_valid());
        if !valid {
            invalid += 1;
            if !include_invalid {
                continue;
            }
        }
        out.cases.push(Case {
            experiment: dir.to_path_buf(),
            dir: case_dir,
            name: e.case,
            achieved: e.achieved,
            values,
            cells: Vec::new(),
        });
    }
    if failed > 0 {
        notes.push(format!(
            "{}: {failed} failed case(s) not exported",
            dir.display()
        ));
    }
    if invalid > 0 {
        notes.push(format!(
            "{}: {invalid} case(s) not valid (invalid, or never checked by an older aefm){}",
            dir.display(),
            if include_invalid {
                "; exported (--include-invalid)"
            } else {
                "; not exported (pass --include-invalid to export them)"
            }
        ));
    }
    Ok(())
}

/// The journal entries of the experiment's sweep: cases set aside by `--resume-anyway` (measured
/// under an earlier config) are left out, as `summary.csv` leaves them out. Without a readable
/// `config.resolved.yaml` every entry is kept, and a note says so.
fn in_sweep(
    dir: &Path,
    entries: BTreeMap<String, Entry>,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Entry> {
    let resolved = dir.join(resume::RESOLVED);
    let cfg = std::fs::read_to_string(&resolved)
        .ok()
        .and_then(|t| Config::parse(&t, &resolved).ok());
    let Some(cfg) = cfg else {
        notes.push(format!(
            "{}: unreadable; cases set aside by `--resume-anyway` (if any) are exported too",
            resolved.display()
        ));
        return entries;
    };
    let cases = crate::sweep::expand(&cfg);
    let schedule = crate::schedule::Schedule::new(&cfg, &cases);
    let (kept, aside) = resume::remap(entries, &schedule);
    if !aside.is_empty() {
        notes.push(format!(
            "{}: {} case(s) set aside by `--resume-anyway` not exported",
            dir.display(),
            aside.len()
        ));
    }
    kept
}

/// The interference dimensions of a case, from its `case.json`: dimension name → the level's
/// kind and label (`None` for `none`).
fn interference_levels(
    path: &Path,
) -> Result<BTreeMap<String, Option<(StressKind, String)>>, ExportError> {
    let bad = |message: String| ExportError::Format {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let values = json
        .pointer("/case/values")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no case.values list".into()))?;
    let mut out = BTreeMap::new();
    for (i, pair) in values.iter().enumerate() {
        let (Some(name), Some(value)) = (pair.get(0).and_then(Value::as_str), pair.get(1)) else {
            return Err(bad(format!("case.values[{i}] is not a [name, value] pair")));
        };
        let level = match value {
            Value::Null => None,
            Value::Object(_) => {
                let spec: StressSpec = serde_json::from_value(value.clone())
                    .map_err(|e| bad(format!("case.values[{i}] ({name}): {e}")))?;
                Some((spec.kind, spec.label()))
            }
            _ => continue,
        };
        out.insert(name.to_string(), level);
    }
    Ok(out)
}

/// A case's test-case values by column, adding its columns to `cols`.
fn case_values(
    e: &Entry,
    levels: &BTreeMap<String, Option<(StressKind, String)>>,
    cols: &mut ColumnSet,
    notes: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("throughput".to_string(), crate::config::fmt_num(e.offered));
    for (dim, value) in &e.values {
        match (dim.as_str(), levels.get(dim)) {
            ("rate", _) => {}
            ("round", _) => {
                v.insert("round".to_string(), value.clone());
            }
            (_, Some(level)) => {
                let Some((kind, label)) = level else { continue };
                let col = original_kind(*kind);
                ColumnSet::add(&mut cols.interference, col);
                // Two dimensions running the same kind at once: both labels, `+`-joined.
                let cell = v.entry(col.to_string()).or_insert_with(String::new);
                if !cell.is_empty() {
                    cell.push('+');
                }
                cell.push_str(label);
            }
            (_, None) => {
                let col = custom_column(dim);
                if col != *dim && !cols.custom.contains(&col) {
                    notes.push(format!(
                        "custom dimension `{dim}` is exported as column `{col}`: `{dim}` is a column of the original's files"
                    ));
                }
                ColumnSet::add(&mut cols.custom, &col);
                v.insert(col, value.clone());
            }
        }
    }
    v
}

/// The column of a custom dimension: its name, or `custom_<name>` when another column has it.
fn custom_column(dim: &str) -> String {
    if reserved(dim) || KIND_COLUMNS.contains(&dim) {
        format!("custom_{dim}")
    } else {
        dim.to_string()
    }
}
