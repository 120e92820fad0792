//! Cache stressor: a footprint of `fraction x` the size of one cache level (read from sysfs for the
//! CPU the worker is pinned to), walked as a random cyclic pointer chain over its cache lines. The
//! random order defeats the prefetchers, every line is visited once per cycle and written (so lines
//! stay resident and dirty), and the chain's position is folded into a sink.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{details, ended_early, round, Active, Ctx};
use crate::cgroup;
use crate::error::{Error, Result};
use crate::geometry::{self, CacheInfo, CacheLevel};

/// One 64-byte line: the next line's index and a counter that is written on every visit.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line {
    next: u64,
    count: u64,
    _pad: [u64; 6],
}

/// A random cyclic permutation of `0..n` (Sattolo's algorithm) from a xorshift generator: the
/// chain `i -> next[i]` visits every index once per cycle. Hand-written to avoid a `rand`
/// dependency for a dozen lines.
pub fn cyclic_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        order.swap(i, j);
    }
    // order is a single cycle; next[order[k]] = order[k+1].
    let mut next = vec![0; n];
    for k in 0..n {
        next[order[k]] = order[(k + 1) % n];
    }
    next
}

/// Footprint in bytes for `fraction` of a cache, a whole number of lines (at least one).
pub fn footprint(cache: &CacheInfo, fraction: f64) -> u64 {
    let lines = ((cache.size as f64 * fraction) / cache.line_size as f64)
        .floor()
        .max(1.0) as u64;
    lines * cache.line_size
}

fn worker(
    cpu: usize,
    lines: usize,
    stride: usize,
    accesses: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let _ = cgroup::pin_current_thread(cpu);
    let next = cyclic_permutation(lines, 0x2545_F491_4F6C_DD1D ^ lines as u64);
    let mut buf = vec![
        Line {
            next: 0,
            count: 0,
            _pad: [0; 6]
        };
        lines * stride
    ];
    for (i, n) in next.iter().enumerate() {
        buf[i * stride].next = (*n * stride) as u64;
    }
    let mut idx = 0usize;
    let mut sink = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..4096 {
            let line = &mut buf[idx];
            line.count = line.count.wrapping_add(1);
            sink = sink.wrapping_add(line.count);
            idx = line.next as usize;
        }
        accesses.fetch_add(4096, Ordering::Relaxed);
        idx = black_box(idx);
    }
    black_box(sink)
}

/// A running cache stressor.
pub(crate) struct CacheStress {
    level: CacheLevel,
    cache: CacheInfo,
    cpu: usize,
    bytes: u64,
    lines: u64,
    accesses: Arc<AtomicU64>,
    handle: JoinHandle<u64>,
    start: Instant,
    last: Instant,
    last_acc: u64,
    stop: Arc<AtomicBool>,
}

/// Reads the cache geometry of the first allowed CPU and starts the walker there.
pub(crate) fn start(ctx: &Ctx, level: CacheLevel, fraction: f64) -> Result<CacheStress> {
    if !(fraction > 0.0 && fraction <= 16.0) {
        return Err(Error::Invalid {
            what: "fraction",
            reason: format!("{fraction} is not within (0, 16]"),
        });
    }
    let cpu = cgroup::allowed_cpus()?[0];
    let caches = geometry::read_caches(&ctx.root, cpu)?;
    let cache = geometry::select(&caches, level).cloned().ok_or_else(|| {
        Error::file(
            geometry::cache_dir(&ctx.root, cpu),
            format!("no {} cache listed", level.as_str()),
        )
    })?;
    let bytes = footprint(&cache, fraction);
    let limit = cgroup::memory_limit(&ctx.root)?;
    if bytes > limit.bytes {
        return Err(Error::AboveMemoryLimit {
            requested: bytes,
            limit: limit.bytes,
            source_name: limit.source,
        });
    }
    let stride = (cache.line_size as usize / 64).max(1);
    let lines = (bytes / cache.line_size) as usize;
    let accesses = Arc::new(AtomicU64::new(0));
    let (a, s) = (accesses.clone(), ctx.stop.clone());
    let handle = std::thread::Builder::new()
        .name("cache".into())
        .spawn(move || worker(cpu, lines, stride, a, s))
        .map_err(|e| Error::Spawn {
            program: "cache worker thread".into(),
            source: e,
        })?;
    let now = Instant::now();
    Ok(CacheStress {
        level,
        cache,
        cpu,
        bytes,
        lines: lines as u64,
        accesses,
        handle,
        start: now,
        last: now,
        last_acc: 0,
        stop: ctx.stop.clone(),
    })
}

