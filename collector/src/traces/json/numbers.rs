//! Numbers: the non-negative integers the tables keep (read with their digits, eight at a time),
//! and any other number, skipped but checked.

use super::swar::{eight_digits, word};
use super::{Scanner, Source, Str, PRESENT, R};

impl<S: Source> Scanner<S> {
    /// Reads a non-negative integer field (serde's `u64`): its value and its digits.
    #[inline]
    pub(crate) fn u64(&mut self, field: &str) -> R<(u64, Str)> {
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
    pub(crate) fn skip_number(&mut self) -> R<()> {
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
}
