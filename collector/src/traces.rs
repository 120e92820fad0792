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
//! whole), each trace is parsed by a Jaeger-specific scanner (`traces/scan.rs`, whose module
//! comment says why no JSON crate is used) into offsets of that buffer, its rows are written at once, and only the self and
//! total time of each span (as `u32` while they fit) are kept for the statistics. Peak memory is
//! the buffer, the largest trace, the statistics, the set of trace IDs seen, and up to three 1 MiB
//! row buffers per table (one being filled, two with the table's writer thread).
//!
//! Rows are built as bytes: strings are copied as they are in the JSON (quoted only when they
//! hold a comma, a quote or a line break, which the scanner notes while it reads them), times and
//! durations are copied as their digits in the input, and only the computed numbers (end time,
//! self time, counts) are formatted (`Num`). The tables are written around the page cache
//! (`output/direct.rs`).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::output::direct::{AlignedBuf, DirectFile};
use crate::output::{fmt_f64, Written};

mod scan;

use scan::{
    same, PageFail, ReadSource, ScanError, Scanner, Source, SpanRec, Str, TraceBuf, TraceView,
};

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

/// FxHash (rustc's hasher): the group maps, the span-ID index and the set of trace IDs are
/// looked up per span or trace with short trusted keys, where std's SipHash showed in profiles;
/// no hasher crate is in the workspace, and this is the whole algorithm.
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
type FxSet<K> = HashSet<K, std::hash::BuildHasherDefault<Fx>>;

/// FxHash of one byte string.
#[inline]
fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = Fx::default();
    h.write(bytes);
    h.finish()
}

// ---------------------------------------------------------------- statistics

/// The values of one statistic column: `u32` while every value fits (half the memory; µs
/// durations fit for 71 minutes), `u64` from the first one that does not.
enum Values {
    Small(Vec<u32>),
    Big(Vec<u64>),
}

impl Default for Values {
    fn default() -> Self {
        Values::Small(Vec::new())
    }
}

impl Values {
    #[inline(always)]
    fn push(&mut self, v: u64) {
        if let Values::Small(x) = self {
            if v <= u32::MAX as u64 {
                x.push(v as u32);
                return;
            }
        }
        self.push_big(v);
    }

    #[cold]
    fn push_big(&mut self, v: u64) {
        if let Values::Small(x) = self {
            *self = Values::Big(x.iter().map(|&v| u64::from(v)).collect());
        }
        if let Values::Big(x) = self {
            x.push(v);
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Small(x) => x.len(),
            Values::Big(x) => x.len(),
        }
    }

    /// Mean and the p50, p90, p95 and p99 quantiles (see [`describe`]).
    fn describe(&mut self) -> (f64, [f64; 4]) {
        match self {
            Values::Small(x) => describe(x),
            Values::Big(x) => describe(x),
        }
    }
}

/// Quantiles reported in the statistics tables.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Mean and [`QUANTILES`] of `v` (not empty), equal to the bit to sorting `v`, converting it to
/// `f64`, summing in order and interpolating with [`crate::output::quantile_sorted`]; `v` is
/// reordered. Only the ranks the quantiles need are selected (O(n), where the sort was
/// O(n log n) and the largest cost of `finish`), and the sum is taken in integers: while it is
/// below 2^53 every partial sum in `f64` is exact in any order, so the mean is the same; above
/// that, the sorted `f64` sum is taken as before.
fn describe<T: Copy + Ord + Into<u64>>(v: &mut [T]) -> (f64, [f64; 4]) {
    let n = v.len();
    let total: u128 = v.iter().map(|&x| u128::from(x.into())).sum();
    let mean = if total < (1u128 << 53) {
        total as f64 / n.max(1) as f64
    } else {
        v.sort_unstable();
        v.iter().map(|&x| x.into() as f64).sum::<f64>() / n.max(1) as f64
    };
    let last = n.saturating_sub(1) as f64;
    let mut ranks: Vec<usize> = QUANTILES
        .iter()
        .flat_map(|&q| {
            let p = q.clamp(0.0, 1.0) * last;
            [p.floor() as usize, p.ceil() as usize]
        })
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    // Each selection leaves the larger values after the rank, so the next one searches only those.
    let mut from = 0;
    for &r in &ranks {
        if r >= from && r < n {
            v[from..].select_nth_unstable(r - from);
            from = r + 1;
        }
    }
    let q = QUANTILES.map(|q| {
        if n == 0 {
            return f64::NAN;
        }
        let p = q.clamp(0.0, 1.0) * last;
        let (lo, hi) = (p.floor() as usize, p.ceil() as usize);
        let (a, b) = (v[lo].into() as f64, v[hi].into() as f64);
        a + (b - a) * (p - lo as f64)
    });
    (mean, q)
}

