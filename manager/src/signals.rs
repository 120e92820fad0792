//! Ctrl-C and SIGTERM: the first stops the current case and cleans up; the second kills
//! everything AEFM started and exits at once.

use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic increment: async-signal-safe.
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handlers (idempotent).
pub fn install() {
    // SAFETY: the handler only touches an atomic; sigaction with a zeroed mask is valid.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// How many interrupts arrived so far.
pub fn count() -> usize {
    COUNT.load(Ordering::SeqCst)
}
