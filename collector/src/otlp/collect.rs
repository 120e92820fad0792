//! Stored spans to the trace tables: group by trace, pick the traces of a window, feed each one
//! to [`TraceProcessor`] as a Jaeger trace.
//!
//! Grouping needs a trace's spans together. When the stored records fit the memory bound they
//! are read into one buffer; past it they are first split into `ceil(bytes / bound)` temporary
//! bucket files by *range* of trace ID (random IDs spread evenly), and each bucket is grouped
//! alone, so memory stays near the bound whatever the run's length. Inside a bucket, spans are
//! sorted by (trace ID, start, span ID); buckets cover increasing ID ranges, so traces reach the
//! processor in trace-ID order however many buckets there are: the tables are the same with or
//! without spilling.

use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use super::convert::jaeger_trace;
use super::store::{decode_at, SpanRecord, Taken};
use crate::traces::{PageError, TraceProcessor};

/// Which traces a collection writes, by the start of the trace's first root span (or of its
/// earliest span when it has no root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Every trace.
    All,
    /// Traces starting in `[start_ns, end_ns)` (Unix ns); later ones are kept for a later window,
    /// earlier ones are dropped.
    Window {
        /// First ns of the window.
        start_ns: u64,
        /// First ns after the window.
        end_ns: u64,
    },
}

/// What a collection did with the spans it took.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Spans of traces written to the tables.
    pub written: u64,
    /// Records of traces that start after the window (to put back into the store).
    pub kept: Vec<u8>,
    /// Spans in `kept`.
    pub kept_spans: u64,
    /// Spans of traces that started before the window (too late for theirs), dropped.
    pub dropped: u64,
    /// Bucket files used (1: everything fit in memory).
    pub buckets: u64,
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Reading the spill file or a bucket file failed.
    #[error("reading or writing spilled spans: {0}")]
    Io(#[from] io::Error),
    /// The processor refused a trace (a bug in the conversion) or could not write its tables.
    #[error("trace tables: {0}")]
    Trace(#[from] PageError),
}

/// Groups `taken` by trace and feeds the selected traces to `p`; `bound` is the memory bound
/// and `spill_dir` where bucket files go.
pub fn collect(
    taken: Taken,
    select: Select,
    bound: usize,
    spill_dir: &Path,
    p: &mut TraceProcessor,
) -> Result<Sorted, CollectError> {
    let total = taken.bytes();
    let buckets = total.div_ceil(bound.max(1) as u64).clamp(1, 4096);
    let mut sorted = Sorted {
        buckets,
        ..Sorted::default()
    };
    if buckets == 1 {
        let mut all = Vec::with_capacity(total as usize);
        taken.for_each_chunk(CHUNK, |c| {
            all.extend_from_slice(c);
            Ok(())
        })?;
        return group(&all, select, p, &mut sorted).map(|()| sorted);
    }
    let mut files = (0..buckets)
        .map(|_| tempfile::tempfile_in(spill_dir).map(|f| BufWriter::with_capacity(1 << 16, f)))
        .collect::<io::Result<Vec<_>>>()?;
    taken.for_each_chunk(CHUNK, |c| split(c, &mut files))?;
    let mut buf = Vec::new();
    for f in files {
        let mut f = f.into_inner().map_err(|e| e.into_error())?;
        f.rewind()?;
        buf.clear();
        f.read_to_end(&mut buf)?;
        group(&buf, select, p, &mut sorted)?;
    }
    Ok(sorted)
}

/// Bytes read from the spill file at a time.
const CHUNK: usize = 1 << 20;

/// The bucket of a trace ID among `n`: its high 64 bits scaled to `0..n` (range partition).
fn bucket(trace_id: &[u8; 16], n: usize) -> usize {
    let hi = u64::from_be_bytes(trace_id[..8].try_into().unwrap_or([0; 8]));
    ((u128::from(hi) * n as u128) >> 64) as usize
}

/// Appends each record of `chunk` to its bucket file.
fn split(chunk: &[u8], files: &mut [BufWriter<std::fs::File>]) -> io::Result<()> {
    let mut at = 0;
    while at < chunk.len() {
        let (r, next) = decode_at(chunk, at).map_err(io::Error::other)?;
        files[bucket(&r.trace_id, files.len())].write_all(&chunk[at..next])?;
        at = next;
    }
    Ok(())
}

/// Sort key of one record: trace ID, start, span ID, then its offset in the buffer.
type Key = ([u8; 16], u64, [u8; 8], usize);

/// Groups the records of `buf` by trace and handles each trace per `select`.
fn group(
    buf: &[u8],
    select: Select,
    p: &mut TraceProcessor,
    out: &mut Sorted,
) -> Result<(), CollectError> {
    let mut keys: Vec<Key> = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let (r, next) = decode_at(buf, at).map_err(io::Error::other)?;
        keys.push((r.trace_id, r.start_ns, r.span_id, at));
        at = next;
    }
    keys.sort_unstable();
    let mut spans: Vec<SpanRecord<'_>> = Vec::new();
    let mut json = Vec::new();
    for trace in keys.chunk_by(|a, b| a.0 == b.0) {
        spans.clear();
        for k in trace {
            spans.push(decode_at(buf, k.3).map_err(io::Error::other)?.0);
        }
        // Sorted by start: the first root, else the first span, starts the trace.
        let root = spans
            .iter()
            .find(|s| s.parent_id.is_none())
            .unwrap_or(&spans[0]);
        let n = spans.len() as u64;
        match select {
            Select::Window { start_ns, .. } if root.start_ns < start_ns => out.dropped += n,
            Select::Window { end_ns, .. } if root.start_ns >= end_ns => {
                for s in &spans {
                    s.encode(&mut out.kept);
                }
                out.kept_spans += n;
            }
            _ => {
                json.clear();
                jaeger_trace(&spans, &mut json);
                p.add_trace(&json)?;
                out.written += n;
            }
        }
    }
    Ok(())
}
