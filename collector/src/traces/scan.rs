//! A Jaeger-specific JSON scanner: pulls the input in chunks and hands over one trace at a time.
//!
//! # Why not a JSON crate
//! The target for the trace tables is 2 M spans per CPU-second, which leaves roughly 0.15 µs of
//! parsing for each span's ~470 bytes of JSON (the rest goes to the kernel's read and write copies
//! and to the CSV rows). Measured on the benchmark input (`trace_bench generate`, 20,000 traces,
//! 194 MB; parse only, one thread, the same borrowed-string serde model this module replaced):
//!
//! | parser | MB/s |
//! | --- | --- |
//! | `serde_json` 1 (`from_str`, borrowed strings, `IgnoredAny` for unused fields) | 233–437 |
//! | `sonic-rs` 0.5, serde path | 183–197 (with or without `-C target-cpu=native`) |
//! | `sonic-rs` 0.5, lazy `to_array_iter` over the traces, no field decoded | 255–373 |
//! | `simd-json` 0.15, serde path (the tape alone took 1.5 s) | 83–103 |
//! | this scanner (whole trace tables, not just the parse) | see `bench/collector.sh` |
//!
//! The serde paths pay for the visitor protocol on every key and value of a format whose shape is
//! fixed, and none of the three crates reads from a stream: they want the whole document (930 MB
//! for the benchmark) in memory, or the caller has to find trace boundaries first, which is most of
//! a parse again. So this module parses exactly the Jaeger shape, in one pass over a reused buffer:
//! keys are matched as bytes, strings are scanned eight bytes at a time (SWAR) for the quote, the
//! backslash and control characters, and kept strings are returned as offsets into the buffer
//! (decoded into a side arena only when they hold escapes). Values the tables do not use (`logs`,
//! most tags, `warnings`, unknown keys) are skipped but still validated, so malformed JSON is an
//! error with its byte offset wherever it is.
//!
//! Spans, nine tenths of the input, first try [`span_fast`]: Jaeger's own compact layout read
//! straight through with the position in a register. Anything it does not fully check (other key
//! orders, whitespace, escapes, logs...) makes it give up, and the general path reads the span
//! from the same byte, so the result (or the error) is the same either way; a test compares the
//! two on thousands of damaged spans.
//!
//! # What is checked
//! The JSON grammar (RFC 8259) as `serde_json` checks it: structure, string escapes (including
//! surrogate pairs in strings that are kept), control characters in strings, number syntax, the
//! literals, trailing characters. Strings that reach the tables must be valid UTF-8; skipped
//! ones are not decoded. The fields the tables use have the types and
//! defaults of Jaeger's JSON model (`traceID`, `spanID` and `startTime` are required; a field given
//! twice is an error, as with serde's derived structs).

use std::io::{self, Read};