#[derive(Default)]
struct Stat {
    self_us: Values,
    total_us: Values,
    errors: u64,
}

/// The two strings naming a group (service and operation, or service and pod).
type GroupKey = (Box<[u8]>, Box<[u8]>);

/// Statistics keyed by two strings (service and operation, or service and pod). The first key
/// is resolved once per process and trace, so a span costs one lookup of the second key, in a
/// small open-addressing table whose keys are compared with [`same`]: the `HashMap` it replaced
/// compared every hit with a `memcmp` call (operation names are 10–30 bytes), which with the
/// map's own probing was 4% of the run in profiles.
#[derive(Default)]
struct Groups {
    first: FxMap<Box<[u8]>, u32>,
    /// Group ids ([`NONE`]: free), at the slot of their hash; at most half full.
    slots: Vec<u32>,
    /// Per group: the hash of its (first id, second key), and its first id.
    hashes: Vec<(u64, u32)>,
    keys: Vec<GroupKey>,
    stats: Vec<Stat>,
}

impl Groups {
    /// The id of first key `a`.
    fn first(&mut self, a: &[u8]) -> u32 {
        if let Some(&i) = self.first.get(a) {
            return i;
        }
        let i = self.first.len() as u32;
        self.first.insert(a.into(), i);
        i
    }

    /// The statistics of (`a`, `b`), where `first` is the id of `a`.
    #[inline]
    fn get(&mut self, first: u32, a: &[u8], b: &[u8]) -> u32 {
        let h = fx_hash(b) ^ u64::from(first).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut at = slot_of(h) & mask;
            loop {
                let g = self.slots[at];
                if g == NONE {
                    break;
                }
                if self.hashes[g as usize] == (h, first) && same(&self.keys[g as usize].1, b) {
                    return g;
                }
                at = (at + 1) & mask;
            }
        }
        self.insert(h, first, a, b)
    }

    #[cold]
    fn insert(&mut self, h: u64, first: u32, a: &[u8], b: &[u8]) -> u32 {
        let g = self.stats.len() as u32;
        self.hashes.push((h, first));
        self.keys.push((a.into(), b.into()));
        self.stats.push(Stat::default());
        if self.slots.len() < 2 * self.stats.len() {
            // Rebuild at twice the size (or the first 64 slots).
            let size = (4 * self.stats.len()).next_power_of_two().max(64);
            self.slots.clear();
            self.slots.resize(size, NONE);
            for (i, &(h, _)) in self.hashes.iter().enumerate() {
                place(&mut self.slots, h, i as u32);
            }
        } else {
            place(&mut self.slots, h, g);
        }
        g
    }

    #[inline]
    fn add(&mut self, i: u32, self_us: u64, total_us: u64, error: bool) {
        let st = &mut self.stats[i as usize];
        st.self_us.push(self_us);
        st.total_us.push(total_us);
        st.errors += error as u64;
    }
}

// ---------------------------------------------------------------- per-trace scratch

const NONE: u32 = u32::MAX;

