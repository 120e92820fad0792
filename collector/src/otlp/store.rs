//! The span store: received spans as compact binary records, in memory up to a byte bound and
//! appended to an unnamed temporary file past it, so a long run never grows without bound.
//!
//! A record is the span's fixed fields followed by three length-prefixed strings (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 16 | trace ID |
//! | 8 | span ID |
//! | 8 | parent span ID (all zero: none, as OTLP's invalid span ID) |
//! | 8 + 8 | start and end, Unix ns |
//! | 1 | status is error |
//! | 4 + n (×3) | name, service, pod (UTF-8) |
//!
//! Memory and the spill file hold exactly the same bytes, so spilling is one write of the
//! in-memory buffer and reading back is one sequential pass. The temporary file has no name
//! (`tempfile::tempfile_in`): the kernel removes it when the receiver ends, even after a crash.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record before its strings.
const FIXED: usize = 16 + 8 + 8 + 8 + 8 + 1;

/// One span as the receiver keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord<'a> {
    /// Trace ID.
    pub trace_id: [u8; 16],
    /// Span ID.
    pub span_id: [u8; 8],
    /// Parent span ID, when the span has one.
    pub parent_id: Option<[u8; 8]>,
    /// Operation name.
    pub name: &'a str,
    /// Start, Unix ns.
    pub start_ns: u64,
    /// End, Unix ns.
    pub end_ns: u64,
    /// The span's status is `STATUS_CODE_ERROR`.
    pub error: bool,
    /// The resource's `service.name`.
    pub service: &'a str,
    /// The resource's `k8s.pod.name`, else `host.name`, else the service.
    pub pod: &'a str,
}

impl SpanRecord<'_> {
    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trace_id);
        out.extend_from_slice(&self.span_id);
        out.extend_from_slice(&self.parent_id.unwrap_or([0; 8]));
        out.extend_from_slice(&self.start_ns.to_le_bytes());
        out.extend_from_slice(&self.end_ns.to_le_bytes());
        out.push(u8::from(self.error));
        for s in [self.name, self.service, self.pod] {
            // Strings longer than 4 GiB cannot arrive: the body limit is far below.
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Why bytes are not a record (the store only reads what it wrote: this means corruption).
#[derive(Debug, thiserror::Error)]
#[error("corrupt span record at byte {at}")]
pub struct CorruptRecord {
    /// Offset of the record in the buffer.
    pub at: usize,
}

/// Reads the record at `b[at..]`; returns it and the offset after it.
pub fn decode_at(b: &[u8], at: usize) -> Result<(SpanRecord<'_>, usize), CorruptRecord> {
    let fixed = b.get(at..at + FIXED).ok_or(CorruptRecord { at })?;
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or([0; 8]));
    let mut trace_id = [0; 16];
    trace_id.copy_from_slice(&fixed[..16]);
    let mut span_id = [0; 8];
    span_id.copy_from_slice(&fixed[16..24]);
    let mut parent = [0; 8];
    parent.copy_from_slice(&fixed[24..32]);
    let mut i = at + FIXED;
    let mut strings = [""; 3];
    for s in &mut strings {
        let len = b.get(i..i + 4).ok_or(CorruptRecord { at })?;
        let n = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
        let text = b.get(i + 4..i + 4 + n).ok_or(CorruptRecord { at })?;
        *s = std::str::from_utf8(text).map_err(|_| CorruptRecord { at })?;
        i += 4 + n;
    }
    let rec = SpanRecord {
        trace_id,
        span_id,
        parent_id: (parent != [0; 8]).then_some(parent),
        start_ns: u64_at(32),
        end_ns: u64_at(40),
        error: fixed[48] != 0,
        name: strings[0],
        service: strings[1],
        pod: strings[2],
    };
    Ok((rec, i))
}

/// Length of the record at `b[at..]` (the buffer must hold whole records).
pub fn record_len(b: &[u8], at: usize) -> Result<usize, CorruptRecord> {
    decode_at(b, at).map(|(_, next)| next - at)
}

/// Received spans: a memory buffer up to `bound` bytes, then the spill file.
#[derive(Debug)]
pub struct Store {
    mem: Vec<u8>,
    spans: u64,
    bound: usize,
    dir: PathBuf,
    spill: Option<File>,
    spilled: u64,
}

/// The contents taken out of a [`Store`] for processing.
#[derive(Debug)]
pub struct Taken {
    /// Spans in `spill` then `mem`.
    pub spans: u64,
    /// The spill file (rewound) and its length, when anything was spilled.
    pub spill: Option<(File, u64)>,
    /// Records still in memory.
    pub mem: Vec<u8>,
}