/// Nesting limit for the arrays and objects of Jaeger's structure (`serde_json`'s default
/// recursion limit; Jaeger's own nesting is 7 deep). Skipped values have no limit, as with
/// `serde_json`'s `IgnoredAny`.
const MAX_DEPTH: u32 = 128;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `b[i..i + 8]` as one little-endian word (byte `i` in the low bits).
#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Byte-string equality without a `memcmp` call up to 32 bytes, as two overlapping compares of
/// 4, 8 or 16 bytes: the strings compared per span (trace, span and process IDs, operation
/// names) are that short, where the call and its size dispatch cost more than the compare.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let w16 = |s: &[u8], i: usize| {
        let mut w = [0u8; 16];
        w.copy_from_slice(&s[i..i + 16]);
        u128::from_le_bytes(w)
    };
    if n >= 8 {
        if n <= 16 {
            word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
        } else if n <= 32 {
            w16(a, 0) == w16(b, 0) && w16(a, n - 16) == w16(b, n - 16)
        } else {
            a == b
        }
    } else if n >= 4 {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// Bytes of `w` equal to `c` (SWAR: the lowest flagged byte is exact; bytes above a match may be
/// flagged falsely, which callers never rely on).
#[inline(always)]
fn eq_mask(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// The value of eight ASCII digits packed in `w` (first digit in the low byte), or `None` if a
/// byte is not a digit (SWAR, as in simdjson's `parse_eight_digits_unrolled`).
#[inline(always)]
fn eight_digits(w: u64) -> Option<u64> {
    let d = w.wrapping_sub(LO * b'0' as u64);
    // Every byte 0..=9: no borrow out of a byte, and adding 6 keeps each byte below 16.
    if (w & (LO * 0xF0)) != LO * 0x30 || (d.wrapping_add(LO * 6) & (LO * 0xF0)) != 0 {
        return None;
    }
    let d = d.wrapping_mul(10).wrapping_add(d >> 8);
    let d = ((d & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((d >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(d)
}

/// Bytes of `w` below 0x20 or above 0x7F (control characters, or not ASCII), with the same
/// lowest-byte guarantee as [`eq_mask`]: what makes a string not plain ASCII text.
#[inline(always)]
fn ctl_or_high(w: u64) -> u64 {
    (w.wrapping_sub(LO * 0x20) | w) & HI
}

/// Bytes of `w` below 0x20 (control characters), with the same lowest-byte guarantee.
#[inline(always)]
fn ctl_mask(w: u64) -> u64 {
    w.wrapping_sub(LO * 0x20) & !w & HI
}

/// An object key as it appears in the JSON text, closing quote included, packed for one masked
/// compare with the 16 bytes after the opening quote.
#[derive(Clone, Copy)]
struct Pat {
    key: &'static [u8],
    word: u128,
    mask: u128,
}

const fn pat(key: &'static [u8]) -> Pat {
    assert!(key.len() < 16);
    let mut word = 0u128;
    let mut i = 0;
    while i < key.len() {
        word |= (key[i] as u128) << (8 * i);
        i += 1;
    }
    word |= (b'"' as u128) << (8 * key.len());
    Pat {
        key,
        word,
        mask: (1u128 << (8 * (key.len() + 1))) - 1,
    }
}

/// Keys of the top-level answer, of a trace, of a span, of a reference, of a tag and of a
/// process, each in the order Jaeger writes them (the scanner tries the next expected key first).
const PAGE_KEYS: [Pat; 2] = [pat(b"data"), pat(b"errors")];
const TRACE_KEYS: [Pat; 3] = [pat(b"traceID"), pat(b"spans"), pat(b"processes")];
const SPAN_KEYS: [Pat; 11] = [
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
const REF_KEYS: [Pat; 3] = [pat(b"refType"), pat(b"traceID"), pat(b"spanID")];
const TAG_KEYS: [Pat; 3] = [pat(b"key"), pat(b"type"), pat(b"value")];
const PROCESS_KEYS: [Pat; 2] = [pat(b"serviceName"), pat(b"tags")];
/// String values compared in place.
const FOLLOWS_FROM: Pat = pat(b"FOLLOWS_FROM");
const ERROR: Pat = pat(b"error");

/// Why a page or trace could not be read.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// The JSON is malformed or does not have Jaeger's shape; `at` is the absolute byte offset.
    Syntax {
        /// Byte offset in the input where the problem was found.
        at: u64,
        /// What is wrong.
        message: String,
    },
    /// Reading the input failed.
    Io(io::Error),
}

/// Results of the scanner: the error is boxed so that results travel in registers (the `?` on
/// every token showed in profiles as copies of a 40-byte `Result`).
type R<T> = Result<T, Box<ScanError>>;

/// Input for the scanner: a whole page in memory, or a reader pulled in chunks.
pub(crate) trait Source {
    /// The bytes available now.
    fn bytes(&self) -> &[u8];
    /// Drops the first `keep_from` bytes, then makes more bytes available at the end. Returns
    /// how many bytes were dropped and whether any were added (false at end of input).
    fn fill(&mut self, keep_from: usize) -> io::Result<(usize, bool)>;
}

impl Source for &[u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }
    fn fill(&mut self, _: usize) -> io::Result<(usize, bool)> {
        Ok((0, false))
    }
}

/// A reader pulled into one reused buffer, which grows only when a single trace does not fit.
/// The buffer's length is exactly the bytes read, so [`Source::bytes`] costs no bounds check.
pub(crate) struct ReadSource<Rd> {
    reader: Rd,
    buf: Vec<u8>,
    chunk: usize,
    eof: bool,
}

impl<Rd: Read> ReadSource<Rd> {
    /// Wraps `reader`, reading about `chunk` bytes at a time.
    pub(crate) fn new(reader: Rd, chunk: usize) -> Self {
        let chunk = chunk.max(64);
        ReadSource {
            reader,
            buf: Vec::with_capacity(chunk),
            chunk,
            eof: false,
        }
    }
}

impl<Rd: Read> Source for ReadSource<Rd> {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        &self.buf
    }
    fn fill(&mut self, keep_from: usize) -> io::Result<(usize, bool)> {
        if self.eof {
            return Ok((0, false));
        }
        // Only the unfinished trace is kept: it moves to the front, the rest is refilled.
        self.buf.drain(..keep_from);
        let kept = self.buf.len();
        if self.buf.capacity() - kept < self.chunk / 2 {
            self.buf.reserve(self.chunk.max(kept));
        }
        // `take` + `read_to_end` reads into the spare capacity without zeroing it first.
        let room = (self.buf.capacity() - kept) as u64;
        let n = self.reader.by_ref().take(room).read_to_end(&mut self.buf)?;
        if n == 0 {
            self.eof = true;
        }
        Ok((keep_from, n > 0))
    }
}

/// A string of the current trace: a range of its JSON text (relative to the trace's first byte),
/// or of the trace's arena when the JSON string had escapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Str {
    off: u32,
    len: u32,
    flags: u8,
}

const IN_ARENA: u8 = 1;
const NEEDS_QUOTES: u8 = 2;
const PRESENT: u8 = 4;

impl Str {
    /// Whether the CSV field needs quoting (holds `,`, `"`, CR or LF).
    #[inline(always)]
    pub(crate) fn needs_quotes(self) -> bool {
        self.flags & NEEDS_QUOTES != 0
    }
    /// Length in bytes.
    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        self.len as usize
    }
    /// Whether the value was given (for optional fields and number texts).
    #[inline(always)]
    pub(crate) fn is_present(self) -> bool {
        self.flags & PRESENT != 0
    }
}

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

/// The scanner: a position in a [`Source`], with everything from `mark` on kept in memory.
pub(crate) struct Scanner<S> {
    src: S,
    /// Index of the next byte in `src.bytes()`.
    pos: usize,
    /// Index of the first byte that must stay available (the current trace's `{`).
    mark: usize,
    /// Absolute offset of `src.bytes()[0]` in the input.
    base: u64,
    depth: u32,
    /// Decoded object keys that had escapes.
    key_buf: Vec<u8>,
    /// Whether spans try [`span_fast`] first (tests turn it off to compare the two paths).
    fast: bool,
}

impl<S: Source> Scanner<S> {
    /// A scanner at the start of `src`.
    pub(crate) fn new(src: S) -> Self {
        Scanner {
            src,
            pos: 0,
            mark: 0,
            base: 0,
            depth: 0,
            key_buf: Vec::new(),
            fast: !tests_want_slow_spans(),
        }
    }

    #[cold]
    fn err(&self, message: impl Into<String>) -> Box<ScanError> {
        self.err_at(self.pos, message)
    }

    #[cold]
    fn err_at(&self, index: usize, message: impl Into<String>) -> Box<ScanError> {
        Box::new(ScanError::Syntax {
            at: self.base + index as u64,
            message: message.into(),
        })
    }

    #[cold]
    fn eof(&self) -> Box<ScanError> {
        self.err("unexpected end of input")
    }

    /// Pulls more input, keeping everything from `mark`. False at end of input.
    #[inline(never)]
    fn fill(&mut self) -> R<bool> {
        let (dropped, more) = self
            .src
            .fill(self.mark)
            .map_err(|e| Box::new(ScanError::Io(e)))?;
        self.pos -= dropped;
        self.mark -= dropped;
        self.base += dropped as u64;
        Ok(more)
    }

    /// Skips whitespace and returns the next byte without consuming it.
    #[inline(always)]
    fn peek(&mut self) -> R<u8> {
        // Jaeger writes compact JSON: the next byte is almost always the token itself.
        if let Some(&c) = self.src.bytes().get(self.pos) {
            if c > b' ' {
                return Ok(c);
            }
        }
        self.peek_slow()
    }

    #[inline(never)]
    fn peek_slow(&mut self) -> R<u8> {
        loop {
            let b = self.src.bytes();
            while self.pos < b.len() {
                let c = b[self.pos];
                if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(c);
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    /// Skips whitespace; true at end of input.
    fn at_end(&mut self) -> R<bool> {
        loop {
            let b = self.src.bytes();
            while self.pos < b.len() {
                if !matches!(b[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(false);
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(true);
            }
        }
    }

    /// The next byte after whitespace must be `c`; consumes it.
    #[inline(always)]
    fn expect(&mut self, c: u8, what: &str) -> R<()> {
        if self.peek()? == c {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}")))
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("recursion limit exceeded"));
        }
        Ok(())
    }

    /// Consumes `{` and tells whether a member follows (false: `}` consumed too).
    #[inline]
    fn object_start(&mut self, what: &str) -> R<bool> {
        if self.peek()? != b'{' {
            return Err(self.err(format!("invalid type: expected {what}")));
        }
        self.pos += 1;
        self.enter()?;
        match self.peek()? {
            b'"' => Ok(true),
            b'}' => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(self.err("expected a key or `}`")),
        }
    }

    /// After a member: consumes `,` (true: a key follows) or `}` (false).
    #[inline(always)]
    fn object_next(&mut self) -> R<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                if self.peek()? != b'"' {
                    return Err(self.err("expected a key"));
                }
                Ok(true)
            }
            b'}' => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(self.err("expected `,` or `}`")),
        }
    }

    /// Consumes `[` and tells whether an element follows (false: `]` consumed too).
    #[inline]
    fn array_start(&mut self, what: &str) -> R<bool> {
        if self.peek()? != b'[' {
            return Err(self.err(format!("invalid type: expected {what}")));
        }
        self.pos += 1;
        self.enter()?;
        if self.peek()? == b']' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// After an element: consumes `,` (true: an element follows) or `]` (false).
    #[inline(always)]
    fn array_next(&mut self) -> R<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(true)
            }
            b']' => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(self.err("expected `,` or `]`")),
        }
    }

    /// `null` here? Consumes it if so.
    #[inline(always)]
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> R<()> {
        for &c in lit {
            if self.pos == self.src.bytes().len() && !self.fill()? {
                return Err(self.eof());
            }
            if self.src.bytes()[self.pos] != c {
                return Err(self.err("expected a value"));
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Reads an object key (at its `"`) and the `:` after it; `f` maps the key's bytes.
    #[inline(always)]
    fn key<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> R<T> {
        self.pos += 1;
        let start = self.pos - self.mark;
        // Keys are short and plain: find the closing quote; anything special takes the slow path.
        let b = self.src.bytes();
        let mut i = self.pos;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    let t = f(&b[self.pos..i]);
                    self.pos = i + 1;
                    self.expect(b':', "`:`")?;
                    return Ok(t);
                }
                b'\\' => break,
                c if c < 0x20 => break,
                _ => i += 1,
            }
        }
        self.pos = self.mark + start - 1;
        let range = self.key_slow()?;
        let t = match range {
            Some((a, z)) => f(&self.src.bytes()[a..z]),
            None => f(&self.key_buf),
        };
        self.expect(b':', "`:`")?;
        Ok(t)
    }

    /// Reads an object key (at its `"`) and the `:` after it: the index of the key in `keys`, or
    /// `keys.len()` for any other key. `hint` is where the search starts (the key expected next).
    #[inline(always)]
    fn key_in(&mut self, keys: &[Pat], hint: &mut usize) -> R<usize> {
        let b = self.src.bytes();
        let i = self.pos + 1;
        if i + 17 <= b.len() {
            let mut w = [0u8; 16];
            w.copy_from_slice(&b[i..i + 16]);
            let w = u128::from_le_bytes(w);
            let n = keys.len();
            let mut j = if *hint < n { *hint } else { 0 };
            for _ in 0..n {
                let p = &keys[j];
                if w & p.mask == p.word {
                    *hint = j + 1;
                    let end = i + p.key.len() + 1;
                    if b[end] == b':' {
                        self.pos = end + 1;
                    } else {
                        self.pos = end;
                        self.expect(b':', "`:`")?;
                    }
                    return Ok(j);
                }
                j += 1;
                if j == n {
                    j = 0;
                }
            }
        }
        // Not a key of the list, or near the end of the buffer, or with escapes.
        let j = self.key(|k| keys.iter().position(|p| p.key == k).unwrap_or(keys.len()))?;
        *hint = j + 1;
        Ok(j)
    }

    /// Opens an object (`what` names it in errors) and reads its first key, if any.
    #[inline(always)]
    fn first_key(&mut self, what: &str, keys: &[Pat], hint: &mut usize) -> R<Option<usize>> {
        if self.object_start(what)? {
            Ok(Some(self.key_in(keys, hint)?))
        } else {
            Ok(None)
        }
    }

    /// After a member, at `,` or `}`: the index of the next member's key in `keys` (as
    /// [`Scanner::key_in`]), or `None` at the end of the object. The usual `,"key":` is matched
    /// with one compare.
    #[inline(always)]
    fn next_key(&mut self, keys: &[Pat], hint: &mut usize) -> R<Option<usize>> {
        let b = self.src.bytes();
        let i = self.pos;
        if i + 19 <= b.len() && b[i] == b',' && b[i + 1] == b'"' && *hint < keys.len() {
            let mut w = [0u8; 16];
            w.copy_from_slice(&b[i + 2..i + 18]);
            let p = &keys[*hint];
            let end = i + 2 + p.key.len() + 1;
            if u128::from_le_bytes(w) & p.mask == p.word && b[end] == b':' {
                self.pos = end + 1;
                *hint += 1;
                return Ok(Some(*hint - 1));
            }
        }
        if self.object_next()? {
            Ok(Some(self.key_in(keys, hint)?))
        } else {
            Ok(None)
        }
    }

    /// A key that crosses the end of the buffer or has escapes: `Some(range)` in the buffer, or
    /// `None` when decoded into `key_buf`.
    #[cold]
    fn key_slow(&mut self) -> R<Option<(usize, usize)>> {
        let mut arena = std::mem::take(&mut self.key_buf);
        arena.clear();
        let r = self.string(&mut arena);
        self.key_buf = arena;
        let s = r?;
        if s.flags & IN_ARENA != 0 {
            Ok(None)
        } else {
            let a = self.mark + s.off as usize;
            Ok(Some((a, a + s.len as usize)))
        }
    }

    /// Reads a string value (at its `"`) that the tables keep: checks UTF-8 and notes whether it
    /// needs CSV quotes. Escaped strings are decoded into `arena`.
    #[inline(always)]
    fn string(&mut self, arena: &mut Vec<u8>) -> R<Str> {
        // Fast path: plain ASCII without a comma, closed within the buffer (IDs, names).
        let b = self.src.bytes();
        let first = self.pos + 1;
        let mut i = first;
        while i + 8 <= b.len() {
            let w = word(b, i);
            let m = eq_mask(w, b'"') | eq_mask(w, b'\\') | eq_mask(w, b',') | ctl_or_high(w);
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                let (start, len) = (first - self.mark, i - first);
                if b[i] == b'"' && start <= u32::MAX as usize && len <= u32::MAX as usize {
                    self.pos = i + 1;
                    return Ok(Str {
                        off: start as u32,
                        len: len as u32,
                        flags: PRESENT,
                    });
                }
                break;
            }
            i += 8;
        }
        self.string_general(arena)
    }

    /// [`Scanner::string`] for any string.
    #[inline(never)]
    fn string_general(&mut self, arena: &mut Vec<u8>) -> R<Str> {
        self.pos += 1;
        let start = self.pos - self.mark;
        // Once a comma (or a non-ASCII byte) was seen, the word test stops looking for more.
        let mut quotes = false;
        let mut want_comma = HI;
        let mut want_high = HI;
        loop {
            let b = self.src.bytes();
            let mut i = self.pos;
            while i + 8 <= b.len() {
                let w = word(b, i);
                let m = eq_mask(w, b'"')
                    | eq_mask(w, b'\\')
                    | ctl_mask(w)
                    | (eq_mask(w, b',') & want_comma)
                    | (w & want_high);
                if m == 0 {
                    i += 8;
                    continue;
                }
                i += (m.trailing_zeros() / 8) as usize;
                match b[i] {
                    b'"' => {
                        self.pos = i + 1;
                        return self.finish_plain(start, i, quotes, want_high == 0);
                    }
                    b'\\' => {
                        self.pos = i;
                        return self.string_escaped(start, arena);
                    }
                    b',' => {
                        quotes = true;
                        want_comma = 0;
                        i += 1;
                    }
                    c if c < 0x20 => return Err(self.err_at(i, CONTROL)),
                    _ => {
                        want_high = 0;
                        i += 1;
                    }
                }
            }
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        self.pos = i + 1;
                        return self.finish_plain(start, i, quotes, want_high == 0);
                    }
                    b'\\' => {
                        self.pos = i;
                        return self.string_escaped(start, arena);
                    }
                    b',' => quotes = true,
                    c if c < 0x20 => return Err(self.err_at(i, CONTROL)),
                    c if c >= 0x80 => want_high = 0,
                    _ => {}
                }
                i += 1;
            }
            self.pos = i;
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    /// A plain string ended at index `end` (its closing quote).
    #[inline(always)]
    fn finish_plain(&self, start: usize, end: usize, quotes: bool, non_ascii: bool) -> R<Str> {
        let abs = self.mark + start;
        if non_ascii && std::str::from_utf8(&self.src.bytes()[abs..end]).is_err() {
            return Err(self.err_at(abs, "invalid UTF-8 in a string"));
        }
        let len = end - abs;
        if start > u32::MAX as usize || len > u32::MAX as usize {
            return Err(self.err_at(abs, "a trace larger than 4 GiB"));
        }
        Ok(Str {
            off: start as u32,
            len: len as u32,
            flags: PRESENT | if quotes { NEEDS_QUOTES } else { 0 },
        })
    }

    /// The slow path of [`Scanner::string`]: decodes the string whose text starts at `start`
    /// (relative to `mark`) into `arena`; `pos` is at the first backslash.
    #[cold]
    fn string_escaped(&mut self, start: usize, arena: &mut Vec<u8>) -> R<Str> {
        let a0 = arena.len();
        arena.extend_from_slice(&self.src.bytes()[self.mark + start..self.pos]);
        loop {
            if self.pos == self.src.bytes().len() && !self.fill()? {
                return Err(self.eof());
            }
            let c = self.src.bytes()[self.pos];
            match c {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    let ch = self.escape()?;
                    let mut tmp = [0u8; 4];
                    arena.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                }
                c if c < 0x20 => return Err(self.err(CONTROL)),
                c => {
                    arena.push(c);
                    self.pos += 1;
                }
            }
        }
        let text = &arena[a0..];
        if std::str::from_utf8(text).is_err() {
            return Err(self.err_at(self.mark + start, "invalid UTF-8 in a string"));
        }
        let quotes = text
            .iter()
            .any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'));
        let len = text.len();
        if a0 > u32::MAX as usize || len > u32::MAX as usize {
            return Err(self.err("a trace larger than 4 GiB"));
        }
        Ok(Str {
            off: a0 as u32,
            len: len as u32,
            flags: PRESENT | IN_ARENA | if quotes { NEEDS_QUOTES } else { 0 },
        })
    }

    /// Next input byte, pulling more input if needed.
    #[inline]
    fn next_byte(&mut self) -> R<u8> {
        if self.pos == self.src.bytes().len() && !self.fill()? {
            return Err(self.eof());
        }
        let c = self.src.bytes()[self.pos];
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> R<u16> {
        let mut v = 0u16;
        for _ in 0..4 {
            let c = self.next_byte()?;
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err("invalid escape")),
            };
            v = v * 16 + d as u16;
        }
        Ok(v)
    }

    /// Decodes one escape (after the backslash).
    fn escape(&mut self) -> R<char> {
        Ok(match self.next_byte()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                match hi {
                    0xD800..=0xDBFF => {
                        if self.next_byte()? != b'\\' || self.next_byte()? != b'u' {
                            return Err(self.err("lone leading surrogate in hex escape"));
                        }
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(self.err("lone leading surrogate in hex escape"));
                        }
                        let c = 0x10000 + ((hi as u32 - 0xD800) << 10) + (lo as u32 - 0xDC00);
                        char::from_u32(c).ok_or_else(|| self.err("invalid escape"))?
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.err("lone trailing surrogate in hex escape"))
                    }
                    _ => char::from_u32(hi as u32).ok_or_else(|| self.err("invalid escape"))?,
                }
            }
            _ => return Err(self.err("invalid escape")),
        })
    }

    /// Skips a string value (at its `"`) without decoding it.
    fn skip_string(&mut self) -> R<()> {
        self.pos += 1;
        loop {
            let b = self.src.bytes();
            let mut i = self.pos;
            while i + 8 <= b.len() {
                let w = word(b, i);
                let m = eq_mask(w, b'"') | eq_mask(w, b'\\') | ctl_mask(w);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
                i += 1;
            }
            if i < b.len() {
                match b[i] {
                    b'"' => {
                        self.pos = i + 1;
                        return Ok(());
                    }
                    b'\\' => {
                        // Escapes are rare in skipped values: check this one byte by byte.
                        self.pos = i + 1;
                        match self.next_byte()? {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                            b'u' => {
                                self.hex4()?;
                            }
                            _ => return Err(self.err("invalid escape")),
                        }
                        continue;
                    }
                    _ => return Err(self.err_at(i, CONTROL)),
                }
            }
            self.pos = i;
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    /// Reads a non-negative integer field (serde's `u64`): its value and its digits.
    #[inline]
    fn u64(&mut self, field: &str) -> R<(u64, Str)> {
        let c = self.peek()?;
        if !c.is_ascii_digit() {
            return Err(self.err(if c == b'-' {
                format!("invalid value: `{field}` must not be negative")
            } else {
                format!("invalid type: `{field}` must be an unsigned integer")
            }));
        }
        let start = self.pos - self.mark;
        let mut v: u64 = 0;
        let mut digits = 0usize;
        // Eight digits at a time (at most two rounds: 16 digits cannot overflow).
        while digits < 16 {
            let b = self.src.bytes();
            if self.pos + 8 > b.len() {
                break;
            }
            let w = word(b, self.pos);
            match eight_digits(w) {
                Some(x) => {
                    v = v * 100_000_000 + x;
                    digits += 8;
                    self.pos += 8;
                }
                None => break,
            }
        }
        'outer: loop {
            let b = self.src.bytes();
            while self.pos < b.len() {
                let d = b[self.pos].wrapping_sub(b'0');
                if d > 9 {
                    break 'outer;
                }
                v = match v.checked_mul(10).and_then(|v| v.checked_add(d as u64)) {
                    Some(v) => v,
                    None => {
                        return Err(self.err(format!("`{field}` does not fit in 64 bits")));
                    }
                };
                digits += 1;
                self.pos += 1;
            }
            if !self.fill()? {
                break;
            }
        }
        if c == b'0' && digits > 1 {
            return Err(self.err_at(self.mark + start, "invalid number (leading zero)"));
        }
        if self.pos < self.src.bytes().len()
            && matches!(self.src.bytes()[self.pos], b'.' | b'e' | b'E')
        {
            return Err(self.err(format!(
                "invalid type: `{field}` is a floating point number, expected an unsigned integer"
            )));
        }
        Ok((
            v,
            Str {
                off: start as u32,
                len: digits as u32,
                flags: PRESENT,
            },
        ))
    }

    /// Skips a number, checking its syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> R<()> {
        let mut c = self.next_byte()?;
        if c == b'-' {
            c = self.next_byte()?;
        }
        match c {
            b'0' => {}
            b'1'..=b'9' => self.digits(0)?,
            _ => return Err(self.err("invalid number")),
        }
        if self.peek_raw()? == Some(b'.') {
            self.pos += 1;
            self.digits(1)?;
        }
        if matches!(self.peek_raw()?, Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek_raw()?, Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits(1)?;
        }
        Ok(())
    }

    /// Next byte without skipping whitespace or consuming it; `None` at end of input.
    fn peek_raw(&mut self) -> R<Option<u8>> {
        if self.pos == self.src.bytes().len() && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.src.bytes()[self.pos]))
    }

    /// Skips at least `min` digits.
    fn digits(&mut self, min: usize) -> R<()> {
        let mut n = 0;
        while let Some(c) = self.peek_raw()? {
            if !c.is_ascii_digit() {
                break;
            }
            self.pos += 1;
            n += 1;
        }
        if n < min {
            return Err(self.err("invalid number"));
        }
        Ok(())
    }

    /// Skips one JSON value of any type, checking its syntax. The values Jaeger puts in the
    /// fields the tables ignore (`null`, `[]`, short numbers, strings) are handled inline.
    #[inline(always)]
    fn skip_value(&mut self) -> R<()> {
        let c = self.peek()?;
        let b = self.src.bytes();
        match c {
            b'"' => return self.skip_string(),
            b'n' if b.get(self.pos..self.pos + 4) == Some(b"null") => {
                self.pos += 4;
                return Ok(());
            }
            b'[' if b.get(self.pos + 1) == Some(&b']') => {
                self.pos += 2;
                return Ok(());
            }
            b'0'..=b'9' => {
                // A short integer followed by a delimiter; anything else takes the full path.
                let mut i = self.pos + 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len()
                    && matches!(b[i], b',' | b'}' | b']')
                    && (c != b'0' || i == self.pos + 1)
                {
                    self.pos = i;
                    return Ok(());
                }
            }
            _ => {}
        }
        self.skip_any()
    }

    /// [`Scanner::skip_value`] for any value. Like `serde_json`'s `IgnoredAny`, it has no
    /// nesting limit: open containers are one bit each, 128 in a word, spilled beyond.
    #[inline(never)]
    fn skip_any(&mut self) -> R<()> {
        // Open containers, innermost in bit 0: 1 = object, 0 = array.
        let mut stack: u128 = 0;
        let mut open = 0usize;
        let mut spill: Vec<u128> = Vec::new();
        let push = |stack: &mut u128, open: &mut usize, spill: &mut Vec<u128>, object: bool| {
            if *open > 0 && (*open).is_multiple_of(128) {
                spill.push(*stack);
                *stack = 0;
            }
            *stack = (*stack << 1) | object as u128;
            *open += 1;
        };
        loop {
            // A value.
            match self.peek()? {
                b'"' => self.skip_string()?,
                b'{' => {
                    self.pos += 1;
                    if self.peek()? == b'}' {
                        self.pos += 1;
                    } else {
                        push(&mut stack, &mut open, &mut spill, true);
                        self.member_key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    if self.peek()? == b']' {
                        self.pos += 1;
                    } else {
                        push(&mut stack, &mut open, &mut spill, false);
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return Err(self.err("expected a value")),
            }
            // After a value: close containers until one continues.
            loop {
                if open == 0 {
                    return Ok(());
                }
                let object = stack & 1 == 1;
                match (self.peek()?, object) {
                    (b',', true) => {
                        self.pos += 1;
                        self.member_key()?;
                        break;
                    }
                    (b',', false) => {
                        self.pos += 1;
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        stack >>= 1;
                        open -= 1;
                        if open > 0 && open.is_multiple_of(128) {
                            stack = spill.pop().unwrap_or(0);
                        }
                    }
                    (_, true) => return Err(self.err("expected `,` or `}`")),
                    (_, false) => return Err(self.err("expected `,` or `]`")),
                }
            }
        }
    }

    /// A key inside a skipped object, and its `:`.
    fn member_key(&mut self) -> R<()> {
        if self.peek()? != b'"' {
            return Err(self.err("expected a key"));
        }
        self.skip_string()?;
        self.expect(b':', "`:`")
    }

    /// A string (at its `"`) compared with `lit`: one masked compare when it is `lit` written
    /// plainly; otherwise it is read (decoded if it has escapes) and compared.
    #[inline(always)]
    fn string_is(&mut self, lit: &Pat, arena: &mut Vec<u8>) -> R<bool> {
        let b = self.src.bytes();
        let i = self.pos + 1;
        if i + 32 <= b.len() {
            let mut w = [0u8; 16];
            w.copy_from_slice(&b[i..i + 16]);
            if u128::from_le_bytes(w) & lit.mask == lit.word {
                self.pos = i + lit.key.len() + 1;
                return Ok(true);
            }
            // Most strings compared are short plain ASCII and something else ("CHILD_OF",
            // "span.kind"): find the closing quote in the next 32 bytes, inline. The lowest
            // flagged byte of the first word with a flag is exact.
            for k in (0..32).step_by(8) {
                let w = word(b, i + k);
                let m = eq_mask(w, b'"') | eq_mask(w, b'\\') | ctl_or_high(w);
                if m != 0 {
                    let q = i + k + (m.trailing_zeros() / 8) as usize;
                    if b[q] == b'"' {
                        self.pos = q + 1;
                        return Ok(false);
                    }
                    break;
                }
            }
        }
        self.string_is_slow(lit.key, arena)
    }

    #[inline(never)]
    fn string_is_slow(&mut self, lit: &[u8], arena: &mut Vec<u8>) -> R<bool> {
        // Most strings compared are plainly something else ("CHILD_OF", "span.kind").
        let quote = self.pos;
        {
            let b = self.src.bytes();
            let mut i = quote + 1;
            while i + 8 <= b.len() {
                let w = word(b, i);
                let m = eq_mask(w, b'"') | eq_mask(w, b'\\') | ctl_or_high(w);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while i < b.len() && (0x20..0x80).contains(&b[i]) && b[i] != b'"' && b[i] != b'\\' {
                i += 1;
            }
            if i < b.len() && b[i] == b'"' {
                self.pos = i + 1;
                return Ok(&b[quote + 1..i] == lit);
            }
            // An escape, a control character, a non-ASCII byte, or the end of the buffer inside
            // the string: the full path.
        }
        self.pos = quote;
        self.string_is_full(lit, arena)
    }

    /// [`Scanner::string_is`] through [`Scanner::string`].
    fn string_is_full(&mut self, lit: &[u8], arena: &mut Vec<u8>) -> R<bool> {
        let a0 = arena.len();
        let s = self.string(arena)?;
        let (off, len) = (s.off as usize, s.len as usize);
        let eq = if s.flags & IN_ARENA != 0 {
            &arena[off..off + len] == lit
        } else {
            let a = self.mark + off;
            &self.src.bytes()[a..a + len] == lit
        };
        arena.truncate(a0);
        Ok(eq)
    }

    /// Skips a string value that is most likely `known` (a string of this trace read before,
    /// without escapes: the trace ID repeated in every span and reference): one compare of the
    /// bytes and the closing quote, else the usual checked skip.
    #[inline(always)]
    fn skip_known(&mut self, known: Str) -> R<()> {
        let b = self.src.bytes();
        let (off, len) = (self.mark + known.off as usize, known.len as usize);
        let i = self.pos + 1;
        // `known` was read from this trace before (so it has no quote, backslash or control
        // character, and lies before `pos`); not present when the trace ID comes after the spans.
        if known.flags & (IN_ARENA | PRESENT) == PRESENT
            && b.get(self.pos) == Some(&b'"')
            && i + len < b.len()
            && b[i + len] == b'"'
            && same(&b[i..i + len], &b[off..off + len])
        {
            self.pos = i + len + 1;
            return Ok(());
        }
        self.skip_value()
    }

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

    /// A kept string field: must be a string.
    #[inline(always)]
    fn string_field(&mut self, field: &str, arena: &mut Vec<u8>) -> R<Str> {
        if self.peek()? != b'"' {
            return Err(self.err(format!("invalid type: `{field}` must be a string")));
        }
        self.string(arena)
    }

    /// Sets bit `bit` of `seen`, failing if the field was already given.
    #[inline(always)]
    fn once(&self, seen: &mut u32, bit: u32, field: &str) -> R<()> {
        if *seen & bit != 0 {
            return Err(self.err(format!("duplicate field `{field}`")));
        }
        *seen |= bit;
        Ok(())
    }

    /// Parses the trace object at the next `{` into `t`. The trace's text starts at the mark.
    fn trace(&mut self, t: &mut TraceBuf) -> R<()> {
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
    fn span(&mut self, s: &mut SpanRec, trace_id: Str, arena: &mut Vec<u8>) -> R<()> {
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
    fn references(&mut self, s: &mut SpanRec, trace_id: Str, arena: &mut Vec<u8>) -> R<()> {
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
    fn span_tags(&mut self, arena: &mut Vec<u8>) -> R<bool> {
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
    fn processes(&mut self, t: &mut TraceBuf) -> R<()> {
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

#[cfg(test)]
thread_local! {
    /// Test switch: [`Scanner`]s created on this thread skip [`span_fast`].
    pub(crate) static SLOW_SPANS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test turned [`span_fast`] off on this thread.
#[cfg(test)]
fn tests_want_slow_spans() -> bool {
    SLOW_SPANS.with(|c| c.get())
}

/// Never outside tests.
#[cfg(not(test))]
#[inline(always)]
fn tests_want_slow_spans() -> bool {
    false
}

/// The 16 bytes at `b[i..]` as one little-endian number, if there are 16.
#[inline(always)]
fn w16_at(b: &[u8], i: usize) -> Option<u128> {
    let w: [u8; 16] = b.get(i..i.checked_add(16)?)?.try_into().ok()?;
    Some(u128::from_le_bytes(w))
}

/// The 8 bytes at `b[i..]` as one little-endian number, if there are 8.
#[inline(always)]
fn w8_at(b: &[u8], i: usize) -> Option<u64> {
    let w: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// `"key":` at `b[i..]` (the key of `p`, compact): the index after the colon.
#[inline(always)]
fn fast_key(b: &[u8], i: usize, p: &Pat) -> Option<usize> {
    if *b.get(i)? != b'"' || w16_at(b, i + 1)? & p.mask != p.word {
        return None;
    }
    let colon = i + p.key.len() + 2;
    (*b.get(colon)? == b':').then_some(colon + 1)
}

/// `,"key":` at `b[i..]`: the index after the colon.
#[inline(always)]
fn fast_next_key(b: &[u8], i: usize, p: &Pat) -> Option<usize> {
    if *b.get(i)? != b',' {
        return None;
    }
    fast_key(b, i + 1, p)
}

/// The string at `b[i..]` (at its quote) up to the first quote, where `stop` flags (in a word)
/// the bytes that make it not plain: the start and end of its text, or `None` if such a byte
/// comes first (or the buffer ends).
#[inline(always)]
fn fast_string(b: &[u8], i: usize, stop: impl Fn(u64) -> u64) -> Option<(usize, usize)> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let mut j = i + 1;
    loop {
        let w = w8_at(b, j)?;
        let m = eq_mask(w, b'"') | stop(w);
        if m != 0 {
            // The lowest flagged byte is exact.
            let q = j + (m.trailing_zeros() / 8) as usize;
            return (b[q] == b'"').then_some((i + 1, q));
        }
        j += 8;
    }
}

/// A string the tables keep, as [`Scanner::string`] returns it when it is plain ASCII without a
/// comma (so needs neither decoding nor quoting): `(Str, index after it)`.
#[inline(always)]
fn fast_kept(b: &[u8], i: usize, mark: usize) -> Option<(Str, usize)> {
    let (a, z) = fast_string(b, i, |w| {
        eq_mask(w, b'\\') | eq_mask(w, b',') | ctl_or_high(w)
    })?;
    let s = Str {
        off: u32::try_from(a - mark).ok()?,
        len: u32::try_from(z - a).ok()?,
        flags: PRESENT,
    };
    Some((s, z + 1))
}

/// A string compared with a literal (`refType`, a tag's `key`): plain ASCII, since the general
/// path decodes (and checks as UTF-8) any other ([`Scanner::string_is`]).
#[inline(always)]
fn fast_compared(b: &[u8], i: usize) -> Option<(usize, usize)> {
    fast_string(b, i, |w| eq_mask(w, b'\\') | ctl_or_high(w))
}

/// A string the tables skip (any bytes but escapes and control characters, as
/// [`Scanner::skip_string`] accepts without decoding): the start and end of its text.
#[inline(always)]
fn fast_skipped(b: &[u8], i: usize) -> Option<(usize, usize)> {
    fast_string(b, i, |w| eq_mask(w, b'\\') | ctl_mask(w))
}

/// A non-negative integer of at most 19 digits (so it fits) at `b[i..]`, followed by `,` or
/// `}`, as [`Scanner::u64`] reads it: its value and the index after its digits.
#[inline(always)]
fn fast_uint(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let first = *b.get(i)?;
    let mut v = 0u64;
    let mut j = i;
    // Eight digits at a time while there are eight (twice at most).
    while j - i < 16 {
        match w8_at(b, j).and_then(eight_digits) {
            Some(x) => {
                v = v * 100_000_000 + x;
                j += 8;
            }
            None => break,
        }
    }
    while let Some(d) = b.get(j).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        if j - i == 19 {
            return None;
        }
        v = v * 10 + u64::from(d);
        j += 1;
    }
    let digits = j - i;
    if digits == 0 || (first == b'0' && digits > 1) || !matches!(*b.get(j)?, b',' | b'}') {
        return None;
    }
    Some((v, j))
}

/// [`fast_uint`] and its digits as a [`Str`] of the trace (times are copied to the rows as
/// written): value, digits, index after them.
#[inline(always)]
fn fast_uint_text(b: &[u8], i: usize, mark: usize) -> Option<(u64, Str, usize)> {
    let (v, end) = fast_uint(b, i)?;
    let text = Str {
        off: u32::try_from(i - mark).ok()?,
        len: (end - i) as u32,
        flags: PRESENT,
    };
    Some((v, text, end))
}

/// `true` or `false` at `b[i..]`: the value and the index after it.
#[inline(always)]
fn fast_bool(b: &[u8], i: usize) -> Option<(bool, usize)> {
    if b.get(i..i.checked_add(4)?)? == b"true" {
        Some((true, i + 4))
    } else if b.get(i..i.checked_add(5)?)? == b"false" {
        Some((false, i + 5))
    } else {
        None
    }
}

/// `references`, `[{"refType":..,"traceID":..,"spanID":..},...]` at `b[i..]`, into `s` as
/// [`Scanner::references`] does: the index after the list.
#[inline(always)]
fn fast_refs(b: &[u8], mut i: usize, mark: usize, s: &mut SpanRec) -> Option<usize> {
    if *b.get(i)? != b'[' {
        return None;
    }
    i += 1;
    if *b.get(i)? == b']' {
        return Some(i + 1);
    }
    loop {
        if *b.get(i)? != b'{' {
            return None;
        }
        i = fast_key(b, i + 1, &REF_KEYS[0])?;
        let (a, z) = fast_compared(b, i)?;
        let follows = b[a..z] == *FOLLOWS_FROM.key;
        i = fast_next_key(b, z + 1, &REF_KEYS[1])?;
        i = fast_skipped(b, i)?.1 + 1;
        i = fast_next_key(b, i, &REF_KEYS[2])?;
        let (id, end) = fast_kept(b, i, mark)?;
        if *b.get(end)? != b'}' {
            return None;
        }
        let slot = if follows {
            &mut s.follows_from
        } else {
            &mut s.child_of
        };
        if !slot.is_present() {
            *slot = id;
        }
        i = end + 1;
        match *b.get(i)? {
            b',' => i += 1,
            b']' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Span `tags`, `[{"key":..,"type":..,"value":..},...]` at `b[i..]`, as [`Scanner::span_tags`]
/// reads them: whether one is `error` = `true` (or `"true"`), and the index after the list.
#[inline(always)]
fn fast_tags(b: &[u8], mut i: usize) -> Option<(bool, usize)> {
    if *b.get(i)? != b'[' {
        return None;
    }
    i += 1;
    if *b.get(i)? == b']' {
        return Some((false, i + 1));
    }
    let mut error = false;
    loop {
        if *b.get(i)? != b'{' {
            return None;
        }
        i = fast_key(b, i + 1, &TAG_KEYS[0])?;
        let (a, z) = fast_compared(b, i)?;
        let is_error = b[a..z] == *ERROR.key;
        i = fast_next_key(b, z + 1, &TAG_KEYS[1])?;
        i = fast_skipped(b, i)?.1 + 1;
        i = fast_next_key(b, i, &TAG_KEYS[2])?;
        let value_true;
        (value_true, i) = match *b.get(i)? {
            b'"' if is_error => {
                // Kept by the general path (checked as UTF-8): plain ASCII only here.
                let (s, end) = fast_kept(b, i, 0)?;
                let a = s.off as usize;
                (b[a..a + s.len as usize] == *b"true", end)
            }
            b'"' => (false, fast_skipped(b, i)?.1 + 1),
            b't' | b'f' => fast_bool(b, i)?,
            b'0'..=b'9' => (false, fast_uint(b, i)?.1),
            _ => return None,
        };
        error |= is_error && value_true;
        if *b.get(i)? != b'}' {
            return None;
        }
        i += 1;
        match *b.get(i)? {
            b',' => i += 1,
            b']' => return Some((error, i + 1)),
            _ => return None,
        }
    }
}

/// A span in the exact shape Jaeger writes, compact (`{"traceID":..,"spanID":..,"flags":..,
/// "operationName":..,"references":[..],"startTime":..,"duration":..,"tags":[..],"logs":[],
/// "processID":..,"warnings":null}`, `flags` optional), at `b[i..]`: the span as the general
/// path ([`Scanner::span`]) reads it, and the index after its `}`. `None` for anything else:
/// other keys or order, whitespace, escapes, non-ASCII or commas in kept strings, logs, `null`
/// lists, numbers the general path rejects or skips differently, or the end of the buffer;
/// the general path then reads the span from the same place and gives the same result or the
/// error.
///
/// Why: the general path keeps its position and the buffer in the scanner (memory), goes
/// through a key table per member and a call per value, and checks everything JSON allows;
/// this one keeps its position in a register and reads Jaeger's fixed layout straight through
/// (on the benchmark input: 2,340 instead of 3,230 instructions per span, and a tenth less CPU
/// time for the whole run).
fn span_fast(b: &[u8], i: usize, mark: usize) -> Option<(SpanRec, usize)> {
    let mut s = SpanRec::default();
    if *b.get(i)? != b'{' {
        return None;
    }
    let mut i = fast_key(b, i + 1, &SPAN_KEYS[0])?;
    i = fast_skipped(b, i)?.1 + 1;
    i = fast_next_key(b, i, &SPAN_KEYS[1])?;
    (s.id, i) = fast_kept(b, i, mark)?;
    if let Some(j) = fast_next_key(b, i, &SPAN_KEYS[2]) {
        i = fast_uint(b, j)?.1;
    }
    i = fast_next_key(b, i, &SPAN_KEYS[3])?;
    (s.op, i) = fast_kept(b, i, mark)?;
    i = fast_next_key(b, i, &SPAN_KEYS[4])?;
    i = fast_refs(b, i, mark, &mut s)?;
    i = fast_next_key(b, i, &SPAN_KEYS[5])?;
    (s.start, s.start_text, i) = fast_uint_text(b, i, mark)?;
    i = fast_next_key(b, i, &SPAN_KEYS[6])?;
    (s.duration, s.duration_text, i) = fast_uint_text(b, i, mark)?;
    i = fast_next_key(b, i, &SPAN_KEYS[7])?;
    (s.error, i) = fast_tags(b, i)?;
    i = fast_next_key(b, i, &SPAN_KEYS[8])?;
    if b.get(i..i.checked_add(2)?)? != b"[]" {
        return None;
    }
    i = fast_next_key(b, i + 2, &SPAN_KEYS[9])?;
    (s.process, i) = fast_kept(b, i, mark)?;
    i = fast_next_key(b, i, &SPAN_KEYS[10])?;
    if b.get(i..i.checked_add(5)?)? != b"null}" {
        return None;
    }
    Some((s, i + 5))
}

const CONTROL: &str = "control character (\\u0000-\\u001F) found while parsing a string";

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
pub(crate) fn scan_one<E>(
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

/// 1-based line and column (in bytes) of absolute offset `at`, counting from the bytes of `r`.
pub(crate) fn line_column(r: impl Read, at: u64) -> io::Result<(u64, u64)> {
    let (mut line, mut col) = (1u64, 1u64);
    let mut r = io::BufReader::with_capacity(1 << 16, r.take(at));
    loop {
        let buf = io::BufRead::fill_buf(&mut r)?;
        if buf.is_empty() {
            return Ok((line, col));
        }
        for &c in buf {
            if c == b'\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        let n = buf.len();
        io::BufRead::consume(&mut r, n);
    }
}

#[cfg(test)]
mod tests;
