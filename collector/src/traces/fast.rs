//! The fast path for spans: Jaeger's own compact span layout read straight through, with the
//! position in a register ([`span_fast`]). The Jaeger reader (`jaeger.rs`) tries it first for
//! every span; anything it does not fully check makes it give up, and the general path reads
//! the span from the same byte, so the result (or the error) is the same either way; a test
//! compares the two on thousands of damaged spans.

use super::jaeger::{SpanRec, ERROR, FOLLOWS_FROM, REF_KEYS, SPAN_KEYS, TAG_KEYS};
#[cfg(doc)]
use super::json::Scanner;
use super::json::{ctl_mask, ctl_or_high, eight_digits, eq_mask, Pat, Str, PRESENT};

#[cfg(test)]
thread_local! {
    /// Test switch: [`Scanner`]s created on this thread skip [`span_fast`].
    pub(crate) static SLOW_SPANS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test turned [`span_fast`] off on this thread.
#[cfg(test)]
pub(crate) fn tests_want_slow_spans() -> bool {
    SLOW_SPANS.with(|c| c.get())
}

/// Never outside tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn tests_want_slow_spans() -> bool {
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
pub(crate) fn span_fast(b: &[u8], i: usize, mark: usize) -> Option<(SpanRec, usize)> {
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

#[cfg(test)]
mod tests;
