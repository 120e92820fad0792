//! The Jaeger schema reader: reads one trace object of Jaeger's JSON model (the query API's
//! answer and the UI's export) with the JSON scanner (`json.rs`), keeping only what the tables
//! need ([`TraceBuf`]: per span its IDs, operation, process, first references, times and error
//! tag; per process its service and pod) as offsets into the trace's text.
//!
//! The fields the tables use have the types and defaults of Jaeger's JSON model (`traceID`,
//! `spanID` and `startTime` are required; a field given twice is an error, as with serde's
//! derived structs). Keys are tried in the order Jaeger writes them.
//!
//! Spans, nine tenths of the input, first try [`span_fast`]: Jaeger's own compact layout read
//! straight through with the position in a register. Anything it does not fully check (other key
//! orders, whitespace, escapes, logs...) makes it give up, and the general path reads the span
//! from the same byte, so the result (or the error) is the same either way; a test compares the
//! two on thousands of damaged spans.

use super::fast::span_fast;
use super::json::{pat, Pat, Scanner, Source, Str, IN_ARENA, R};

/// Keys of the top-level answer, of a trace, of a span, of a reference, of a tag and of a
/// process, each in the order Jaeger writes them (the scanner tries the next expected key first).
pub(crate) const PAGE_KEYS: [Pat; 2] = [pat(b"data"), pat(b"errors")];
const TRACE_KEYS: [Pat; 3] = [pat(b"traceID"), pat(b"spans"), pat(b"processes")];
pub(crate) const SPAN_KEYS: [Pat; 11] = [
    pat(b"traceID"),
    pat(b"spanID"),
    pat(b"flags"),
    pat(b"operationName"),
    pat(b"references"),
    pat(b"startTime"),
    pat(b"duration"),
    pat(b"tags"),
    pat(b"logs"),
    pat(b"processID"),
    pat(b"warnings"),
];
pub(crate) const REF_KEYS: [Pat; 3] = [pat(b"refType"), pat(b"traceID"), pat(b"spanID")];
pub(crate) const TAG_KEYS: [Pat; 3] = [pat(b"key"), pat(b"type"), pat(b"value")];
const PROCESS_KEYS: [Pat; 2] = [pat(b"serviceName"), pat(b"tags")];
/// String values compared in place.
pub(crate) const FOLLOWS_FROM: Pat = pat(b"FOLLOWS_FROM");
pub(crate) const ERROR: Pat = pat(b"error");

/// One span, reduced to what the tables need.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpanRec {
    /// `spanID`.
    pub id: Str,
    /// `operationName` (empty when missing).
    pub op: Str,
    /// `processID` (empty when missing).
    pub process: Str,
    /// First reference whose type is not `FOLLOWS_FROM` (not present when none).
    pub child_of: Str,
    /// First `FOLLOWS_FROM` reference (not present when none).
    pub follows_from: Str,
    /// `startTime`, µs.
    pub start: u64,
    /// `duration`, µs (0 when missing).
    pub duration: u64,
    /// The digits of `startTime` as written (present when it is a plain integer, always here).
    pub start_text: Str,
    /// The digits of `duration` as written (not present when the field is missing).
    pub duration_text: Str,
    /// A tag `error` is `true` (boolean or the string "true").
    pub error: bool,
}

/// One entry of `processes`: its key, `serviceName` and pod (the `hostname` tag, else
/// `k8s.pod.name`, else empty).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcRec {
    /// The key spans refer to with `processID`.
    pub key: Str,
    /// `serviceName`.
    pub service: Str,
    /// The pod name.
    pub pod: Str,
}

/// The parsed form of one trace, reused from trace to trace.
#[derive(Debug, Default)]
pub(crate) struct TraceBuf {
    /// `traceID`.
    pub trace_id: Str,
    /// The spans in input order.
    pub spans: Vec<SpanRec>,
    /// The processes in input order.
    pub procs: Vec<ProcRec>,
    /// Decoded strings that had escapes.
    pub arena: Vec<u8>,
}

/// A parsed trace together with the JSON text its strings point into.
pub(crate) struct TraceView<'a> {
    /// The trace's JSON text, from `{` to `}`.
    pub raw: &'a [u8],
    /// The parsed trace.
    pub t: &'a TraceBuf,
}

impl<'a> TraceView<'a> {
    /// The bytes of `s` (valid UTF-8: every kept string is checked).
    #[inline(always)]
    pub(crate) fn get(&self, s: Str) -> &'a [u8] {
        let (off, len) = (s.off as usize, s.len as usize);
        if s.flags & IN_ARENA != 0 {
            &self.t.arena[off..off + len]
        } else {
            &self.raw[off..off + len]
        }
    }
}

/// What a tag value is, as far as the tables care.
enum TagValue {
    Bool(bool),
    Str(Str),
    Other,
}

impl<S: Source> Scanner<S> {
    /// A tag value: booleans and strings matter, the rest is skipped.
    fn tag_value(&mut self, arena: &mut Vec<u8>) -> R<TagValue> {
        Ok(match self.peek()? {
            b't' => {
                self.literal(b"true")?;
                TagValue::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                TagValue::Bool(false)
            }
            b'"' => TagValue::Str(self.string(arena)?),
            _ => {
                self.skip_value()?;
                TagValue::Other
            }
        })
    }

