//! Sub-millisecond sleeps for the send schedule.
//!
//! tokio's timer wheel has 1 ms resolution, which would put wrk2's ~1 ms of timer slop back
//! into corrected latency. Each worker thread instead owns one Linux `timerfd` (nanosecond
//! resolution) driven through tokio's `AsyncFd`, and a heap of pending deadlines: the timerfd is
//! always armed for the earliest one. One descriptor per thread, not per connection, so 10 000
//! connections do not need 10 000 extra file descriptors. Hand-written because no maintained
//! crate offers a precise timer for a current-thread tokio runtime.
//!
//! Every wake-up costs a timer interrupt, an `epoll_wait` and a `timerfd_settime`, and on a
//! virtual machine the cross-core wake-ups that follow each lone send cost more than the send:
//! at tens of thousands of requests per second that is most of the generator's CPU. So the timer
//! has a **tolerance** `T`: it wakes at the earliest pending deadline, and every sleeper whose
//! deadline is within `T` of that moment leaves with it, **early, never late**. A request that
//! leaves early is timed from when it left (the run loop's rule), so grouping never inflates
//! corrected latency; only real delays (a busy generator, a full connection) do. A deadline
//! with no neighbour within `T` is hit exactly. wrk2's timer, for comparison, is 1 ms-grained
//! and always late.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

/// The least tolerance: arming a timer for a few µs costs more than it saves.
const MIN_TOLERANCE: Duration = Duration::from_micros(5);

struct Inner {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
    next_id: u64,
    armed: Option<Instant>,
    /// Expiries of the timerfd so far (what grouping saves is visible here).
    fires: u64,
    /// Running estimate of how late this thread runs after the timerfd expires (the kernel's
    /// and, on a virtual machine, the hypervisor's wake-up latency), in nanoseconds.
    wake_latency_ns: u64,
}

/// A per-thread precise timer. Clone handles share it; [`PreciseTimer::drive`] must be running
/// on the same thread (spawn it as a local task).
#[derive(Clone)]
pub struct PreciseTimer {
    inner: Rc<RefCell<Inner>>,
    fd: Rc<AsyncFd<OwnedFd>>,
    changed: Rc<Notify>,
    tolerance: Duration,
}

impl PreciseTimer {
    /// Creates the timerfd; must be called inside a tokio runtime with I/O enabled. Sleepers
    /// wake at most `tolerance` before their deadlines (see the module docs; at least 5 µs).
    pub fn new(tolerance: Duration) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked and owned below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the descriptor, so it stays open as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self {
            inner: Rc::new(RefCell::new(Inner {
                heap: BinaryHeap::new(),
                wakers: HashMap::new(),
                next_id: 0,
                armed: None,
                fires: 0,
                wake_latency_ns: 0,
            })),
            fd: Rc::new(fd),
            changed: Rc::new(Notify::new()),
            tolerance: tolerance.max(MIN_TOLERANCE),
        })
    }

    /// Sleeps until `deadline` (returns at once if it has passed).
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            timer: self.clone(),
            deadline,
            id: None,
        }
    }

    /// Arms the timerfd to fire after `after` (relative), or disarms it for `None`.
    fn arm(&self, after: Option<Duration>) {
        let value = match after {
            Some(d) => {
                let d = d.max(Duration::from_nanos(1));
                libc::timespec {
                    tv_sec: d.as_secs() as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                }
            }
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: valid fd and pointers to initialised structs.
        unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            );
        }
    }

    /// Wakes due sleepers and keeps the timerfd armed for the earliest pending deadline. Runs
    /// until the thread's run ends (the task is dropped).
    pub async fn drive(self) {
        loop {
            let next = self.fire_due();
            match next {
                Some(deadline) => {
                    // Expire early by the usual wake-up latency (within the tolerance), so the
                    // earliest sleeper runs at its deadline rather than tens of µs after it.
                    let lead = Duration::from_nanos(self.inner.borrow().wake_latency_ns)
                        .min(self.tolerance);
                    let at = deadline.checked_sub(lead).unwrap_or(deadline);
                    if self.inner.borrow().armed != Some(at) {
                        self.arm(Some(at.saturating_duration_since(Instant::now())));
                        self.inner.borrow_mut().armed = Some(at);
                    }
                }
                None => {
                    if self.inner.borrow().armed.is_some() {
                        self.arm(None);
                        self.inner.borrow_mut().armed = None;
                    }
                }
            }
            tokio::select! {
                guard = self.fd.readable() => {
                    // No read(2) of the expiry count: the timer is one-shot, every
                    // timerfd_settime resets the count, and with edge-triggered epoll each new
                    // expiry is a new event. Saves a syscall per wake-up.
                    if let Ok(mut guard) = guard {
                        guard.clear_ready();
                    }
                    let mut inner = self.inner.borrow_mut();
                    if let Some(at) = inner.armed.take() {
                        // Exponential average over the last ~8 wake-ups.
                        let late = Instant::now().saturating_duration_since(at).as_nanos();
                        let late = late.min(u128::from(u64::MAX)) as u64;
                        let avg = inner.wake_latency_ns;
                        inner.wake_latency_ns = avg - avg / 8 + late / 8;
                    }
                    inner.fires += 1;
                }
                _ = self.changed.notified() => {}
            }
        }
    }

    /// Wakes every sleeper whose deadline is within the tolerance; returns the next live
    /// deadline.
    fn fire_due(&self) -> Option<Instant> {
        let mut inner = self.inner.borrow_mut();
        let limit = Instant::now() + self.tolerance;
        loop {
            let Reverse((deadline, id)) = *inner.heap.peek()?;
            if !inner.wakers.contains_key(&id) {
                inner.heap.pop();
                continue;
            }
            if deadline > limit {
                return Some(deadline);
            }
            inner.heap.pop();
            if let Some(w) = inner.wakers.remove(&id) {
                w.wake();
            }
        }
    }
}

