//! Strings: read (kept, as offsets into the buffer, or decoded into an arena when they hold
//! escapes), skipped (checked, not decoded) or compared with a literal in place. A kept string
//! is checked as UTF-8 and notes whether its CSV field needs quotes, so the row writer never looks
//! at its bytes again.

use super::swar::{ctl_mask, ctl_or_high, eq_mask, same, word, Pat, HI};
use super::{Scanner, Source, R};
use crate::output::csv_needs_quotes;

/// A string of the current trace: a range of its JSON text (relative to the trace's first byte),
/// or of the trace's arena when the JSON string had escapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Str {
    pub(crate) off: u32,
    pub(crate) len: u32,
    pub(crate) flags: u8,
}

pub(crate) const IN_ARENA: u8 = 1;
const NEEDS_QUOTES: u8 = 2;
pub(crate) const PRESENT: u8 = 4;

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

const CONTROL: &str = "control character (\\u0000-\\u001F) found while parsing a string";

impl<S: Source> Scanner<S> {
    /// Reads a string value (at its `"`) that the tables keep: checks UTF-8 and notes whether it
    /// needs CSV quotes. Escaped strings are decoded into `arena`.
    #[inline(always)]
    pub(crate) fn string(&mut self, arena: &mut Vec<u8>) -> R<Str> {
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
        let quotes = csv_needs_quotes(text);
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
    pub(crate) fn next_byte(&mut self) -> R<u8> {
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
    pub(crate) fn skip_string(&mut self) -> R<()> {
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

    /// A string (at its `"`) compared with `lit`: one masked compare when it is `lit` written
    /// plainly; otherwise it is read (decoded if it has escapes) and compared.
    #[inline(always)]
    pub(crate) fn string_is(&mut self, lit: &Pat, arena: &mut Vec<u8>) -> R<bool> {
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
    pub(crate) fn skip_known(&mut self, known: Str) -> R<()> {
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
}
