//! Memory-bandwidth stressor: each worker, pinned to an allowed CPU, streams a STREAM "copy"
//! between two arrays whose total is at least 4x the last-level cache (so the traffic goes to DRAM,
//! not the LLC), in 256 KiB chunks. Bytes are counted the STREAM way (read + written). With a
//! GB/s target each worker paces itself with a token bucket checked after every chunk (sleeping
//! when ahead, never accumulating more than 50 ms of credit). The destination is passed to
//! `black_box` after every chunk so an optimiser cannot drop the copies.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::memcap::RESERVE;
use super::{details, ended_early, round, Active, Ctx};
use crate::cgroup::MemoryLimit;
use crate::error::{Error, Result};
use crate::units::Rate;
use crate::{cgroup, geometry};

/// Elements (u64) per chunk: 256 KiB per array side.
const CHUNK: usize = 32 * 1024;
/// Credit a paced worker may bank when it falls behind.
const MAX_CREDIT: Duration = Duration::from_millis(50);

/// Token-bucket pacing: given bytes done since `t0`, the rate and the elapsed time, how long to
/// sleep now (zero when not ahead by at least 1 ms), and whether `t0` must move forward because the
/// worker is more than `MAX_CREDIT` (50 ms) behind. Pure, so it is tested without a clock.
pub fn pace(done: f64, bytes_per_s: f64, elapsed: Duration) -> (Duration, Option<Duration>) {
    let allowed = bytes_per_s * elapsed.as_secs_f64();
    if done > allowed {
        let ahead = Duration::from_secs_f64((done - allowed) / bytes_per_s);
        if ahead >= Duration::from_millis(1) {
            return (ahead, None);
        }
        return (Duration::ZERO, None);
    }
    let behind = Duration::from_secs_f64((allowed - done) / bytes_per_s);
    if behind > MAX_CREDIT {
        return (Duration::ZERO, Some(behind - MAX_CREDIT));
    }
    (Duration::ZERO, None)
}

fn worker(
    cpu: usize,
    elems: usize,
    per_worker_bps: Option<f64>,
    bytes: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let _ = cgroup::pin_current_thread(cpu);
    // Allocate on the worker's CPU (first touch places pages near it) and write every element.
    let mut a: Vec<u64> = Vec::new();
    let mut b: Vec<u64> = Vec::new();
    if a.try_reserve_exact(elems).is_err() || b.try_reserve_exact(elems).is_err() {
        return 0;
    }
    let mut i = 0;
    while i < elems {
        if stop.load(Ordering::Relaxed) {
            return 0;
        }
        let end = (i + CHUNK).min(elems);
        a.extend((i..end).map(|x| x as u64 | 1));
        b.extend((i..end).map(|x| !(x as u64)));
        i = end;
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let mut sink = 0u64;
    let mut t0 = Instant::now();
    let mut done_since_t0 = 0f64;
    let mut forward = true;
    'run: loop {
        let (src, dst) = if forward { (&a, &mut b) } else { (&b, &mut a) };
        let mut off = 0;
        while off < elems {
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
            let end = (off + CHUNK).min(elems);
            dst[off..end].copy_from_slice(&src[off..end]);
            sink = sink.wrapping_add(black_box(&mut dst[off..end])[0]);
            let moved = ((end - off) * 16) as u64; // 8 bytes read + 8 written per element
            bytes.fetch_add(moved, Ordering::Relaxed);
            off = end;
            if let Some(bps) = per_worker_bps {
                done_since_t0 += moved as f64;
                let (sleep, shift) = pace(done_since_t0, bps, t0.elapsed());
                if let Some(s) = shift {
                    t0 += s;
                }
                if !sleep.is_zero() && crate::stop::sleep_polling(&stop, sleep) {
                    break 'run;
                }
            }
        }
        forward = !forward;
    }
    black_box(sink)
}

/// A running memory-bandwidth stressor.
pub(crate) struct MemBw {
    rate: Rate,
    working_set: u64,
    /// The default working set was cut to fit the memory limit (below 4x the LLC).
    capped: bool,
    llc: u64,
    cpus: Vec<usize>,
    bytes: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
    handles: Vec<JoinHandle<u64>>,
    start: Instant,
    last: Instant,
    last_bytes: u64,
    first_ready: Option<(Instant, u64)>,
    stop: Arc<AtomicBool>,
    /// The first runtime failure seen (kept for the rest of the run).
    failed: Option<String>,
}

