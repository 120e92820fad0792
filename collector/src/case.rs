//! One test case: collect every configured source for its window into one directory, each source
//! independently (one failing is reported and the others still land), and record what happened in
//! `collection.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::host::HostSamples;
use crate::jaeger::JaegerSettings;
use crate::output::{self, MetricRow, Written};
use crate::prometheus::{PrometheusSettings, QueryKind, TemplateContext};
use crate::window::{rfc3339, Window};

/// What to collect for a test case. Sources left `None` are skipped.
#[derive(Debug, Default)]
pub struct CaseSources {
    /// Prometheus server and queries.
    pub prometheus: Option<PrometheusSettings>,
    /// Jaeger query service.
    pub jaeger: Option<JaegerSettings>,
    /// aefm-loadgen's report of the case.
    pub loadgen: Option<crate::loadgen::LoadgenReport>,
    /// Host samples taken during the case (see [`crate::host::Sampler`]).
    pub host: Option<HostSamples>,
    /// Text output of wrk or wrk2 (possibly several runs concatenated).
    pub wrk_text: Option<String>,
    /// Rows scraped from exposition endpoints during the case (see [`crate::scrape::Scraper`]).
    pub scraped: Option<Vec<MetricRow>>,
    /// A running OTLP receiver (shared across cases) whose spans of the window become the
    /// case's trace tables. One trace source per case: not together with `jaeger`.
    pub otlp: Option<OtlpSource>,
    /// Sources of the user's own, run after the built-in ones, in order.
    pub custom: Vec<crate::custom::CustomSource>,
}

/// A running OTLP receiver as a case's trace source (cheap to clone: the receiver is shared).
#[derive(Clone)]
pub struct OtlpSource(pub std::sync::Arc<crate::otlp::Receiver>);

impl std::fmt::Debug for OtlpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtlpSource({})", self.0.addr())
    }
}

/// The outcome of one source.
#[derive(Debug)]
pub struct SourceOutcome {
    /// `prometheus:<query>`, `jaeger`, `loadgen`, `wrk`, `host`, `scrape`.
    pub source: String,
    /// Files written, or why the source failed.
    pub result: Result<Vec<Written>>,
    /// How much of what was expected arrived, for sources where that is known: Prometheus
    /// points against the points a full scrape record would have, Jaeger traces against requests
    /// sent.
    pub completeness: Option<Completeness>,
}

/// Present against expected, for a source whose completeness can be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Completeness {
    /// What arrived (Prometheus points, traces).
    pub present: u64,
    /// What a complete record would hold (points of every series at every step, requests sent).
    pub expected: u64,
}

impl Completeness {
    /// `present / expected`, or `None` when nothing was expected.
    pub fn share(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.present as f64 / self.expected as f64)
    }
}

/// What [`collect_case`] did.
#[derive(Debug)]
pub struct CaseOutcome {
    /// The case directory.
    pub dir: PathBuf,
    /// One entry per source (per query for Prometheus).
    pub sources: Vec<SourceOutcome>,
}

impl CaseOutcome {
    /// True when every source succeeded.
    pub fn all_ok(&self) -> bool {
        self.sources.iter().all(|s| s.result.is_ok())
    }

    /// Every file written, in order.
    pub fn written(&self) -> Vec<&Written> {
        self.sources
            .iter()
            .filter_map(|s| s.result.as_ref().ok())
            .flatten()
            .collect()
    }

    /// The failed sources and their errors.
    pub fn errors(&self) -> Vec<(&str, &Error)> {
        self.sources
            .iter()
            .filter_map(|s| s.result.as_ref().err().map(|e| (s.source.as_str(), e)))
            .collect()
    }
}

/// When the slowest source's grace period after the window ends (the earliest time to query).
pub fn grace_deadline(window: &Window, sources: &CaseSources) -> SystemTime {
    let g = sources
        .prometheus
        .as_ref()
        .map(|p| p.grace)
        .into_iter()
        .chain(sources.jaeger.as_ref().map(|j| j.grace))
        .max()
        .unwrap_or(Duration::ZERO);
    window.end + g
}

