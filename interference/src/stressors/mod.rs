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
    /// figure and details. A stressor whose run failed as a whole (a net client that never
    /// reached its server) puts an `error` detail ([`crate::report::ERROR_KEY`]) here itself.
    fn finish(self: Box<Self>) -> (f64, Map<String, Value>);
    /// Why the stressor cannot do its job right now (a worker ended early, iperf3 cannot reach
    /// its server), or None. Called before every sample and once more before the stop; the
    /// reporting loop writes it as the line's `error` detail. Default: never fails.
    fn failure(&mut self) -> Option<String> {
        None
    }
}

/// Index of the first worker that ended while the stressor should still run (the stop flag is
/// not set): a runtime failure such as a panic or a refused allocation. A worker that ended
/// because of the stop is not one.
pub(crate) fn ended_early(
    finished: impl IntoIterator<Item = bool>,
    stop: &AtomicBool,
) -> Option<usize> {
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    finished.into_iter().position(|f| f)
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
