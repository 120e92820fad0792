//! The worker's only way to wait: two epoll sets and a nanosecond deadline.
//!
//! A worker sleeps in one of two ways. Most of the time nothing it sent is *blocking* a due send,
//! so it sleeps on the **quiet set** (just its wake-up eventfd) until the next send deadline:
//! a response that arrives meanwhile does not wake it, because the kernel stamps the response's
//! arrival time on the socket (see [`super::socket`]) and the worker reads it at its next wake-up
//! without losing precision. Only when a connection is due but still awaits a response, or a
//! connect or a long write is under way, does it sleep on the **full set** (every socket too),
//! so that the answer lets it send at once. At moderate rates this halves the wake-ups of a
//! request (one per send instead of one per send and one per response), and a wake-up is the
//! dearest thing a generator does on a virtual machine.
//!
//! Deadlines have nanosecond resolution: `epoll_pwait2` (Linux 5.11) where it exists, else a
//! `timerfd` in both sets. Hand-written over `libc` because mio (tokio's poller) rounds
//! timeouts up to milliseconds and has no notion of two interest sets sharing sockets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the wake-up eventfd in both sets.
pub(super) const WAKE: u64 = u64::MAX;
/// Token of the fallback timerfd in both sets.
const TIMER: u64 = u64::MAX - 1;

/// What a registration waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Interest {
    /// Readable (and hang-ups, which epoll always reports).
    Read,
    /// Readable or writable (a connect, a handshake or a write that did not fit).
    ReadWrite,
}

