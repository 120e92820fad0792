//! CPU stressor: N workers, each pinned to one allowed CPU and held at a target utilisation by a
//! duty cycle with a 10 ms period. Each period the worker spins (integer work folded into a sink)
//! until its own thread CPU time has grown by `load x period`, then sleeps to the period's end. A
//! small carried credit (at most two periods) makes up for preemption without turning the worker
//! into a spinner when a neighbour shares the core. The achieved utilisation is measured from each
//! worker's thread CPU clock, not assumed.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{details, ended_early, round, Active, Ctx};
use crate::cgroup;
use crate::error::{Error, Result};

/// Duty-cycle period.
pub const PERIOD: Duration = Duration::from_millis(10);

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Busy work that an optimiser cannot remove: a xorshift chain whose result goes to a sink.
fn spin_chunk(state: &mut u64) {
    let mut x = *state;
    for _ in 0..256 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    *state = black_box(x);
}

/// The duty-cycle plan of one period: how long to stay busy given the load and the carried credit.
/// Returns the CPU time to spend busy in this period (split out to be testable).
pub fn plan_busy(load: f64, credit: Duration) -> Duration {
    PERIOD.mul_f64(load) + credit
}

/// Credit carried to the next period: what was owed minus what was used, bounded to
/// [-1 period, +2 periods] so that a long preemption does not cause a long burst.
pub fn carry(owed: Duration, used: Duration) -> (Duration, Duration) {
    // Returned as (positive credit, negative credit) to stay in Duration (unsigned).
    if owed >= used {
        ((owed - used).min(PERIOD * 2), Duration::ZERO)
    } else {
        (Duration::ZERO, (used - owed).min(PERIOD))
    }
}

fn worker(cpu: usize, load: f64, stop: Arc<AtomicBool>) {
    let _ = cgroup::pin_current_thread(cpu);
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ cpu as u64;
    let start = Instant::now();
    let mut k: u32 = 0;
    let mut credit = Duration::ZERO;
    let mut debt = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let period_end = start + PERIOD * k;
        let owed = plan_busy(load, credit).saturating_sub(debt);
        let cpu0 = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        let owed_ns = owed.as_nanos() as u64;
        if load >= 1.0 {
            // Full load: spin to the period's end, no clock-comparison arithmetic needed.
            while Instant::now() < period_end {
                spin_chunk(&mut state);
            }
        } else {
            while clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0 < owed_ns
                && Instant::now() < period_end
            {
                spin_chunk(&mut state);
            }
        }
        let used = Duration::from_nanos(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0);
        (credit, debt) = carry(owed, used);
        let now = Instant::now();
        if now < period_end {
            std::thread::sleep(period_end - now);
        } else {
            // Overran (preempted): realign to the grid without trying to replay missed periods.
            k = ((now - start).as_nanos() / PERIOD.as_nanos()) as u32;
        }
    }
}

struct Worker {
    cpu: usize,
    clock: libc::clockid_t,
    handle: JoinHandle<()>,
}

/// A running CPU stressor.
pub(crate) struct CpuStress {
    load_pct: f64,
    workers: Vec<Worker>,
    quota: Option<f64>,
    start: Instant,
    last: Instant,
    last_cpu: u64,
    stop: Arc<AtomicBool>,
    /// The first runtime failure seen (kept: it stays true for the rest of the run).
    failed: Option<String>,
}

impl CpuStress {
    fn cpu_ns(&self) -> u64 {
        self.workers.iter().map(|w| clock_ns(w.clock)).sum()
    }

    /// The per-worker utilisation the quota allows, when it is below the target.
    fn quota_cap(&self) -> Option<f64> {
        let cap = self.quota? * 100.0 / self.workers.len() as f64;
        (cap < self.load_pct).then(|| round(cap, 2))
    }

    fn details(&self, total_pct: f64) -> Map<String, Value> {
        details([
            ("workers", json!(self.workers.len())),
            (
                "cpus",
                json!(self.workers.iter().map(|w| w.cpu).collect::<Vec<_>>()),
            ),
            ("total_pct", json!(round(total_pct, 2))),
            ("quota_cores", json!(self.quota)),
            // When the CFS quota cannot give every worker its load, say so: achieved will be lower.
            ("quota_caps_pct", json!(self.quota_cap())),
        ])
    }
}

