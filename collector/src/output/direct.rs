//! Large tables written around the page cache: `O_DIRECT` writes of aligned blocks, issued by a
//! background thread, into a temp file that is renamed into place.
//!
//! # Why
//! The span and edge tables are hundreds of MB (815 MB for the 100,000-trace benchmark). Written
//! through the page cache, every byte is copied by the kernel into a page-cache page allocated
//! for it. On a VM that hands freed guest memory back to the host (virtio-balloon free page
//! reporting, as on the Firecracker machines the benchmark ran on) each freshly allocated page
//! also faults on the host: the writes cost 1.3–2.5 CPU seconds of system time, against 0.8 s
//! for all the parsing and formatting. With `O_DIRECT` the device reads the rows straight from
//! our buffers: no copy and no page-cache page (0.02–0.1 s of system time for 800 MB).
//!
//! Direct writes return only once the device has the data, which on that machine blocked the
//! processor for ~0.5 s per 800 MB (1.3 s became 1.8–2.0 s of wall time). So a background thread
//! issues them while the processor fills the next buffer; it sleeps in the kernel meanwhile and
//! uses almost no CPU. The rows are produced on one thread as before.
//!
//! # Rules and fallback
//! `O_DIRECT` wants the buffer address, the length and the file offset aligned to the device's
//! logical block size. [`ALIGN`] (4096) is a multiple of every common block size and the page
//! size: whole blocks go out direct; the last bytes of the file (less than a block) are written
//! after clearing `O_DIRECT` with `fcntl`. A file system that refuses `O_DIRECT` (`EINVAL` or
//! `EOPNOTSUPP` when the flag is set, as older tmpfs, or on a write, as some network and FUSE
//! file systems) gets ordinary buffered writes from then on: the bytes are the same, only the
//! path differs. Any other write error is an error of the table.
//!
//! The writer is hand-written on `libc::fcntl`, `pwrite` and a thread: the crates that wrap
//! `O_DIRECT` either read whole files or bring an async runtime (`io-uring`) that buys nothing
//! over one sleeping thread per table.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use crate::error::{Error, Result};

/// Alignment of direct writes: buffer address, length and file offset.
pub(crate) const ALIGN: usize = 4096;

/// Buffers of one table that may exist at once: one being filled, one being written, one
/// queued (so the device always has the next block as soon as it finishes one).
const MAX_BUFFERS: usize = 3;

/// A zeroed, fixed-size byte buffer whose bytes from [`AlignedBuf::start`] on begin at an
/// [`ALIGN`]-aligned address. It over-allocates by one block and starts at the first aligned
/// byte: safe code, no custom allocator, and the allocation never moves (a boxed slice).
pub(crate) struct AlignedBuf {
    bytes: Box<[u8]>,
    start: usize,
}

impl AlignedBuf {
    /// A buffer with at least `len` usable bytes after [`AlignedBuf::start`].
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        let bytes = vec![0u8; len + ALIGN].into_boxed_slice();
        // `align_offset` may give up (`usize::MAX`); then the buffer is merely unaligned, and a
        // direct write from it fails with EINVAL and falls back to a buffered one.
        let start = match bytes.as_ptr().align_offset(ALIGN) {
            s if s < ALIGN => s,
            _ => 0,
        };
        AlignedBuf { bytes, start }
    }

    /// Index of the first aligned byte.
    #[inline(always)]
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// All the bytes, including the unaligned ones before [`AlignedBuf::start`].
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// All the bytes, mutable.
    #[inline(always)]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// The system calls the writer uses; tests swap them to play file systems that refuse
/// `O_DIRECT` or fail.
#[derive(Clone, Copy)]
pub(crate) struct Ops {
    /// Turns `O_DIRECT` on or off for the open file.
    pub(crate) set_direct: fn(&File, bool) -> io::Result<()>,
    /// Writes all of the bytes at the offset.
    pub(crate) write_at: fn(&File, &[u8], u64) -> io::Result<()>,
}

/// The real system calls.
pub(crate) const SYSTEM: Ops = Ops {
    set_direct,
    write_at: |f, b, off| f.write_all_at(b, off),
};

