//! `loadbench`: the load-generator benchmark driver behind `bench/loadgen.sh`. `co` runs one
//! coordinated-omission test against the stall server and judges it against the open-loop
//! model; `sweep` runs generator command templates per rate under their own CPU accounting;
//! `parse` turns a wrk / wrk2 / aefm-load text report on stdin into JSON. Everything is in the
//! library (`aefm_tests::bench`); this only parses flags.

use std::io::Read;

use aefm_tests::bench::{co, sweep, wrkparse};
use clap::{Parser, Subcommand};

/// Benchmarks of wrk-compatible load generators.
#[derive(Debug, Parser)]
#[command(name = "loadbench", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One coordinated-omission test: stall server, generator, model vs measured, verdict
    /// (exit code 1 on FAIL).
    Co(co::CoArgs),
    /// Generator templates per rate × repeat: achieved rate, CPU µs per request, latencies.
    Sweep(sweep::SweepArgs),
    /// A text report on stdin → JSON on stdout.
    Parse,
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Co(a) => co::run_co(&a),
        Cmd::Sweep(a) => sweep::run_sweep(&a).map(|_| true),
        Cmd::Parse => parse_stdin(),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadbench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn parse_stdin() -> anyhow::Result<bool> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    println!("{}", serde_json::to_string_pretty(&wrkparse::parse(&text))?);
    Ok(true)
}