/// Starts `workers` workers (0 = one per effective CPU) at `load_pct`, on `cpus` or all allowed CPUs.
pub(crate) fn start(
    ctx: &Ctx,
    workers: usize,
    load_pct: f64,
    cpus: Option<&[usize]>,
) -> Result<CpuStress> {
    if !(0.0..=100.0).contains(&load_pct) || load_pct.is_nan() {
        return Err(Error::Invalid {
            what: "load",
            reason: format!("{load_pct} is not within 0..100 %"),
        });
    }
    let budget = cgroup::cpu_budget(&ctx.root)?;
    let cpus: Vec<usize> = match cpus {
        Some(list) if !list.is_empty() => {
            if !list.iter().all(|c| budget.allowed.contains(c)) {
                return Err(Error::CpusNotAllowed {
                    requested: list.to_vec(),
                    allowed: budget.allowed.clone(),
                });
            }
            list.to_vec()
        }
        _ => budget.allowed.clone(),
    };
    let n = if workers == 0 {
        budget.effective.min(cpus.len()).max(1)
    } else {
        workers
    };
    if n > 4096 {
        return Err(Error::Invalid {
            what: "workers",
            reason: format!("{n} is more than 4096"),
        });
    }
    let load = load_pct / 100.0;
    let mut list = Vec::with_capacity(n);
    for i in 0..n {
        let cpu = cpus[i % cpus.len()];
        let stop = ctx.stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("cpu-{i}"))
            .spawn(move || worker(cpu, load, stop))
            .map_err(|e| Error::Spawn {
                program: "cpu worker thread".into(),
                source: e,
            })?;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: a live thread's pthread_t; clock receives its CPU-time clock id.
        let rc = unsafe {
            use std::os::unix::thread::JoinHandleExt;
            libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut clock)
        };
        if rc != 0 {
            return Err(Error::Sys {
                call: "pthread_getcpuclockid".into(),
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        list.push(Worker { cpu, clock, handle });
    }
    let now = Instant::now();
    let mut s = CpuStress {
        load_pct,
        workers: list,
        quota: budget.quota.map(|q| q.cores),
        start: now,
        last: now,
        last_cpu: 0,
        stop: ctx.stop.clone(),
        failed: None,
    };
    s.last_cpu = s.cpu_ns();
    Ok(s)
}

impl Active for CpuStress {
    fn kind(&self) -> &'static str {
        "cpu"
    }
    fn unit(&self) -> &'static str {
        "%"
    }
    fn target(&self) -> f64 {
        self.load_pct
    }
    fn sample(&mut self) -> (f64, Map<String, Value>) {
        let now = Instant::now();
        let cpu = self.cpu_ns();
        let wall = (now - self.last).as_nanos().max(1) as f64;
        let total = (cpu.saturating_sub(self.last_cpu)) as f64 / wall * 100.0;
        self.last = now;
        self.last_cpu = cpu;
        let per = total / self.workers.len() as f64;
        (round(per, 2), self.details(total))
    }
    fn finish(self: Box<Self>) -> (f64, Map<String, Value>) {
        // Read the clocks before joining: a joined thread's clock id is no longer valid.
        let cpu = self.cpu_ns();
        let wall = self.start.elapsed().as_nanos().max(1) as f64;
        let total = cpu as f64 / wall * 100.0;
        let per = total / self.workers.len() as f64;
        let d = self.details(total);
        for w in self.workers {
            let _ = w.handle.join();
        }
        (round(per, 2), d)
    }
    fn failure(&mut self) -> Option<String> {
        if self.failed.is_none() {
            let finished = self.workers.iter().map(|w| w.handle.is_finished());
            if let Some(i) = ended_early(finished, &self.stop) {
                self.failed = Some(format!(
                    "worker cpu-{i} (CPU {}) ended before the stop (it panicked); {} of {} workers \
                     are left",
                    self.workers[i].cpu,
                    self.workers.iter().filter(|w| !w.handle.is_finished()).count(),
                    self.workers.len()
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
    fn duty_cycle_arithmetic() {
        assert_eq!(plan_busy(0.5, Duration::ZERO), Duration::from_millis(5));
        assert_eq!(
            plan_busy(0.1, Duration::from_millis(1)),
            Duration::from_millis(2)
        );
        // Under-served: credit carried, bounded to two periods.
        assert_eq!(
            carry(Duration::from_millis(5), Duration::from_millis(2)),
            (Duration::from_millis(3), Duration::ZERO)
        );
        assert_eq!(
            carry(Duration::from_millis(50), Duration::ZERO).0,
            PERIOD * 2
        );
        // Over-served (a clock read overshot): debt, bounded to one period.
        assert_eq!(
            carry(Duration::from_millis(5), Duration::from_millis(6)),
            (Duration::ZERO, Duration::from_millis(1))
        );
        assert_eq!(carry(Duration::ZERO, Duration::from_millis(50)).1, PERIOD);
    }

    #[test]
    fn refuses_cpus_outside_the_allowed_set() {
        let ctx = Ctx {
            root: "/".into(),
            stop: Arc::new(AtomicBool::new(false)),
            duration: None,
        };
        let e = start(&ctx, 1, 50.0, Some(&[100_000])).err().unwrap();
        assert!(matches!(e, Error::CpusNotAllowed { .. }), "{e}");
        assert!(start(&ctx, 1, 150.0, None).is_err());
    }

    #[test]
    fn half_load_is_measured_near_half() {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            root: "/".into(),
            stop: stop.clone(),
            duration: None,
        };
        let mut s = start(&ctx, 1, 50.0, None).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let (pct, d) = s.sample();
        stop.store(true, Ordering::SeqCst);
        let (total, _) = Box::new(s).finish();
        // Generous bounds: the test machine is shared.
        assert!((5.0..=80.0).contains(&pct), "{pct}");
        assert!((5.0..=80.0).contains(&total), "{total}");
        assert_eq!(d["workers"], 1);
    }
}
