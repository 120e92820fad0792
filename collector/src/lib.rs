//! # aefm-collector
//!
//! Collects what a performance experiment needs about one time window (a test case) into tidy,
//! documented files in one directory: Prometheus series, Jaeger traces turned into span, edge,
//! per-operation, per-pod and end-to-end tables, load-generator results (aefm-load, wrk, wrk2), and
//! host samples from procfs. It fixes the original AEFM's collectors: correct exclusive time, all
//! traces of a window (not 1,000), a grace period for late data, atomic files, per-source errors.
//!
//! Data flows one way: settings and a [`Window`] → queries → rows → files. Each source module is
//! usable alone; [`case::collect_case`] runs them all for a test case, and [`cli`] is the
//! `aefm collect ...` command line.
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use aefm_collector::case::{collect_case, CaseSources};
//! use aefm_collector::jaeger::JaegerSettings;
//! use aefm_collector::prometheus::{PrometheusSettings, TemplateContext};
//! use aefm_collector::Window;
//!
//! let end = SystemTime::now();
//! let window = Window::new(end - Duration::from_secs(60), end).unwrap();
//! let ctx = TemplateContext {
//!     namespace: Some("social-network".into()),
//!     pod_regex: Some("nginx-thrift.*|compose-post.*".into()),
//!     case: "rate=200,cpu=2".into(),
//!     ..Default::default()
//! };
//! let sources = CaseSources {
//!     prometheus: Some(PrometheusSettings::new("http://127.0.0.1:9090")),
//!     jaeger: Some(JaegerSettings::new("http://127.0.0.1:16686", "nginx-web-server")),
//!     ..Default::default()
//! };
//! // Waits for the grace period, queries both servers in parallel, writes the files.
//! let outcome = collect_case("data/rate=200,cpu=2".as_ref(), &window, &ctx, &sources);
//! for (source, error) in outcome.errors() {
//!     eprintln!("{source}: {error}");
//! }
//! for file in outcome.written() {
//!     println!("{file}");
//! }
//! ```
//!
//! # Files
//!
//! All times are Unix seconds (float) in long-format files and µs since the epoch in trace files;
//! all durations in trace files are µs. Every file is written to a temporary file in the same
//! directory and renamed, so a crash never leaves half a file.
//!
//! **Long format** (`prometheus.csv`, `host.csv`, `loadgen.csv`, `wrk.csv`, `scrape.csv`), columns
//! `timestamp,source,metric,labels,value`: `source` is `prometheus`, `host`, `loadgen`, `wrk` or
//! `scrape`; `metric` is the query name (Prometheus) or the metric name; `labels` is `k=v;k=v`
//! sorted by key, with `\`, `;` and `=` escaped by a backslash ([`output::encode_labels`]); `value`
//! is a float (`NaN`, `+Inf`, `-Inf` as Prometheus writes them). The files share columns, so they
//! concatenate.
//!
//! **Series summaries** (`prometheus_summary.csv`, `host_summary.csv`, `scrape_summary.csv`, the
//! hardware summary): `source,metric,labels,samples,first,last,min,mean,p50,p95,max`, one row per
//! series. `prometheus_queries.csv`: `name,kind,promql,start,end,step_s,series,points,
//! expected_points,status,error`, one row per query (missing points = missed scrapes or series
//! that started or ended inside the window).
//!
//! **Traces** ([`traces`]):
//! * `spans.csv`: `trace_id,span_id,parent_id,ref_type,microservice,pod,operation,start_time,
//!   end_time,duration,self_duration,children,error`; `ref_type` is `ROOT`, `CHILD_OF`,
//!   `FOLLOWS_FROM` or `ORPHAN`; `pod` is the process tag `hostname`.
//! * `edges.csv`: one row per parent→child edge, with the original AEFM's `raw_data.csv` columns
//!   where the meaning is the same: `trace_id,parent_id,trace_time,start_time,end_time,child_id,
//!   child_operation,parent_operation,child_ms,child_pod,parent_ms,parent_pod,parent_duration,
//!   child_duration,exact_parent_duration`, then `child_self_duration,ref_type`.
//!   `exact_parent_duration` is the parent's self time, now computed correctly (the original's
//!   `merged_child_duration` and `step` are gone: the union replaces them).
//! * `operations.csv` (`microservice,operation,...`) and `pods.csv` (`microservice,pod,...`):
//!   `count,errors,self_mean,self_p50,self_p90,self_p95,self_p99,total_mean,total_p50,total_p90,
//!   total_p95,total_p99` (µs; quantiles interpolate linearly like pandas).
//! * `end_to_end.csv`: `trace_id,trace_time,trace_duration,extent,spans,roots,orphans,root_ms,
//!   root_operation,errors`; `trace_duration` is the root's duration, or the extent (last end −
//!   first start) when the trace has no root or several.
//! * `traces_summary.csv` (`key,value`): traces, spans, duplicates, orphans, multi-root and
//!   rootless traces, FOLLOWS_FROM edges, children outside their parent, error spans, and for a
//!   fetch: requests made, page limit, truncated windows, requests sent and coverage.
//! * `jaeger_traces.json`: the raw traces (`{"data":[...]}`), reprocessable with
//!   `aefm collect traces`.
//!
//! **Load generator** ([`loadgen`]): `loadgen_summary.csv` / `wrk_summary.csv`, columns
//! `source,run,kind,requests,errors,duration_s,throughput_rps,mean_us,p50_us,p75_us,p90_us,p99_us,
//! p999_us,p9999_us,max_us`, one row per run and latency kind (`corrected`, `uncorrected`,
//! `send_lag`).
//!
//! **`collection.json`**: the case, window, template context, and per source `ok` with its files
//! or `error` with the message.

#![warn(missing_docs)]

pub mod case;
pub mod cli;
pub mod custom;
pub mod error;
pub mod host;
pub mod http;
pub mod jaeger;
pub mod join;
pub mod loadgen;
pub mod otlp;
pub mod output;
pub mod prometheus;
pub mod scrape;
pub mod traces;
pub mod window;
pub mod wrk;

pub use case::{collect_case, grace_deadline, CaseOutcome, CaseSources, SourceOutcome};
pub use error::{Error, Result};
pub use host::{HostSamples, Role, Sampler, Target};
pub use jaeger::JaegerSettings;
pub use output::{MetricRow, Written};
pub use prometheus::{PrometheusSettings, QueryTemplate, TemplateContext};
pub use window::Window;
