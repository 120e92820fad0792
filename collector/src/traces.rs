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
//! The processor streams: each trace is parsed borrowing from the input buffer, its rows written at
//! once, and only two `u64` per span kept for the statistics.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::output::{csv_field, fmt_f64, quantile_sorted, Written};

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

// ---------------------------------------------------------------- JSON model (borrowed)

/// One trace of Jaeger's JSON, borrowing strings from the input.
#[derive(Deserialize)]
pub struct TraceJson<'a> {
    #[serde(rename = "traceID", borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default)]
    spans: Vec<SpanJson<'a>>,
    #[serde(borrow, default)]
    processes: Option<Processes<'a>>,
}

impl TraceJson<'_> {
    /// The trace ID.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }
}

#[derive(Deserialize)]
struct SpanJson<'a> {
    #[serde(rename = "spanID", borrow)]
    span_id: Cow<'a, str>,
    #[serde(rename = "operationName", borrow, default)]
    operation: Cow<'a, str>,
    #[serde(borrow, default)]
    references: Option<Refs<'a>>,
    #[serde(rename = "startTime")]
    start: u64,
    #[serde(default)]
    duration: u64,
    #[serde(rename = "processID", borrow, default)]
    process_id: Cow<'a, str>,
    #[serde(default)]
    tags: Option<SpanTags>,
}

/// The references of a span, reduced to what the tree needs, without allocating.
#[derive(Default)]
struct Refs<'a> {
    child_of: Option<Cow<'a, str>>,
    follows_from: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RefJson<'a> {
    #[serde(rename = "refType", borrow, default)]
    ref_type: Cow<'a, str>,
    #[serde(rename = "spanID", borrow)]
    span_id: Cow<'a, str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Refs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Refs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of span references")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Refs<'a>, A::Error> {
                let mut r = Refs::default();
                while let Some(x) = seq.next_element::<RefJson<'a>>()? {
                    if x.ref_type == "FOLLOWS_FROM" {
                        r.follows_from.get_or_insert(x.span_id);
                    } else {
                        r.child_of.get_or_insert(x.span_id);
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A tag value: only booleans and strings matter here.
enum TagVal<'a> {
    Bool(bool),
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for TagVal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TagVal<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tag value")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Bool(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<TagVal<'a>, E> {
                Ok(TagVal::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<TagVal<'a>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TagVal::Other)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<TagVal<'a>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TagVal::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct TagJson<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow, default = "tag_other")]
    value: TagVal<'a>,
}

fn tag_other<'a>() -> TagVal<'a> {
    TagVal::Other
}

/// Span tags reduced to the `error` flag.
#[derive(Default)]
struct SpanTags {
    error: bool,
}

impl<'de> Deserialize<'de> for SpanTags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SpanTags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tags")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<SpanTags, A::Error> {
                let mut t = SpanTags::default();
                while let Some(error) = seq.next_element_seed(ErrorTagSeed)? {
                    t.error |= error;
                }
                Ok(t)
            }
        }
        d.deserialize_seq(V)
    }
}

/// One span tag, reduced to "is this `error=true`?". Values of other keys are skipped without
/// being decoded (Jaeger writes `key` before `value`; if not, the value is decoded anyway).
struct ErrorTagSeed;

impl<'de> DeserializeSeed<'de> for ErrorTagSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ErrorTagSeed {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tag object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<bool, A::Error> {
        let (mut is_error, mut key_seen, mut value_true) = (false, false, false);
        while let Some(k) = m.next_key::<Cow<'de, str>>()? {
            match k.as_ref() {
                "key" => {
                    let key: Cow<'de, str> = m.next_value()?;
                    is_error = key == "error";
                    key_seen = true;
                }
                "value" if !key_seen || is_error => {
                    value_true = match m.next_value::<TagVal<'de>>()? {
                        TagVal::Bool(b) => b,
                        TagVal::Str(s) => s == "true",
                        TagVal::Other => false,
                    };
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(is_error && value_true)
    }
}

/// `processes`: `pN → (serviceName, pod)` where the pod is the `hostname` process tag (Kubernetes
/// sets it to the pod name), else `k8s.pod.name`, else empty.
#[derive(Default)]
struct Processes<'a>(Vec<(Cow<'a, str>, Cow<'a, str>, Cow<'a, str>)>);

