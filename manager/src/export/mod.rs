//! `aefm export`: our results in another tool's layout. One format so far, `original`: the five
//! CSV files of the original Python AEFM (`throughput_data.csv`, `raw_data.csv`,
//! `statistical_data.csv`, `end_to_end_data.csv`, `hardware_data.csv`), with its column names,
//! its units (µs, percent of the pod limit) and its test-case columns appended to every row, so
//! analysis scripts written for it read our experiments. What changed in meaning is documented
//! in `docs/export.md`.
//!
//! The exporter reads only the experiment directory: the journal says which cases finished,
//! each case's `case.json` what its interference levels were, and the per-case collector files
//! give the rows. Numbers are copied or reduced (a peak), never made up: a file whose data is
//! missing is written with its header only, and the notes say why.

mod cases;
mod hardware;
mod table;
mod traces;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use cases::{Case, ColumnSet};

use crate::results::ResultsError;

/// The formats `aefm export --format` accepts.
pub const FORMATS: &[&str] = &["original"];

/// The notes file written beside the exported files.
pub const NOTES: &str = "EXPORT_NOTES.md";

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The original Python AEFM's five CSV files.
    Original,
}

impl std::str::FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, ExportError> {
        match s {
            "original" => Ok(Format::Original),
            _ => Err(ExportError::UnknownFormat {
                given: s.to_string(),
            }),
        }
    }
}

/// What to export, and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Experiment directories (`<results_dir>/<name>-<stamp>/`), merged in this order.
    pub dirs: Vec<PathBuf>,
    /// The output directory (created when missing).
    pub out: PathBuf,
    /// The layout to write.
    pub format: Format,
    /// Export cases whose validity is not `valid` too (invalid ones, and ok cases journaled by
    /// an aefm without validity checks). Off by default: their figures cannot be vouched for.
    pub include_invalid: bool,
    /// Overwrite exported files already in `out`.
    pub force: bool,
}

/// What an export wrote.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Files written, in order.
    pub files: Vec<PathBuf>,
    /// Cases exported.
    pub cases: usize,
    /// Sentences for the user: data left out and why (also in [`NOTES`]).
    pub notes: Vec<String>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--format` names no format we write.
    #[error("unknown export format {given:?}; supported formats: {}", FORMATS.join(", "))]
    UnknownFormat {
        /// What was given.
        given: String,
    },
    /// A directory given is not an experiment directory.
    #[error("{}: not an aefm results directory ({reason})", dir.display())]
    NotResults {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The same experiment was given twice: its rows would be counted twice.
    #[error("{}: given twice", dir.display())]
    Duplicate {
        /// The directory.
        dir: PathBuf,
    },
    /// An exported file already exists in the output directory.
    #[error("{}: exists; remove it or pass --force to overwrite", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An experiment file could not be read (journal, metadata).
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be read or written (the cause names the line).
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A file has unexpected content (a missing column, a malformed `case.json`).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Wraps an I/O error with its path.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Wraps a CSV error with its path.
pub(crate) fn csv_err(path: &Path) -> impl FnOnce(csv::Error) -> ExportError + '_ {
    move |source| ExportError::Csv {
        path: path.to_path_buf(),
        source,
    }
}

/// The original's files, in the order it registered its collections.
pub mod files {
    /// Measured throughput per case.
    pub const THROUGHPUT: &str = "throughput_data.csv";
    /// One row per parent→child span edge.
    pub const RAW: &str = "raw_data.csv";
    /// Per-pod latency quantiles.
    pub const STATISTICAL: &str = "statistical_data.csv";
    /// One row per trace.
    pub const END_TO_END: &str = "end_to_end_data.csv";
    /// Peak CPU and memory per pod, percent of the limit.
    pub const HARDWARE: &str = "hardware_data.csv";
    /// All five.
    pub const ALL: [&str; 5] = [THROUGHPUT, RAW, STATISTICAL, END_TO_END, HARDWARE];
}

/// Exports the experiments of `opts.dirs` into `opts.out`.
pub fn export(opts: &Options) -> Result<Report, ExportError> {
    let Format::Original = opts.format;
    let mut notes = Vec::new();
    let selected = cases::select(&opts.dirs, opts.include_invalid, &mut notes)?;
    if selected.cases.is_empty() {
        notes.push("no case to export: every file has its header only".into());
    }
    prepare_out(&opts.out, opts.force)?;
    let out = &opts.out;
    let cols = &selected.columns;
    let written = [
        throughput(out, cols, &selected.cases, &mut notes)?,
        traces::raw(out, cols, &selected.cases, &mut notes)?,
        traces::statistical(out, cols, &selected.cases)?,
        traces::end_to_end(out, cols, &selected.cases)?,
        hardware::write(out, cols, &selected.cases, &mut notes)?,
    ];
    let mut files = written
        .into_iter()
        .map(table::Finished::persist)
        .collect::<Result<Vec<_>, _>>()?;
    let path = out.join(NOTES);
    crate::results::write_atomic(&path, render_notes(opts, &selected, &notes).as_bytes())?;
    files.push(path);
    Ok(Report {
        files,
        cases: selected.cases.len(),
        notes,
    })
}

/// Creates the output directory; refuses to overwrite exported files without `force`.
fn prepare_out(out: &Path, force: bool) -> Result<(), ExportError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    if !force {
        for name in files::ALL.iter().chain([&NOTES]) {
            let path = out.join(name);
            if path.exists() {
                return Err(ExportError::Exists { path });
            }
        }
    }
    Ok(())
}

/// `throughput_data.csv`: one row per case, `real_throughput` = the achieved rate over the
/// measured window (req/s, as `summary.csv`'s `achieved_rps`).
fn throughput(
    out: &Path,
    cols: &ColumnSet,
    cases: &[Case],
    notes: &mut Vec<String>,
) -> Result<table::Finished, ExportError> {
    let mut t = table::Table::create(out, files::THROUGHPUT, &["real_throughput"], cols)?;
    for c in cases {
        let achieved = match c.achieved {
            Some(a) => aefm_collector::output::fmt_f64(a),
            None => {
                notes.push(format!(
                    "{}: no achieved rate in the journal; real_throughput left empty",
                    c.label()
                ));
                String::new()
            }
        };
        t.row(&[achieved.as_str()], c)?;
    }
    t.finish()
}

/// The notes file: where the rows came from, the column mapping, and what was left out.
fn render_notes(opts: &Options, selected: &cases::Selected, notes: &[String]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("# aefm export --format original\n\n");
    s.push_str("Exported by aefm ");
    s.push_str(env!("CARGO_PKG_VERSION"));
    s.push_str(" from:\n\n");
    for d in &opts.dirs {
        let _ = writeln!(s, "- {}", d.display());
    }
    let _ = writeln!(
        s,
        "\n{} case(s) exported ({}). The test-case columns appended to every row: {}.",
        selected.cases.len(),
        if opts.include_invalid {
            "status ok, valid or not: --include-invalid"
        } else {
            "status ok and valid"
        },
        selected.columns.names().join(", ")
    );
    s.push_str(
        "\nInterference columns hold our level's label (e.g. `cpu-90`, `membw-max`), or `none` \
         when no level of that kind ran, not the original's pod count. Durations and times are \
         in µs; `exact_parent_duration` is the corrected self time; cpu_usage and mem_usage are \
         peaks in percent of the pod limit. See docs/export.md for every column.\n",
    );
    s.push_str("\n## Notes\n\n");
    if notes.is_empty() {
        s.push_str("Nothing was left out.\n");
    }
    for n in notes {
        let _ = writeln!(s, "- {n}");
    }
    s
}
