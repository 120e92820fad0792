//! An OTLP/HTTP trace receiver: any application instrumented with OpenTelemetry sends its spans
//! straight here (`POST /v1/traces`, protobuf or JSON, as the OTLP/HTTP exporters do), and the
//! spans become the same trace tables as Jaeger's (`spans.csv`, `edges.csv`, `operations.csv`,
//! `pods.csv`, `end_to_end.csv`, `traces_summary.csv`; see [`crate::traces`]).
//!
//! * `receive.rs`: the HTTP server and its answers;
//! * `decode.rs`: request bodies to compact span records (trace, span and parent IDs, name,
//!   start and end, error status, service from `service.name`, pod from `k8s.pod.name`, else
//!   `host.name`, else the service; links are ignored);
//! * `store.rs`: the records, in memory up to a byte bound and in a temporary file past it;
//! * `collect.rs` and `convert.rs`: grouping by trace, window selection, and each trace as the
//!   Jaeger JSON object [`crate::traces::TraceProcessor`] reads.
//!
//! The receiver runs on its own thread and tokio runtime, so it can stay up across test cases
//! while the caller collects one window after another:
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use aefm_collector::otlp::{Receiver, Settings};
//! use aefm_collector::Window;
//!
//! let receiver = Receiver::start(Settings::default()).unwrap();
//! println!("OTLP/HTTP on http://{}/v1/traces", receiver.addr());
//! let start = SystemTime::now();
//! std::thread::sleep(Duration::from_secs(60));
//! let window = Window::new(start, SystemTime::now()).unwrap();
//! // Waits for the grace period, then writes the traces that started in the window.
//! let (counts, files) = receiver.collect_window(&window, "data/case-1".as_ref()).unwrap();
//! println!("{} traces", counts.traces);
//! receiver.stop();
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::output::Written;
use crate::traces::{TraceCounts, TraceProcessor};
use crate::window::{unix_micros, Window};

pub mod collect;
pub mod convert;
pub mod decode;
pub mod receive;
pub mod store;

pub use collect::Select;

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (port 0: any free port; see [`Receiver::addr`]).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (after gzip inflation too).
    pub max_body: usize,
    /// Bytes of span records kept in memory before they are spilled to disk.
    pub memory_bound: usize,
    /// Directory of the spill and bucket files (unnamed temporary files).
    pub spill_dir: PathBuf,
    /// How long after a window's end [`Receiver::collect_window`] waits for late spans.
    pub grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_body: 16 << 20,
            memory_bound: 256 << 20,
            spill_dir: std::env::temp_dir(),
            grace: Duration::from_secs(5),
        }
    }
}

/// Why the receiver could not start or collect.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The listen address could not be bound.
    #[error("otlp: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime or its thread could not start.
    #[error("otlp: cannot start the receiver thread: {0}")]
    Start(#[source] std::io::Error),
    /// Collecting into the tables failed.
    #[error("otlp: collecting into {dir}: {source}")]
    Collect {
        /// The output directory.
        dir: PathBuf,
        /// What failed.
        source: collect::CollectError,
    },
    /// Creating or finishing the tables failed.
    #[error("otlp: {0}")]
    Tables(#[source] crate::Error),
}

/// Counters since the receiver started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub requests: AtomicU64,
    pub spans: AtomicU64,
    pub rejected: AtomicU64,
}

/// A snapshot of the receiver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Requests answered (any status).
    pub requests: u64,
    /// Spans accepted.
    pub spans: u64,
    /// Requests refused (status other than 200).
    pub rejected: u64,
}

/// State shared by the server's tasks and the [`Receiver`] handle.
pub(crate) struct Shared {
    pub settings: Settings,
    pub store: Mutex<store::Store>,
    pub stats: Stats,
}