/// Collects every source of `sources` for `window` into `dir`, after sleeping until
/// [`grace_deadline`]. Prometheus and Jaeger are queried in parallel. Never panics on bad input;
/// every file is written atomically.
pub fn collect_case(
    dir: &Path,
    window: &Window,
    ctx: &TemplateContext,
    sources: &CaseSources,
) -> CaseOutcome {
    if let Ok(wait) = grace_deadline(window, sources).duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    let mut out = CaseOutcome {
        dir: dir.to_path_buf(),
        sources: Vec::new(),
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        out.sources.push(SourceOutcome {
            completeness: None,
            source: "case".into(),
            result: Err(Error::io("creating directory", dir, e)),
        });
        return out;
    }
    let requests_sent = sources
        .loadgen
        .as_ref()
        .map(crate::loadgen::requests_sent)
        .or_else(|| {
            sources
                .wrk_text
                .as_ref()
                .and_then(|t| crate::wrk::parse(t, "wrk").ok())
                .map(|r| r.iter().map(|x| x.requests).sum())
        });

    let (prom, jaeger, otlp) = std::thread::scope(|s| {
        let p = s.spawn(|| {
            sources
                .prometheus
                .as_ref()
                .map(|p| collect_prometheus(dir, p, window, ctx, false))
        });
        let j = s.spawn(|| {
            sources.jaeger.as_ref().map(|j| {
                let mut j = j.clone();
                j.wanted = slow_trace_ids(sources);
                crate::jaeger::collect(&j, window, dir, requests_sent)
                    .map(|(_, fetch, written)| (fetch, written))
            })
        });
        let o = s.spawn(|| {
            sources
                .otlp
                .as_ref()
                .map(|o| otlp_outcome(&o.0, window, dir, requests_sent))
        });
        (
            p.join()
                .unwrap_or_else(|_| Some(vec![panicked("prometheus")])),
            j.join()
                .unwrap_or_else(|_| Some(Err(Error::Host("jaeger collection panicked".into())))),
            o.join().unwrap_or_else(|_| Some(panicked("otlp"))),
        )
    });
    out.sources.extend(otlp);
    if let Some(list) = prom {
        out.sources.extend(list);
    }
    if let Some(result) = jaeger {
        let (completeness, result) = match result {
            Ok((fetch, written)) => (
                fetch.requests_sent.map(|sent| Completeness {
                    present: fetch.traces,
                    expected: sent,
                }),
                Ok(written),
            ),
            Err(e) => (None, Err(e)),
        };
        out.sources.push(SourceOutcome {
            completeness,
            source: "jaeger".into(),
            result,
        });
    }
    if let Some(report) = &sources.loadgen {
        out.sources.push(SourceOutcome {
            completeness: None,
            source: "loadgen".into(),
            result: crate::loadgen::write_report(dir, report),
        });
    }
    if let Some(join) = join_traced(dir, sources) {
        out.sources.push(join);
    }
    if let Some(text) = &sources.wrk_text {
        let result = crate::wrk::parse(text, "wrk output").and_then(|runs| {
            let (rows, summary) = crate::loadgen::from_wrk(&runs, window.end_secs());
            Ok(vec![
                Written {
                    path: output::write_long(dir, "wrk.csv", &rows)?,
                    what: format!("wrk results: {} runs", runs.len()),
                },
                Written {
                    path: crate::loadgen::write_summary_named(dir, "wrk_summary.csv", &summary)?,
                    what: "wrk latency and throughput summary".into(),
                },
            ])
        });
        out.sources.push(SourceOutcome {
            completeness: None,
            source: "wrk".into(),
            result,
        });
    }
    if let Some(host) = &sources.host {
        out.sources.push(SourceOutcome {
            completeness: None,
            source: "host".into(),
            result: write_host(dir, host),
        });
    }
    if let Some(rows) = &sources.scraped {
        let result = output::write_long(dir, "scrape.csv", rows).map(|path| {
            vec![Written {
                path,
                what: format!("scraped samples: {} rows", rows.len()),
            }]
        });
        out.sources.push(SourceOutcome {
            completeness: None,
            source: "scrape".into(),
            result,
        });
    }
    for c in &sources.custom {
        out.sources.push(c.run(dir, window, ctx));
    }
    write_manifest(dir, window, ctx, &mut out);
    out
}

