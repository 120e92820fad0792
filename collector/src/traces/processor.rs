//! The processor: [`TraceProcessor`] owns the tables, the statistics and the set of trace IDs
//! seen, and turns each parsed trace into its rows ([`TraceProcessor::process`]): the span tree
//! (`tree.rs`), then one loop per table writing the rows (`rows.rs`). [`TraceProcessor::finish`]
//! writes the statistics and the summary and moves every table into place.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::hash::{FxSet, NONE};
use super::jaeger::{SpanRec, TraceBuf, TraceView};
use super::rows::{Num, RowBuf, Table};
use super::stats::{write_stats, Groups};
use super::tree::{Extent, Scratch, Shape, SpanFacts};
use super::{TraceCounts, EDGES_HEADER, END_TO_END_HEADER, SPANS_HEADER};
use crate::error::{Error, Result};
use crate::output::{csv_field, write_atomic, Written};

/// Streams traces into the trace tables. Create with [`TraceProcessor::create`], feed with
/// [`TraceProcessor::add_page`] or [`TraceProcessor::add_trace`], then [`TraceProcessor::finish`].
pub struct TraceProcessor {
    /// Where the tables go.
    pub(super) dir: PathBuf,
    /// `spans.csv`.
    pub(super) spans: Table,
    /// `edges.csv`.
    pub(super) edges: Table,
    /// `end_to_end.csv`.
    pub(super) e2e: Table,
    /// Statistics per (service, operation).
    pub(super) ops: Groups,
    /// Statistics per (service, pod).
    pub(super) pods: Groups,
    /// IDs of the traces processed (a trace seen again is skipped).
    pub(super) seen: FxSet<Box<[u8]>>,
    /// Counts so far.
    pub(super) counts: TraceCounts,
    /// Per-trace scratch space.
    pub(super) scratch: Scratch,
    /// The parsed form of the current trace, reused.
    pub(super) trace: TraceBuf,
    /// Extra `key,value` lines of `traces_summary.csv`.
    pub(super) extra_summary: Vec<(String, String)>,
    /// Traces copied to the raw JSON output so far.
    pub(super) raw_written: u64,
}

impl TraceProcessor {
    /// Opens the output tables (as temp files) in `dir`. The big tables are written with
    /// `O_DIRECT` (see `output/direct.rs`) unless the environment variable
    /// `AEFM_BUFFERED_TABLES` is set (to anything): for slow or network disks, where waiting for
    /// the device costs more than the page cache's copy, or to keep the tables in the page cache.
    pub fn create(dir: &Path) -> Result<TraceProcessor> {
        TraceProcessor::create_with(dir, std::env::var_os("AEFM_BUFFERED_TABLES").is_none())
    }

