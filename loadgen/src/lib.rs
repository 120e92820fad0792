//! # aefm-loadgen
//!
//! A wrk2-compatible, coordinated-omission-correct HTTP load generator, as a library (this
//! crate) and a binary (`aefm-load`, the same command line as wrk2).
//!
//! A run sends requests at a constant rate (`Spec::rate`) over `Spec::connections` keep-alive
//! connections split across `Spec::threads` OS threads, each running its own epoll loop (no
//! async runtime). Latency is recorded twice: **corrected**, from the moment each request was
//! *due* (so a stalled server shows its full stall, not just the few requests that were in
//! flight), and **uncorrected**, from the moment it was actually written. The generator's own lateness is
//! recorded separately (**send lag**), so an overloaded generator cannot pass for a slow server.
//!
//! Pacing uses a per-thread `timerfd` (sub-millisecond), not tokio's 1 ms timer wheel.
//!
//! wrk Lua scripts (`-s script.lua`) run unchanged on LuaJIT through [`script`]: the whole wrk2
//! scripting API, with loud errors (file and line, before any load) where wrk2 silently sends
//! `GET /`. Embedders can pass a Rust generator instead ([`source::Workload::Generator`]).
//!
//! What needs no network is checked by [`check_spec`], [`check_script`] (a script up to its first
//! `request()`) and [`parse_header`], the same code a run uses, so that `aefm validate` finds the
//! problems a run would; [`Run::prepare`] adds the open-file limit, the target's reachability and,
//! for https, a TLS handshake, all before any load.
//!
//! Several processes (Kubernetes Job pods) can share one run: [`control`] is the start barrier
//! (`--control-port`, `--start-at`; [`RunControl::start_at`] starts the clock at a wall-clock
//! instant), [`frame`] carries a report through a log shared with other output
//! (`--report-frame`), and [`Report::merge`] adds the reports up exactly, second by wall-clock
//! second.
//!
//! To join slow requests with their server-side traces, [`Spec::traceparent`] (`--traceparent`)
//! puts a W3C `traceparent` header (sampled) on a share of the requests, Lua scripts' too, and
//! the report's [`Report::traced`] keeps the slowest of them with their trace ids, due and send
//! times and latencies ([`traced`]); `aefm-collector` joins them with the traces (`join.csv`).
//!
//! While it runs, a run can serve live Prometheus metrics ([`metrics`], `--metrics-addr`,
//! [`RunControl::with_metrics`]) for a cluster's Prometheus to scrape.
//!
//! Data flows one way: [`Spec`] → [`run`] (or [`Run::prepare`] / [`Run::execute`] /
//! [`Run::finish`]) → [`Report`] → [`render_wrk2`] / JSON (serde) / [`write_interval_log`].
//!
//! ```no_run
//! use std::time::Duration;
//! use aefm_loadgen::{run, render_wrk2, ReportOptions, RunControl, Spec};
//!
//! let mut spec = Spec::new("http://127.0.0.1:8080/index.html", 2000.0);
//! spec.threads = 2;
//! spec.connections = 100;
//! spec.duration = Duration::from_secs(60);
//! let control = RunControl::new().with_progress(|p| eprintln!("{:?}: {:.0} req/s", p.elapsed, p.rate));
//! let report = run(&spec, &control)?;
//! print!("{}", render_wrk2(&report, &ReportOptions { latency: true, ..Default::default() }));
//! println!("p99 corrected: {} us", report.corrected.stats.p99);
//! // Reports of several processes merge exactly:
//! let mut total = report.clone();
//! total.merge(&report);
//! # Ok::<(), aefm_loadgen::Error>(())
//! ```
//!
//! # Embedding
//!
//! Two runnable examples use the library the way an embedding program does, with no command line
//! in the path:
//! - `loadgen/benches/embed.rs` (`cargo bench -p aefm-loadgen --bench embed`): a benchmark
//!   harness that starts an HTTP/1.1 server in process, drives it at a few constant rates and
//!   prints the corrected p50/p90/p99/p99.9 and the achieved rate of each;
//! - `loadgen/examples/merge_runs.rs` (`cargo run -p aefm-loadgen --example merge_runs`): three
//!   simultaneous runs (or `--json` reports given as arguments) merged with [`Report::merge`]
//!   and printed with [`render_wrk2`].
//!
//! The library sets no global allocator: only the `aefm-load` binary installs mimalloc.
//!
//! # Features
//!
//! `engine` (default): everything that makes load: [`run`], [`Run`], [`cli`], [`script`] (LuaJIT),
//! TLS (rustls), the control and metrics servers. Without it (`default-features = false`) the
//! crate is the report side only, [`Report`], [`histogram`], [`printer`], [`frame`],
//! [`hdrlog`], [`Spec`] and the rate schedules, for programs that read and merge reports (as
//! `aefm-collector` does) without building LuaJIT.

#[cfg(feature = "engine")]
pub mod check;
#[cfg(feature = "engine")]
pub mod cli;
#[cfg(feature = "engine")]
pub mod connection;
#[cfg(feature = "engine")]
pub mod control;
#[cfg(feature = "engine")]
mod error;
pub mod frame;
pub mod hdrlog;
pub mod header;
pub mod histogram;
#[cfg(feature = "engine")]
pub mod metrics;
#[cfg(feature = "engine")]
pub mod parser;
pub mod printer;
pub mod report;
#[cfg(feature = "engine")]
pub mod request;
#[cfg(feature = "engine")]
pub mod run;
pub mod schedule;
#[cfg(feature = "engine")]
pub mod script;
pub mod source;
pub mod spec;
pub mod system;
pub mod traced;
pub mod units;
#[cfg(feature = "engine")]
mod worker;

#[cfg(feature = "engine")]
pub use check::{check_script, check_spec};
pub use hdrlog::write_interval_log;
pub use header::{parse_header, HeaderError};
pub use printer::{render_banner, render_wrk2, ReportOptions};
pub use report::{
    Calibration, Errors, HistogramReport, Percentiles, Report, Second, StatusClasses, Summary,
};
#[cfg(feature = "engine")]
pub use run::{run, CancelToken, Error, Progress, Run, RunControl};
pub use spec::{CatchUp, Model, Spec, SpecError, Target};
pub use traced::{Traced, TracedRequest};
