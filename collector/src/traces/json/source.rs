//! The scanner's input: a whole page in memory, or a reader pulled in chunks into one reused
//! buffer; the scanner's error type; and, for error messages, the line and column of a byte.

use std::io::{self, Read};

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
pub(crate) type R<T> = Result<T, Box<ScanError>>;

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