    /// [`TraceProcessor::create`]; `direct` false writes the tables through the page cache
    /// (tests compare the two).
    pub(crate) fn create_with(dir: &Path, direct: bool) -> Result<TraceProcessor> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        Ok(TraceProcessor {
            dir: dir.to_path_buf(),
            spans: Table::create(dir, "spans.csv", SPANS_HEADER, direct)?,
            edges: Table::create(dir, "edges.csv", EDGES_HEADER, direct)?,
            e2e: Table::create(dir, "end_to_end.csv", END_TO_END_HEADER, direct)?,
            ops: Groups::default(),
            pods: Groups::default(),
            seen: FxSet::default(),
            counts: TraceCounts::default(),
            scratch: Scratch::default(),
            trace: TraceBuf::default(),
            extra_summary: Vec::new(),
            raw_written: 0,
        })
    }

    /// Counts so far.
    pub fn counts(&self) -> &TraceCounts {
        &self.counts
    }

    /// Whether the trace with this ID (as its source spells it) was processed already.
    pub fn has_trace(&self, id: &str) -> bool {
        self.seen.contains(id.as_bytes())
    }

    /// Adds a `key,value` line to `traces_summary.csv` (e.g. the fetch's coverage).
    pub fn add_summary(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.extra_summary.push((key.into(), value.into()));
    }

    /// Adds one parsed trace: its span tree, its rows in the three tables, and its spans to the
    /// statistics.
    pub(super) fn process(&mut self, v: &TraceView<'_>) -> io::Result<()> {
        let spans: &[SpanRec] = &v.t.spans;
        self.counts.traces += 1;
        self.counts.spans += spans.len() as u64;
        let s = &mut self.scratch;
        let shape = s.link(v, &mut self.counts);
        s.union_children(spans, &mut self.counts);
        let extent = s.self_times(v, &mut self.ops, &mut self.pods);
        let trace_time_num;
        let trace_time: &[u8] = if shape.first_root != NONE {
            v.get(spans[shape.first_root as usize].start_text)
        } else {
            trace_time_num = Num::new(extent.min_start);
            trace_time_num.bytes()
        };
        reserve_rows(
            v,
            &mut self.spans.buf,
            &mut self.edges.buf,
            &mut self.e2e.buf,
        );
        // One table at a time: fewer values live per loop than with both rows in one (the
        // cursors were on the stack then).
        write_spans(&mut self.spans.buf, v, &s.facts);
        self.counts.edges += write_edges(&mut self.edges.buf, v, &s.facts, trace_time);
        write_end_to_end(&mut self.e2e.buf, v, &s.facts, &shape, &extent, trace_time);
        self.counts.error_spans += extent.errors;

        self.spans.flush_if_full()?;
        self.edges.flush_if_full()?;
        self.e2e.flush_if_full()
    }

    /// Writes the statistics tables and `traces_summary.csv`, and moves every table into place.
    pub fn finish(self) -> Result<(TraceCounts, Vec<Written>)> {
        let TraceProcessor {
            dir,
            spans,
            edges,
            e2e,
            ops,
            pods,
            counts,
            extra_summary,
            ..
        } = self;
        let mut written = Vec::new();
        let edge_count = counts.edges;
        written.push(Written {
            path: spans.persist()?,
            what: format!("spans: {} spans of {} traces", counts.spans, counts.traces),
        });
        written.push(Written {
            path: edges.persist()?,
            what: format!("edges: {edge_count} parent→child edges"),
        });
        written.push(Written {
            path: e2e.persist()?,
            what: format!("end-to-end latency of {} traces", counts.traces),
        });
        written.push(Written {
            path: write_stats(&dir, "operations.csv", "microservice,operation", ops)?,
            what: "self and total time per (service, operation)".into(),
        });
        written.push(Written {
            path: write_stats(&dir, "pods.csv", "microservice,pod", pods)?,
            what: "self and total time per (service, pod)".into(),
        });
        written.push(Written {
            path: write_summary(&dir, &counts, &extra_summary)?,
            what: "trace counts: orphans, multi-root traces, coverage".into(),
        });
        Ok((counts, written))
    }
}

/// Makes room in the three row buffers for the rows of trace `v`: each string at most doubled by
/// quoting, plus its quotes; every number at most 20 digits; separators and the reference kind.
fn reserve_rows(v: &TraceView<'_>, spans: &mut RowBuf, edges: &mut RowBuf, e2e: &mut RowBuf) {
    let (mut id, mut op, mut svc, mut pod) = (0usize, 0usize, 0usize, 0usize);
    for sp in &v.t.spans {
        id = id
            .max(sp.id.len())
            .max(sp.child_of.len())
            .max(sp.follows_from.len());
        op = op.max(sp.op.len());
    }
    for p in &v.t.procs {
        svc = svc.max(p.service.len());
        pod = pod.max(p.pod.len());
    }
    let n = v.t.spans.len();
    let t = v.t.trace_id.len();
    let row = 2 * (t + 2 * id + 2 * op + 2 * svc + 2 * pod) + 32 + 8 * 20 + 32;
    spans.room(n * row);
    edges.room(n * row);
    e2e.room(2 * (t + svc + op) + 8 * 20 + 32);
}

/// The digits of a span's `duration` as written, or `0` when it was missing.
#[inline(always)]
fn duration_text<'a>(v: &TraceView<'a>, sp: &SpanRec) -> &'a [u8] {
    if sp.duration_text.is_present() {
        v.get(sp.duration_text)
    } else {
        b"0"
    }
}

/// Appends the `spans.csv` rows of trace `v` (within the room reserved).
fn write_spans(buf: &mut RowBuf, v: &TraceView<'_>, facts: &[SpanFacts]) {
    let (spans, procs, tid) = (&v.t.spans, &v.t.procs, v.t.trace_id);
    let mut w = buf.row();
    for (sp, f) in spans.iter().zip(facts) {
        let (svc, pod) = (f.service(procs), f.pod(procs));
        w.str_c(v, tid);
        w.str_c(v, sp.id);
        if f.parent == NONE {
            if sp.child_of.is_present() {
                w.str(v, sp.child_of);
            } else if sp.follows_from.is_present() {
                w.str(v, sp.follows_from);
            }
        } else {
            w.str(v, spans[f.parent as usize].id);
        }
        w.byte(b',');
        w.put_c(f.kind.as_str().as_bytes());
        w.str_c(v, svc);
        w.str_c(v, pod);
        w.str_c(v, sp.op);
        w.put_c(v.get(sp.start_text));
        w.put_c(f.end.bytes());
        w.put_c(duration_text(v, sp));
        w.put_c(f.self_text.bytes());
        w.num(f.children as u64);
        w.put(if sp.error { b",1\n" } else { b",0\n" });
    }
    buf.len = w.end();
}