/// The OTLP receiver's traces of `window` as a source outcome; completeness is traces against
/// the requests sent, as for Jaeger.
fn otlp_outcome(
    receiver: &crate::otlp::Receiver,
    window: &Window,
    dir: &Path,
    requests_sent: Option<u64>,
) -> SourceOutcome {
    let result = receiver
        .collect_window(window, dir)
        .map_err(|e| Error::Otlp(Box::new(e)))
        .and_then(|(counts, written)| {
            if counts.traces > 0 {
                return Ok((counts, written));
            }
            // No span arrived: the source measured nothing, which is an error (as for Jaeger),
            // not a case with empty trace tables; a failed source leaves no files.
            for w in &written {
                let _ = std::fs::remove_file(&w.path);
            }
            let r = receiver.received();
            Err(Error::Empty {
                origin: "otlp",
                what: format!(
                    "traces on http://{}/v1/traces ({} spans in {} requests received since it started)",
                    receiver.addr(),
                    r.spans,
                    r.requests
                ),
                window: window.to_string(),
            })
        });
    let completeness = match (&result, requests_sent) {
        (Ok((counts, _)), Some(sent)) => Some(Completeness {
            present: counts.traces,
            expected: sent,
        }),
        _ => None,
    };
    SourceOutcome {
        completeness,
        source: "otlp".into(),
        result: result.map(|(_, written)| written),
    }
}

/// The trace ids of the load generator's slow traced requests (`aefm-load --traceparent`).
fn slow_trace_ids(sources: &CaseSources) -> Vec<String> {
    sources
        .loadgen
        .as_ref()
        .and_then(|r| r.traced.as_ref())
        .map(|t| t.slowest.iter().map(|r| r.trace_id.clone()).collect())
        .unwrap_or_default()
}

/// `join.csv` of the slow traced requests against the case's `spans.csv`, when the load
/// generator traced requests and a trace source wrote spans.
fn join_traced(dir: &Path, sources: &CaseSources) -> Option<SourceOutcome> {
    let traced = sources.loadgen.as_ref()?.traced.as_ref()?;
    let spans = dir.join("spans.csv");
    if !spans.exists() {
        return None;
    }
    Some(SourceOutcome {
        // How many were found is in join_summary.csv; a trace source's own completeness
        // already judges the case.
        completeness: None,
        source: "join".into(),
        result: crate::join::write_join(dir, traced, &spans),
    })
}

fn panicked(what: &str) -> SourceOutcome {
    SourceOutcome {
        completeness: None,
        source: what.into(),
        result: Err(Error::Host(format!("{what} collection panicked"))),
    }
}

/// Runs the Prometheus queries and writes `prometheus.csv`, `prometheus_summary.csv` and
/// `prometheus_queries.csv`. With `all_or_nothing` any failed query fails the whole source and
/// nothing is written (the command line's behaviour); otherwise each query has its own outcome.
pub fn collect_prometheus(
    dir: &Path,
    settings: &PrometheusSettings,
    window: &Window,
    ctx: &TemplateContext,
    all_or_nothing: bool,
) -> Vec<SourceOutcome> {
    let (rows, reports) = crate::prometheus::collect(settings, window, ctx);
    let name = |q: &str| format!("prometheus:{q}");
    if all_or_nothing {
        if let Some(i) = reports.iter().position(|r| r.error.is_some()) {
            let mut reports = reports;
            let r = reports.swap_remove(i);
            return vec![SourceOutcome {
                completeness: None,
                source: name(&r.name),
                result: Err(r.error.expect("checked")),
            }];
        }
    }
    let ok = reports.iter().filter(|r| r.error.is_none()).count();
    let files = (|| -> Result<Vec<Written>> {
        let mut files = Vec::new();
        if ok > 0 {
            files.push(Written {
                path: output::write_long(dir, "prometheus.csv", &rows)?,
                what: format!("prometheus series: {ok} queries, {} samples", rows.len()),
            });
            files.push(Written {
                path: output::write_series_summary(dir, "prometheus_summary.csv", &rows)?,
                what: "per-series min/mean/p50/p95/max of the prometheus series".into(),
            });
        }
        let path = output::write_atomic(dir, "prometheus_queries.csv", |w| {
            writeln!(
                w,
                "name,kind,promql,start,end,step_s,series,points,expected_points,status,error"
            )?;
            for r in &reports {
                output::csv_field(w, &r.name)?;
                let kind = settings
                    .queries
                    .iter()
                    .find(|q| q.name == r.name)
                    .map_or(QueryKind::Range, |q| q.kind);
                write!(
                    w,
                    ",{},",
                    if kind == QueryKind::Instant {
                        "instant"
                    } else {
                        "range"
                    }
                )?;
                output::csv_field(w, &r.promql)?;
                write!(
                    w,
                    ",{},{},{},{},{},{},{},",
                    output::fmt_f64(window.start_secs()),
                    output::fmt_f64(window.end_secs()),
                    r.step.as_secs_f64(),
                    r.series,
                    r.points,
                    r.expected_points,
                    if r.error.is_some() { "error" } else { "ok" }
                )?;
                output::csv_field(
                    w,
                    &r.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                )?;
                writeln!(w)?;
            }
            Ok(())
        })?;
        files.push(Written {
            path,
            what: "one line per query: PromQL, step, series, points, errors".into(),
        });
        Ok(files)
    })();
    match files {
        Err(e) => vec![SourceOutcome {
            completeness: None,
            source: "prometheus".into(),
            result: Err(e),
        }],
        Ok(files) => {
            let mut files = Some(files);
            reports
                .into_iter()
                .map(|r| SourceOutcome {
                    completeness: (r.error.is_none()).then_some(Completeness {
                        present: r.points as u64,
                        expected: r.expected_points as u64,
                    }),
                    source: name(&r.name),
                    result: match r.error {
                        Some(e) => Err(e),
                        // The shared files are listed once, under the first successful query.
                        None => Ok(files.take().unwrap_or_default()),
                    },
                })
                .collect()
        }
    }
}