    /// Parses the trace object at the next `{` into `t`. The trace's text starts at the mark.
    pub(crate) fn trace(&mut self, t: &mut TraceBuf) -> R<()> {
        t.trace_id = Str::default();
        t.spans.clear();
        t.procs.clear();
        t.arena.clear();
        // Relative to the mark: a refill moves the bytes, not their distance from the mark.
        let at = self.pos - self.mark;
        let (mut seen, mut hint) = (0u32, 0usize);
        let mut key = self.first_key("a trace object", &TRACE_KEYS, &mut hint)?;
        while let Some(k) = key {
            match k {
                0 => {
                    self.once(&mut seen, 1, "traceID")?;
                    t.trace_id = self.string_field("traceID", &mut t.arena)?;
                }
                1 => {
                    self.once(&mut seen, 2, "spans")?;
                    let mut more = self.array_start("`spans` as a list of spans")?;
                    while more {
                        t.spans.push(SpanRec::default());
                        let i = t.spans.len() - 1;
                        self.span(&mut t.spans[i], t.trace_id, &mut t.arena)?;
                        more = self.array_next()?;
                    }
                }
                2 => {
                    self.once(&mut seen, 4, "processes")?;
                    if !self.null()? {
                        self.processes(t)?;
                    }
                }
                _ => self.skip_value()?,
            }
            key = self.next_key(&TRACE_KEYS, &mut hint)?;
        }
        if seen & 1 == 0 {
            return Err(self.err_at(self.mark + at, "missing field `traceID` in a trace"));
        }
        Ok(())
    }

    /// One span; `trace_id` is the trace's ID, which the span most likely repeats.
    pub(crate) fn span(&mut self, s: &mut SpanRec, trace_id: Str, arena: &mut Vec<u8>) -> R<()> {
        if self.fast {
            if let Some((rec, end)) = span_fast(self.src.bytes(), self.pos, self.mark) {
                *s = rec;
                self.pos = end;
                return Ok(());
            }
        }
        // Relative to the mark: a refill moves the bytes, not their distance from the mark.
        let at = self.pos - self.mark;
        let (mut seen, mut hint) = (0u32, 0usize);
        let mut key = self.first_key("a span object", &SPAN_KEYS, &mut hint)?;
        while let Some(k) = key {
            match k {
                1 => {
                    self.once(&mut seen, 1, "spanID")?;
                    s.id = self.string_field("spanID", arena)?;
                }
                3 => {
                    self.once(&mut seen, 2, "operationName")?;
                    s.op = self.string_field("operationName", arena)?;
                }
                4 => {
                    self.once(&mut seen, 4, "references")?;
                    if !self.null()? {
                        self.references(s, trace_id, arena)?;
                    }
                }
                5 => {
                    self.once(&mut seen, 8, "startTime")?;
                    (s.start, s.start_text) = self.u64("startTime")?;
                }
                6 => {
                    self.once(&mut seen, 16, "duration")?;
                    (s.duration, s.duration_text) = self.u64("duration")?;
                }
                7 => {
                    self.once(&mut seen, 32, "tags")?;
                    if !self.null()? {
                        s.error = self.span_tags(arena)?;
                    }
                }
                9 => {
                    self.once(&mut seen, 64, "processID")?;
                    s.process = self.string_field("processID", arena)?;
                }
                0 => self.skip_known(trace_id)?,
                _ => self.skip_value()?,
            }
            key = self.next_key(&SPAN_KEYS, &mut hint)?;
        }
        if seen & 1 == 0 {
            return Err(self.err_at(self.mark + at, "missing field `spanID` in a span"));
        }
        if seen & 8 == 0 {
            return Err(self.err_at(self.mark + at, "missing field `startTime` in a span"));
        }
        Ok(())
    }

    /// `references`: the first `FOLLOWS_FROM` and the first other reference.
    pub(crate) fn references(
        &mut self,
        s: &mut SpanRec,
        trace_id: Str,
        arena: &mut Vec<u8>,
    ) -> R<()> {
        let mut more = self.array_start("`references` as a list")?;
        let mut hint = 0usize;
        while more {
            // Relative to the mark: a refill moves the bytes, not their distance from the mark.
            let at = self.pos - self.mark;
            let (mut seen, mut follows, mut id) = (0u32, false, Str::default());
            let mut key = self.first_key("a reference object", &REF_KEYS, &mut hint)?;
            while let Some(k) = key {
                match k {
                    0 => {
                        self.once(&mut seen, 1, "refType")?;
                        if self.peek()? != b'"' {
                            return Err(self.err("invalid type: `refType` must be a string"));
                        }
                        follows = self.string_is(&FOLLOWS_FROM, arena)?;
                    }
                    2 => {
                        self.once(&mut seen, 2, "spanID")?;
                        id = self.string_field("spanID", arena)?;
                    }
                    1 => self.skip_known(trace_id)?,
                    _ => self.skip_value()?,
                }
                key = self.next_key(&REF_KEYS, &mut hint)?;
            }
            if seen & 2 == 0 {
                return Err(self.err_at(self.mark + at, "missing field `spanID` in a reference"));
            }
            let slot = if follows {
                &mut s.follows_from
            } else {
                &mut s.child_of
            };
            if !slot.is_present() {
                *slot = id;
            }
            more = self.array_next()?;
        }
        Ok(())
    }

