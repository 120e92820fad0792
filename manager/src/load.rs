//! Adapter over the load generator: the manager's load spec, cancel token and report, and the
//! in-process local workload generator.
//!
//! Everything the manager knows about `aefm-loadgen` goes through this module, so a change of
//! names there is a one-place fix here. Latency is CO-corrected: measured from each request's
//! intended send time on the constant-rate schedule, not from when it was actually sent.
//! A case's run lasts warm-up + duration; the figures here cover the window after the warm-up.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::components::{ComponentError, WorkloadGenerator};
use crate::context::Context;

/// What load to send for one case.
#[derive(Clone, Debug, Serialize)]
pub struct LoadSpec {
    /// Target URL.
    pub url: String,
    /// Offered rate, requests per second in total.
    pub rate: f64,
    /// Measured duration.
    pub duration: Duration,
    /// Load sent before the measured window (not recorded).
    pub warmup: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Connections in total.
    pub connections: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// wrk Lua script.
    pub script: Option<PathBuf>,
    /// Script arguments.
    pub script_args: Vec<String>,
    /// Cores the generator threads are pinned to.
    pub cores: Option<Vec<usize>>,
    /// Share of requests that carry a `traceparent` header (0: none).
    pub traceparent: f64,
    /// Gaps between sends.
    pub distribution: aefm_loadgen::schedule::Distribution,
    /// Seed of the random gaps.
    pub seed: u64,
}

impl LoadSpec {
    /// The load of one case: the config's `load:` settings, at `rate`, to `url`, with the parsed
    /// headers. The generator's threads are pinned to `load.cores`, by default to every core the
    /// app does not use.
    pub fn from_config(
        cfg: &crate::config::Config,
        url: String,
        rate: f64,
        headers: Vec<(String, String)>,
    ) -> Self {
        let cores = cfg.load.cores.clone().or_else(|| {
            let n = crate::config::available_cores();
            let free: Vec<usize> = (0..n).filter(|i| !cfg.app.cores.contains(i)).collect();
            (!free.is_empty()).then_some(free)
        });
        Self {
            url,
            rate,
            duration: cfg.duration,
            warmup: cfg.warmup,
            threads: cfg.load.threads,
            connections: cfg.load.connections,
            timeout: cfg.load.timeout,
            headers,
            script: cfg.load.script.as_ref().map(|s| cfg.resolve(s)),
            script_args: cfg.load.script_args.clone(),
            cores,
            traceparent: cfg.load.traceparent,
            distribution: cfg.load.distribution,
            seed: cfg.load.seed,
        }
    }
}

/// Cancels a running load: the load generator's own token (cloneable; all clones share the flag),
/// so cancelling reaches the running generator directly.
pub use aefm_loadgen::CancelToken;

/// Latency figures in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Percentiles {
    /// Figures of a histogram (µs).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: h.value_at_quantile(0.50) as f64,
            p90_us: h.value_at_quantile(0.90) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
            mean_us: h.mean(),
        }
    }
}

impl From<&aefm_loadgen::Percentiles> for Percentiles {
    fn from(p: &aefm_loadgen::Percentiles) -> Self {
        Self {
            p50_us: p.p50 as f64,
            p90_us: p.p90 as f64,
            p99_us: p.p99 as f64,
            p999_us: p.p99_9 as f64,
            max_us: p.max as f64,
            mean_us: p.mean,
        }
    }
}

/// One second of the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the window started.
    pub t: u64,
    /// Responses completed in this second.
    pub completed: u64,
    /// Errors in this second.
    pub errors: u64,
    /// Corrected latency of responses completed in this second.
    pub latency: Percentiles,
}

/// The result of one case's load, as the manager uses it.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Offered rate (req/s).
    pub offered: f64,
    /// Achieved rate over the measured window (completed responses / window).
    pub achieved: f64,
    /// Completed responses in the window.
    pub requests: u64,
    /// Errors (transport, timeouts, non-2xx) in the window.
    pub errors: u64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Corrected latency.
    pub latency: Percentiles,
    /// Per-second series.
    pub per_second: Vec<Second>,
    /// Wall-clock start of the measured window.
    pub started: SystemTime,
    /// True when the run was cancelled before its end.
    pub cancelled: bool,
    /// Corrected latency histogram (µs).
    #[serde(skip)]
    pub histogram: Histogram<u64>,
    /// The load generator's own report (its `--json` format), when it produced one.
    #[serde(skip)]
    pub raw: Option<aefm_loadgen::Report>,
    /// Distributed load: the latest generator's start minus the earliest's, seconds (`None` for
    /// one generator). Judged against `validity.max_load_start_spread`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_spread_s: Option<f64>,
    /// Distributed load: generators whose report is missing from this one, each `who: why`
    /// (a failed or evicted pod). Any makes the case invalid (`load_pod_failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_generators: Vec<String>,
}

/// The local workload generator: load from this process, pinned to the configured cores.
#[derive(Debug, Default)]
pub struct LocalWorkload;

impl WorkloadGenerator for LocalWorkload {
    fn run(
        &mut self,
        _ctx: &Context,
        spec: &LoadSpec,
        cancel: &CancelToken,
    ) -> Result<LoadReport, ComponentError> {
        run_local(spec, cancel)
    }
}