/// Sets or clears `O_DIRECT` on `file` (shared by every descriptor of the open file).
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor this process owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere there is no `O_DIRECT`: the writer falls back to buffered writes.
#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, on: bool) -> io::Result<()> {
    if on {
        Err(io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

/// Whether a direct write failed because the file system does not do direct I/O (or not with
/// this alignment), rather than because writing failed.
fn refuses_direct(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == libc::EINVAL || c == libc::EOPNOTSUPP)
        || e.kind() == io::ErrorKind::Unsupported
}

/// Writes `data` at `offset`, directly while `*direct`; when the file system refuses, clears
/// `O_DIRECT`, sets `*direct` to false and writes the same bytes buffered (a refused write wrote
/// nothing that the buffered one does not overwrite with the same bytes).
fn write_block(
    ops: &Ops,
    file: &File,
    data: &[u8],
    offset: u64,
    direct: &mut bool,
) -> io::Result<()> {
    if *direct {
        match (ops.write_at)(file, data, offset) {
            Ok(()) => return Ok(()),
            Err(e) if refuses_direct(&e) => {
                (ops.set_direct)(file, false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
    }
    (ops.write_at)(file, data, offset)
}

/// One block for the writer thread: `buf`'s bytes `start..start + len`, at `offset`.
struct Job {
    buf: AlignedBuf,
    len: usize,
    offset: u64,
}

/// The background writer of one file.
struct Writer {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<AlignedBuf>,
    thread: Option<thread::JoinHandle<io::Result<bool>>>,
}

impl Writer {
    fn spawn(ops: Ops, file: File) -> io::Result<Writer> {
        let (jobs, todo) = mpsc::sync_channel::<Job>(MAX_BUFFERS);
        let (back, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("aefm-table-writer".into())
            .spawn(move || -> io::Result<bool> {
                let mut direct = true;
                for job in todo {
                    let s = job.buf.start;
                    let data = &job.buf.bytes[s..s + job.len];
                    write_block(&ops, &file, data, job.offset, &mut direct)?;
                    // The table may be gone (dropped after an error elsewhere): nothing to return.
                    let _ = back.send(job.buf);
                }
                Ok(direct)
            })?;
        Ok(Writer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Waits for every queued block to be written. Whether the writes were still direct at the
    /// end (`None` when already finished), or the write error that stopped the thread.
    fn finish(&mut self) -> io::Result<Option<bool>> {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            None => Ok(None),
            Some(Ok(r)) => r.map(Some),
            Some(Err(_)) => Err(io::Error::other("the table writer thread panicked")),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // An abandoned table: let the thread write what it has (at most MAX_BUFFERS blocks)
        // and end, rather than outlive the file it writes.
        let _ = self.finish();
    }
}

/// How a [`DirectFile`] writes.
enum Mode {
    /// `O_DIRECT` is on: whole blocks go to the writer thread (or are written here when no
    /// thread could be started).
    Direct {
        /// The writer thread, started with the first block.
        writer: Option<Writer>,
        /// Whether starting it was tried (if that failed, blocks are written synchronously).
        started: bool,
        /// Buffers of this file in existence, at most [`MAX_BUFFERS`].
        buffers: usize,
        /// False once a direct write was refused and the file fell back to buffered writes
        /// (as known to this thread: the writer thread reports its own when it finishes).
        direct: bool,
    },
    /// Ordinary buffered writes, from the calling thread.
    Buffered,
}

/// A table file: a temp file in the destination directory, filled block by block through
/// [`DirectFile::write`] and renamed into place by [`DirectFile::persist`]. Until then (an error,
/// a crash, a drop) nothing exists under the final name, as with
/// [`crate::output::write_atomic`].
pub(crate) struct DirectFile {
    /// First, so that a dropped file's writer thread is joined before the temp file is removed.
    mode: Mode,
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    ops: Ops,
    /// Bytes handed over so far: the file offset of the next block.
    offset: u64,
}

impl DirectFile {
    /// Creates the temp file for `dir/name`, with `O_DIRECT` when `direct` and the file system
    /// allows it.
    pub(crate) fn create(dir: &Path, name: &str, direct: bool) -> Result<DirectFile> {
        DirectFile::create_with(dir, name, direct, SYSTEM)
    }

    /// [`DirectFile::create`] with the given system calls.
    pub(crate) fn create_with(
        dir: &Path,
        name: &str,
        direct: bool,
        ops: Ops,
    ) -> Result<DirectFile> {
        let path = dir.join(name);
        let tmp = super::temp::create(dir, name).map_err(|e| Error::io("writing", &path, e))?;
        // Any failure to turn O_DIRECT on (EINVAL from a file system without it, typically)
        // just means buffered writes.
        let mode = if direct && (ops.set_direct)(tmp.as_file(), true).is_ok() {
            Mode::Direct {
                writer: None,
                started: false,
                buffers: 1,
                direct: true,
            }
        } else {
            Mode::Buffered
        };
        Ok(DirectFile {
            mode,
            path,
            tmp,
            ops,
            offset: 0,
        })
    }

    /// Whether writes still go around the page cache (as far as this thread knows).
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct { direct: true, .. })
    }

    /// Hands over the bytes `buf.start()..end` of `buf` and returns the index where filling
    /// continues. Buffered, everything is written and `buf` is empty again. Direct, the whole
    /// blocks are written (by the thread, from this very buffer) and `buf` is replaced by a free
    /// one that starts with the rest (less than [`ALIGN`] bytes).
    pub(crate) fn write(&mut self, buf: &mut AlignedBuf, end: usize) -> io::Result<usize> {
        let start = buf.start;
        let len = end - start;
        let Mode::Direct {
            writer,
            started,
            buffers,
            direct,
        } = &mut self.mode
        else {
            (self.ops.write_at)(self.tmp.as_file(), &buf.bytes[start..end], self.offset)?;
            self.offset += len as u64;
            return Ok(start);
        };
        let (whole, rest) = (len - len % ALIGN, len % ALIGN);
        if whole == 0 {
            return Ok(end);
        }
        let offset = self.offset;
        self.offset += whole as u64;
        if !*started {
            // The first block: start the thread now, so that small tables never get one.
            *started = true;
            *writer = self
                .tmp
                .as_file()
                .try_clone()
                .and_then(|f| Writer::spawn(self.ops, f))
                .ok();
        }
        let Some(w) = writer.as_mut() else {
            // No thread: write here, synchronously, and keep the buffer.
            let data = &buf.bytes[start..start + whole];
            write_block(&self.ops, self.tmp.as_file(), data, offset, direct)?;
            buf.bytes.copy_within(start + whole..end, start);
            return Ok(start + rest);
        };
        // A buffer for the rows that follow: a returned one, a new one while there are fewer
        // than MAX_BUFFERS, else wait for the writer to return one.
        let next = match w.done.try_recv().ok() {
            Some(b) => Some(b),
            None if *buffers < MAX_BUFFERS => {
                *buffers += 1;
                Some(AlignedBuf::zeroed(buf.bytes.len() - ALIGN))
            }
            None => w.done.recv().ok(),
        };
        let Some(mut next) = next else {
            return Err(writer_failed(w));
        };
        let ns = next.start;
        next.bytes[ns..ns + rest].copy_from_slice(&buf.bytes[start + whole..end]);
        let job = Job {
            buf: std::mem::replace(buf, next),
            len: whole,
            offset,
        };
        if w.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
            return Err(writer_failed(w));
        }
        Ok(ns + rest)
    }

    /// Writes `rest` (the last bytes, any length) after everything handed over, waits for the
    /// writer, and renames the temp file to its final name.
    pub(crate) fn persist(mut self, rest: &[u8]) -> Result<PathBuf> {
        let path = self.path.clone();
        self.finish(rest)
            .map_err(|e| Error::io("writing", &path, e))?;
        let DirectFile { tmp, .. } = self;
        tmp.persist(&path)
            .map_err(|e| Error::io("writing", &path, e.error))?;
        Ok(path)
    }

    fn finish(&mut self, rest: &[u8]) -> io::Result<()> {
        if let Mode::Direct { writer, direct, .. } = &mut self.mode {
            if let Some(mut w) = writer.take() {
                if let Some(still) = w.finish()? {
                    *direct &= still;
                }
            }
            // The tail is not a whole block: it goes through the page cache.
            (self.ops.set_direct)(self.tmp.as_file(), false)?;
        }
        (self.ops.write_at)(self.tmp.as_file(), rest, self.offset)?;
        self.offset += rest.len() as u64;
        Ok(())
    }
}

/// The error that stopped the writer thread (it stops only on one).
fn writer_failed(w: &mut Writer) -> io::Error {
    match w.finish() {
        Err(e) => e,
        Ok(_) => io::Error::other("the table writer stopped"),
    }
}

#[cfg(test)]
mod tests;