    /// Span `tags`: is one of them `error` = `true` (or `"true"`)?
    pub(crate) fn span_tags(&mut self, arena: &mut Vec<u8>) -> R<bool> {
        let mut error = false;
        let mut more = self.array_start("`tags` as a list")?;
        let mut hint = 0usize;
        while more {
            // Jaeger writes `key` before `value`, so other tags' values are skipped undecoded.
            let (mut is_error, mut key_seen, mut value_true) = (false, false, false);
            let mut key = self.first_key("a tag object", &TAG_KEYS, &mut hint)?;
            while let Some(k) = key {
                match k {
                    0 => {
                        if self.peek()? != b'"' {
                            return Err(self.err("invalid type: a tag's `key` must be a string"));
                        }
                        is_error = self.string_is(&ERROR, arena)?;
                        key_seen = true;
                    }
                    2 if !key_seen || is_error => {
                        let a0 = arena.len();
                        value_true = match self.tag_value(arena)? {
                            TagValue::Bool(b) => b,
                            TagValue::Str(s) => {
                                let (off, len) = (s.off as usize, s.len as usize);
                                let v = if s.flags & IN_ARENA != 0 {
                                    &arena[off..off + len]
                                } else {
                                    let a = self.mark + off;
                                    &self.src.bytes()[a..a + len]
                                };
                                v == b"true"
                            }
                            TagValue::Other => false,
                        };
                        arena.truncate(a0);
                    }
                    _ => self.skip_value()?,
                }
                key = self.next_key(&TAG_KEYS, &mut hint)?;
            }
            error |= is_error && value_true;
            more = self.array_next()?;
        }
        Ok(error)
    }

    /// `processes`: `{"p1": {"serviceName": ..., "tags": [...]}, ...}`.
    pub(crate) fn processes(&mut self, t: &mut TraceBuf) -> R<()> {
        let mut more = self.object_start("`processes` as an object")?;
        let (mut hint, mut tag_hint) = (0usize, 0usize);
        while more {
            let key = self.string(&mut t.arena)?;
            self.expect(b':', "`:`")?;
            let mut p = ProcRec {
                key,
                ..ProcRec::default()
            };
            let mut seen = 0u32;
            let mut key = self.first_key("a process object", &PROCESS_KEYS, &mut hint)?;
            while let Some(k) = key {
                match k {
                    0 => {
                        self.once(&mut seen, 1, "serviceName")?;
                        p.service = self.string_field("serviceName", &mut t.arena)?;
                    }
                    1 => {
                        self.once(&mut seen, 2, "tags")?;
                        if !self.null()? {
                            p.pod = self.process_tags(&mut t.arena, &mut tag_hint)?;
                        }
                    }
                    _ => self.skip_value()?,
                }
                key = self.next_key(&PROCESS_KEYS, &mut hint)?;
            }
            t.procs.push(p);
            more = self.object_next()?;
        }
        Ok(())
    }

    /// Process `tags`: the pod name (`hostname` wins over `k8s.pod.name`, whatever their order).
    fn process_tags(&mut self, arena: &mut Vec<u8>, hint: &mut usize) -> R<Str> {
        let mut pod = Str::default();
        let mut more = self.array_start("`tags` as a list")?;
        while more {
            // Relative to the mark: a refill moves the bytes, not their distance from the mark.
            let at = self.pos - self.mark;
            let mut seen = 0u32;
            let (mut hostname, mut k8s, mut value) = (false, false, None);
            let mut key = if self.object_start("a tag object")? {
                Some(self.key_in(&TAG_KEYS, hint)?)
            } else {
                None
            };
            while let Some(k) = key {
                match k {
                    0 => {
                        self.once(&mut seen, 1, "key")?;
                        let s = self.string_field("key", arena)?;
                        let (off, len) = (s.off as usize, s.len as usize);
                        let key = if s.flags & IN_ARENA != 0 {
                            &arena[off..off + len]
                        } else {
                            let a = self.mark + off;
                            &self.src.bytes()[a..a + len]
                        };
                        hostname = key == b"hostname";
                        k8s = key == b"k8s.pod.name";
                    }
                    2 => {
                        self.once(&mut seen, 2, "value")?;
                        if let TagValue::Str(s) = self.tag_value(arena)? {
                            value = Some(s);
                        }
                    }
                    _ => self.skip_value()?,
                }
                key = self.next_key(&TAG_KEYS, hint)?;
            }
            if seen & 1 == 0 {
                return Err(self.err_at(self.mark + at, "missing field `key` in a tag"));
            }
            if let Some(v) = value {
                if hostname || (k8s && !pod.is_present()) {
                    pod = v;
                }
            }
            more = self.array_next()?;
        }
        Ok(pod)
    }
}

// ---------------------------------------------------------------- the common span, fast