/// Span IDs of one trace → index: a small open-addressing table. When an ID occurs twice in a
/// trace, references to it resolve through the sorted order and binary search that this table
/// replaced, so such traces give the same rows as before.
#[derive(Default)]
struct SpanIndex {
    table: Vec<u32>,
    sorted: Vec<u32>,
    duplicates: bool,
}

impl SpanIndex {
    fn build(&mut self, v: &TraceView<'_>) {
        let spans = &v.t.spans;
        let size = (spans.len() * 2).next_power_of_two().max(8);
        let mask = size - 1;
        self.table.clear();
        self.table.resize(size, NONE);
        self.duplicates = false;
        for (i, sp) in spans.iter().enumerate() {
            let id = v.get(sp.id);
            let mut h = slot(id) & mask;
            loop {
                let e = self.table[h];
                if e == NONE {
                    self.table[h] = i as u32;
                    break;
                }
                if same(v.get(spans[e as usize].id), id) {
                    self.duplicates = true;
                    break;
                }
                h = (h + 1) & mask;
            }
        }
        if self.duplicates {
            self.sorted.clear();
            self.sorted.extend(0..spans.len() as u32);
            self.sorted.sort_unstable_by(|&a, &b| {
                v.get(spans[a as usize].id).cmp(v.get(spans[b as usize].id))
            });
        }
    }

    /// The span with ID `id`, or [`NONE`].
    #[inline]
    fn find(&self, v: &TraceView<'_>, id: &[u8]) -> u32 {
        let spans = &v.t.spans;
        if self.duplicates {
            return self
                .sorted
                .binary_search_by(|&i| v.get(spans[i as usize].id).cmp(id))
                .map_or(NONE, |p| self.sorted[p]);
        }
        let mask = self.table.len() - 1;
        let mut h = slot(id) & mask;
        loop {
            let e = self.table[h];
            if e == NONE || same(v.get(spans[e as usize].id), id) {
                return e;
            }
            h = (h + 1) & mask;
        }
    }
}

/// Puts group `g` with hash `h` in the first free slot from its own (linear probing; `slots` is
/// a power of two long and never full).
fn place(slots: &mut [u32], h: u64, g: u32) {
    let mask = slots.len() - 1;
    let mut at = slot_of(h) & mask;
    while slots[at] != NONE {
        at = (at + 1) & mask;
    }
    slots[at] = g;
}

/// Table slot of a span ID.
#[inline]
fn slot(id: &[u8]) -> usize {
    slot_of(fx_hash(id))
}

/// Table slot of a hash (the high bits of FxHash are its good ones).
#[inline(always)]
fn slot_of(h: u64) -> usize {
    (h ^ (h >> 29)) as usize
}

/// A number formatted once per span and written into several rows: its decimal digits at the
/// start of `text`.
#[derive(Clone, Copy, Default)]
struct Num {
    len: u8,
    text: [u8; 20],
}

