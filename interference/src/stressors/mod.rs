//! The stressors. Each `start` function validates its request (refusing before allocating), starts
//! worker threads or a child process, and returns an `Active` handle that the reporting loop
//! samples each interval and finally stops. Workers poll a shared stop flag between small chunks of
//! work so they stop within milliseconds.

pub mod cache;
pub mod cpu;
pub mod membw;
pub mod memcap;
pub mod net;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

/// Where a stressor reads `/proc` and `/sys` (`/`, or a fixture tree) and how it is told to stop.
pub(crate) struct Ctx {
    pub root: PathBuf,
    pub stop: Arc<AtomicBool>,
    pub duration: Option<Duration>,
}

/// A running stressor as the reporting loop sees it.
pub(crate) trait Active: Send {
    /// The report `kind`.
    fn kind(&self) -> &'static str;
    /// The report `unit`.
    fn unit(&self) -> &'static str;
    /// The target in `unit`.
    fn target(&self) -> f64;
    /// The achieved intensity since the previous sample, and details.
    fn sample(&mut self) -> (f64, Map<String, Value>);
    /// Called after the stop flag is set: join workers, free everything, return the whole-run
    /// figure and details.
    fn finish(self: Box<Self>) -> (f64, Map<String, Value>);
}

/// Builds a JSON details map from pairs.
pub(crate) fn details<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Rounds to a sensible number of decimals for the report.
pub(crate) fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}