/// The default per-worker working set: 4x the LLC (at least 64 MiB), so the traffic goes to
/// DRAM; under a cgroup memory limit that cannot hold it (a 480 MiB LLC wants 1.9 GiB per
/// worker), as much as fits beside this process and [`RESERVE`], at least 64 MiB. A stressor that
/// runs with part of its traffic in the LLC (reported as `working_set_capped`) serves a
/// pod-limited experiment better than one that refuses to start. Returns the size and whether it
/// was cut.
fn default_working_set(llc: u64, workers: u64, limit: &MemoryLimit, own: u64) -> (u64, bool) {
    let wanted = (4 * llc).max(64 << 20);
    if !limit.cgroup {
        return (wanted, false);
    }
    let room = limit.bytes.saturating_sub(own + RESERVE) / workers.max(1);
    // Round down to whole chunks of both arrays.
    let fits = room / (16 * CHUNK as u64) * (16 * CHUNK as u64);
    if wanted <= fits {
        (wanted, false)
    } else {
        (fits.max(64 << 20), true)
    }
}

/// Starts `workers` workers (0 = one per effective CPU). `working_set` overrides the per-worker
/// working set (default: [`default_working_set`]).
pub(crate) fn start(
    ctx: &Ctx,
    rate: Rate,
    workers: usize,
    working_set: Option<u64>,
) -> Result<MemBw> {
    if let Rate::GBps(r) = rate {
        if !(r > 0.0 && r < 1e6) {
            return Err(Error::Invalid {
                what: "rate",
                reason: format!("{r} GB/s is not a positive rate"),
            });
        }
    }
    let budget = cgroup::cpu_budget(&ctx.root)?;
    let n = if workers == 0 {
        budget.effective
    } else {
        workers
    };
    if n > 1024 {
        return Err(Error::Invalid {
            what: "workers",
            reason: format!("{n} is more than 1024"),
        });
    }
    let llc = geometry::llc_size_or_default(&ctx.root, budget.allowed[0]);
    let limit = cgroup::memory_limit(&ctx.root)?;
    let (ws, capped) = match working_set {
        Some(ws) => (ws, false),
        None => default_working_set(llc, n as u64, &limit, cgroup::self_rss()),
    };
    let elems = (ws / 16).max(CHUNK as u64) as usize; // two arrays of u64
    let ws = elems as u64 * 16;
    let total = ws * n as u64;
    if total > limit.bytes {
        return Err(Error::AboveMemoryLimit {
            requested: total,
            limit: limit.bytes,
            source_name: limit.source,
        });
    }
    let per_worker_bps = match rate {
        Rate::Max => None,
        Rate::GBps(r) => Some(r * 1e9 / n as f64),
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let mut cpus = Vec::new();
    for i in 0..n {
        let cpu = budget.allowed[i % budget.allowed.len()];
        cpus.push(cpu);
        let (b, r, s) = (bytes.clone(), ready.clone(), ctx.stop.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("membw-{i}"))
                .spawn(move || worker(cpu, elems, per_worker_bps, b, r, s))
                .map_err(|e| Error::Spawn {
                    program: "membw worker thread".into(),
                    source: e,
                })?,
        );
    }
    let now = Instant::now();
    Ok(MemBw {
        rate,
        working_set: ws,
        capped,
        llc,
        cpus,
        bytes,
        ready,
        handles,
        start: now,
        last: now,
        last_bytes: 0,
        first_ready: None,
        stop: ctx.stop.clone(),
        failed: None,
    })
}

impl MemBw {
    fn details(&self) -> Map<String, Value> {
        details([
            ("workers", json!(self.handles.len())),
            ("cpus", json!(self.cpus)),
            ("ready_workers", json!(self.ready.load(Ordering::Relaxed))),
            ("working_set_bytes", json!(self.working_set)),
            ("working_set_capped", json!(self.capped)),
            ("llc_bytes", json!(self.llc)),
            ("rate", json!(self.rate.to_string())),
        ])
    }
}

