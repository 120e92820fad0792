//! # aefm: automated performance experiments on microservices
//!
//! `aefm` runs an *experiment*: it brings an application up, sweeps a grid of test cases
//! (offered rate × interference levels × rounds × custom dimensions), and for every case runs
//! interference beside the app, sends constant-rate load with coordinated-omission-corrected
//! latency, collects data, and writes tidy results (per-case files, a summary CSV, SVG plots)
//! with a journal so an interrupted run can resume.
//!
//! Most users run the binary: `aefm run config.yaml` (see `docs/config.md`). The library is for
//! changing the workflow in Rust: the experiment fires typed [`events::Event`]s, each with an
//! ordered list of [`events::Handler`]s that get a typed [`context::Context`] and the
//! [`components::Components`] (deployer, interference, workload, collector) to drive.
//!
//! ```no_run
//! use aefm::{config::Config, events::{Event, HandlerError}, experiment::{Experiment, RunOptions}};
//!
//! let config = Config::load("config.yaml".as_ref())?;
//! let mut exp = Experiment::new(config);
//! // Runs after the default handler of every case: read the case's load report.
//! exp.handlers.append(Event::EndSingleTestCase, "print-p99", |ctx: &mut aefm::context::Context,
//!                                                            _: &mut aefm::components::Components|
//!  -> Result<(), HandlerError> {
//!     if let (Some(case), Some(r)) = (&ctx.case, &ctx.report) {
//!         println!("{}: p99 {:.2} ms", case.name, r.latency.p99_us / 1000.0);
//!     }
//!     Ok(())
//! });
//! let outcome = exp.run(RunOptions::default())?;
//! println!("results in {}", outcome.dir.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, in the order data flows: [`config`] (schema, loading) → [`sweep`] (test cases) →
//! [`experiment`] (the lifecycle, with [`workflow`]'s default handlers and [`hooks`]) →
//! components ([`local`], [`load`], [`collect`], chosen in [`backend`]; the app's data from
//! [`seed`]) → [`results`].

pub mod backend;
pub mod cli;
pub mod collect;
pub mod components;
pub mod config;
pub mod context;
pub mod demo;
pub mod events;
pub mod experiment;
pub mod export;
pub mod hooks;
pub mod import;
pub mod kubernetes;
pub mod load;
pub mod local;
pub mod plan;
pub mod probe;
pub mod results;
pub mod scaffold;
pub mod schedule;
pub mod seed;
pub mod signals;
pub mod sweep;
pub mod ui;
pub mod validity;
pub mod workflow;

/// Re-exported so handlers in projects made by `aefm init` can log without another dependency.
pub use tracing;
