//! Word-at-a-time (SWAR) byte tests: eight input bytes in one `u64` register, tested for quotes,
//! backslashes, commas, control characters or digits with a few integer operations instead of a
//! loop, and object keys matched with one masked 16-byte compare ([`Pat`]). The scanner and the
//! fast path find the end of a string or a number this way.

const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `b[i..i + 8]` as one little-endian word (byte `i` in the low bits).
#[inline(always)]
pub(crate) fn word(b: &[u8], i: usize) -> u64 {
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
pub(crate) fn eq_mask(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// The value of eight ASCII digits packed in `w` (first digit in the low byte), or `None` if a
/// byte is not a digit (SWAR, as in simdjson's `parse_eight_digits_unrolled`).
#[inline(always)]
pub(crate) fn eight_digits(w: u64) -> Option<u64> {
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
pub(crate) fn ctl_or_high(w: u64) -> u64 {
    (w.wrapping_sub(LO * 0x20) | w) & HI
}

/// Bytes of `w` below 0x20 (control characters), with the same lowest-byte guarantee.
#[inline(always)]
pub(crate) fn ctl_mask(w: u64) -> u64 {
    w.wrapping_sub(LO * 0x20) & !w & HI
}

/// An object key as it appears in the JSON text, closing quote included, packed for one masked
/// compare with the 16 bytes after the opening quote.
#[derive(Clone, Copy)]
pub(crate) struct Pat {
    pub(crate) key: &'static [u8],
    pub(crate) word: u128,
    pub(crate) mask: u128,
}

pub(crate) const fn pat(key: &'static [u8]) -> Pat {
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
