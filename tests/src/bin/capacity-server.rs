//! `capacity-server`: an HTTP/1.1 test service that answers at once up to a known offered rate
//! and slowly above it (see `aefm_tests::capacity_server`). Prints nothing; serves until killed.

use std::net::TcpListener;
use std::time::Duration;

use aefm_tests::capacity_server::{serve, Capacity};
use clap::Parser;

/// A service with a known capacity.
#[derive(Debug, Parser)]
#[command(name = "capacity-server")]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Requests per second above which answers are slow.
    #[arg(long)]
    capacity: f64,
    /// Window the arrival rate is counted over, ms.
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
    /// Service time above capacity, ms.
    #[arg(long, default_value_t = 20)]
    slow_ms: u64,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", a.port))?;
    serve(
        listener,
        Capacity {
            capacity: a.capacity,
            window: Duration::from_millis(a.window_ms),
            slow: Duration::from_millis(a.slow_ms),
        },
    )
}