#[derive(Deserialize)]
struct ProcessJson<'a> {
    #[serde(rename = "serviceName", borrow, default)]
    service: Cow<'a, str>,
    #[serde(borrow, default)]
    tags: Option<Vec<TagJson<'a>>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Processes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Processes<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of processes")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Processes<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, p)) = m.next_entry::<Cow<'a, str>, ProcessJson<'a>>()? {
                    let mut pod: Option<Cow<'a, str>> = None;
                    for t in p.tags.into_iter().flatten() {
                        if let TagVal::Str(v) = t.value {
                            // `hostname` wins over `k8s.pod.name`, whatever their order.
                            if t.key == "hostname" || (t.key == "k8s.pod.name" && pod.is_none()) {
                                pod = Some(v);
                            }
                        }
                    }
                    out.push((k, p.service, pod.unwrap_or(Cow::Borrowed(""))));
                }
                Ok(Processes(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------- processing

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
    fn as_str(self) -> &'static str {
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

#[derive(Default)]
struct Stat {
    self_us: Vec<u64>,
    total_us: Vec<u64>,
    errors: u64,
}

/// FxHash (rustc's hasher): the group maps are looked up four times per span with short trusted
/// keys, where std's SipHash showed in profiles; no hasher crate is in the workspace, and this is
/// the whole algorithm.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// Two-level map so lookups take `&str` (no allocation once a key exists).
#[derive(Default)]
struct Groups {
    index: FxMap<Box<str>, FxMap<Box<str>, usize>>,
    keys: Vec<(Box<str>, Box<str>)>,
    stats: Vec<Stat>,
}

impl Groups {
    fn get(&mut self, a: &str, b: &str) -> &mut Stat {
        let idx = match self.index.get(a).and_then(|m| m.get(b)) {
            Some(&i) => i,
            None => {
                let i = self.stats.len();
                self.index.entry(a.into()).or_default().insert(b.into(), i);
                self.keys.push((a.into(), b.into()));
                self.stats.push(Stat::default());
                i
            }
        };
        &mut self.stats[idx]
    }
}

/// Reusable per-trace scratch space (no allocation per trace once warmed up).
#[derive(Default)]
struct Scratch {
    order: Vec<u32>,
    parent: Vec<u32>,
    kind: Vec<RefKind>,
    union: Vec<u64>,
    children: Vec<u32>,
    proc_idx: Vec<u32>,
    intervals: Vec<(u32, u64, u64)>,
}

const NONE: u32 = u32::MAX;

/// Streams traces into the trace tables. Create with [`TraceProcessor::create`], feed with
/// [`TraceProcessor::add_trace`] or [`TraceProcessor::add_page`], then [`TraceProcessor::finish`].
pub struct TraceProcessor {
    dir: PathBuf,
    spans: Table,
    edges: Table,
    e2e: Table,
    ops: Groups,
    pods: Groups,
    seen: HashSet<Box<str>>,
    counts: TraceCounts,
    scratch: Scratch,
    extra_summary: Vec<(String, String)>,
    raw_written: u64,
}

struct Table {
    name: &'static str,
    file: BufWriter<tempfile::NamedTempFile>,
}

impl Table {
    fn create(dir: &Path, name: &'static str, header: &str) -> Result<Table> {
        let path = dir.join(name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(dir)
            .map_err(|e| Error::io("writing", &path, e))?;
        let mut file = BufWriter::with_capacity(1 << 20, tmp);
        writeln!(file, "{header}").map_err(|e| Error::io("writing", &path, e))?;
        Ok(Table { name, file })
    }

    fn persist(self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(self.name);
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| Error::io("writing", &path, e.into_error()))?;
        tmp.persist(&path)
            .map_err(|e| Error::io("writing", &path, e.error))?;
        Ok(path)
    }
}

#[inline]
fn put_u64<W: Write>(w: &mut W, v: u64) -> std::io::Result<()> {
    let mut b = itoa::Buffer::new();
    w.write_all(b.format(v).as_bytes())
}

#[inline]
fn put_str<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    csv_field(w, s)
}

impl TraceProcessor {
    /// Opens the output tables (as temp files) in `dir`.
    pub fn create(dir: &Path) -> Result<TraceProcessor> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        Ok(TraceProcessor {
            dir: dir.to_path_buf(),
            spans: Table::create(dir, "spans.csv", SPANS_HEADER)?,
            edges: Table::create(dir, "edges.csv", EDGES_HEADER)?,
            e2e: Table::create(dir, "end_to_end.csv", END_TO_END_HEADER)?,
            ops: Groups::default(),
            pods: Groups::default(),
            seen: HashSet::new(),
            counts: TraceCounts::default(),
            scratch: Scratch::default(),
            extra_summary: Vec::new(),
            raw_written: 0,
        })
    }

    /// Counts so far.
    pub fn counts(&self) -> &TraceCounts {
        &self.counts
    }

    /// Adds a `key,value` line to `traces_summary.csv` (e.g. the fetch's coverage).
    pub fn add_summary(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.extra_summary.push((key.into(), value.into()));
    }

    /// Parses one page (`{"data":[trace,...]}`, the query API's answer and the UI's export format,
    /// or a bare `[trace,...]`) and processes each trace as it is parsed. When `raw` is given, the
    /// JSON of every new (not duplicate) trace is appended to it, comma-separated.
    pub fn add_page<W: Write>(
        &mut self,
        json: &[u8],
        raw: Option<&mut W>,
    ) -> std::result::Result<usize, String> {
        // One SIMD UTF-8 check of the whole page lets serde_json borrow strings without checking
        // each one again (StrRead vs SliceRead: a measurable share of the parse).
        match std::str::from_utf8(json) {
            Ok(text) => self.add_page_from(serde_json::Deserializer::from_str(text), raw),
            Err(_) => self.add_page_from(serde_json::Deserializer::from_slice(json), raw),
        }
    }

    fn add_page_from<'de, R: serde_json::de::Read<'de>, W: Write>(
        &mut self,
        mut de: serde_json::Deserializer<R>,
        raw: Option<&mut W>,
    ) -> std::result::Result<usize, String> {
        let mut state = PageState {
            proc: self,
            raw,
            io_error: None,
            added: 0,
        };
        let r = PageSeed(&mut state)
            .deserialize(&mut de)
            .and_then(|_| de.end());
        if let Some(e) = state.io_error.take() {
            return Err(format!("writing tables: {e}"));
        }
        r.map_err(|e| e.to_string())?;
        Ok(state.added)
    }

    /// Processes one trace; returns false when it was a duplicate (same trace ID already seen).
    pub fn add_trace(&mut self, t: &TraceJson<'_>) -> std::io::Result<bool> {
        if !self.seen.insert(t.trace_id.as_ref().into()) {
            self.counts.duplicate_traces += 1;
            return Ok(false);
        }
        self.process(t)?;
        Ok(true)
    }

    fn process(&mut self, t: &TraceJson<'_>) -> std::io::Result<()> {
        let spans = &t.spans;
        let n = spans.len();
        let s = &mut self.scratch;
        let c = &mut self.counts;
        c.traces += 1;
        c.spans += n as u64;

        // Index spans by ID (sorted indices, binary search: no allocation per trace).
        s.order.clear();
        s.order.extend(0..n as u32);
        s.order
            .sort_unstable_by(|&a, &b| spans[a as usize].span_id.cmp(&spans[b as usize].span_id));
        let find = |order: &[u32], id: &str| -> u32 {
            order
                .binary_search_by(|&i| spans[i as usize].span_id.as_ref().cmp(id))
                .map(|p| order[p])
                .unwrap_or(NONE)
        };

        // Process map lookup per span (linear: a trace has a handful of processes).
        let procs: &[(Cow<str>, Cow<str>, Cow<str>)] = t.processes.as_ref().map_or(&[], |p| &p.0);
        s.proc_idx.clear();
        s.proc_idx.extend(spans.iter().map(|sp| {
            procs
                .iter()
                .position(|p| p.0 == sp.process_id)
                .map_or(NONE, |i| i as u32)
        }));

        // Parents.
        s.parent.clear();
        s.kind.clear();
        let (mut roots, mut orphans, mut first_root) = (0u32, 0u32, NONE);
        for (i, sp) in spans.iter().enumerate() {
            let (p, k) = match &sp.references {
                None
                | Some(Refs {
                    child_of: None,
                    follows_from: None,
                }) => (NONE, RefKind::Root),
                Some(r) => {
                    let co = r.child_of.as_deref().map_or(NONE, |id| find(&s.order, id));
                    if co != NONE && co as usize != i {
                        (co, RefKind::ChildOf)
                    } else {
                        let ff = r
                            .follows_from
                            .as_deref()
                            .map_or(NONE, |id| find(&s.order, id));
                        if ff != NONE && ff as usize != i {
                            (ff, RefKind::FollowsFrom)
                        } else {
                            (NONE, RefKind::Orphan)
                        }
                    }
                }
            };
            match k {
                RefKind::Root => {
                    roots += 1;
                    if first_root == NONE {
                        first_root = i as u32;
                    }
                }
                RefKind::Orphan => orphans += 1,
                RefKind::FollowsFrom => c.follows_from_edges += 1,
                RefKind::ChildOf => {}
            }
            s.parent.push(p);
            s.kind.push(k);
        }
        c.orphan_spans += orphans as u64;
        c.traces_with_orphans += (orphans > 0) as u64;
        c.multi_root_traces += (roots > 1) as u64;
        c.no_root_traces += (roots == 0) as u64;

        // Union of CHILD_OF children intervals, clipped to the parent.
        s.union.clear();
        s.union.resize(n, 0);
        s.children.clear();
        s.children.resize(n, 0);
        s.intervals.clear();
        for i in 0..n {
            let p = s.parent[i];
            if p == NONE {
                continue;
            }
            s.children[p as usize] += 1;
            if s.kind[i] != RefKind::ChildOf {
                continue;
            }
            let (ps, pe) = (
                spans[p as usize].start,
                spans[p as usize].start + spans[p as usize].duration,
            );
            let (cs, ce) = (spans[i].start, spans[i].start + spans[i].duration);
            if cs < ps || ce > pe {
                c.children_outside_parent += 1;
            }
            let (cs, ce) = (cs.max(ps), ce.min(pe));
            if ce > cs {
                s.intervals.push((p, cs, ce));
            }
        }
        s.intervals.sort_unstable();
        let mut k = 0;
        while k < s.intervals.len() {
            let (p, mut cur_s, mut cur_e) = s.intervals[k];
            let mut total = 0;
            k += 1;
            while k < s.intervals.len() && s.intervals[k].0 == p {
                let (_, a, b) = s.intervals[k];
                if a > cur_e {
                    total += cur_e - cur_s;
                    cur_s = a;
                    cur_e = b;
                } else if b > cur_e {
                    cur_e = b;
                }
                k += 1;
            }
            total += cur_e - cur_s;
            s.union[p as usize] = total;
        }

        // Trace-level facts.
        let min_start = spans.iter().map(|x| x.start).min().unwrap_or(0);
        let max_end = spans
            .iter()
            .map(|x| x.start + x.duration)
            .max()
            .unwrap_or(0);
        let trace_time = if first_root != NONE {
            spans[first_root as usize].start
        } else {
            min_start
        };
        let mut trace_errors = 0u64;

        let svc_pod = |i: usize, s: &Scratch| -> (&str, &str) {
            match s.proc_idx[i] {
                NONE => ("", ""),
                pi => (&procs[pi as usize].1, &procs[pi as usize].2),
            }
        };

        let tid: &str = &t.trace_id;
        for (i, sp) in spans.iter().enumerate() {
            let self_us = sp.duration - s.union[i].min(sp.duration);
            let (svc, pod) = svc_pod(i, s);
            let err = sp.tags.as_ref().is_some_and(|t| t.error);
            trace_errors += err as u64;
            let op = self.ops.get(svc, &sp.operation);
            op.self_us.push(self_us);
            op.total_us.push(sp.duration);
            op.errors += err as u64;
            let ps = self.pods.get(svc, pod);
            ps.self_us.push(self_us);
            ps.total_us.push(sp.duration);
            ps.errors += err as u64;

            let p = s.parent[i];
            let kind = s.kind[i];
            // spans.csv
            let w = &mut self.spans.file;
            put_str(w, tid)?;
            w.write_all(b",")?;
            put_str(w, &sp.span_id)?;
            w.write_all(b",")?;
            match (p, &sp.references) {
                (NONE, Some(r)) => put_str(
                    w,
                    r.child_of
                        .as_deref()
                        .or(r.follows_from.as_deref())
                        .unwrap_or(""),
                )?,
                (NONE, None) => {}
                (p, _) => put_str(w, &spans[p as usize].span_id)?,
            }
            w.write_all(b",")?;
            w.write_all(kind.as_str().as_bytes())?;
            w.write_all(b",")?;
            put_str(w, svc)?;
            w.write_all(b",")?;
            put_str(w, pod)?;
            w.write_all(b",")?;
            put_str(w, &sp.operation)?;
            w.write_all(b",")?;
            put_u64(w, sp.start)?;
            w.write_all(b",")?;
            put_u64(w, sp.start + sp.duration)?;
            w.write_all(b",")?;
            put_u64(w, sp.duration)?;
            w.write_all(b",")?;
            put_u64(w, self_us)?;
            w.write_all(b",")?;
            put_u64(w, s.children[i] as u64)?;
            w.write_all(if err { b",1\n" } else { b",0\n" })?;

            // edges.csv
            if p != NONE {
                c.edges += 1;
                let pi = p as usize;
                let par = &spans[pi];
                let (psvc, ppod) = svc_pod(pi, s);
                let p_self = par.duration - s.union[pi].min(par.duration);
                let w = &mut self.edges.file;
                put_str(w, tid)?;
                w.write_all(b",")?;
                put_str(w, &par.span_id)?;
                w.write_all(b",")?;
                put_u64(w, trace_time)?;
                w.write_all(b",")?;
                put_u64(w, sp.start)?;
                w.write_all(b",")?;
                put_u64(w, sp.start + sp.duration)?;
                w.write_all(b",")?;
                put_str(w, &sp.span_id)?;
                w.write_all(b",")?;
                put_str(w, &sp.operation)?;
                w.write_all(b",")?;
                put_str(w, &par.operation)?;
                w.write_all(b",")?;
                put_str(w, svc)?;
                w.write_all(b",")?;
                put_str(w, pod)?;
                w.write_all(b",")?;
                put_str(w, psvc)?;
                w.write_all(b",")?;
                put_str(w, ppod)?;
                w.write_all(b",")?;
                put_u64(w, par.duration)?;
                w.write_all(b",")?;
                put_u64(w, sp.duration)?;
                w.write_all(b",")?;
                put_u64(w, p_self)?;
                w.write_all(b",")?;
                put_u64(w, self_us)?;
                w.write_all(b",")?;
                w.write_all(kind.as_str().as_bytes())?;
                w.write_all(b"\n")?;
            }
        }

        // end_to_end.csv
        let w = &mut self.e2e.file;
        let extent = max_end.saturating_sub(min_start);
        let duration = if roots == 1 {
            spans[first_root as usize].duration
        } else {
            extent
        };
        put_str(w, tid)?;
        w.write_all(b",")?;
        put_u64(w, trace_time)?;
        w.write_all(b",")?;
        put_u64(w, duration)?;
        w.write_all(b",")?;
        put_u64(w, extent)?;
        w.write_all(b",")?;
        put_u64(w, n as u64)?;
        w.write_all(b",")?;
        put_u64(w, roots as u64)?;
        w.write_all(b",")?;
        put_u64(w, orphans as u64)?;
        w.write_all(b",")?;
        if first_root != NONE {
            let (svc, _) = svc_pod(first_root as usize, s);
            put_str(w, svc)?;
            w.write_all(b",")?;
            put_str(w, &spans[first_root as usize].operation)?;
        } else {
            w.write_all(b",")?;
        }
        w.write_all(b",")?;
        put_u64(w, trace_errors)?;
        w.write_all(b"\n")?;
        c.error_spans += trace_errors;
        Ok(())
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
            path: spans.persist(&dir)?,
            what: format!("spans: {} spans of {} traces", counts.spans, counts.traces),
        });
        written.push(Written {
            path: edges.persist(&dir)?,
            what: format!("edges: {edge_count} parent→child edges"),
        });
        written.push(Written {
            path: e2e.persist(&dir)?,
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
        let c = counts.clone();
        let path = crate::output::write_atomic(&dir, "traces_summary.csv", |w| {
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
            for (k, v) in &extra_summary {
                csv_field(w, k)?;
                w.write_all(b",")?;
                csv_field(w, v)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
        written.push(Written {
            path,
            what: "trace counts: orphans, multi-root traces, coverage".into(),
        });
        Ok((counts, written))
    }
}

fn write_stats(dir: &Path, name: &str, keys: &str, mut groups: Groups) -> Result<PathBuf> {
    let mut order: Vec<usize> = (0..groups.keys.len()).collect();
    order.sort_by(|&a, &b| groups.keys[a].cmp(&groups.keys[b]));
    crate::output::write_atomic(dir, name, |w| {
        writeln!(w, "{keys},{STAT_COLUMNS}")?;
        for i in order {
            let (a, b) = &groups.keys[i];
            let st = &mut groups.stats[i];
            csv_field(w, a)?;
            w.write_all(b",")?;
            csv_field(w, b)?;
            write!(w, ",{},{}", st.self_us.len(), st.errors)?;
            for v in [&mut st.self_us, &mut st.total_us] {
                v.sort_unstable();
                let f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                let mean = f.iter().sum::<f64>() / f.len().max(1) as f64;
                // Statistics of µs values are printed to the nanosecond: no float noise in the files.
                let ns = |v: f64| fmt_f64((v * 1000.0).round() / 1000.0);
                write!(w, ",{}", ns(mean))?;
                for q in [0.5, 0.9, 0.95, 0.99] {
                    write!(w, ",{}", ns(quantile_sorted(&f, q)))?;
                }
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- streaming page parser

struct PageState<'p, W> {
    proc: &'p mut TraceProcessor,
    raw: Option<&'p mut W>,
    io_error: Option<std::io::Error>,
    added: usize,
}

struct PageSeed<'s, 'p, W>(&'s mut PageState<'p, W>);
struct TracesSeed<'s, 'p, W>(&'s mut PageState<'p, W>);

impl<'de, W: Write> DeserializeSeed<'de> for PageSeed<'_, '_, W> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, W: Write> Visitor<'de> for PageSeed<'_, '_, W> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a Jaeger answer {"data":[traces]} or a list of traces"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
        let mut seen_data = false;
        while let Some(k) = m.next_key::<Cow<'de, str>>()? {
            if k == "data" {
                seen_data = true;
                m.next_value_seed(TracesSeed(&mut *self.0))?;
            } else if k == "errors" {
                let errors: Option<Vec<serde_json::Value>> = m.next_value()?;
                if let Some(list) = errors.filter(|l| !l.is_empty()) {
                    let msgs: Vec<String> = list
                        .iter()
                        .map(|e| {
                            e.get("msg")
                                .and_then(|v| v.as_str())
                                .map_or_else(|| e.to_string(), str::to_string)
                        })
                        .collect();
                    return Err(de::Error::custom(format!(
                        "Jaeger reported errors: {}",
                        msgs.join("; ")
                    )));
                }
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        if !seen_data {
            return Err(de::Error::missing_field("data"));
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<(), A::Error> {
        TracesSeed(self.0).visit_seq(seq)
    }
}

impl<'de, W: Write> DeserializeSeed<'de> for TracesSeed<'_, '_, W> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, W: Write> Visitor<'de> for TracesSeed<'_, '_, W> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of traces")
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let st = self.0;
        loop {
            let (trace, raw): (TraceJson<'de>, Option<&'de serde_json::value::RawValue>) =
                if st.raw.is_some() {
                    let Some(r) = seq.next_element::<&'de serde_json::value::RawValue>()? else {
                        break;
                    };
                    let t: TraceJson<'de> =
                        serde_json::from_str(r.get()).map_err(de::Error::custom)?;
                    (t, Some(r))
                } else {
                    let Some(t) = seq.next_element::<TraceJson<'de>>()? else {
                        break;
                    };
                    (t, None)
                };
            match st.proc.add_trace(&trace) {
                Ok(true) => {
                    if let (Some(w), Some(r)) = (st.raw.as_deref_mut(), raw) {
                        let sep: &[u8] = if st.proc.raw_written > 0 { b",\n" } else { b"" };
                        let res = w
                            .write_all(sep)
                            .and_then(|_| w.write_all(r.get().as_bytes()));
                        st.proc.raw_written += 1;
                        if let Err(e) = res {
                            st.io_error = Some(e);
                            return Err(de::Error::custom("write failed"));
                        }
                    }
                    st.added += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    st.io_error = Some(e);
                    return Err(de::Error::custom("write failed"));
                }
            }
        }
        Ok(())
    }
}

/// Processes a Jaeger JSON file (`{"data":[...]}` or `[...]`) into the trace tables in `dir`.
pub fn process_file(input: &Path, dir: &Path) -> Result<(TraceCounts, Vec<Written>)> {
    let bytes = std::fs::read(input).map_err(|e| Error::io("reading", input, e))?;
    let mut p = TraceProcessor::create(dir)?;
    p.add_page::<std::io::Sink>(&bytes, None)
        .map_err(|message| Error::Parse {
            path: input.display().to_string(),
            line: 0,
            message,
        })?;
    p.finish()
}

#[cfg(test)]
mod tests;
