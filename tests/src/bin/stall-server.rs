//! `stall-server`: the coordinated-omission benchmark's HTTP/1.1 server, standalone. It answers
//! at once except that it freezes completely (no responses, no accepts) during its stalls, logs
//! JSON lines to stderr (`listening` with the bound port, `anchor`, `stall_begin`/`stall_end`,
//! `summary` on SIGTERM/SIGINT) and prints the bound port on stdout. Everything is in the library
//! (`aefm_tests::bench::stall`); this only parses flags and waits for the signal.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aefm_tests::bench::stall::{stderr_sink, Anchor, Schedule, StallConfig, StallServer};
use clap::Parser;

/// An HTTP/1.1 server that freezes on cue.
#[derive(Debug, Parser)]
#[command(name = "stall-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free one, printed on stdout).
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// First stall, seconds after the anchor.
    #[arg(long, default_value_t = 20.0)]
    stall_at: f64,
    /// Stall length, s (0: never stall).
    #[arg(long, default_value_t = 5.0)]
    stall_for: f64,
    /// Period of repeated stalls, s (0: once).
    #[arg(long, default_value_t = 0.0)]
    stall_every: f64,
    /// Number of stalls when periodic.
    #[arg(long, default_value_t = 1)]
    stall_count: u32,
    /// What starts the stall clock.
    #[arg(long, value_enum, default_value = "first-request")]
    anchor: Anchor,
    /// Response body size, bytes.
    #[arg(long, default_value_t = 64)]
    body_size: usize,
    /// Status code of every response.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Service time added to each batch of responses, ms.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Send `Connection: close` (and close) on every Nth response (0: never).
    #[arg(long, default_value_t = 0)]
    close_every: u64,
}

fn main() {
    let a = Args::parse();
    if a.stall_every > 0.0 && a.stall_every <= a.stall_for {
        eprintln!("stall-server: --stall-every must exceed --stall-for");
        std::process::exit(2);
    }
    // Blocked before any thread starts, so every thread inherits the mask and main receives the
    // signal in sigwait.
    let signals = block_term_signals();
    let config = StallConfig {
        addr: SocketAddr::new(a.host, a.port),
        schedule: Schedule {
            at: a.stall_at,
            length: a.stall_for,
            every: a.stall_every,
            count: a.stall_count,
        },
        anchor: a.anchor,
        body_size: a.body_size,
        status: a.status,
        delay: Duration::from_secs_f64(a.delay_ms.max(0.0) / 1e3),
        close_every: a.close_every,
    };
    let server = match StallServer::start(config, stderr_sink()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stall-server: cannot listen on {}:{}: {e}", a.host, a.port);
            std::process::exit(1);
        }
    };
    println!("{}", server.addr().port());
    let mut sig = 0;
    // SAFETY: waits on a set initialised by block_term_signals.
    unsafe { libc::sigwait(&signals, &mut sig) };
    server.log_summary();
    // Connection threads may sit in a stall or a read: exit without joining them.
    std::process::exit(0);
}

/// Blocks SIGTERM and SIGINT in this thread (and threads it starts) and returns the set.
fn block_term_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is initialised by sigemptyset before use; the calls only touch it and
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}
