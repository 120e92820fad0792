//! Pages: a whole answer (`{"data":[trace,...]}` or a bare list) or one trace object scanned
//! trace by trace into the processor ([`TraceProcessor::add_page`],
//! [`TraceProcessor::add_trace`], [`process_file`]), duplicates skipped, new traces optionally
//! copied as raw JSON; and the errors of a page ([`PageError`]), a syntax error placed by line
//! and column.

use std::io::{self, Write};
use std::path::Path;

use super::jaeger::{TraceBuf, TraceView, PAGE_KEYS};
use super::json::{line_column, ReadSource, ScanError, Scanner, Source};
use super::{TraceCounts, TraceProcessor};
use crate::error::{Error, Result};
use crate::output::Written;

/// What [`scan_page`] reports for each trace; an error stops the scan and is returned as is.
pub(crate) type OnTrace<'f, E> = dyn FnMut(TraceView<'_>) -> Result<(), E> + 'f;

/// Why [`scan_page`] stopped.
#[derive(Debug)]
pub(crate) enum PageFail<E> {
    /// The input could not be read or parsed.
    Scan(Box<ScanError>),
    /// The answer's `errors` list was not empty: the messages.
    Reported(Vec<String>),
    /// The callback failed.
    Callback(E),
}

impl<E> From<Box<ScanError>> for PageFail<E> {
    fn from(e: Box<ScanError>) -> Self {
        PageFail::Scan(e)
    }
}

/// Scans a whole answer (`{"data":[trace,...], ...}` or a bare `[trace,...]`), calling `each`
/// for every trace as soon as it is parsed.
pub(crate) fn scan_page<S: Source, E>(
    sc: &mut Scanner<S>,
    t: &mut TraceBuf,
    each: &mut OnTrace<'_, E>,
) -> Result<(), PageFail<E>> {
    match sc.peek()? {
        b'{' => {
            let mut seen_data = false;
            let mut more = sc.object_start("an object")?;
            while more {
                sc.mark = sc.pos;
                let mut hint = 0;
                match sc.key_in(&PAGE_KEYS, &mut hint)? {
                    0 => {
                        seen_data = true;
                        if !sc.null()? {
                            traces(sc, t, each)?;
                        }
                    }
                    1 => {
                        sc.peek()?;
                        sc.mark = sc.pos;
                        sc.skip_value()?;
                        let text = &sc.src.bytes()[sc.mark..sc.pos];
                        let errors: Option<Vec<serde_json::Value>> = serde_json::from_slice(text)
                            .map_err(|e| {
                            sc.err_at(sc.mark, format!("invalid `errors`: {e}"))
                        })?;
                        if let Some(list) = errors.filter(|l| !l.is_empty()) {
                            return Err(PageFail::Reported(
                                list.iter()
                                    .map(|e| {
                                        e.get("msg")
                                            .and_then(|v| v.as_str())
                                            .map_or_else(|| e.to_string(), str::to_string)
                                    })
                                    .collect(),
                            ));
                        }
                    }
                    _ => sc.skip_value()?,
                }
                sc.mark = sc.pos;
                more = sc.object_next()?;
            }
            if !seen_data {
                return Err(sc.err("missing field `data`").into());
            }
        }
        b'[' => traces(sc, t, each)?,
        _ => {
            return Err(sc
                .err(r#"expected a Jaeger answer {"data":[traces]} or a list of traces"#)
                .into())
        }
    }
    sc.mark = sc.pos;
    if !sc.at_end()? {
        return Err(sc.err("trailing characters").into());
    }
    Ok(())
}

/// The list of traces (at its `[`).
fn traces<S: Source, E>(
    sc: &mut Scanner<S>,
    t: &mut TraceBuf,
    each: &mut OnTrace<'_, E>,
) -> Result<(), PageFail<E>> {
    sc.mark = sc.pos;
    let mut more = sc.array_start("a list of traces")?;
    while more {
        sc.peek()?;
        sc.mark = sc.pos;
        sc.trace(t)?;
        let view = TraceView {
            raw: &sc.src.bytes()[sc.mark..sc.pos],
            t,
        };
        each(view).map_err(PageFail::Callback)?;
        sc.mark = sc.pos;
        more = sc.array_next()?;
    }
    Ok(())
}

/// Scans one trace object that is the whole of `json`.
fn scan_one<E>(
    json: &[u8],
    t: &mut TraceBuf,
    each: &mut OnTrace<'_, E>,
) -> Result<(), PageFail<E>> {
    let mut sc = Scanner::new(json);
    sc.peek()?;
    sc.mark = sc.pos;
    sc.trace(t)?;
    let view = TraceView {
        raw: &json[sc.mark..sc.pos],
        t,
    };
    each(view).map_err(PageFail::Callback)?;
    if !sc.at_end()? {
        return Err(sc.err("trailing characters").into());
    }
    Ok(())
}

/// Why a page (or one trace) could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The JSON is malformed or not shaped like Jaeger's: what, and where (1-based line and
    /// column in bytes, and the byte offset from the start of the input).
    #[error("{message} at line {line} column {column} (byte {offset})")]
    Json {
        /// What is wrong.
        message: String,
        /// 0-based byte offset in the input.
        offset: u64,
        /// 1-based line.
        line: u64,
        /// 1-based column, in bytes.
        column: u64,
    },
    /// The answer's `errors` list was not empty (Jaeger's own messages).
    #[error("Jaeger reported errors: {}", .0.join("; "))]
    Reported(Vec<String>),
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[source] io::Error),
    /// Writing a table or the raw JSON failed.
    #[error("writing tables: {0}")]
    Write(#[source] io::Error),
}