impl Taken {
    /// Total bytes of records.
    pub fn bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.1) + self.mem.len() as u64
    }

    /// Calls `f` with chunks of whole records, the spill file first (read `chunk` bytes at a
    /// time, extended to a record boundary) and then memory.
    pub fn for_each_chunk(
        self,
        chunk: usize,
        mut f: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Some((file, len)) = self.spill {
            let mut r = io::BufReader::new(file).take(len);
            let mut buf = Vec::new();
            loop {
                let old = buf.len();
                (&mut r).take(chunk as u64).read_to_end(&mut buf)?;
                let end_of_file = buf.len() == old;
                let whole = whole_records(&buf);
                if whole > 0 {
                    f(&buf[..whole])?;
                    buf.drain(..whole);
                }
                if end_of_file {
                    if !buf.is_empty() {
                        return Err(io::Error::other("spill file ends inside a record"));
                    }
                    break;
                }
            }
        }
        if !self.mem.is_empty() {
            f(&self.mem)?;
        }
        Ok(())
    }
}

/// Bytes of `b` that form whole records (the rest is the start of a record cut by a read).
fn whole_records(b: &[u8]) -> usize {
    let mut at = 0;
    while at < b.len() {
        match decode_at(b, at) {
            Ok((_, next)) => at = next,
            // A record cut by the chunk boundary; real corruption shows at the end of file.
            Err(_) => break,
        }
    }
    at
}

impl Store {
    /// An empty store keeping up to `bound` bytes in memory and spilling into `dir`.
    pub fn new(bound: usize, dir: &Path) -> Store {
        Store {
            mem: Vec::new(),
            spans: 0,
            bound,
            dir: dir.to_path_buf(),
            spill: None,
            spilled: 0,
        }
    }

    /// Spans held.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Bytes written to the spill file since the store was last taken.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    /// Adds `n` spans given as encoded records; spills the memory buffer first when the bytes
    /// would pass the bound.
    pub fn push(&mut self, records: &[u8], n: u64) -> io::Result<()> {
        if !self.mem.is_empty() && self.mem.len() + records.len() > self.bound {
            self.spill_mem()?;
        }
        if records.len() > self.bound {
            // One batch larger than the whole bound goes straight to disk.
            self.spill_file()?.write_all(records)?;
            self.spilled += records.len() as u64;
        } else {
            self.mem.extend_from_slice(records);
        }
        self.spans += n;
        Ok(())
    }

    fn spill_file(&mut self) -> io::Result<&mut File> {
        if self.spill.is_none() {
            self.spill = Some(tempfile::tempfile_in(&self.dir)?);
        }
        Ok(self.spill.as_mut().expect("just created"))
    }

    fn spill_mem(&mut self) -> io::Result<()> {
        let mem = std::mem::take(&mut self.mem);
        self.spill_file()?.write_all(&mem)?;
        self.spilled += mem.len() as u64;
        // Keep the allocation: the next batches refill it.
        self.mem = mem;
        self.mem.clear();
        Ok(())
    }

    /// Takes everything out, leaving the store empty (the spill file rewound for reading).
    pub fn take(&mut self) -> io::Result<Taken> {
        let spill = match self.spill.take() {
            Some(mut f) => {
                f.flush()?;
                f.rewind()?;
                Some((f, self.spilled))
            }
            None => None,
        };
        let taken = Taken {
            spans: self.spans,
            spill,
            mem: std::mem::take(&mut self.mem),
        };
        self.spans = 0;
        self.spilled = 0;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u8, name: &str) -> SpanRecord<'_> {
        SpanRecord {
            trace_id: [i; 16],
            span_id: [i + 1; 8],
            parent_id: i.is_multiple_of(2).then_some([9; 8]),
            name,
            start_ns: 1_000 * u64::from(i),
            end_ns: 2_000 * u64::from(i),
            error: i.is_multiple_of(3),
            service: "svc",
            pod: "pod-é",
        }
    }

    #[test]
    fn records_round_trip() {
        let names = ["a", "", "long name with, comma"];
        let mut b = Vec::new();
        for (i, n) in names.iter().enumerate() {
            rec(i as u8, n).encode(&mut b);
        }
        let (mut at, mut last) = (0, 0);
        for (i, n) in names.iter().enumerate() {
            let (r, next) = decode_at(&b, at).unwrap();
            assert_eq!(r, rec(i as u8, n));
            assert_eq!(record_len(&b, at).unwrap(), next - at);
            (last, at) = (at, next);
        }
        assert_eq!(at, b.len());
        // A record cut short, or no record at all, is an error, not a panic.
        assert!(decode_at(&b[..b.len() - 1], last).is_err());
        assert!(decode_at(&b, at).is_err());
    }

    #[test]
    fn spills_past_the_bound_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Vec::new();
        rec(4, "op").encode(&mut one);
        // Room for two records in memory: ten pushes spill four times.
        let mut store = Store::new(one.len() * 2, dir.path());
        let mut all = Vec::new();
        for i in 0..10u8 {
            let mut b = Vec::new();
            rec(i, "op").encode(&mut b);
            store.push(&b, 1).unwrap();
            all.extend_from_slice(&b);
        }
        assert!(store.spilled() > 0);
        assert_eq!(store.spans(), 10);
        let taken = store.take().unwrap();
        assert_eq!(taken.bytes(), all.len() as u64);
        let mut back = Vec::new();
        // A chunk smaller than a record: every read ends inside one.
        taken
            .for_each_chunk(7, |c| {
                back.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
        assert_eq!(back, all);
        assert_eq!(store.spans(), 0);
    }
}
