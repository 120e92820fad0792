//! Merging the reports of several runs, as a controller does with the aefm-load processes of one
//! distributed run: [`Report::merge`] adds histograms and counters exactly and lines the
//! per-second series up by wall-clock time.
//!
//!     cargo run -p aefm-loadgen --example merge_runs                 # three runs, in process
//!     cargo run -p aefm-loadgen --example merge_runs -- a.json b.json  # reports of --json
//!
//! Without arguments it starts a small HTTP/1.1 server in this process and makes three runs of it
//! at the same time, each a third of the load, sharing one start instant
//! ([`RunControl::start_at`]); with arguments it reads `aefm-load --json` reports. Either way it
//! prints the merged report as wrk2 would ([`render_wrk2`]).

#[path = "support/hello_server.rs"]
mod hello_server;

use std::time::{Duration, SystemTime};

use aefm_loadgen::{render_banner, render_wrk2, run, Report, ReportOptions, RunControl, Spec};

/// Number of runs made without arguments, and their total rate (requests/s).
const RUNS: usize = 3;
const TOTAL_RATE: f64 = 3000.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let reports = if files.is_empty() {
        run_in_process()?
    } else {
        files
            .iter()
            .map(|f| read_report(f))
            .collect::<Result<_, _>>()?
    };
    let count = reports.len();
    let mut reports = reports.into_iter();
    let mut merged = reports.next().ok_or("no reports")?;
    for r in reports {
        merged.merge(&r);
    }
    println!("{count} reports merged");
    print!(
        "{}",
        render_banner(
            &merged.url,
            merged.summary.duration_us as f64 / 1e6,
            merged.threads,
            merged.connections
        )
    );
    let opts = ReportOptions {
        latency: true,
        ..Default::default()
    };
    print!("{}", render_wrk2(&merged, &opts));
    Ok(())
}

/// Makes [`RUNS`] simultaneous runs against an in-process server, each on its own thread.
fn run_in_process() -> Result<Vec<Report>, Box<dyn std::error::Error>> {
    let addr = hello_server::start()?;
    // A start a little ahead leaves every run time to connect first, as the pods of a
    // distributed run do behind their start barrier.
    let at = SystemTime::now() + Duration::from_millis(500);
    let handles: Vec<_> = (0..RUNS)
        .map(|_| {
            let mut spec = Spec::new(format!("http://{addr}/"), TOTAL_RATE / RUNS as f64);
            spec.threads = 1;
            spec.connections = 10;
            spec.duration = Duration::from_secs(3);
            std::thread::spawn(move || run(&spec, &RunControl::new().start_at(at)))
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.join().map_err(|_| "a run panicked")??);
    }
    Ok(out)
}

/// Reads one `--json` report.
fn read_report(path: &str) -> Result<Report, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(Report::from_json(&text).map_err(|e| format!("{path}: {e}"))?)
}