/// Runs load in this process with `aefm-loadgen` (blocking) and returns the report.
pub fn run_local(spec: &LoadSpec, cancel: &CancelToken) -> Result<LoadReport, ComponentError> {
    let lg = to_loadgen_spec(spec);
    lg.validate().map_err(|e| ComponentError::Start {
        what: "load generator".into(),
        reason: e.to_string(),
    })?;
    let mut control = aefm_loadgen::RunControl::new();
    control.cancel = cancel.clone();
    let result = aefm_loadgen::run(&lg, &control);
    let report = result.map_err(|e| match e {
        aefm_loadgen::Error::Connect { .. } | aefm_loadgen::Error::Resolve { .. } => {
            ComponentError::Unreachable {
                what: "load target".into(),
                url: spec.url.clone(),
                reason: e.to_string(),
            }
        }
        other => ComponentError::other(format!("load generator: {other}")),
    })?;
    Ok(from_loadgen(&report, spec))
}

/// Checks the `load:` section before any load, as `aefm validate` and the start of `aefm run`
/// do: every header (`Name: value`, a valid name, no CR/LF), the pinned cores, and the Lua script
/// loaded and run up to its first `request()`, which must be valid HTTP. `config_file` is only
/// used to name the line of a bad key. Returns the generator's warnings.
pub fn check_config(
    cfg: &crate::config::Config,
    config_file: &std::path::Path,
) -> Result<Vec<String>, crate::config::ConfigError> {
    let text = std::fs::read_to_string(config_file).unwrap_or_default();
    let bad = |key: String, message: String| crate::config::ConfigError::Invalid {
        path: config_file.to_path_buf(),
        // A flow-style list (`headers: ["a", "b"]`) has no line per item: name the list's line.
        line: crate::config::locate_key(&text, &key)
            .or_else(|| crate::config::locate_key(&text, key.split('[').next().unwrap_or(&key))),
        key,
        message,
    };
    let mut headers = Vec::new();
    for (i, h) in cfg.load.headers.iter().enumerate() {
        let parsed = aefm_loadgen::parse_header(h)
            .map_err(|e| bad(format!("load.headers[{i}]"), e.to_string()))?;
        headers.push(parsed);
    }
    // Where the app's endpoint is only known once it runs, a placeholder stands in: nothing is
    // connected, the script only sees the URL's parts.
    let url = cfg
        .load
        .url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080/".into());
    let rate = cfg.rates().into_iter().fold(1.0, f64::max);
    let spec = LoadSpec::from_config(cfg, url, rate, headers);
    let key = if spec.script.is_some() {
        "load.script"
    } else {
        "load"
    };
    aefm_loadgen::check_spec(&to_loadgen_spec(&spec)).map_err(|e| bad(key.into(), e.to_string()))
}

/// The `aefm-loadgen` spec for a case: the run lasts warm-up + duration; warm-up latencies are
/// discarded by the generator.
pub fn to_loadgen_spec(spec: &LoadSpec) -> aefm_loadgen::Spec {
    let mut lg = aefm_loadgen::Spec::new(spec.url.clone(), spec.rate);
    lg.threads = spec.threads.max(1);
    lg.connections = spec.connections.max(lg.threads);
    lg.duration = spec.warmup + spec.duration;
    lg.warmup = spec.warmup;
    lg.timeout = spec.timeout;
    lg.headers = spec.headers.clone();
    lg.pin = spec.cores.clone();
    lg.traceparent = spec.traceparent;
    lg.distribution = spec.distribution;
    lg.seed = spec.seed;
    if let Some(path) = &spec.script {
        lg.workload = aefm_loadgen::source::Workload::Script {
            path: path.clone(),
            args: spec.script_args.clone(),
        };
    }
    lg
}

/// The manager's view of a loadgen report: figures over the measured window (after warm-up).
pub fn from_loadgen(r: &aefm_loadgen::Report, spec: &LoadSpec) -> LoadReport {
    let warm_s = spec.warmup.as_secs_f64();
    let start_unix = r.start_time + warm_s;
    // The corrected histogram holds exactly the responses after the warm-up; the per-second
    // series is whole seconds, so the window's seconds start at the first whole second after it
    // (the per-second error count is approximate when the warm-up is not whole seconds).
    let first = warm_s.floor() as u64;
    let window: Vec<&aefm_loadgen::Second> = r.per_second.iter().filter(|s| s.t >= first).collect();
    let per_second: Vec<Second> = window
        .iter()
        .enumerate()
        .map(|(i, s)| Second {
            t: i as u64,
            completed: s.completed,
            errors: s.errors,
            latency: (&aefm_loadgen::Percentiles::of(&s.histogram)).into(),
        })
        .collect();
    let window_s = (r.summary.duration_us as f64 / 1e6 - warm_s).max(0.0);
    let requests = r.corrected().len();
    let errors = if window.is_empty() {
        r.summary.errors.total()
    } else {
        window.iter().map(|s| s.errors).sum()
    };
    LoadReport {
        offered: spec.rate,
        achieved: if window_s > 0.0 {
            requests as f64 / window_s
        } else {
            0.0
        },
        requests,
        errors,
        window_s,
        // The generator's own statistics, so summary.csv and loadgen.json agree exactly.
        latency: (&r.corrected.stats).into(),
        per_second,
        started: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(start_unix.max(0.0)),
        cancelled: r.summary.cancelled,
        histogram: r.corrected().clone(),
        raw: Some(r.clone()),
        start_spread_s: None,
        failed_generators: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50_us - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_us, 1000.0);
    }

    #[test]
    fn cancel_token_is_shared() {
        let a = CancelToken::new();
        let b = a.clone();
        b.cancel();
        assert!(a.is_cancelled());
    }
}