/// Writes `host.csv` and `host_summary.csv`.
pub fn write_host(dir: &Path, host: &HostSamples) -> Result<Vec<Written>> {
    if host.rows.is_empty() {
        return Err(Error::Host(format!(
            "no samples recorded ({})",
            host.errors.join("; ")
        )));
    }
    Ok(vec![
        Written {
            path: output::write_long(dir, "host.csv", &host.rows)?,
            what: format!("host samples: {} rows", host.rows.len()),
        },
        Written {
            path: output::write_series_summary(dir, "host_summary.csv", &host.rows)?,
            what: "per-process and host min/mean/p50/p95/max".into(),
        },
    ])
}

fn write_manifest(dir: &Path, window: &Window, ctx: &TemplateContext, out: &mut CaseOutcome) {
    let sources: Vec<serde_json::Value> = out
        .sources
        .iter()
        .map(|s| match &s.result {
            Ok(files) => serde_json::json!({
                "source": s.source, "status": "ok",
                "files": files.iter().map(|f| f.path.file_name().map(|n| n.to_string_lossy().to_string())).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "source": s.source, "status": "error", "error": e.to_string() }),
        })
        .collect();
    let doc = serde_json::json!({
        "case": ctx.case,
        "window": {
            "start": window.start_secs(), "end": window.end_secs(),
            "start_rfc3339": rfc3339(window.start), "end_rfc3339": rfc3339(window.end),
        },
        "context": { "namespace": ctx.namespace, "pod_regex": ctx.pod_regex, "node": ctx.node, "extra": ctx.extra },
        "collected_at": rfc3339(SystemTime::now()),
        "sources": sources,
    });
    let r = output::write_atomic(dir, "collection.json", |w| {
        serde_json::to_writer_pretty(&mut *w, &doc).map_err(std::io::Error::other)?;
        writeln!(w)
    });
    let result = r.map(|path| {
        vec![Written {
            path,
            what: "what was collected, for which window, and what failed".into(),
        }]
    });
    out.sources.push(SourceOutcome {
        completeness: None,
        source: "manifest".into(),
        result,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_receiver_that_got_no_span_fails_the_source_and_leaves_no_tables() {
        let receiver = crate::otlp::Receiver::start(crate::otlp::Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
        let sources = CaseSources {
            otlp: Some(OtlpSource(std::sync::Arc::new(receiver))),
            ..Default::default()
        };
        let now = SystemTime::now();
        let window = Window::new(now - Duration::from_secs(2), now).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = collect_case(dir.path(), &window, &TemplateContext::default(), &sources);
        let errors = out.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "otlp");
        assert!(
            errors[0].1.to_string().contains("/v1/traces"),
            "{:?}",
            errors[0].1
        );
        assert!(!dir.path().join("spans.csv").exists());
        assert!(!dir.path().join("traces_summary.csv").exists());
    }
}