/// Future returned by [`PreciseTimer::sleep_until`].
pub struct Sleep {
    timer: PreciseTimer,
    deadline: Instant,
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() + self.timer.tolerance >= self.deadline {
            if let Some(id) = self.id.take() {
                self.timer.inner.borrow_mut().wakers.remove(&id);
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let mut inner = self.timer.inner.borrow_mut();
        match self.id {
            Some(id) if inner.wakers.contains_key(&id) => {
                inner.wakers.insert(id, cx.waker().clone());
            }
            _ => {
                // First poll, or woken early and already removed: (re-)register.
                let id = inner.next_id;
                inner.next_id += 1;
                inner.heap.push(Reverse((deadline, id)));
                inner.wakers.insert(id, cx.waker().clone());
                // Re-arm when this deadline is due before the armed wake-up (it may still
                // share it: the driver decides).
                let earlier = inner.armed.is_none_or(|a| deadline < a);
                drop(inner);
                self.id = Some(id);
                if earlier {
                    self.timer.changed.notify_one();
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut inner) = self.timer.inner.try_borrow_mut() {
                inner.wakers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a current-thread runtime inside a `LocalSet`, as a worker thread does.
    fn on_local_runtime(f: impl Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn sleeps_are_precise_and_ordered() {
        on_local_runtime(async {
            let tolerance = Duration::from_micros(20);
            let timer = PreciseTimer::new(tolerance).unwrap();
            tokio::task::spawn_local(timer.clone().drive());
            // Median lateness far below tokio's 1 ms granularity. The box is shared and noisy,
            // so one of three attempts must meet the bound.
            let mut medians = Vec::new();
            for _attempt in 0..3 {
                let start = Instant::now();
                let mut lateness = Vec::new();
                for i in 1..=50u64 {
                    let deadline = start + Duration::from_micros(300 * i);
                    timer.sleep_until(deadline).await;
                    let now = Instant::now();
                    assert!(now + tolerance >= deadline, "woke early");
                    lateness.push(now.saturating_duration_since(deadline));
                }
                lateness.sort();
                medians.push(lateness[25]);
                if lateness[25] < Duration::from_micros(300) {
                    break;
                }
            }
            assert!(
                medians.iter().any(|m| *m < Duration::from_micros(300)),
                "{medians:?}"
            );
            // Concurrent sleepers wake in deadline order.
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for (i, us) in [3000u64, 1000, 2000].into_iter().enumerate() {
                let (t, o) = (timer.clone(), order.clone());
                let d = Instant::now() + Duration::from_micros(us);
                handles.push(tokio::task::spawn_local(async move {
                    t.sleep_until(d).await;
                    o.borrow_mut().push(i);
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            assert_eq!(*order.borrow(), vec![1, 2, 0]);
        });
    }

    #[test]
    fn nearby_deadlines_share_a_wake_up_within_the_tolerance() {
        on_local_runtime(async {
            let tolerance = Duration::from_micros(50);
            let timer = PreciseTimer::new(tolerance).unwrap();
            tokio::task::spawn_local(timer.clone().drive());
            // Ten deadlines 20 µs apart: leaving up to 50 µs early, they fit in about four
            // wake-ups (a busy machine can only merge more). One at a time, they would take ten.
            let base = Instant::now() + Duration::from_millis(5);
            let woke = Rc::new(RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for i in 0..10u32 {
                let (t, w) = (timer.clone(), woke.clone());
                let deadline = base + Duration::from_micros(20) * i;
                handles.push(tokio::task::spawn_local(async move {
                    t.sleep_until(deadline).await;
                    w.borrow_mut().push((deadline, Instant::now()));
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            for (deadline, at) in woke.borrow().iter() {
                assert!(
                    *at + tolerance >= *deadline,
                    "woke more than the tolerance early"
                );
            }
            let fires = timer.inner.borrow().fires;
            assert!(
                (1..=5).contains(&fires),
                "{fires} wake-ups for 10 deadlines"
            );
        });
    }
}
