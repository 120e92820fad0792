//! The CSV row writer of the big tables (`spans.csv`, `edges.csv`, `end_to_end.csv`).
//!
//! Rows are built as bytes: strings are copied as they are in the JSON (quoted only when they
//! hold a comma, a quote or a line break, which the scanner notes while it reads them), times and
//! durations are copied as their digits in the input, and only the computed numbers (end time,
//! self time, counts) are formatted ([`Num`]). Fields are appended with fixed-size moves into a
//! reserved buffer ([`RowBuf`], [`Row`]), and each [`Table`] is written around the page cache
//! (`output/direct.rs`).

use std::io;
use std::path::{Path, PathBuf};

use super::jaeger::TraceView;
use super::json::Str;
use crate::error::Result;
use crate::output::csv_field_quoted;
use crate::output::direct::{AlignedBuf, DirectFile};

/// A number formatted once per span and written into several rows: its decimal digits at the
/// start of `text`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Num {
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
    /// forward from the smaller stores (a stall that was 13% of `TraceProcessor::process`).
    #[inline]
    pub(crate) fn new(v: u64) -> Num {
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
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }
}

/// Bytes buffered per table before a write: large enough that the writes (direct, one device
/// request each) are few, small enough to stay in the core's L2 cache while the rows are built.
const FLUSH_AT: usize = 1 << 20;

/// Row bytes of one table: a zeroed buffer written at `len`. Fields are copied as one or two
/// fixed-size (overlapping) moves instead of a `memcpy` call each: with ~30 fields of 1–20 bytes
/// per span, the calls and `Vec`'s capacity checks were a fifth of the processing in profiles.
/// The rows start at an aligned address ([`AlignedBuf`]), so whole blocks of them can be written
/// with `O_DIRECT` straight from here.
pub(crate) struct RowBuf {
    buf: AlignedBuf,
    /// Index in `buf.bytes()` of the next byte (the rows are `buf.start()..len`).
    pub(crate) len: usize,
}

impl RowBuf {
    pub(crate) fn new() -> Self {
        let buf = AlignedBuf::zeroed(FLUSH_AT + (1 << 16));
        let len = buf.start();
        RowBuf { buf, len }
    }

    /// The bytes written so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf.bytes()[self.buf.start()..self.len]
    }

    /// How many bytes were written so far.
    #[inline(always)]
    pub(crate) fn used(&self) -> usize {
        self.len - self.buf.start()
    }

    /// Makes room for `n` more bytes plus the 32 that a fixed-size copy may touch. [`Row::put`]
    /// and [`Row::byte`] rely on it (a row longer than its reservation would panic, not
    /// write out of bounds): the processor reserves once per trace (`reserve_rows` in
    /// `processor.rs`).
    #[inline(always)]
    pub(crate) fn room(&mut self, n: usize) {
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
    pub(crate) fn row(&mut self) -> Row<'_> {
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
/// the processor writes one table per loop). Every field waits on the position,
/// so [`Row::put_c`] and [`Row::str_c`] move it once for a field and its comma.
pub(crate) struct Row<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Row<'_> {
    /// The new length of the [`RowBuf`].
    #[inline(always)]
    pub(crate) fn end(self) -> usize {
        self.at
    }

    /// Appends `s` (within the room reserved).
    #[inline(always)]
    pub(crate) fn put(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.at;
        copy_short(&mut self.buf[at..at + n.max(32)], s);
        self.at = at + n;
    }

    /// Appends one byte (within the room reserved).
    #[inline(always)]
    pub(crate) fn byte(&mut self, c: u8) {
        self.buf[self.at] = c;
        self.at += 1;
    }

    /// Appends `s` and a comma with one move of the position.
    #[inline(always)]
    pub(crate) fn put_c(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.at;
        let d = &mut self.buf[at..at + n.max(32) + 1];
        copy_short(d, s);
        d[n] = b',';
        self.at = at + n + 1;
    }

    /// [`Row::str`] and a comma.
    #[inline(always)]
    pub(crate) fn str_c(&mut self, v: &TraceView<'_>, s: Str) {
        if s.needs_quotes() {
            self.quoted(v.get(s));
            self.byte(b',');
        } else {
            self.put_c(v.get(s));
        }
    }

    /// Appends `s` as one CSV field, quoted when `quote` (with [`csv_field_quoted`], the
    /// crate's one quoting routine).
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
        // Writing into a `Vec` cannot fail.
        let _ = csv_field_quoted(&mut q, s, true);
        self.put(&q);
    }

    /// Appends the string `s` of trace `v` as a CSV field.
    #[inline(always)]
    pub(crate) fn str(&mut self, v: &TraceView<'_>, s: Str) {
        self.field(v.get(s), s.needs_quotes());
    }

    /// Appends `n` in decimal.
    #[inline(always)]
    pub(crate) fn num(&mut self, n: u64) {
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
pub(crate) struct Table {
    pub(crate) buf: RowBuf,
    file: DirectFile,
}

impl Table {
    pub(crate) fn create(
        dir: &Path,
        name: &'static str,
        header: &str,
        direct: bool,
    ) -> Result<Table> {
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
    pub(crate) fn flush_if_full(&mut self) -> io::Result<()> {
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

    pub(crate) fn persist(self) -> Result<PathBuf> {
        let Table { buf, file } = self;
        file.persist(buf.bytes())
    }
}

#[cfg(test)]
mod tests;
