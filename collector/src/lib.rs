//! # aefm-collector
//!
//! Collects everything a performance experiment needs about one time window (a test case) into
//! tidy files in one directory: Prometheus series, Jaeger traces turned into span, edge, per-operation,
//! per-pod and end-to-end tables, load-generator results, and host samples from procfs.
pub mod case;
pub mod cli;
pub mod error;
pub mod host;
pub mod http;
pub mod jaeger;
pub mod loadgen;
pub mod output;
pub mod prometheus;
pub mod scrape;
pub mod traces;
pub mod window;
pub mod wrk;

pub use error::{Error, Result};
pub use output::{MetricRow, Written};
pub use window::Window;