/// The eight decimal digits of `v` (below 10^8, zero-padded) as byte values 0–9 in one word,
/// the first digit in the low byte: 4+4 digits in 32-bit lanes, then 2+2 in 16-bit lanes, then
/// 1+1 in bytes, each split a multiply and a shift (exact for these ranges).
#[inline(always)]
fn digits8(v: u64) -> u64 {
    let quads = (v / 10_000) | ((v % 10_000) << 32);
    let hundreds = ((quads * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let pairs = hundreds | ((quads - hundreds * 100) << 16);
    let tens = ((pairs * 103) >> 10) & 0x000F_000F_000F_000F;
    tens | ((pairs - tens * 10) << 8)
}

impl Num {
    /// Formats `v`. Below 10^16 (every µs time until the year 2286) the digits are computed in
    /// registers ([`digits8`]) and stored once: `itoa` writes them two at a time into a stack
    /// buffer that then had to be read back at once with wider loads, which the CPU cannot
    /// forward from the smaller stores (a stall that was 13% of [`TraceProcessor::process`]).
    #[inline]
    fn new(v: u64) -> Num {
        const SIXTEEN_DIGITS: u64 = 10_000_000_000_000_000;
        if v >= SIXTEEN_DIGITS {
            return Num::long(v);
        }
        let mut n = Num {
            len: 0,
            text: [0; 20],
        };
        if v < 100_000_000 {
            // Durations and self times: one word of digits.
            let d = digits8(v);
            // Leading zero digits are the low zero bytes; 0 keeps its one digit.
            let lead = if d == 0 { 7 } else { d.trailing_zeros() / 8 };
            let ascii = (d | u64::from_le_bytes([b'0'; 8])) >> (8 * lead);
            n.len = 8 - lead as u8;
            n.text[..8].copy_from_slice(&ascii.to_le_bytes());
        } else {
            let d =
                u128::from(digits8(v / 100_000_000)) | (u128::from(digits8(v % 100_000_000)) << 64);
            let lead = d.trailing_zeros() / 8;
            let ascii = (d | u128::from_le_bytes([b'0'; 16])) >> (8 * lead);
            n.len = 16 - lead as u8;
            n.text[..16].copy_from_slice(&ascii.to_le_bytes());
        }
        n
    }

    #[cold]
    fn long(v: u64) -> Num {
        let mut b = itoa::Buffer::new();
        let s = b.format(v).as_bytes();
        let mut n = Num {
            len: s.len() as u8,
            text: [0; 20],
        };
        n.text[..s.len()].copy_from_slice(s);
        n
    }

    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }
}

/// Per-span facts of the current trace.
#[derive(Clone, Copy)]
struct SpanFacts {
    parent: u32,
    kind: RefKind,
    process: u32,
    children: u32,
    union: u64,
    self_us: u64,
    end: Num,
    self_text: Num,
}

/// Reusable per-trace scratch space (no allocation per trace once warmed up).
#[derive(Default)]
struct Scratch {
    index: SpanIndex,
    facts: Vec<SpanFacts>,
    intervals: Vec<(u32, u64, u64)>,
    /// Per process of the trace: the id of its service in `ops` and its (service, pod) group,
    /// [`NONE`] until a span uses the process.
    proc_groups: Vec<(u32, u32)>,
}

// ---------------------------------------------------------------- CSV output

/// Bytes buffered per table before a write: large enough that the writes (direct, one device
/// request each) are few, small enough to stay in the core's L2 cache while the rows are built.
const FLUSH_AT: usize = 1 << 20;

/// Row bytes of one table: a zeroed buffer written at `len`. Fields are copied as one or two
/// fixed-size (overlapping) moves instead of a `memcpy` call each: with ~30 fields of 1–20 bytes
/// per span, the calls and `Vec`'s capacity checks were a fifth of the processing in profiles.
/// The rows start at an aligned address ([`AlignedBuf`]), so whole blocks of them can be written
/// with `O_DIRECT` straight from here.
struct RowBuf {
    buf: AlignedBuf,
    /// Index in `buf.bytes()` of the next byte (the rows are `buf.start()..len`).
    len: usize,
}

impl RowBuf {
    fn new() -> Self {
        let buf = AlignedBuf::zeroed(FLUSH_AT + (1 << 16));
        let len = buf.start();
        RowBuf { buf, len }
    }

    /// The bytes written so far.
    fn bytes(&self) -> &[u8] {
        &self.buf.bytes()[self.buf.start()..self.len]
    }

    /// How many bytes were written so far.
    #[inline(always)]
    fn used(&self) -> usize {
        self.len - self.buf.start()
    }

    /// Makes room for `n` more bytes plus the 32 that a fixed-size copy may touch. [`Row::put`]
    /// and [`Row::byte`] rely on it (a row longer than its reservation would panic, not
    /// write out of bounds): [`TraceProcessor::process`] reserves once per trace.
    #[inline(always)]
    fn room(&mut self, n: usize) {
        if self.buf.bytes().len() - self.len < n + 32 {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let used = self.used();
        let size = (self.buf.bytes().len() * 2).max(used + n + 32);
        let mut buf = AlignedBuf::zeroed(size);
        let start = buf.start();
        buf.bytes_mut()[start..start + used].copy_from_slice(self.bytes());
        self.buf = buf;
        self.len = start + used;
    }

    /// A cursor that appends rows at the end (within the room reserved); [`Row::end`] gives the
    /// new length.
    #[inline(always)]
    fn row(&mut self) -> Row<'_> {
        Row {
            at: self.len,
            buf: self.buf.bytes_mut(),
        }
    }
}

/// Rows being appended to a [`RowBuf`]: its bytes and the write position as locals. Written
/// through `RowBuf` itself, the position was a field of the processor that every byte store
/// might alias, so the compiler stored and reloaded it around each field; as a local it may stay
/// in a register (how often it does depends on the register pressure of the loop, which is why
/// [`TraceProcessor::process`] writes one table per loop). Every field waits on the position,
/// so [`Row::put_c`] and [`Row::str_c`] move it once for a field and its comma.
struct Row<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Row<'_> {
    /// The new length of the [`RowBuf`].
    #[inline(always)]
    fn end(self) -> usize {
        self.at
    }

    /// Appends `s` (within the room reserved).
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.at;
        copy_short(&mut self.buf[at..at + n.max(32)], s);
        self.at = at + n;
    }

    /// Appends one byte (within the room reserved).
    #[inline(always)]
    fn byte(&mut self, c: u8) {
        self.buf[self.at] = c;
        self.at += 1;
    }

    /// Appends `s` and a comma with one move of the position.
    #[inline(always)]
    fn put_c(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.at;
        let d = &mut self.buf[at..at + n.max(32) + 1];
        copy_short(d, s);
        d[n] = b',';
        self.at = at + n + 1;
    }

    /// [`Row::str`] and a comma.
    #[inline(always)]
    fn str_c(&mut self, v: &TraceView<'_>, s: Str) {
        if s.needs_quotes() {
            self.quoted(v.get(s));
            self.byte(b',');
        } else {
            self.put_c(v.get(s));
        }
    }

    /// Appends `s` as one CSV field, quoted when `quote` (RFC 4180, as
    /// [`crate::output::csv_field`]).
    #[inline(always)]
    fn field(&mut self, s: &[u8], quote: bool) {
        if quote {
            self.quoted(s);
        } else {
            self.put(s);
        }
    }

    /// Appends `s` quoted (the reservation counts every string twice, plus its quotes).
    #[cold]
    fn quoted(&mut self, s: &[u8]) {
        let mut q = Vec::with_capacity(2 * s.len() + 2);
        put_quoted(&mut q, s);
        self.put(&q);
    }

    /// Appends the string `s` of trace `v` as a CSV field.
    #[inline(always)]
    fn str(&mut self, v: &TraceView<'_>, s: Str) {
        self.field(v.get(s), s.needs_quotes());
    }

    /// Appends `n` in decimal.
    #[inline(always)]
    fn num(&mut self, n: u64) {
        if n < 10 {
            self.byte(b'0' + n as u8);
        } else {
            self.put(Num::new(n).bytes());
        }
    }
}