impl PageError {
    /// Converts a scan failure; `input` is read again from the start to place a syntax error.
    fn from_fail<R: io::Read>(
        f: PageFail<io::Error>,
        input: impl FnOnce() -> io::Result<R>,
    ) -> Self {
        match f {
            PageFail::Scan(e) => match *e {
                ScanError::Syntax { at, message } => {
                    let (line, column) = input().and_then(|r| line_column(r, at)).unwrap_or((0, 0));
                    PageError::Json {
                        message,
                        offset: at,
                        line,
                        column,
                    }
                }
                ScanError::Io(e) => PageError::Read(e),
            },
            PageFail::Reported(list) => PageError::Reported(list),
            PageFail::Callback(e) => PageError::Write(e),
        }
    }
}

impl TraceProcessor {
    /// Parses one page (`{"data":[trace,...]}`, the query API's answer and the UI's export format,
    /// or a bare `[trace,...]`) and processes each trace as it is parsed. When `raw` is given, the
    /// JSON of every new (not duplicate) trace is appended to it, comma-separated. Returns the
    /// number of new traces. Traces before an error in the page have been processed.
    pub fn add_page<W: Write>(
        &mut self,
        json: &[u8],
        raw: Option<&mut W>,
    ) -> std::result::Result<usize, PageError> {
        let mut sc = Scanner::new(json);
        self.run(&mut sc, raw)
            .map_err(|f| PageError::from_fail(f, || Ok(json)))
    }

    /// Parses and processes one trace object; returns false when it was a duplicate (same trace
    /// ID already seen).
    pub fn add_trace(&mut self, json: &[u8]) -> std::result::Result<bool, PageError> {
        let mut trace = std::mem::take(&mut self.trace);
        let mut added = false;
        let r = scan_one(json, &mut trace, &mut |v| {
            added = self.add_view(&v)?;
            Ok(())
        });
        self.trace = trace;
        r.map_err(|f| PageError::from_fail(f, || Ok(json)))?;
        Ok(added)
    }

    /// Scans a page from `sc`, processing each trace and copying new ones to `raw`.
    fn run<S: Source, W: Write>(
        &mut self,
        sc: &mut Scanner<S>,
        mut raw: Option<&mut W>,
    ) -> std::result::Result<usize, PageFail<io::Error>> {
        let mut trace = std::mem::take(&mut self.trace);
        let mut added = 0;
        let r = scan_page(sc, &mut trace, &mut |v| {
            if !self.add_view(&v)? {
                return Ok(());
            }
            if let Some(w) = raw.as_deref_mut() {
                if self.raw_written > 0 {
                    w.write_all(b",\n")?;
                }
                w.write_all(v.raw)?;
                self.raw_written += 1;
            }
            added += 1;
            Ok(())
        });
        self.trace = trace;
        r.map(|()| added)
    }

    /// Processes one parsed trace unless its ID was seen before (then counts a duplicate).
    fn add_view(&mut self, v: &TraceView<'_>) -> io::Result<bool> {
        let id = v.get(v.t.trace_id);
        if self.seen.contains(id) {
            self.counts.duplicate_traces += 1;
            return Ok(false);
        }
        self.seen.insert(id.into());
        self.process(v)?;
        Ok(true)
    }
}

/// Processes a Jaeger JSON file (`{"data":[...]}` or `[...]`) into the trace tables in `dir`,
/// reading it in chunks (memory does not grow with the file). A syntax error names the file, its
/// line and column, and the byte offset.
pub fn process_file(input: &Path, dir: &Path) -> Result<(TraceCounts, Vec<Written>)> {
    let file = std::fs::File::open(input).map_err(|e| Error::io("reading", input, e))?;
    process_reader(file, READ_CHUNK, dir, input, || std::fs::File::open(input))
}

/// Bytes read at a time by [`process_file`]: a few traces; the buffer grows only for a trace
/// larger than this.
const READ_CHUNK: usize = 1 << 18;

/// [`process_file`] on any reader, read `chunk` bytes at a time; `reopen` reads the input again
/// from its start to place a syntax error (line and column).
pub(crate) fn process_reader<Rd: io::Read, Again: io::Read>(
    reader: Rd,
    chunk: usize,
    dir: &Path,
    input: &Path,
    reopen: impl FnOnce() -> io::Result<Again>,
) -> Result<(TraceCounts, Vec<Written>)> {
    let mut p = TraceProcessor::create(dir)?;
    let mut sc = Scanner::new(ReadSource::new(reader, chunk));
    if let Err(f) = p.run(&mut sc, None::<&mut io::Sink>) {
        let e = PageError::from_fail(f, reopen);
        return Err(match e {
            PageError::Read(e) => Error::io("reading", input, e),
            PageError::Write(e) => Error::io("writing", dir, e),
            PageError::Json { line, .. } => Error::Parse {
                path: input.display().to_string(),
                line: line as usize,
                message: e.to_string(),
            },
            PageError::Reported(_) => Error::Parse {
                path: input.display().to_string(),
                line: 0,
                message: e.to_string(),
            },
        });
    }
    p.finish()
}

#[cfg(test)]
mod tests;