/// A running receiver. Dropping it stops it too.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Binds `settings.listen` and starts serving on a thread of its own (a two-worker runtime:
    /// decoding is CPU work). Returns once the socket is bound.
    pub fn start(settings: Settings) -> Result<Receiver, OtlpError> {
        let addr = settings.listen;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| OtlpError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| OtlpError::Bind { addr, source })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aefm-otlp")
            .enable_all()
            .build()
            .map_err(OtlpError::Start)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(
                settings.memory_bound,
                &settings.spill_dir,
            )),
            settings,
            stats: Stats::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aefm-otlp".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => receive::serve(l, s, stopped).await,
                        Err(e) => tracing::error!("otlp: cannot register the listener: {e}"),
                    }
                });
                // Connections still open are dropped with the runtime.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(OtlpError::Start)?;
        Ok(Receiver {
            addr: bound,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters since the receiver started.
    pub fn received(&self) -> Received {
        let s = &self.shared.stats;
        Received {
            requests: s.requests.load(Ordering::Relaxed),
            spans: s.spans.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// Sleeps until the window's end plus the grace period, then writes the tables of the traces
    /// whose first root span starts in `[window.start, window.end)` into `dir`. Traces that
    /// start later stay for the next window; spans of earlier traces are dropped (and counted).
    pub fn collect_window(
        &self,
        window: &Window,
        dir: &Path,
    ) -> Result<(TraceCounts, Vec<Written>), OtlpError> {
        let deadline = window.end + self.shared.settings.grace;
        if let Ok(wait) = deadline.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
        let select = Select::Window {
            start_ns: unix_micros(window.start) * 1000,
            end_ns: unix_micros(window.end) * 1000,
        };
        self.collect(select, dir)
    }

    /// Writes the tables of every span received so far (and not yet collected) into `dir`.
    pub fn collect_all(&self, dir: &Path) -> Result<(TraceCounts, Vec<Written>), OtlpError> {
        self.collect(Select::All, dir)
    }

    /// Takes the stored spans (new ones keep arriving into an empty store meanwhile), writes the
    /// selected traces, and puts back the ones for later windows. When reading the spill file or
    /// writing the tables fails, the spans taken are lost with the error.
    ///
    /// `traces_summary.csv` gets `otlp_requests`, `otlp_rejected_requests` and
    /// `otlp_spans_received` (since the receiver started), and for this collection
    /// `otlp_spans_written`, `otlp_spans_kept_for_later`, `otlp_spans_before_window`,
    /// `otlp_spilled_bytes` and `otlp_buckets`.
    fn collect(
        &self,
        select: Select,
        dir: &Path,
    ) -> Result<(TraceCounts, Vec<Written>), OtlpError> {
        let fail = |source| OtlpError::Collect {
            dir: dir.to_path_buf(),
            source,
        };
        let settings = &self.shared.settings;
        let mut p = TraceProcessor::create(dir).map_err(OtlpError::Tables)?;
        let (taken, spilled) = {
            let mut store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
            let spilled = store.spilled();
            (store.take().map_err(|e| fail(e.into()))?, spilled)
        };
        let sorted = collect::collect(
            taken,
            select,
            settings.memory_bound,
            &settings.spill_dir,
            &mut p,
        )
        .map_err(fail)?;
        if sorted.kept_spans > 0 {
            let mut store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
            store
                .push(&sorted.kept, sorted.kept_spans)
                .map_err(|e| fail(e.into()))?;
        }
        let r = self.received();
        for (k, v) in [
            ("otlp_requests", r.requests),
            ("otlp_rejected_requests", r.rejected),
            ("otlp_spans_received", r.spans),
            ("otlp_spans_written", sorted.written),
            ("otlp_spans_kept_for_later", sorted.kept_spans),
            ("otlp_spans_before_window", sorted.dropped),
            ("otlp_spilled_bytes", spilled),
            ("otlp_buckets", sorted.buckets),
        ] {
            p.add_summary(k, v.to_string());
        }
        p.finish().map_err(OtlpError::Tables)
    }

    /// Stops accepting, ends the server thread, and drops the stored spans.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a receiver for `duration` (Ctrl-C ends it early), then writes the tables of everything
/// received into `dir`: `aefm collect otlp`.
pub fn receive_for(
    settings: Settings,
    duration: Duration,
    dir: &Path,
) -> Result<Vec<Written>, OtlpError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| OtlpError::Tables(crate::Error::io("creating directory", dir, e)))?;
    let receiver = Receiver::start(settings)?;
    tracing::info!(
        "otlp: receiving on http://{}{}",
        receiver.addr(),
        receive::TRACES_PATH
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(OtlpError::Start)?;
    rt.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("otlp: interrupted, writing the tables"),
        }
    });
    let r = receiver.received();
    tracing::info!(
        "otlp: {} spans in {} requests ({} refused)",
        r.spans,
        r.requests,
        r.rejected
    );
    let (_, written) = receiver.collect_all(dir)?;
    receiver.stop();
    Ok(written)
}

/// A byte size: digits with an optional `K`, `M` or `G` (binary: KiB, MiB, GiB; `KiB` etc. and
/// a trailing `B` are accepted too).
pub fn parse_size(s: &str) -> crate::Result<usize> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let shift = match t[digits..]
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => u32::MAX,
    };
    t[..digits]
        .parse::<usize>()
        .ok()
        .filter(|_| shift != u32::MAX)
        .and_then(|n| n.checked_mul(1usize.checked_shl(shift)?))
        .filter(|&n| n > 0)
        .ok_or_else(|| crate::Error::Invalid {
            what: "size",
            message: format!("`{s}` is not a size such as 4096, 512K, 16M or 1G"),
        })
}

#[cfg(test)]
mod tests;