/// Copies `s` to the start of `d` (at least as long) as one or two fixed-size, possibly
/// overlapping moves when `s` is at most 32 bytes: no `memcpy` call, whose call and size
/// dispatch cost more than the copy for the short fields of a row.
#[inline(always)]
fn copy_short(d: &mut [u8], s: &[u8]) {
    let n = s.len();
    if n >= 8 {
        if n <= 16 {
            d[..8].copy_from_slice(&s[..8]);
            d[n - 8..n].copy_from_slice(&s[n - 8..]);
        } else if n <= 32 {
            d[..16].copy_from_slice(&s[..16]);
            d[n - 16..n].copy_from_slice(&s[n - 16..]);
        } else {
            // Longer (rare: long names): 32-byte moves, the last one overlapping; still no call,
            // around which the row loops would have to save their registers.
            let mut i = 0;
            while i + 32 < n {
                d[i..i + 32].copy_from_slice(&s[i..i + 32]);
                i += 32;
            }
            d[n - 32..n].copy_from_slice(&s[n - 32..]);
        }
    } else if n >= 4 {
        d[..4].copy_from_slice(&s[..4]);
        d[n - 4..n].copy_from_slice(&s[n - 4..]);
    } else {
        for (x, &c) in d.iter_mut().zip(s) {
            *x = c;
        }
    }
}

