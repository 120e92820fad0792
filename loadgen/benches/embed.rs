//! Embedding aefm-loadgen in a benchmark harness: no command line, no global allocator, just the
//! library. Starts a small HTTP/1.1 server in this process, drives it at a few constant rates
//! through [`aefm_loadgen::run`] and prints, per rate, the coordinated-omission-corrected
//! percentiles and the rate achieved. It asserts nothing: what to compare is the embedder's call.
//!
//!     cargo bench -p aefm-loadgen --bench embed
//!
//! Under `cargo test --benches` (no `--bench` argument) it makes one short run instead, so the
//! harness is exercised without a minute of load.

#[path = "../examples/support/hello_server.rs"]
mod hello_server;

use std::time::Duration;

use aefm_loadgen::units::format_time_us;
use aefm_loadgen::{run, Report, RunControl, Spec};

/// The offered rates (requests/s) and how long each is held.
const RATES: [f64; 3] = [500.0, 2000.0, 5000.0];
const HOLD: Duration = Duration::from_secs(3);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (rates, hold) = if full {
        (&RATES[..], HOLD)
    } else {
        (&RATES[..1], Duration::from_millis(500))
    };
    let addr = hello_server::start()?;
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "rate", "achieved", "p50", "p90", "p99", "p99.9"
    );
    for &rate in rates {
        let mut spec = Spec::new(format!("http://{addr}/"), rate);
        spec.threads = 2;
        spec.connections = 20;
        spec.duration = hold;
        let report = run(&spec, &RunControl::new())?;
        println!("{}", line(&report));
    }
    Ok(())
}

/// One row: offered and achieved rate, then the corrected latency percentiles.
fn line(report: &Report) -> String {
    let c = &report.corrected.stats;
    let t = |us: u64| format_time_us(us as f64);
    format!(
        "{:>8.0} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
        report.summary.target_rate,
        report.summary.achieved_rate,
        t(c.p50),
        t(c.p90),
        t(c.p99),
        t(c.p99_9)
    )
}
