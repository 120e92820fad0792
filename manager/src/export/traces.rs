//! The three trace files, copied row by row from each case's trace tables (written by the
//! collector with the original's names where the meaning is unchanged, see
//! `docs/collector-files.md`): `raw_data.csv` from `edges.csv`, `statistical_data.csv` from
//! `pods.csv`, `end_to_end_data.csv` from `end_to_end.csv`. A case without trace tables (no
//! trace source configured, or its window had no trace) contributes no rows.

use std::path::Path;

use super::cases::{Case, ColumnSet};
use super::table::{Finished, Table};
use super::{csv_err, files, ExportError};

/// `raw_data.csv`'s data columns: the original's edge columns without `merged_child_duration`
/// and `step` (the corrected self time needs neither). `edges.csv` has them under these names.
pub const RAW_COLUMNS: [&str; 15] = [
    "trace_id",
    "parent_id",
    "trace_time",
    "start_time",
    "end_time",
    "child_id",
    "child_operation",
    "parent_operation",
    "child_ms",
    "child_pod",
    "parent_ms",
    "parent_pod",
    "parent_duration",
    "child_duration",
    "exact_parent_duration",
];

/// `statistical_data.csv`'s data columns.
pub const STATISTICAL_COLUMNS: [&str; 4] = ["microservice", "pod", "p50", "p95"];
/// Where they come from in `pods.csv`: self time quantiles (a leaf's self time is its duration).
const POD_SOURCE: [&str; 4] = ["microservice", "pod", "self_p50", "self_p95"];

/// `end_to_end_data.csv`'s data columns, named alike in `end_to_end.csv`.
pub const END_TO_END_COLUMNS: [&str; 2] = ["trace_id", "trace_duration"];

/// The collector's trace tables a case should have.
const TABLES: [&str; 3] = ["edges.csv", "pods.csv", "end_to_end.csv"];

/// Writes `raw_data.csv`; notes each case that has no (or only some) trace tables.
pub fn raw(
    out: &Path,
    cols: &ColumnSet,
    cases: &[Case],
    notes: &mut Vec<String>,
) -> Result<Finished, ExportError> {
    for c in cases {
        let missing: Vec<&str> = TABLES
            .into_iter()
            .filter(|t| !c.dir.join(t).is_file())
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "{}: no {} (no trace source, or no trace in its window); no rows in {}",
                c.label(),
                missing.join(", "),
                missing
                    .iter()
                    .map(|t| exported_from(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    copy_all(
        out,
        files::RAW,
        &RAW_COLUMNS,
        &RAW_COLUMNS,
        "edges.csv",
        cols,
        cases,
    )
}

/// Writes `statistical_data.csv`.
pub fn statistical(out: &Path, cols: &ColumnSet, cases: &[Case]) -> Result<Finished, ExportError> {
    copy_all(
        out,
        files::STATISTICAL,
        &STATISTICAL_COLUMNS,
        &POD_SOURCE,
        "pods.csv",
        cols,
        cases,
    )
}

/// Writes `end_to_end_data.csv`.
pub fn end_to_end(out: &Path, cols: &ColumnSet, cases: &[Case]) -> Result<Finished, ExportError> {
    copy_all(
        out,
        files::END_TO_END,
        &END_TO_END_COLUMNS,
        &END_TO_END_COLUMNS,
        "end_to_end.csv",
        cols,
        cases,
    )
}

/// The exported file a trace table feeds.
fn exported_from(table: &str) -> &'static str {
    match table {
        "edges.csv" => files::RAW,
        "pods.csv" => files::STATISTICAL,
        _ => files::END_TO_END,
    }
}

/// Writes `name` with the `header` columns, taken from the `source` columns of each case's
/// `table`.
fn copy_all(
    out: &Path,
    name: &str,
    header: &[&str],
    source: &[&str],
    table: &str,
    cols: &ColumnSet,
    cases: &[Case],
) -> Result<Finished, ExportError> {
    let mut t = Table::create(out, name, header, cols)?;
    for c in cases {
        let path = c.dir.join(table);
        if path.is_file() {
            copy(&mut t, &path, source, c)?;
        }
    }
    t.finish()
}

/// Copies the `source` columns of every row of `path` into `t`.
fn copy(t: &mut Table, path: &Path, source: &[&str], case: &Case) -> Result<(), ExportError> {
    let mut rd = csv::Reader::from_path(path).map_err(csv_err(path))?;
    let index = column_indices(&mut rd, path, source)?;
    let mut record = csv::ByteRecord::new();
    while rd.read_byte_record(&mut record).map_err(csv_err(path))? {
        t.row_of(&record, &index, case)?;
    }
    Ok(())
}

/// The position of each `wanted` column in the file's header.
pub(crate) fn column_indices<R: std::io::Read>(
    rd: &mut csv::Reader<R>,
    path: &Path,
    wanted: &[&str],
) -> Result<Vec<usize>, ExportError> {
    let header = rd.headers().map_err(csv_err(path))?.clone();
    wanted
        .iter()
        .map(|w| {
            header
                .iter()
                .position(|h| h == *w)
                .ok_or_else(|| ExportError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "no column `{w}` in the header ({})",
                        header.iter().collect::<Vec<_>>().join(",")
                    ),
                })
        })
        .collect()
}
