//! Memory-capacity stressor: maps the requested size (bytes or a percentage of the memory limit),
//! writes every page (non-zero data, so no page stays the shared zero page) and keeps it resident
//! while sleeping, so the CPU cost while holding is close to zero. An optional re-touch rate
//! rewrites every page that many times per second (keeps pages hot against reclaim). A request
//! above the limit is refused before anything is mapped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{details, ended_early, Active, Ctx};
use crate::cgroup::{self, MemoryLimit};
use crate::error::{Error, Result};
use crate::stop::sleep_polling;
use crate::units::Size;

/// Pages are touched in chunks of this size between stop-flag checks.
const CHUNK: usize = 2 << 20;

/// An anonymous private mapping, unmapped on drop.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; threads write disjoint bytes or only
// through the raw pointer with no references held across threads.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (rounded up to pages), not yet resident.
    pub(crate) fn new(len: usize) -> Result<Self> {
        // SAFETY: anonymous mapping, no file; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::sys(format!("mmap of {len} bytes")));
        }
        // Transparent huge pages where the kernel allows them (THP `madvise` mode): unmapping
        // 4 GiB of 4 KiB pages takes over a second on a VM (measured 1.2 s), which breaks the
        // 0.5 s stop promise; with 2 MiB pages it is a few ms, and filling needs 512x fewer
        // faults. The cost: with THP defrag `madvise`, a fault may compact memory first when free
        // memory is fragmented. AEFM_MEMCAP_THP=0 turns the advice off.
        if std::env::var("AEFM_MEMCAP_THP").map_or(true, |v| v != "0") {
            // SAFETY: advice on the region just mapped; failure is harmless.
            unsafe { libc::madvise(ptr, len.max(1), libc::MADV_HUGEPAGE) };
        }
        Ok(Mapping {
            ptr: ptr as *mut u8,
            len,
        })
    }

    /// Writes one byte per page in `[from, to)`, the value derived from `round` so a re-touch
    /// really writes; volatile so the stores are kept.
    fn touch(&self, from: usize, to: usize, page: usize, round: u8) {
        let mut off = from;
        while off < to.min(self.len) {
            // SAFETY: off < len, inside the mapping.
            unsafe { std::ptr::write_volatile(self.ptr.add(off), round.wrapping_add(1) | 1) };
            off += page;
        }
    }
}

impl Mapping {
    /// Bytes of the mapping resident in RAM (`mincore`), independent of the rest of the process.
    pub(crate) fn resident_bytes(&self) -> u64 {
        let page = cgroup::page_size() as usize;
        let pages = self.len.div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: vec has one byte per page of the mapping.
        let rc = unsafe {
            libc::mincore(
                self.ptr as *mut libc::c_void,
                self.len.max(1),
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| **b & 1 == 1).count() as u64 * page as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len.max(1)) };
    }
}

/// Memory the process needs besides the held block when filling up to a cgroup limit (its own
/// RSS is added): without it a request of 100 % would end in an OOM kill instead of an error.
pub const RESERVE: u64 = 8 << 20;

/// Resolves a size request against the limit, refusing what does not fit. `own` is what the
/// process already uses; under a cgroup limit the block plus `own` plus [`RESERVE`] must fit.
pub fn resolve_size(size: Size, limit: &MemoryLimit, own: u64) -> Result<u64> {
    let bytes = match size {
        Size::Bytes(b) => b,
        Size::PercentOfLimit(p) => {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::Invalid {
                    what: "size",
                    reason: format!("{p}% is not within (0, 100]"),
                });
            }
            (limit.bytes as f64 * p / 100.0) as u64
        }
    };
    if bytes > limit.bytes {
        return Err(Error::AboveMemoryLimit {
            requested: bytes,
            limit: limit.bytes,
            source_name: limit.source.clone(),
        });
    }
    let room = limit.bytes.saturating_sub(own + RESERVE);
    if limit.cgroup && bytes > room {
        return Err(Error::Invalid {
            what: "size",
            reason: format!(
                "{bytes} bytes plus this process ({own} bytes resident) and {RESERVE} bytes of headroom exceed \
                 the memory limit of {} bytes from {}; at most {room} bytes can be held; nothing was allocated",
                limit.bytes, limit.source
            ),
        });
    }
    if bytes == 0 {
        return Err(Error::Invalid {
            what: "size",
            reason: "resolves to 0 bytes".into(),
        });
    }
    Ok(bytes)
}

/// A running memory-capacity stressor.
pub(crate) struct MemCap {
    bytes: u64,
    limit: MemoryLimit,
    touched: Arc<AtomicU64>,
    map: Arc<Mapping>,
    filled_after: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    retouch_per_s: Option<f64>,
    stop: Arc<AtomicBool>,
}

fn filler(
    map: Arc<Mapping>,
    touched: Arc<AtomicU64>,
    filled_after: Arc<AtomicU64>,
    retouch: Option<f64>,
    stop: Arc<AtomicBool>,
) {
    let page = cgroup::page_size() as usize;
    let start = Instant::now();
    let mut off = 0;
    while off < map.len && !stop.load(Ordering::Relaxed) {
        let end = (off + CHUNK).min(map.len);
        map.touch(off, end, page, 0);
        off = end;
        touched.store(off as u64, Ordering::Relaxed);
    }
    if off >= map.len {
        filled_after.store(start.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }
    match retouch {
        Some(rate) if rate > 0.0 => {
            // Spread each pass over 1/rate seconds: chunk by chunk, sleeping between chunks.
            let chunks = map.len.div_ceil(CHUNK).max(1);
            let per_chunk = Duration::from_secs_f64(1.0 / rate / chunks as f64);
            let mut round: u8 = 1;
            let t0 = Instant::now();
            let mut n: u64 = 0;
            'outer: while !stop.load(Ordering::Relaxed) {
                let mut o = 0;
                while o < map.len {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    map.touch(o, o + CHUNK, page, round);
                    o += CHUNK;
                    n += 1;
                    let due = t0 + per_chunk.mul_f64(n as f64);
                    let now = Instant::now();
                    if due > now && sleep_polling(&stop, due - now) {
                        break 'outer;
                    }
                }
                round = round.wrapping_add(1);
            }
        }
        _ => while !sleep_polling(&stop, Duration::from_secs(3600)) {},
    }
}

