//! Span processing: Jaeger JSON (query-API pages or a UI export on disk) to the trace tables.
//!
//! For every trace the span tree is rebuilt from `references`:
//! * a span's parent is its first `CHILD_OF` reference found in the trace; failing that, its first
//!   `FOLLOWS_FROM` reference found in the trace; a span whose references all point outside the
//!   trace is an **orphan** (kept, flagged, counted); a span without references is a **root**
//!   (a trace with several roots is counted as multi-root, and kept);
//! * the **self (exclusive) time** of a span is its duration minus the length of the union of its
//!   `CHILD_OF` children's intervals, each clipped to the parent's interval. Parallel or overlapping
//!   children are subtracted once; children that outlive the parent only count inside it; the result
//!   is never negative. `FOLLOWS_FROM` children are *not* subtracted: by definition the parent does
//!   not wait for them. They still appear as edges, with `ref_type = FOLLOWS_FROM`.
//!
//! The processor streams: the input is read in chunks into one reused buffer (a file is never read
//! whole), each trace is parsed by a Jaeger-specific scanner into offsets of that buffer, its rows
//! are written at once, and only the self and total time of each span (as `u32` while they fit)
//! are kept for the statistics. Peak memory is the buffer, the largest trace, the statistics, the
//! set of trace IDs seen, and up to three 1 MiB row buffers per table (one being filled, two with
//! the table's writer thread).
//!
//! The steps, one module each:
//! * `json.rs`: a JSON byte scanner (whose module comment says why no JSON crate is used), with
//!   its strings, numbers, input and word-at-a-time byte tests under `json/`;
//! * `jaeger.rs`: the Jaeger schema reader, which reads one trace with it, and `fast.rs`, the
//!   fast path for spans in Jaeger's own compact layout;
//! * `page.rs`: pages, single traces and files fed to the processor, and their errors;
//! * `processor.rs`: [`TraceProcessor`], which turns each trace into its rows;
//! * `tree.rs`: the span tree of one trace (parents, child intervals, self times);
//! * `hash.rs`: FxHash and the span-ID table; `stats.rs`: the statistics per operation and pod;
//! * `rows.rs`: the CSV row writer of the big tables, written around the page cache
//!   (`output/direct.rs`).

mod fast;
mod hash;
mod jaeger;
mod json;
mod page;
mod processor;
mod rows;
mod stats;
mod tree;

pub use page::{process_file, PageError};
pub use processor::TraceProcessor;

/// Header of `spans.csv` (one row per span; times in µs since the epoch, durations in µs).
pub const SPANS_HEADER: &str =
    "trace_id,span_id,parent_id,ref_type,microservice,pod,operation,start_time,end_time,duration,self_duration,children,error";
/// Header of `edges.csv` (one row per parent→child edge; the original raw_data columns where the
/// meaning is the same; `exact_parent_duration` is the parent's corrected self time).
pub const EDGES_HEADER: &str = "trace_id,parent_id,trace_time,start_time,end_time,child_id,child_operation,parent_operation,child_ms,child_pod,parent_ms,parent_pod,parent_duration,child_duration,exact_parent_duration,child_self_duration,ref_type";
/// Header of `end_to_end.csv` (one row per trace).
pub const END_TO_END_HEADER: &str =
    "trace_id,trace_time,trace_duration,extent,spans,roots,orphans,root_ms,root_operation,errors";
/// Statistic columns of `operations.csv` and `pods.csv` after their two key columns.
pub const STAT_COLUMNS: &str = "count,errors,self_mean,self_p50,self_p90,self_p95,self_p99,total_mean,total_p50,total_p90,total_p95,total_p99";

/// How a span hangs in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// No references.
    Root,
    /// Child of its parent.
    ChildOf,
    /// Follows from its parent (not subtracted from the parent's self time).
    FollowsFrom,
    /// References a span that is not in the trace.
    Orphan,
}

impl RefKind {
    /// The `ref_type` column's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefKind::Root => "ROOT",
            RefKind::ChildOf => "CHILD_OF",
            RefKind::FollowsFrom => "FOLLOWS_FROM",
            RefKind::Orphan => "ORPHAN",
        }
    }
}

/// Counts that describe the completeness of the trace data (written to `traces_summary.csv`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceCounts {
    /// Distinct traces processed.
    pub traces: u64,
    /// Spans processed.
    pub spans: u64,
    /// Traces seen again (same trace ID) and skipped.
    pub duplicate_traces: u64,
    /// Spans whose parent is not in the trace.
    pub orphan_spans: u64,
    /// Traces with at least one orphan.
    pub traces_with_orphans: u64,
    /// Traces with more than one root span.
    pub multi_root_traces: u64,
    /// Traces without a root span.
    pub no_root_traces: u64,
    /// Edges of kind FOLLOWS_FROM.
    pub follows_from_edges: u64,
    /// CHILD_OF children that start before or end after their parent (clipped).
    pub children_outside_parent: u64,
    /// Spans with the `error` tag set.
    pub error_spans: u64,
    /// Parent→child edges written (CHILD_OF and FOLLOWS_FROM).
    pub edges: u64,
}

#[cfg(test)]
use page::process_reader;
#[cfg(test)]
use std::path::Path;

#[cfg(test)]
mod tests;
