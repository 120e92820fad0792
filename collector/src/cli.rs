//! `aefm collect ...`: the subcommands (clap) and their execution. The `aefm` binary only parses
//! and prints; everything happens here.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Subcommand;

use crate::error::{Error, Result};
use crate::host::{Role, Sampler, Target};
use crate::jaeger::JaegerSettings;
use crate::output::{self, Written};
use crate::prometheus::{default_queries, PrometheusSettings, QueryTemplate, TemplateContext};
use crate::window::{parse_duration, parse_time_at, Window};

/// Collect one source for any window, without running an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CollectCommand {
    /// Range queries against a Prometheus server (prometheus.csv, prometheus_summary.csv,
    /// prometheus_queries.csv).
    Prometheus {
        /// Base URL of the server, e.g. http://127.0.0.1:9090.
        #[arg(long)]
        url: String,
        /// PromQL (repeatable). `{{namespace}}`, `{{pod_regex}}`, `{{node}}`, `{{window}}`,
        /// `{{step}}`, `{{rate_window}}` are replaced.
        #[arg(long = "query", required_unless_present = "defaults")]
        query: Vec<String>,
        /// Add the default query set (pod CPU/memory share of limit, node CPU, memory, network).
        #[arg(long)]
        defaults: bool,
        /// Window start: Unix seconds, RFC 3339, or now-5m.
        #[arg(long)]
        start: String,
        /// Window end (inclusive).
        #[arg(long)]
        end: String,
        /// Step (e.g. 15s); default: automatic, at least --min-step, under 11,000 points.
        #[arg(long)]
        step: Option<String>,
        /// Smallest automatic step (set it to the scrape interval).
        #[arg(long, default_value = "15s")]
        min_step: String,
        /// Namespace for `{{namespace}}`.
        #[arg(long)]
        namespace: Option<String>,
        /// Pod regex for `{{pod_regex}}`.
        #[arg(long)]
        pod_regex: Option<String>,
        /// Node for `{{node}}`.
        #[arg(long)]
        node: Option<String>,
        /// Timeout per request.
        #[arg(long, default_value = "30s")]
        timeout: String,
        /// Retries on connection errors and 5xx.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// All traces of a service in a window from a Jaeger query service (spans.csv, edges.csv,
    /// operations.csv, pods.csv, end_to_end.csv, traces_summary.csv, jaeger_traces.json).
    Jaeger {
        /// Base URL of the query service, e.g. http://127.0.0.1:16686.
        #[arg(long)]
        url: String,
        /// Service (the entrance service of the application).
        #[arg(long)]
        service: String,
        /// Window start: Unix seconds, RFC 3339, or now-5m.
        #[arg(long)]
        start: String,
        /// Window end (inclusive).
        #[arg(long)]
        end: String,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// Tag filter key=value (repeatable), e.g. http.status_code=200.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Traces per request; a full page splits the window.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Requests sent in the window, for the coverage line.
        #[arg(long)]
        requests_sent: Option<u64>,
        /// Timeout per request.
        #[arg(long, default_value = "30s")]
        timeout: String,
        /// Retries on connection errors and 5xx.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Do not keep the raw traces (jaeger_traces.json).
        #[arg(long)]
        no_raw: bool,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sample processes (with their children) and the host from procfs (host.csv, host_summary.csv).
    Host {
        /// Process to sample (repeatable).
        #[arg(long = "pid", required = true)]
        pids: Vec<u32>,
        /// How long to sample, e.g. 10s.
        #[arg(long)]
        duration: String,
        /// Sampling interval.
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Role label of the processes: app, interference, generator, or any name.
        #[arg(long, default_value = "app")]
        role: String,
        /// Sample only the process itself, not its descendants.
        #[arg(long)]
        no_children: bool,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert a load-generator report: aefm-load --json, or wrk/wrk2 text output (loadgen.csv or
    /// wrk.csv, and the matching *_summary.csv).
    Loadgen {
        /// The report file.
        report: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Scrape Prometheus text endpoints at a fixed interval (scrape.csv, scrape_summary.csv).
    Scrape {
        /// Endpoint URL, e.g. http://127.0.0.1:9100/metrics (repeatable).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// How long to scrape.
        #[arg(long)]
        duration: String,
        /// Interval.
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Reprocess a Jaeger JSON file (a saved jaeger_traces.json or a Jaeger UI export) into the
    /// trace tables.
    Traces {
        /// The JSON file.
        input: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Receive OpenTelemetry spans over OTLP/HTTP (POST /v1/traces, protobuf or JSON) for a
    /// while (Ctrl-C ends early), then write the trace tables (as `traces`).
    Otlp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4318")]
        listen: std::net::SocketAddr,
        /// How long to receive, e.g. 60s.
        #[arg(long)]
        duration: String,
        /// Output directory (also holds the spill file while receiving).
        #[arg(long)]
        out: PathBuf,
        /// Largest request body, in bytes (suffixes K, M, G: KiB, MiB, GiB).
        #[arg(long, default_value = "16M")]
        max_body: String,
        /// Span bytes kept in memory before spilling to disk (suffixes K, M, G).
        #[arg(long, default_value = "256M")]
        memory_bound: String,
    },
}

fn window(start: &str, end: &str) -> Result<Window> {
    let now = SystemTime::now();
    Window::new(parse_time_at(start, now)?, parse_time_at(end, now)?)
}

fn http(timeout: &str, retries: u32) -> Result<crate::http::HttpSettings> {
    Ok(crate::http::HttpSettings {
        timeout: parse_duration(timeout)?,
        retries,
        ..Default::default()
    })
}

/// Runs a `collect` subcommand and returns the files written.
pub fn execute(cmd: &CollectCommand) -> Result<Vec<Written>> {
    match cmd {
        CollectCommand::Prometheus {
            url,
            query,
            defaults,
            start,
            end,
            step,
            min_step,
            namespace,
            pod_regex,
            node,
            timeout,
            retries,
            out,
        } => {
            let window = window(start, end)?;
            let mut settings = PrometheusSettings::new(url.clone());
            settings.queries = query
                .iter()
                .map(|q| QueryTemplate::range(q.clone(), q.clone()))
                .collect();
            if *defaults {
                settings.queries.extend(default_queries());
            }
            settings.min_step = parse_duration(min_step)?;
            settings.step = step.as_deref().map(parse_duration).transpose()?;
            if settings.step == Some(Duration::ZERO) {
                return Err(Error::Invalid {
                    what: "step",
                    message: "must be positive".into(),
                });
            }
            settings.http = http(timeout, *retries)?;
            let ctx = TemplateContext {
                namespace: namespace.clone(),
                pod_regex: pod_regex.clone(),
                node: node.clone(),
                case: "cli".into(),
                ..Default::default()
            };
            let outcomes = crate::case::collect_prometheus(out, &settings, &window, &ctx, true);
            let mut written = Vec::new();
            for o in outcomes {
                written.extend(o.result?);
            }
            Ok(written)
        }
        CollectCommand::Jaeger {
            url,
            service,
            start,
            end,
            operation,
            tags,
            limit,
            requests_sent,
            timeout,
            retries,
            no_raw,
            out,
        } => {
            let window = window(start, end)?;
            let mut s = JaegerSettings::new(url.clone(), service.clone());
            s.operation = operation.clone();
            for t in tags {
                let (k, v) = t.split_once('=').ok_or_else(|| Error::Invalid {
                    what: "tag",
                    message: format!("`{t}`: expected key=value"),
                })?;
                s.tags.insert(k.to_string(), v.to_string());
            }
            if *limit == 0 {
                return Err(Error::Invalid {
                    what: "limit",
                    message: "must be at least 1".into(),
                });
            }
            s.page_limit = *limit;
            s.keep_raw = !no_raw;
            s.http = http(timeout, *retries)?;
            let (_, _, written) = crate::jaeger::collect(&s, &window, out, *requests_sent)?;
            Ok(written)
        }
        CollectCommand::Host {
            pids,
            duration,
            interval,
            role,
            no_children,
            out,
        } => {
            let duration = parse_duration(duration)?;
            let interval = parse_interval(interval)?;
            for pid in pids {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(Error::Host(format!("pid {pid} does not exist")));
                }
            }
            let role = Role::parse(role);
            let targets = pids
                .iter()
                .map(|&pid| Target {
                    include_children: !no_children,
                    ..Target::tree(pid, role.clone())
                })
                .collect();
            let sampler = Sampler::start(targets, interval);
            std::thread::sleep(duration);
            let samples = sampler.stop();
            for e in &samples.errors {
                tracing::warn!("{e}");
            }
            crate::case::write_host(out, &samples)
        }
        CollectCommand::Loadgen { report, out } => {
            let end = std::fs::metadata(report)
                .and_then(|m| m.modified())
                .map(crate::window::unix_secs)
                .map_err(|e| Error::io("reading", report, e))?;
            let (rows, summary, source) = crate::loadgen::read_any(report, end)?;
            let (long, sum) = if source == "wrk" {
                ("wrk.csv", "wrk_summary.csv")
            } else {
                ("loadgen.csv", "loadgen_summary.csv")
            };
            Ok(vec![
                Written {
                    path: output::write_long(out, long, &rows)?,
                    what: format!("{source} results in long format: {} rows", rows.len()),
                },
                Written {
                    path: crate::loadgen::write_summary_named(out, sum, &summary)?,
                    what: format!("{source} latency percentiles, throughput and errors"),
                },
            ])
        }
        CollectCommand::Otlp {
            listen,
            duration,
            out,
            max_body,
            memory_bound,
        } => {
            let settings = crate::otlp::Settings {
                listen: *listen,
                max_body: crate::otlp::parse_size(max_body)?,
                memory_bound: crate::otlp::parse_size(memory_bound)?,
                spill_dir: out.clone(),
                ..Default::default()
            };
            crate::otlp::receive_for(settings, parse_duration(duration)?, out)
                .map_err(|e| Error::io("collecting OTLP spans into", out, std::io::Error::other(e)))
        }
        CollectCommand::Scrape {
            urls,
            duration,
            interval,
            out,
        } => {
            let duration = parse_duration(duration)?;
            let interval = parse_interval(interval)?;
            let http = crate::http::HttpSettings {
                timeout: interval.max(Duration::from_secs(1)),
                retries: 0,
                ..Default::default()
            };
            let scraper = crate::scrape::Scraper::start(urls.clone(), interval, http);
            std::thread::sleep(duration);
            let (rows, errors) = scraper.stop();
            if rows.is_empty() {
                return Err(errors.into_iter().next().unwrap_or(Error::Empty {
                    origin: "scrape",
                    what: urls.join(", "),
                    window: format!("{duration:?}"),
                }));
            }
            for e in &errors {
                tracing::warn!("{e}");
            }
            Ok(vec![
                Written {
                    path: output::write_long(out, "scrape.csv", &rows)?,
                    what: format!(
                        "scraped samples: {} rows ({} failed scrapes)",
                        rows.len(),
                        errors.len()
                    ),
                },
                Written {
                    path: output::write_series_summary(out, "scrape_summary.csv", &rows)?,
                    what: "per-series min/mean/p50/p95/max".into(),
                },
            ])
        }
        CollectCommand::Traces { input, out } => Ok(crate::traces::process_file(input, out)?.1),
    }
}

/// A sampling interval: a duration that must be positive.
fn parse_interval(text: &str) -> Result<Duration> {
    let interval = parse_duration(text)?;
    if interval.is_zero() {
        return Err(Error::Invalid {
            what: "interval",
            message: "must be positive".into(),
        });
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CollectCommand,
    }

    #[test]
    fn flags_parse_as_the_issue_writes_them() {
        let c = Cli::try_parse_from([
            "x",
            "prometheus",
            "--url",
            "http://h:9090",
            "--query",
            "up",
            "--start",
            "now-5m",
            "--end",
            "now",
            "--step",
            "1s",
            "--out",
            "d",
        ])
        .unwrap();
        assert!(matches!(c.cmd, CollectCommand::Prometheus { ref query, .. } if query == &["up"]));
        assert!(Cli::try_parse_from([
            "x",
            "jaeger",
            "--url",
            "u",
            "--service",
            "s",
            "--start",
            "1",
            "--end",
            "2",
            "--out",
            "d"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "x",
            "host",
            "--pid",
            "1",
            "--duration",
            "10s",
            "--out",
            "d"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["x", "loadgen", "r.json", "--out", "d"]).is_ok());
        assert!(Cli::try_parse_from([
            "x",
            "prometheus",
            "--url",
            "u",
            "--start",
            "1",
            "--end",
            "2",
            "--out",
            "d"
        ])
        .is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        let e = execute(&CollectCommand::Host {
            pids: vec![u32::MAX - 2],
            duration: "1s".into(),
            interval: "1s".into(),
            role: "app".into(),
            no_children: false,
            out: out.clone(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = execute(&CollectCommand::Traces {
            input: dir.path().join("missing.json"),
            out: out.clone(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("missing.json"), "{e}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "not a report\n").unwrap();
        let e = execute(&CollectCommand::Loadgen {
            report: bad,
            out: out.clone(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("bad.txt:1:"), "{e}");
        assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0);
    }
}