/// Checks the request against the limit, maps it and starts filling.
pub(crate) fn start(ctx: &Ctx, size: Size, retouch_per_s: Option<f64>) -> Result<MemCap> {
    if let Some(r) = retouch_per_s {
        if !(r > 0.0 && r <= 1000.0) {
            return Err(Error::Invalid {
                what: "retouch rate",
                reason: format!("{r} passes/s is not within (0, 1000]"),
            });
        }
    }
    let limit = cgroup::memory_limit(&ctx.root)?;
    let bytes = resolve_size(size, &limit, cgroup::self_rss())?;
    let len = usize::try_from(bytes).map_err(|_| Error::Invalid {
        what: "size",
        reason: format!("{bytes} bytes does not fit in memory"),
    })?;
    let map = Arc::new(Mapping::new(len)?);
    let touched = Arc::new(AtomicU64::new(0));
    let filled_after = Arc::new(AtomicU64::new(0));
    let (m, t, f, stop) = (
        map.clone(),
        touched.clone(),
        filled_after.clone(),
        ctx.stop.clone(),
    );
    let handle = std::thread::Builder::new()
        .name("memcap".into())
        .spawn(move || filler(m, t, f, retouch_per_s, stop))
        .map_err(|e| Error::Spawn {
            program: "memcap thread".into(),
            source: e,
        })?;
    Ok(MemCap {
        bytes,
        limit,
        touched,
        map,
        filled_after,
        handle: Some(handle),
        retouch_per_s,
        stop: ctx.stop.clone(),
    })
}

impl MemCap {
    fn details(&self) -> Map<String, Value> {
        let filled = self.filled_after.load(Ordering::Relaxed);
        details([
            ("touched_bytes", json!(self.touched.load(Ordering::Relaxed))),
            ("block_resident_bytes", json!(self.map.resident_bytes())),
            ("limit_bytes", json!(self.limit.bytes)),
            ("limit_source", json!(self.limit.source)),
            (
                "fill_s",
                if filled > 0 {
                    json!((filled - 1) as f64 / 1000.0)
                } else {
                    Value::Null
                },
            ),
            ("retouch_per_s", json!(self.retouch_per_s)),
        ])
    }
}

impl Active for MemCap {
    fn kind(&self) -> &'static str {
        "memcap"
    }
    fn unit(&self) -> &'static str {
        "bytes"
    }
    fn target(&self) -> f64 {
        self.bytes as f64
    }
    fn sample(&mut self) -> (f64, Map<String, Value>) {
        (cgroup::self_rss() as f64, self.details())
    }
    fn finish(mut self: Box<Self>) -> (f64, Map<String, Value>) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let rss = cgroup::self_rss() as f64;
        let d = self.details();
        let _ = self.map.len; // the mapping is unmapped when self drops, after the final figure
        (rss, d)
    }
    fn failure(&mut self) -> Option<String> {
        // The filler holds the pages (and re-touches them): it only ends with the stop.
        let finished = self.handle.as_ref().map(JoinHandle::is_finished);
        ended_early(finished, &self.stop)
            .map(|_| "the memcap filler thread ended before the stop (it panicked)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(bytes: u64) -> MemoryLimit {
        MemoryLimit {
            bytes,
            source: "/sys/fs/cgroup/memory.max".into(),
            cgroup: true,
        }
    }

    #[test]
    fn sizes_against_the_limit() {
        let gib = limit(1 << 30);
        assert_eq!(
            resolve_size(Size::PercentOfLimit(50.0), &gib, 0).unwrap(),
            512 << 20
        );
        assert_eq!(resolve_size(Size::Bytes(1000), &gib, 0).unwrap(), 1000);
        // 100 % of a cgroup limit leaves no room for the process itself: refused, not OOM-killed.
        let e = resolve_size(Size::PercentOfLimit(100.0), &gib, 3 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most") && e.contains("nothing was allocated"),
            "{e}"
        );
        // Host memory (no cgroup limit): only the limit itself applies.
        let host = MemoryLimit {
            bytes: 1 << 30,
            source: "/proc/meminfo MemTotal".into(),
            cgroup: false,
        };
        assert_eq!(
            resolve_size(Size::PercentOfLimit(100.0), &host, 3 << 20).unwrap(),
            1 << 30
        );
        let e = resolve_size(Size::Bytes(2 << 30), &gib, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exceeds the memory limit")
                && e.contains("memory.max")
                && e.contains("nothing was allocated"),
            "{e}"
        );
    }

    #[test]
    fn fills_and_holds_with_real_pages() {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            root: "/".into(),
            stop: stop.clone(),
            duration: None,
        };
        let mut m = start(&ctx, Size::Bytes(64 << 20), None).unwrap();
        let t0 = Instant::now();
        while m.touched.load(Ordering::Relaxed) < 64 << 20 && t0.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (rss, d) = m.sample();
        // The block itself is resident (mincore), and the process RSS includes it.
        assert_eq!(d["block_resident_bytes"], 64 << 20, "{d:?}");
        assert!(rss as u64 >= 64 << 20, "rss {rss}");
        assert_eq!(d["touched_bytes"], 64 << 20);
        stop.store(true, Ordering::SeqCst);
        Box::new(m).finish();
    }
}
