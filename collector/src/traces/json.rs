//! A JSON byte scanner: pulls the input in chunks into one reused buffer and reads JSON tokens
//! from it; the Jaeger schema reader (`jaeger.rs`) drives it one trace at a time.
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
//! a parse again. So this scanner, driven by the Jaeger schema reader (`jaeger.rs`), parses
//! exactly the Jaeger shape, in one pass over a reused buffer: keys are matched as bytes, strings
//! are scanned eight bytes at a time (SWAR) for the quote, the backslash and control characters,
//! and kept strings are returned as offsets into the buffer (decoded into a side arena only when
//! they hold escapes). Values the tables do not use (`logs`,
//! most tags, `warnings`, unknown keys) are skipped but still validated, so malformed JSON is an
//! error with its byte offset wherever it is.
//!
//! This module holds the scanner itself and the structure of JSON (objects, arrays, keys, literals,
//! skipped values); strings are read in `json/strings.rs`, numbers in `json/numbers.rs`, the input
//! in `json/source.rs`, and the word-at-a-time byte tests all of them use in `json/swar.rs`.
//!
//! # What is checked
//! The JSON grammar (RFC 8259) as `serde_json` checks it: structure, string escapes (including
//! surrogate pairs in strings that are kept), control characters in strings, number syntax, the
//! literals, trailing characters. Strings that reach the tables must be valid UTF-8; skipped
//! ones are not decoded.

#[cfg(doc)]
use super::fast::span_fast;

mod numbers;
mod source;
mod strings;
mod swar;

pub(crate) use source::{line_column, ReadSource, ScanError, Source, R};
pub(crate) use strings::{Str, IN_ARENA, PRESENT};
pub(crate) use swar::{ctl_mask, ctl_or_high, eight_digits, eq_mask, pat, same, Pat};

/// Nesting limit for the arrays and objects of Jaeger's structure (`serde_json`'s default
/// recursion limit; Jaeger's own nesting is 7 deep). Skipped values have no limit, as with
/// `serde_json`'s `IgnoredAny`.
const MAX_DEPTH: u32 = 128;

/// The scanner: a position in a [`Source`], with everything from `mark` on kept in memory.
pub(crate) struct Scanner<S> {
    /// The input.
    pub(crate) src: S,
    /// Index of the next byte in `src.bytes()`.
    pub(crate) pos: usize,
    /// Index of the first byte that must stay available (the current trace's `{`).
    pub(crate) mark: usize,
    /// Absolute offset of `src.bytes()[0]` in the input.
    base: u64,
    depth: u32,
    /// Decoded object keys that had escapes.
    key_buf: Vec<u8>,
    /// Whether spans try [`span_fast`] first (tests turn it off to compare the two paths).
    pub(crate) fast: bool,
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
            fast: !super::fast::tests_want_slow_spans(),
        }
    }

    #[cold]
    pub(crate) fn err(&self, message: impl Into<String>) -> Box<ScanError> {
        self.err_at(self.pos, message)
    }

    #[cold]
    pub(crate) fn err_at(&self, index: usize, message: impl Into<String>) -> Box<ScanError> {
        Box::new(ScanError::Syntax {
            at: self.base + index as u64,
            message: message.into(),
        })
    }

    #[cold]
    pub(crate) fn eof(&self) -> Box<ScanError> {
        self.err("unexpected end of input")
    }

    /// Pulls more input, keeping everything from `mark`. False at end of input.
    #[inline(never)]
    pub(crate) fn fill(&mut self) -> R<bool> {
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
    pub(crate) fn peek(&mut self) -> R<u8> {
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
    pub(crate) fn at_end(&mut self) -> R<bool> {
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
    pub(crate) fn expect(&mut self, c: u8, what: &str) -> R<()> {
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
    pub(crate) fn object_start(&mut self, what: &str) -> R<bool> {
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
    pub(crate) fn object_next(&mut self) -> R<bool> {
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
    pub(crate) fn array_start(&mut self, what: &str) -> R<bool> {
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
    pub(crate) fn array_next(&mut self) -> R<bool> {
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
    pub(crate) fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub(crate) fn literal(&mut self, lit: &'static [u8]) -> R<()> {
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
    pub(crate) fn key<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> R<T> {
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
    pub(crate) fn key_in(&mut self, keys: &[Pat], hint: &mut usize) -> R<usize> {
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
    pub(crate) fn first_key(
        &mut self,
        what: &str,
        keys: &[Pat],
        hint: &mut usize,
    ) -> R<Option<usize>> {
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
    pub(crate) fn next_key(&mut self, keys: &[Pat], hint: &mut usize) -> R<Option<usize>> {
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

    /// Skips one JSON value of any type, checking its syntax. The values Jaeger puts in the
    /// fields the tables ignore (`null`, `[]`, short numbers, strings) are handled inline.
    #[inline(always)]
    pub(crate) fn skip_value(&mut self) -> R<()> {
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

    /// A kept string field: must be a string.
    #[inline(always)]
    pub(crate) fn string_field(&mut self, field: &str, arena: &mut Vec<u8>) -> R<Str> {
        if self.peek()? != b'"' {
            return Err(self.err(format!("invalid type: `{field}` must be a string")));
        }
        self.string(arena)
    }

    /// Sets bit `bit` of `seen`, failing if the field was already given.
    #[inline(always)]
    pub(crate) fn once(&self, seen: &mut u32, bit: u32, field: &str) -> R<()> {
        if *seen & bit != 0 {
            return Err(self.err(format!("duplicate field `{field}`")));
        }
        *seen |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