impl Interest {
    fn bits(self) -> u32 {
        match self {
            Interest::Read => (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            Interest::ReadWrite => (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32,
        }
    }
}

/// Wakes a worker from another thread (the coordinator's stop).
#[derive(Clone)]
pub(crate) struct Waker(Arc<OwnedFd>);

impl Waker {
    /// Makes the worker's next (or current) wait return at once.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The two epoll sets, the eventfd and (without `epoll_pwait2`) the timerfd.
pub(super) struct Poller {
    full: OwnedFd,
    quiet: OwnedFd,
    wake: Arc<OwnedFd>,
    /// `None` while `epoll_pwait2` works.
    timer: Option<OwnedFd>,
    events: Vec<libc::epoll_event>,
    /// The ready tokens of the last wait (kept to reuse its allocation).
    tokens: Vec<u64>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(r: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    cvt(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ctl(ep: &OwnedFd, op: libc::c_int, fd: RawFd, token: u64, bits: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: bits,
        u64: token,
    };
    // SAFETY: plain syscall on descriptors we own, with a live event struct.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) }).map(drop)
}

impl Poller {
    /// Creates the sets and the eventfd; probes `epoll_pwait2` once.
    pub(super) fn new(capacity: usize) -> io::Result<Poller> {
        // SAFETY: plain syscalls; results are checked and owned.
        let full = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let quiet = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let wake = owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        for ep in [&full, &quiet] {
            ctl(
                ep,
                libc::EPOLL_CTL_ADD,
                wake.as_raw_fd(),
                WAKE,
                libc::EPOLLIN as u32,
            )?;
        }
        let mut poller = Poller {
            full,
            quiet,
            wake: Arc::new(wake),
            timer: None,
            events: Vec::with_capacity(capacity.clamp(64, 4096)),
            tokens: Vec::with_capacity(capacity.clamp(64, 4096) + 1),
        };
        if !poller.pwait2_works() {
            poller.add_timerfd()?;
        }
        Ok(poller)
    }

    fn pwait2_works(&mut self) -> bool {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: an epoll set we own, a live buffer of one event, a live timespec.
        let r = unsafe { pwait2(self.quiet.as_raw_fd(), self.events.as_mut_ptr(), 1, &ts) };
        r >= 0
    }

    fn add_timerfd(&mut self) -> io::Result<()> {
        // SAFETY: plain syscall; checked and owned.
        let fd = owned(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        for ep in [&self.full, &self.quiet] {
            ctl(
                ep,
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                TIMER,
                libc::EPOLLIN as u32,
            )?;
        }
        self.timer = Some(fd);
        Ok(())
    }

    /// A handle that wakes this poller from any thread.
    pub(super) fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Adds a socket to the full set.
    pub(super) fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        ctl(&self.full, libc::EPOLL_CTL_ADD, fd, token, interest.bits())
    }

    /// Changes what a registered socket waits for.
    pub(super) fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        ctl(&self.full, libc::EPOLL_CTL_MOD, fd, token, interest.bits())
    }

    /// Waits until `deadline` (returns at once if it passed; `None`: no time limit), until a
    /// socket is ready (only with `sockets`: the full set), or until woken. Returns the ready
    /// tokens; [`WAKE`] among them means another thread called [`Waker::wake`].
    pub(super) fn wait(&mut self, deadline: Option<Instant>, sockets: bool) -> io::Result<&[u64]> {
        let ep = if sockets { &self.full } else { &self.quiet };
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let cap = self.events.capacity() as libc::c_int;
        let n = match (&self.timer, timeout) {
            (None, Some(t)) => {
                let ts = timespec(t);
                // SAFETY: live buffer of `cap` events and a live timespec.
                unsafe { pwait2(ep.as_raw_fd(), self.events.as_mut_ptr(), cap, &ts) }
            }
            (timer, t) => {
                let ms = match (timer, t) {
                    (Some(fd), Some(t)) if !t.is_zero() => {
                        arm(fd, t)?;
                        -1
                    }
                    (_, Some(_)) => 0,
                    (_, None) => -1,
                };
                // SAFETY: live buffer of `cap` events.
                unsafe { libc::epoll_wait(ep.as_raw_fd(), self.events.as_mut_ptr(), cap, ms) }
            }
        };
        let n = match cvt(n) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        // SAFETY: the kernel initialised the first `n` events.
        unsafe { self.events.set_len(n) };
        self.tokens.clear();
        let mut woken = false;
        for ev in &self.events {
            match ev.u64 {
                TIMER => {}
                WAKE => woken = true,
                token => self.tokens.push(token),
            }
        }
        if woken {
            self.drain_wake();
            self.tokens.push(WAKE);
        }
        Ok(&self.tokens)
    }

    /// Reads the ready sockets without sleeping.
    pub(super) fn ready_now(&mut self) -> io::Result<&[u64]> {
        self.wait(Some(Instant::now()), true)
    }

    fn drain_wake(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Arms the fallback timerfd `after` from now.
fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: timespec(Duration::ZERO),
        it_value: timespec(after.max(Duration::from_nanos(1))),
    };
    // SAFETY: our timerfd and a live itimerspec.
    cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) }).map(drop)
}

/// `epoll_pwait2(2)`: `epoll_wait` with a nanosecond timeout.
///
/// # Safety
/// `events` must point to `max` writable events and `ts` to a live timespec.
unsafe fn pwait2(
    ep: RawFd,
    events: *mut libc::epoll_event,
    max: libc::c_int,
    ts: *const libc::timespec,
) -> libc::c_int {
    libc::syscall(
        libc::SYS_epoll_pwait2,
        ep,
        events,
        max,
        ts,
        std::ptr::null::<libc::sigset_t>(),
        0usize,
    ) as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_timed_wait_ends_at_its_deadline_not_before() {
        let mut p = Poller::new(4).unwrap();
        for ms in [1u64, 3, 7] {
            let until = Instant::now() + Duration::from_millis(ms);
            assert!(p.wait(Some(until), false).unwrap().is_empty());
            assert!(Instant::now() >= until, "woke before the deadline");
        }
    }

    #[test]
    fn the_quiet_set_sleeps_through_sockets_the_full_set_does_not() {
        let mut p = Poller::new(4).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        p.add(client.as_raw_fd(), 7, Interest::Read).unwrap();
        server.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let until = Instant::now() + Duration::from_millis(30);
        assert!(p.wait(Some(until), false).unwrap().is_empty());
        assert!(Instant::now() >= until);
        assert_eq!(p.ready_now().unwrap(), [7]);
        assert_eq!(p.wait(None, true).unwrap(), [7]);
    }

    #[test]
    fn a_waker_ends_a_wait_from_another_thread() {
        let mut p = Poller::new(4).unwrap();
        let w = p.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake();
        });
        let t0 = Instant::now();
        assert_eq!(
            p.wait(Some(t0 + Duration::from_secs(30)), false).unwrap(),
            [WAKE]
        );
        assert!(t0.elapsed() < Duration::from_secs(20));
        t.join().unwrap();
        // The wake-up was consumed.
        assert!(p.wait(Some(Instant::now()), false).unwrap().is_empty());
    }

    #[test]
    fn the_timerfd_fallback_keeps_deadlines_too() {
        let mut p = Poller::new(4).unwrap();
        if p.timer.is_none() {
            p.add_timerfd().unwrap();
        }
        // With a timerfd present, waits go through it whether or not epoll_pwait2 exists.
        for ms in [1u64, 5] {
            let until = Instant::now() + Duration::from_millis(ms);
            assert!(p.wait(Some(until), false).unwrap().is_empty());
            assert!(Instant::now() >= until);
        }
    }
}