/// One CSV table: rows are built in a [`RowBuf`] and written block by block to a temp file
/// ([`DirectFile`], around the page cache where the file system allows) that
/// [`Table::persist`] renames into place.
struct Table {
    buf: RowBuf,
    file: DirectFile,
}

impl Table {
    fn create(dir: &Path, name: &'static str, header: &str, direct: bool) -> Result<Table> {
        let file = DirectFile::create(dir, name, direct)?;
        let mut buf = RowBuf::new();
        buf.room(header.len() + 1);
        let mut w = buf.row();
        w.put(header.as_bytes());
        w.byte(b'\n');
        buf.len = w.end();
        Ok(Table { buf, file })
    }

    #[inline]
    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.used() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    #[inline(never)]
    fn flush(&mut self) -> io::Result<()> {
        self.buf.len = self.file.write(&mut self.buf.buf, self.buf.len)?;
        Ok(())
    }

    fn persist(self) -> Result<PathBuf> {
        let Table { buf, file } = self;
        file.persist(buf.bytes())
    }
}

fn put_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// Writes `s` as one CSV field, quoted when it holds `,`, `"`, CR or LF.
fn csv_bytes<W: Write>(w: &mut W, s: &[u8]) -> io::Result<()> {
    if s.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        let mut q = Vec::with_capacity(s.len() + 2);
        put_quoted(&mut q, s);
        w.write_all(&q)
    } else {
        w.write_all(s)
    }
}

// ---------------------------------------------------------------- the processor

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
                    let (line, column) = input()
                        .and_then(|r| scan::line_column(r, at))
                        .unwrap_or((0, 0));
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

/// Streams traces into the trace tables. Create with [`TraceProcessor::create`], feed with
/// [`TraceProcessor::add_page`] or [`TraceProcessor::add_trace`], then [`TraceProcessor::finish`].
pub struct TraceProcessor {
    dir: PathBuf,
    spans: Table,
    edges: Table,
    e2e: Table,
    ops: Groups,
    pods: Groups,
    seen: FxSet<Box<[u8]>>,
    counts: TraceCounts,
    scratch: Scratch,
    trace: TraceBuf,
    extra_summary: Vec<(String, String)>,
    raw_written: u64,
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

