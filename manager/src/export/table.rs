//! One exported CSV file: its data columns, then the test-case columns, written row by row into
//! a temp file in the output directory (large tables stream: nothing is held in memory). The
//! files are renamed into place together once every one is complete, so a failed export leaves
//! the output directory as it was.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::cases::{Case, ColumnSet};
use super::{csv_err, io, ExportError};

/// A CSV file being written.
pub struct Table {
    path: PathBuf,
    data_columns: usize,
    writer: csv::Writer<BufWriter<tempfile::NamedTempFile>>,
}

impl Table {
    /// Starts `out/name` with the header: `data` columns, then the test-case columns.
    pub fn create(
        out: &Path,
        name: &str,
        data: &[&str],
        cols: &ColumnSet,
    ) -> Result<Table, ExportError> {
        let path = out.join(name);
        let tmp = aefm_collector::output::temp::create(out, name).map_err(io(&path))?;
        let mut writer = csv::WriterBuilder::new()
            .flexible(false)
            .from_writer(BufWriter::with_capacity(1 << 16, tmp));
        let mut header: Vec<String> = data.iter().map(|s| s.to_string()).collect();
        header.extend(cols.names());
        writer.write_record(&header).map_err(csv_err(&path))?;
        Ok(Table {
            path,
            data_columns: data.len(),
            writer,
        })
    }

    /// Writes one row: the data cells, then the case's test-case cells.
    pub fn row<T: AsRef<[u8]>>(&mut self, data: &[T], case: &Case) -> Result<(), ExportError> {
        debug_assert_eq!(data.len(), self.data_columns);
        for cell in data {
            self.writer.write_field(cell).map_err(csv_err(&self.path))?;
        }
        self.end_row(case)
    }

    /// Writes one row from a source record: its cells at `index`, then the case's cells (a cell
    /// past the end of a short record is empty).
    pub fn row_of(
        &mut self,
        record: &csv::ByteRecord,
        index: &[usize],
        case: &Case,
    ) -> Result<(), ExportError> {
        debug_assert_eq!(index.len(), self.data_columns);
        for &i in index {
            let cell = record.get(i).unwrap_or_default();
            self.writer.write_field(cell).map_err(csv_err(&self.path))?;
        }
        self.end_row(case)
    }

    fn end_row(&mut self, case: &Case) -> Result<(), ExportError> {
        for cell in &case.cells {
            self.writer.write_field(cell).map_err(csv_err(&self.path))?;
        }
        self.writer
            .write_record(None::<&[u8]>)
            .map_err(csv_err(&self.path))
    }

    /// Flushes the file; [`Finished::persist`] renames it into place.
    pub fn finish(self) -> Result<Finished, ExportError> {
        let path = self.path;
        let buf = self
            .writer
            .into_inner()
            .map_err(|e| io(&path)(e.into_error()))?;
        let mut tmp = buf.into_inner().map_err(|e| io(&path)(e.into_error()))?;
        tmp.flush().map_err(io(&path))?;
        Ok(Finished { path, tmp })
    }
}

/// A complete file waiting in its temp file (removed if dropped).
pub struct Finished {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Finished {
    /// Renames the file into place; returns its path.
    pub fn persist(self) -> Result<PathBuf, ExportError> {
        let path = self.path;
        self.tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        Ok(path)
    }
}