/// Appends the `edges.csv` rows of trace `v` (within the room reserved): one per span with a
/// parent. Returns how many.
fn write_edges(buf: &mut RowBuf, v: &TraceView<'_>, facts: &[SpanFacts], trace_time: &[u8]) -> u64 {
    let (spans, procs, tid) = (&v.t.spans, &v.t.procs, v.t.trace_id);
    let mut edges = 0;
    let mut w = buf.row();
    for (sp, f) in spans.iter().zip(facts) {
        if f.parent != NONE {
            edges += 1;
            let pi = f.parent as usize;
            let (par, pf) = (&spans[pi], &facts[pi]);
            let (svc, pod) = (f.service(procs), f.pod(procs));
            w.str_c(v, tid);
            w.str_c(v, par.id);
            w.put_c(trace_time);
            w.put_c(v.get(sp.start_text));
            w.put_c(f.end.bytes());
            w.str_c(v, sp.id);
            w.str_c(v, sp.op);
            w.str_c(v, par.op);
            w.str_c(v, svc);
            w.str_c(v, pod);
            w.str_c(v, pf.service(procs));
            w.str_c(v, pf.pod(procs));
            w.put_c(duration_text(v, par));
            w.put_c(duration_text(v, sp));
            w.put_c(pf.self_text.bytes());
            w.put_c(f.self_text.bytes());
            w.put(f.kind.as_str().as_bytes());
            w.byte(b'\n');
        }
    }
    buf.len = w.end();
    edges
}

/// Appends the `end_to_end.csv` row of trace `v` (within the room reserved). The trace's
/// duration is its root's when it has exactly one root, else its extent.
fn write_end_to_end(
    buf: &mut RowBuf,
    v: &TraceView<'_>,
    facts: &[SpanFacts],
    shape: &Shape,
    extent: &Extent,
    trace_time: &[u8],
) {
    let (spans, procs) = (&v.t.spans, &v.t.procs);
    let mut w = buf.row();
    let span_extent = extent.max_end.saturating_sub(extent.min_start);
    let duration = if shape.roots == 1 {
        spans[shape.first_root as usize].duration
    } else {
        span_extent
    };
    w.str_c(v, v.t.trace_id);
    w.put_c(trace_time);
    w.num(duration);
    w.byte(b',');
    w.num(span_extent);
    w.byte(b',');
    w.num(spans.len() as u64);
    w.byte(b',');
    w.num(shape.roots as u64);
    w.byte(b',');
    w.num(shape.orphans as u64);
    w.byte(b',');
    if shape.first_root != NONE {
        let r = shape.first_root as usize;
        w.str_c(v, facts[r].service(procs));
        w.str(v, spans[r].op);
    } else {
        w.byte(b',');
    }
    w.byte(b',');
    w.num(extent.errors);
    w.byte(b'\n');
    buf.len = w.end();
}

/// Writes `traces_summary.csv`: the counts, then the extra lines ([`TraceProcessor::add_summary`]).
fn write_summary(dir: &Path, c: &TraceCounts, extra: &[(String, String)]) -> Result<PathBuf> {
    write_atomic(dir, "traces_summary.csv", |w| {
        writeln!(w, "key,value")?;
        for (k, v) in [
            ("traces", c.traces),
            ("spans", c.spans),
            ("duplicate_traces", c.duplicate_traces),
            ("orphan_spans", c.orphan_spans),
            ("traces_with_orphans", c.traces_with_orphans),
            ("multi_root_traces", c.multi_root_traces),
            ("no_root_traces", c.no_root_traces),
            ("follows_from_edges", c.follows_from_edges),
            ("children_outside_parent", c.children_outside_parent),
            ("error_spans", c.error_spans),
            ("edges", c.edges),
        ] {
            writeln!(w, "{k},{v}")?;
        }
        for (k, v) in extra {
            csv_field(w, k)?;
            w.write_all(b",")?;
            csv_field(w, v)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