impl Active for MemBw {
    fn kind(&self) -> &'static str {
        "membw"
    }
    fn unit(&self) -> &'static str {
        "GB/s"
    }
    fn target(&self) -> f64 {
        match self.rate {
            Rate::Max => 0.0,
            Rate::GBps(r) => r,
        }
    }
    fn sample(&mut self) -> (f64, Map<String, Value>) {
        let now = Instant::now();
        let b = self.bytes.load(Ordering::Relaxed);
        let gbps = (b - self.last_bytes) as f64 / (now - self.last).as_secs_f64().max(1e-9) / 1e9;
        if self.first_ready.is_none()
            && self.ready.load(Ordering::Relaxed) as usize == self.handles.len()
        {
            self.first_ready = Some((now, b));
        }
        self.last = now;
        self.last_bytes = b;
        (round(gbps, 3), self.details())
    }
    fn finish(self: Box<Self>) -> (f64, Map<String, Value>) {
        let now = Instant::now();
        let b = self.bytes.load(Ordering::Relaxed);
        // Whole-run average from the moment every worker had its arrays ready (set-up excluded);
        // from the start when that moment was never sampled.
        let (t, b0) = self.first_ready.unwrap_or((self.start, 0));
        let gbps = (b - b0) as f64 / (now - t).as_secs_f64().max(1e-9) / 1e9;
        let mut d = self.details();
        d.insert("bytes_moved".into(), json!(b));
        for h in self.handles {
            let _ = h.join();
        }
        (round(gbps, 3), d)
    }
    fn failure(&mut self) -> Option<String> {
        if self.failed.is_none() {
            let finished = self.handles.iter().map(JoinHandle::is_finished);
            if let Some(i) = ended_early(finished, &self.stop) {
                // A worker only returns early when its arrays could not be allocated (or it
                // panicked): the rest of the stressor moves fewer bytes than asked.
                self.failed = Some(format!(
                    "membw worker {i} (CPU {}) ended before the stop: it could not allocate its \
                     two arrays of {} bytes each (or panicked)",
                    self.cpus[i],
                    self.working_set / 2
                ));
            }
        }
        self.failed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_working_set_is_4x_llc_unless_a_cgroup_limit_cannot_hold_it() {
        const MIB: u64 = 1 << 20;
        let host = MemoryLimit {
            bytes: 1 << 40,
            source: "/proc/meminfo MemTotal".into(),
            cgroup: false,
        };
        let pod = |bytes| MemoryLimit {
            bytes,
            source: "/sys/fs/cgroup/memory.max".into(),
            cgroup: true,
        };
        // 32 MiB LLC: 128 MiB, limited or not.
        assert_eq!(
            default_working_set(32 * MIB, 1, &host, 0),
            (128 * MIB, false)
        );
        assert_eq!(
            default_working_set(32 * MIB, 1, &pod(512 * MIB), 10 * MIB),
            (128 * MIB, false)
        );
        // 480 MiB LLC: 1.9 GiB on the host; in a 512 MiB pod, what fits beside 10 MiB and the
        // reserve, in whole chunks.
        assert_eq!(
            default_working_set(480 * MIB, 1, &host, 0),
            (1920 * MIB, false)
        );
        let (ws, capped) = default_working_set(480 * MIB, 1, &pod(512 * MIB), 10 * MIB);
        assert!(capped);
        assert!(
            ws <= 512 * MIB - 10 * MIB - RESERVE && ws > 480 * MIB,
            "{ws}"
        );
        assert_eq!(ws % (16 * CHUNK as u64), 0);
        // Two workers share the room.
        let (ws2, _) = default_working_set(480 * MIB, 2, &pod(512 * MIB), 10 * MIB);
        assert!(
            ws2 * 2 <= 512 * MIB - 10 * MIB - RESERVE && ws2 > 240 * MIB,
            "{ws2}"
        );
        // Never below 64 MiB (the limit check then refuses what does not fit).
        assert_eq!(
            default_working_set(480 * MIB, 1, &pod(40 * MIB), 0),
            (64 * MIB, true)
        );
    }

    #[test]
    fn pacing() {
        let gb = 1e9;
        // 10 ms of work done after 5 ms: sleep 5 ms.
        let (s, shift) = pace(0.01 * gb, gb, Duration::from_millis(5));
        assert_eq!((s.as_millis(), shift), (5, None));
        // Slightly ahead (< 1 ms): keep going.
        assert_eq!(
            pace(0.0105 * gb, gb, Duration::from_millis(10)).0,
            Duration::ZERO
        );
        // 200 ms behind: no sleep, move t0 by 150 ms (keep 50 ms of credit).
        let (s, shift) = pace(0.0, gb, Duration::from_millis(200));
        assert_eq!(s, Duration::ZERO);
        assert_eq!(shift.unwrap().as_millis(), 150);
    }

    #[test]
    fn paced_run_moves_bytes_near_target() {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            root: "/".into(),
            stop: stop.clone(),
            duration: None,
        };
        let mut m = start(&ctx, Rate::GBps(1.0), 1, Some(8 << 20)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        m.sample();
        std::thread::sleep(Duration::from_millis(500));
        let (gbps, d) = m.sample();
        stop.store(true, Ordering::SeqCst);
        let _ = Box::new(m).finish();
        assert!((0.3..=1.5).contains(&gbps), "{gbps}");
        assert_eq!(d["working_set_bytes"], 8 << 20);
    }

    #[test]
    fn refuses_more_than_the_limit() {
        let ctx = Ctx {
            root: "/".into(),
            stop: Arc::new(AtomicBool::new(true)),
            duration: None,
        };
        let e = start(&ctx, Rate::Max, 1, Some(1 << 62)).err().unwrap();
        assert!(matches!(e, Error::AboveMemoryLimit { .. }), "{e}");
    }
}
