//! The stop signal: SIGTERM/SIGINT (or a programmatic trigger) set a flag that every worker polls
//! between small chunks of work, and wake the reporting loop at once through a self-pipe, so a
//! stressor stops within a few milliseconds instead of at its next report tick.
//!
//! Hand-written on libc (no signal crate in the workspace): the handler only stores to an atomic
//! and writes one byte to a pipe, both async-signal-safe.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the fd is a non-blocking pipe we own.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// A stop request shared by the reporting loop and the workers.
#[derive(Clone)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    read_fd: i32,
    write_fd: i32,
    signals: bool,
}

impl StopSignal {
    /// A stop signal triggered only by [`StopSignal::trigger`] (library use, tests).
    pub fn new() -> Result<Self> {
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(Error::sys("pipe2"));
        }
        Ok(StopSignal {
            flag: Arc::new(AtomicBool::new(false)),
            read_fd: fds[0],
            write_fd: fds[1],
            signals: false,
        })
    }

    /// A stop signal that SIGTERM and SIGINT also trigger (the `aefm-stress` binary). Call once.
    pub fn install() -> Result<Self> {
        let mut s = Self::new()?;
        s.signals = true;
        PIPE_WRITE.store(s.write_fd, Ordering::SeqCst);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: installing a handler that only touches atomics and write(2).
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as *const () as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                    return Err(Error::sys(format!("sigaction({sig})")));
                }
            }
        }
        Ok(s)
    }

    /// Requests a stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let b = 1u8;
        // SAFETY: non-blocking write of one byte to our pipe.
        unsafe { libc::write(self.write_fd, &b as *const u8 as *const libc::c_void, 1) };
    }

    /// True once a stop was requested (by trigger or signal).
    pub fn is_set(&self) -> bool {
        if self.signals && SIGNALLED.load(Ordering::SeqCst) {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag workers poll; set when a stop is requested (the reporting loop also sets it at the
    /// end of the duration).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Sleeps until `until` or a stop request, whichever comes first; true if stopped.
    pub fn wait_until(&self, until: Instant) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            let ms = (until - now).as_millis().clamp(1, 1000) as i32;
            let mut pfd = libc::pollfd {
                fd: self.read_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                let mut buf = [0u8; 16];
                // SAFETY: drain into a local buffer; non-blocking.
                unsafe {
                    libc::read(
                        self.read_fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                    )
                };
                if self.signals && SIGNALLED.load(Ordering::SeqCst) {
                    self.flag.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Sleeps for `d` or until a stop request; true if stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        self.wait_until(Instant::now() + d)
    }
}

/// Sleeps up to `d` in slices of at most 20 ms, returning early once `flag` is set; true if set.
/// Used by worker threads, which poll the flag rather than the pipe.
pub(crate) fn sleep_polling(flag: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if flag.load(Ordering::Relaxed) {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_a_waiter_early() {
        let s = StopSignal::new().unwrap();
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.trigger();
        });
        let start = Instant::now();
        assert!(s.wait_until(start + Duration::from_secs(20)));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(s.flag().load(Ordering::SeqCst));
        t.join().unwrap();
    }

    #[test]
    fn timeout_without_trigger() {
        let s = StopSignal::new().unwrap();
        assert!(!s.sleep(Duration::from_millis(20)));
        assert!(!s.is_set());
    }
}
