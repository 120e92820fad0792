//! Adapter over the load generator: the manager's load spec, cancel token and report, and the
//! in-process local workload generator.
//!
//! Everything the manager knows about `aefm-loadgen` goes through this module, so a change of
//! names there is a one-place fix here. Latency is CO-corrected: measured from each request's
//! intended send time on the constant-rate schedule, not from when it was actually sent.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
}

/// Cancels a running load (cloneable; all clones share the flag).
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

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
    /// Corrected latency per second of the window (µs), for the interval log.
    #[serde(skip)]
    pub per_second_hist: Vec<Histogram<u64>>,
    /// The load generator's own report (its `--json` format), when it produced one.
    #[serde(skip)]
    pub raw_json: Option<serde_json::Value>,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits: the range wrk2 and aefm-load record.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
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

/// Runs load in this process (blocking) and returns the report.
///
/// An open-loop constant-rate schedule on a small tokio runtime, with at most `connections`
/// requests in flight; a request waiting for a free connection keeps accumulating latency from
/// its intended start, so stalls are not hidden (coordinated omission corrected).
pub fn run_local(spec: &LoadSpec, cancel: &CancelToken) -> Result<LoadReport, ComponentError> {
    if spec.script.is_some() {
        return Err(ComponentError::other(
            "load.script: Lua scripts need the aefm-loadgen engine, which this build does not have yet",
        ));
    }
    let uri: hyper::Uri = spec.url.parse().map_err(|e| ComponentError::Start {
        what: "load generator".into(),
        reason: format!("bad URL {:?}: {e}", spec.url),
    })?;
    let cores = spec.cores.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads.max(1))
        .enable_all()
        .on_thread_start(move || {
            if let Some(c) = &cores {
                crate::local::pin_current_thread(c);
            }
        })
        .build()
        .map_err(|e| ComponentError::other(format!("load generator runtime: {e}")))?;
    rt.block_on(run_async(spec.clone(), uri, cancel.clone()))
}

struct Shared {
    total: Histogram<u64>,
    seconds: Vec<(u64, u64, Histogram<u64>)>,
    requests: u64,
    errors: u64,
}

async fn run_async(
    spec: LoadSpec,
    uri: hyper::Uri,
    cancel: CancelToken,
) -> Result<LoadReport, ComponentError> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(spec.connections)
        .build_http();
    let secs = spec.duration.as_secs_f64().ceil() as usize + 1;
    let shared = Arc::new(std::sync::Mutex::new(Shared {
        total: new_hist(),
        seconds: (0..secs).map(|_| (0, 0, new_hist())).collect(),
        requests: 0,
        errors: 0,
    }));
    let permits = Arc::new(tokio::sync::Semaphore::new(spec.connections.max(1)));
    let interval = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let start = Instant::now();
    let measure_start = start + spec.warmup;
    let end = measure_start + spec.duration;
    let started_wall = SystemTime::now() + spec.warmup;
    let headers = spec.headers.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    let mut cancelled = false;
    loop {
        let intended = start + interval.mul_f64(i as f64);
        if intended >= end {
            break;
        }
        if cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        i += 1;
        let record = intended >= measure_start;
        let client = client.clone();
        let permits = permits.clone();
        let shared = shared.clone();
        let uri = uri.clone();
        let headers = headers.clone();
        let timeout = spec.timeout;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let mut req = hyper::Request::get(uri);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let Ok(req) = req.body(Empty::new()) else { return };
            let ok = match tokio::time::timeout(timeout, async {
                let resp = client.request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await.map_err(|e| {
                    // Body errors count like transport errors.
                    let _ = e;
                    ()
                }).ok();
                Ok::<bool, hyper_util::client::legacy::Error>(status.is_success())
            })
            .await
            {
                Ok(Ok(success)) => success,
                _ => false,
            };
            if !record {
                return;
            }
            let done = Instant::now();
            let lat = done.saturating_duration_since(intended).as_micros().max(1) as u64;
            let sec = done.saturating_duration_since(measure_start).as_secs() as usize;
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                s.requests += 1;
                let _ = s.total.record(lat);
            } else {
                s.errors += 1;
            }
            let n = s.seconds.len();
            let slot = &mut s.seconds[sec.min(n - 1)];
            if ok {
                slot.0 += 1;
                let _ = slot.2.record(lat);
            } else {
                slot.1 += 1;
            }
        });
        // Reap finished tasks now and then so the set does not grow without bound.
        while let Some(r) = tasks.try_join_next() {
            let _ = r;
        }
    }
    // Wait for requests in flight (bounded by the timeout), unless cancelled.
    if cancelled {
        tasks.abort_all();
    }
    while tasks.join_next().await.is_some() {}
    let window_end = Instant::now().min(end).max(measure_start);
    let window_s = window_end.duration_since(measure_start).as_secs_f64();
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let full_secs = window_s.ceil() as usize;
    let per_second = s
        .seconds
        .iter()
        .take(full_secs.max(1))
        .enumerate()
        .map(|(t, (c, e, h))| Second {
            t: t as u64,
            completed: *c,
            errors: *e,
            latency: Percentiles::of(h),
        })
        .collect();
    Ok(LoadReport {
        offered: spec.rate,
        achieved: if window_s > 0.0 { s.requests as f64 / window_s } else { 0.0 },
        requests: s.requests,
        errors: s.errors,
        window_s,
        latency: Percentiles::of(&s.total),
        per_second,
        started: started_wall,
        cancelled,
        histogram: s.total.clone(),
        per_second_hist: s
            .seconds
            .iter()
            .take(full_secs.max(1))
            .map(|(_, _, h)| h.clone())
            .collect(),
        raw_json: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_histogram() {
        let mut h = new_hist();
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