    /// Adds a `key,value` line to `traces_summary.csv` (e.g. the fetch's coverage).
    pub fn add_summary(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.extra_summary.push((key.into(), value.into()));
    }

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
        let r = scan::scan_one(json, &mut trace, &mut |v| {
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
        let r = scan::scan_page(sc, &mut trace, &mut |v| {
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

    fn process(&mut self, v: &TraceView<'_>) -> io::Result<()> {
        let spans: &[SpanRec] = &v.t.spans;
        let procs = &v.t.procs;
        let n = spans.len();
        let s = &mut self.scratch;
        let c = &mut self.counts;
        c.traces += 1;
        c.spans += n as u64;

        s.index.build(v);

        // Groups of each process, looked up when a span first uses it (once per process, not per
        // span; a process no span uses must not get a row).
        s.proc_groups.clear();
        s.proc_groups.resize(procs.len(), (NONE, NONE));

        // Parents and processes.
        s.facts.clear();
        let (mut roots, mut orphans, mut first_root) = (0u32, 0u32, NONE);
        for (i, sp) in spans.iter().enumerate() {
            let (p, k) = if !sp.child_of.is_present() && !sp.follows_from.is_present() {
                (NONE, RefKind::Root)
            } else {
                let co = if sp.child_of.is_present() {
                    s.index.find(v, v.get(sp.child_of))
                } else {
                    NONE
                };
                if co != NONE && co as usize != i {
                    (co, RefKind::ChildOf)
                } else {
                    let ff = if sp.follows_from.is_present() {
                        s.index.find(v, v.get(sp.follows_from))
                    } else {
                        NONE
                    };
                    if ff != NONE && ff as usize != i {
                        (ff, RefKind::FollowsFrom)
                    } else {
                        (NONE, RefKind::Orphan)
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
            // Process lookup (linear: a trace has a handful of processes; the first match wins).
            let pid = v.get(sp.process);
            let process = procs
                .iter()
                .position(|p| same(v.get(p.key), pid))
                .map_or(NONE, |x| x as u32);
            s.facts.push(SpanFacts {
                parent: p,
                kind: k,
                process,
                children: 0,
                union: 0,
                self_us: 0,
                end: Num::default(),
                self_text: Num::default(),
            });
        }
        c.orphan_spans += orphans as u64;
        c.traces_with_orphans += (orphans > 0) as u64;
        c.multi_root_traces += (roots > 1) as u64;
        c.no_root_traces += (roots == 0) as u64;

        // Union of CHILD_OF children intervals, clipped to the parent.
        s.intervals.clear();
        for i in 0..n {
            let p = s.facts[i].parent;
            if p == NONE {
                continue;
            }
            s.facts[p as usize].children += 1;
            if s.facts[i].kind != RefKind::ChildOf {
                continue;
            }
            let par = &spans[p as usize];
            let (ps, pe) = (par.start, par.start + par.duration);
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
            s.facts[p as usize].union = total;
        }

        // Self times, statistics, and the numbers written more than once.
        let mut trace_errors = 0u64;
        let (mut min_start, mut max_end) = (u64::MAX, 0u64);
        let mut no_proc = (NONE, NONE);
        for (sp, f) in spans.iter().zip(s.facts.iter_mut()) {
            let end = sp.start + sp.duration;
            min_start = min_start.min(sp.start);
            max_end = max_end.max(end);
            f.self_us = sp.duration - f.union.min(sp.duration);
            f.end = Num::new(end);
            f.self_text = Num::new(f.self_us);
            trace_errors += sp.error as u64;
            let (svc, pod) = match f.process {
                NONE => (&b""[..], &b""[..]),
                pi => (
                    v.get(procs[pi as usize].service),
                    v.get(procs[pi as usize].pod),
                ),
            };
            let groups = match f.process {
                NONE => &mut no_proc,
                pi => &mut s.proc_groups[pi as usize],
            };
            if groups.0 == NONE {
                groups.0 = self.ops.first(svc);
                let first = self.pods.first(svc);
                groups.1 = self.pods.get(first, svc, pod);
            }
            let (ops_first, pod_group) = *groups;
            let op = self.ops.get(ops_first, svc, v.get(sp.op));
            self.ops.add(op, f.self_us, sp.duration, sp.error);
            self.pods.add(pod_group, f.self_us, sp.duration, sp.error);
        }
        if n == 0 {
            min_start = 0;
        }
        let trace_time_num;
        let trace_time: &[u8] = if first_root != NONE {
            v.get(spans[first_root as usize].start_text)
        } else {
            trace_time_num = Num::new(min_start);
            trace_time_num.bytes()
        };

        let tid = v.t.trace_id;
        let (svc_of, pod_of) = (
            |f: &SpanFacts| -> Str {
                match f.process {
                    NONE => Str::default(),
                    pi => procs[pi as usize].service,
                }
            },
            |f: &SpanFacts| -> Str {
                match f.process {
                    NONE => Str::default(),
                    pi => procs[pi as usize].pod,
                }
            },
        );
        let duration_text = |sp: &SpanRec| -> &[u8] {
            if sp.duration_text.is_present() {
                v.get(sp.duration_text)
            } else {
                b"0"
            }
        };
        // Room for this trace's rows: each string at most doubled by quoting, plus its quotes;
        // every number at most 20 digits; separators and the reference kind.
        let (mut id, mut op, mut svc, mut pod) = (0usize, 0usize, 0usize, 0usize);
        for sp in spans {
            id = id
                .max(sp.id.len())
                .max(sp.child_of.len())
                .max(sp.follows_from.len());
            op = op.max(sp.op.len());
        }
        for p in procs {
            svc = svc.max(p.service.len());
            pod = pod.max(p.pod.len());
        }
        let t = tid.len();
        let row = 2 * (t + 2 * id + 2 * op + 2 * svc + 2 * pod) + 32 + 8 * 20 + 32;
        self.spans.buf.room(n * row);
        self.edges.buf.room(n * row);
        self.e2e.buf.room(2 * (t + svc + op) + 8 * 20 + 32);
        // One table at a time: fewer values live per loop than with both rows in one (the
        // cursors were on the stack then).
        let mut w = self.spans.buf.row();
        for (sp, f) in spans.iter().zip(&s.facts) {
            let (svc, pod) = (svc_of(f), pod_of(f));
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
            w.put_c(duration_text(sp));
            w.put_c(f.self_text.bytes());
            w.num(f.children as u64);
            w.put(if sp.error { b",1\n" } else { b",0\n" });
        }
        self.spans.buf.len = w.end();
        let mut w = self.edges.buf.row();
        for (sp, f) in spans.iter().zip(&s.facts) {
            if f.parent != NONE {
                c.edges += 1;
                let pi = f.parent as usize;
                let (par, pf) = (&spans[pi], &s.facts[pi]);
                let (svc, pod) = (svc_of(f), pod_of(f));
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
                w.str_c(v, svc_of(pf));
                w.str_c(v, pod_of(pf));
                w.put_c(duration_text(par));
                w.put_c(duration_text(sp));
                w.put_c(pf.self_text.bytes());
                w.put_c(f.self_text.bytes());
                w.put(f.kind.as_str().as_bytes());
                w.byte(b'\n');
            }
        }
        self.edges.buf.len = w.end();

        // end_to_end.csv
        let mut w = self.e2e.buf.row();
        let extent = max_end.saturating_sub(min_start);
        let duration = if roots == 1 {
            spans[first_root as usize].duration
        } else {
            extent
        };
        w.str_c(v, tid);
        w.put_c(trace_time);
        w.num(duration);
        w.byte(b',');
        w.num(extent);
        w.byte(b',');
        w.num(n as u64);
        w.byte(b',');
        w.num(roots as u64);
        w.byte(b',');
        w.num(orphans as u64);
        w.byte(b',');
        if first_root != NONE {
            let r = first_root as usize;
            w.str_c(v, svc_of(&s.facts[r]));
            w.str(v, spans[r].op);
        } else {
            w.byte(b',');
        }
        w.byte(b',');
        w.num(trace_errors);
        w.byte(b'\n');
        self.e2e.buf.len = w.end();
        c.error_spans += trace_errors;

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
                csv_bytes(w, k.as_bytes())?;
                w.write_all(b",")?;
                csv_bytes(w, v.as_bytes())?;
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
            csv_bytes(w, a)?;
            w.write_all(b",")?;
            csv_bytes(w, b)?;
            write!(w, ",{},{}", st.self_us.len(), st.errors)?;
            for v in [&mut st.self_us, &mut st.total_us] {
                let (mean, q) = v.describe();
                // Statistics of µs values are printed to the nanosecond: no float noise in the files.
                let ns = |v: f64| fmt_f64((v * 1000.0).round() / 1000.0);
                write!(w, ",{}", ns(mean))?;
                for x in q {
                    write!(w, ",{}", ns(x))?;
                }
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
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
fn process_reader<Rd: io::Read, Again: io::Read>(
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