impl CacheStress {
    fn details(&self, accesses_per_s: f64) -> Map<String, Value> {
        details([
            ("level", json!(self.level.as_str())),
            ("cache_index", json!(self.cache.index)),
            ("cache_bytes", json!(self.cache.size)),
            ("line_bytes", json!(self.cache.line_size)),
            ("cpu", json!(self.cpu)),
            ("accesses_per_s", json!(round(accesses_per_s, 0))),
            (
                "passes_per_s",
                json!(round(accesses_per_s / self.lines as f64, 2)),
            ),
        ])
    }

    /// Bytes of the footprint visited given `accesses` in an interval: every line once per cycle.
    fn visited(&self, accesses: u64) -> f64 {
        (accesses.min(self.lines) * self.cache.line_size) as f64
    }
}

impl Active for CacheStress {
    fn kind(&self) -> &'static str {
        "cache"
    }
    fn unit(&self) -> &'static str {
        "bytes"
    }
    fn target(&self) -> f64 {
        self.bytes as f64
    }
    fn sample(&mut self) -> (f64, Map<String, Value>) {
        let now = Instant::now();
        let a = self.accesses.load(Ordering::Relaxed);
        let delta = a - self.last_acc;
        let rate = delta as f64 / (now - self.last).as_secs_f64().max(1e-9);
        self.last = now;
        self.last_acc = a;
        (self.visited(delta), self.details(rate))
    }
    fn finish(self: Box<Self>) -> (f64, Map<String, Value>) {
        let a = self.accesses.load(Ordering::Relaxed);
        let rate = a as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let d = self.details(rate);
        let v = self.visited(a);
        let _ = self.handle.join();
        (v, d)
    }
    fn failure(&mut self) -> Option<String> {
        // The one worker is the whole stressor: once it ended, nothing is held in the cache.
        ended_early([self.handle.is_finished()], &self.stop).map(|_| {
            format!(
                "the cache worker (CPU {}) ended before the stop (it panicked)",
                self.cpu
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_one_cycle() {
        for n in [1usize, 2, 3, 10, 768] {
            let next = cyclic_permutation(n, 42);
            let mut seen = vec![false; n];
            let mut i = 0;
            for _ in 0..n {
                assert!(!seen[i], "n={n}: revisited {i} early");
                seen[i] = true;
                i = next[i];
            }
            assert_eq!(i, 0);
            assert!(seen.iter().all(|s| *s));
        }
    }

    #[test]
    fn footprint_is_fraction_in_lines() {
        let c = CacheInfo {
            index: "index0".into(),
            level: 1,
            kind: geometry::CacheType::Data,
            size: 48 * 1024,
            line_size: 64,
            ways: None,
            shared_cpu_list: None,
        };
        assert_eq!(footprint(&c, 0.5), 24 * 1024);
        assert_eq!(footprint(&c, 1e-9), 64);
    }

    #[test]
    fn walks_a_fixture_l2() {
        let t = tempfile::tempdir().unwrap();
        let cpu = cgroup::allowed_cpus().unwrap()[0];
        geometry::tests::fixture(
            t.path(),
            cpu,
            &[
                ("index0", "1", "Instruction", "32K"),
                ("index1", "1", "Data", "32K"),
                ("index2", "2", "Unified", "256K"),
            ],
        );
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(t.path().join("proc/meminfo"), "MemTotal: 1048576 kB\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            root: t.path().into(),
            stop: stop.clone(),
            duration: None,
        };
        let mut s = start(&ctx, CacheLevel::L2, 0.5).unwrap();
        assert_eq!(s.target(), 128.0 * 1024.0);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (v, d) = s.sample();
        stop.store(true, Ordering::SeqCst);
        Box::new(s).finish();
        assert_eq!(v, 128.0 * 1024.0);
        assert_eq!(d["cache_index"], "index2");
        assert!(start(&ctx, CacheLevel::L1d, 0.0).is_err());
    }
}
