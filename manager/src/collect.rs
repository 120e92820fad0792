//! Adapter over data collection: while a case runs, the collector's host sampler
//! ([`aefm_collector::host`]) samples CPU and memory of every unit AEFM started (app,
//! interference, this process) and of the whole host; before any load, Prometheus and Jaeger
//! are checked to be reachable and the OTLP receiver (`collect.otlp`) is started, to run until
//! the experiment ends; after the case, everything lands in the case directory.
//!
//! Each unit is sampled as a process tree (so `sh -c` wrappers and their children count), except
//! aefm itself, whose children are the units: it is sampled alone, with its threads (the
//! in-process load generator among them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aefm_collector::case::OtlpSource;
use aefm_collector::host::{HostSamples, Role, Sampler, Target};
use aefm_collector::window::unix_secs;

use crate::components::{AppUnit, CollectSummary, ComponentError, DataCollector, UnitRole, Window};
use crate::context::Context;
use crate::load::LoadReport;

/// Collects host samples for each case and checks external sources.
#[derive(Default)]
pub struct LocalCollector {
    sampler: Option<Sampler>,
    otlp: Option<OtlpSource>,
}

impl LocalCollector {
    /// A collector with nothing running.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The collector's role for a unit's role (the in-process load generator is aefm itself).
fn role(r: UnitRole) -> Role {
    match r {
        UnitRole::App => Role::App,
        UnitRole::Interference => Role::Interference,
        UnitRole::Load => Role::Generator,
    }
}

/// Mean CPU of the app over the window, percent of one core: each app unit's mean over its
/// samples inside `[start, end]`, summed over units. Falls back to all of the case's samples
/// when none fell inside (a window shorter than the sampling interval); `None` without any.
fn app_cpu_percent(host: &HostSamples, start: f64, end: f64) -> Option<f64> {
    let app = |r: &&aefm_collector::output::MetricRow| {
        r.metric == "process_cpu_percent" && r.labels.get("role").map(String::as_str) == Some("app")
    };
    let mean_per_unit = |inside: bool| {
        let mut per_unit: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for r in host
            .rows
            .iter()
            .filter(app)
            .filter(|r| !inside || (r.timestamp > start && r.timestamp <= end))
        {
            let unit = r.labels.get("pid").map(String::as_str).unwrap_or("");
            let e = per_unit.entry(unit).or_default();
            e.0 += r.value;
            e.1 += 1;
        }
        (!per_unit.is_empty()).then(|| per_unit.values().map(|(s, n)| s / *n as f64).sum())
    };
    mean_per_unit(true).or_else(|| mean_per_unit(false))
}

impl DataCollector for LocalCollector {
    fn preflight(&mut self, ctx: &Context) -> Result<(), ComponentError> {
        self.otlp = preflight_sources(ctx)?;
        Ok(())
    }

    fn begin(&mut self, ctx: &Context, units: &[AppUnit]) -> Result<(), ComponentError> {
        if let Some(old) = self.sampler.take() {
            old.stop();
        }
        let mut targets: Vec<Target> = units
            .iter()
            .filter_map(|u| {
                u.pid
                    .map(|p| Target::tree(p, role(u.role)).named(u.name.clone()))
            })
            .collect();
        targets.push(Target::process(std::process::id(), Role::Generator).named("aefm"));
        let interval = ctx.config.collect.interval.max(Duration::from_millis(100));
        self.sampler = Some(Sampler::start(targets, interval));
        Ok(())
    }

    fn collect(
        &mut self,
        ctx: &Context,
        case_dir: &Path,
        window: &Window,
        report: Option<&LoadReport>,
    ) -> Result<CollectSummary, ComponentError> {
        let mut summary = CollectSummary::default();
        let tctx = template_context(ctx);
        let otlp = self.otlp.as_ref();
        collect_external(ctx, case_dir, window, report, &tctx, otlp, &mut summary);
        if let Some(sampler) = self.sampler.take() {
            let host = sampler.stop();
            // Mean app CPU over the measured window only (warm-up and grace excluded).
            summary.app_cpu_percent =
                app_cpu_percent(&host, unix_secs(window.start), unix_secs(window.end) + 0.5);
            match aefm_collector::case::write_host(case_dir, &host) {
                Ok(written) => summary.files.extend(written.into_iter().map(|w| w.path)),
                Err(e) => summary.errors.push(format!("host: {e}")),
            }
            // Units that exited mid-case are worth a line in the case's errors.
            summary
                .errors
                .extend(host.errors.iter().map(|e| format!("host: {e}")));
        }
        Ok(summary)
    }
}

/// Checks, before any load, that the configured external sources answer: Prometheus's
/// build-info and Jaeger's service list, 3 s each; and starts the OTLP receiver, returned to run
/// until the experiment ends (a port already taken fails here). Both backends call it: a source
/// that is down is found before hours of load, not after.
pub fn preflight_sources(ctx: &Context) -> Result<Option<OtlpSource>, ComponentError> {
    let cfg = &ctx.config.collect;
    if let Some(p) = &cfg.prometheus {
        let url = format!("{}/api/v1/status/buildinfo", p.url.trim_end_matches('/'));
        expect_200("Prometheus (collect.prometheus.url)", url)?;
    }
    if let Some(j) = &cfg.jaeger {
        let url = format!("{}/api/services", j.url.trim_end_matches('/'));
        expect_200("Jaeger query (collect.jaeger.url)", url)?;
    }
    cfg.otlp.as_ref().map(|o| start_otlp(ctx, o)).transpose()
}

/// Starts the OTLP receiver of `collect.otlp`, spilling into the experiment directory.
fn start_otlp(ctx: &Context, o: &crate::config::OtlpConfig) -> Result<OtlpSource, ComponentError> {
    let listen = o
        .listen
        .parse()
        .map_err(|e| ComponentError::other(format!("collect.otlp.listen {:?}: {e}", o.listen)))?;
    let settings = aefm_collector::otlp::Settings {
        listen,
        max_body: (o.max_body_mb << 20) as usize,
        memory_bound: (o.memory_mb << 20) as usize,
        spill_dir: ctx.experiment_dir.clone(),
        grace: o.grace,
    };
    let receiver =
        aefm_collector::otlp::Receiver::start(settings).map_err(|e| ComponentError::Start {
            what: format!("OTLP receiver (collect.otlp.listen {})", o.listen),
            reason: e.to_string(),
        })?;
    tracing::info!(addr = %receiver.addr(), "OTLP receiver listening on /v1/traces");
    Ok(OtlpSource(std::sync::Arc::new(receiver)))
}

/// `Ok` when `url` answers 200, else the source named by `what` is unreachable, with why.
fn expect_200(what: &str, url: String) -> Result<(), ComponentError> {
    let reason = match crate::probe::http_status(&url, Duration::from_secs(3)) {
        Ok(200) => return Ok(()),
        Ok(code) => format!("answered status {code}, expected 200"),
        Err(e) => e,
    };
    Err(ComponentError::Unreachable {
        what: what.into(),
        url,
        reason,
    })
}

/// The variables every backend gives query templates: the case name; backends add theirs
/// (namespace, pod regex, experiment on Kubernetes).
pub fn template_context(ctx: &Context) -> aefm_collector::prometheus::TemplateContext {
    aefm_collector::prometheus::TemplateContext {
        case: ctx
            .case
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The collector's sources for a case, from the `collect:` section and the load report: the one
/// place that maps config onto aefm-collector settings, for both backends. `step` is the
/// smallest step (the collector widens it to stay under Prometheus's point limit). `None`
/// without Prometheus or Jaeger.
pub fn case_sources(
    ctx: &Context,
    report: Option<&LoadReport>,
    otlp: Option<&OtlpSource>,
) -> Option<aefm_collector::case::CaseSources> {
    let cfg = &ctx.config.collect;
    let mut sources = aefm_collector::case::CaseSources::default();
    if let Some(p) = &cfg.prometheus {
        let mut s = aefm_collector::prometheus::PrometheusSettings::new(p.url.clone());
        if !p.queries.is_empty() {
            s.queries = p
                .queries
                .iter()
                .map(|(name, q)| {
                    aefm_collector::prometheus::QueryTemplate::range(name.clone(), q.clone())
                })
                .collect();
        }
        s.min_step = p.step;
        s.grace = p.grace;
        sources.prometheus = Some(s);
    }
    if let Some(j) = &cfg.jaeger {
        let mut s = aefm_collector::jaeger::JaegerSettings::new(j.url.clone(), j.service.clone());
        s.grace = j.grace;
        sources.jaeger = Some(s);
    }
    sources.otlp = otlp.cloned();
    if sources.prometheus.is_none() && sources.jaeger.is_none() && sources.otlp.is_none() {
        // The load report's own files are written with the case; the collector's tidy copy of it
        // travels with the external sources (trace coverage needs the requests sent).
        return None;
    }
    sources.loadgen = report.and_then(|r| r.raw.clone());
    Some(sources)
}

/// Prometheus, Jaeger and the load report for the case window, through aefm-collector, with the
/// backend's template variables `tctx`. Failures are recorded in the summary, not fatal; each
/// source's completeness goes to the summary for the validity verdict.
pub fn collect_external(
    ctx: &Context,
    case_dir: &Path,
    window: &Window,
    report: Option<&LoadReport>,
    tctx: &aefm_collector::prometheus::TemplateContext,
    otlp: Option<&OtlpSource>,
    summary: &mut CollectSummary,
) {
    let Some(sources) = case_sources(ctx, report, otlp) else {
        return;
    };
    let w = aefm_collector::Window {
        start: window.start,
        end: window.end,
    };
    let outcome = aefm_collector::case::collect_case(case_dir, &w, tctx, &sources);
    for written in outcome.written() {
        summary.files.push(written.path.clone());
    }
    for (source, e) in outcome.errors() {
        summary.errors.push(format!("{source}: {e}"));
    }
    for s in &outcome.sources {
        if let Some(c) = s.completeness {
            summary.completeness.push((s.source.clone(), c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aefm_collector::output::{Labels, MetricRow};

    fn row(t: f64, metric: &str, role: &str, pid: &str, value: f64) -> MetricRow {
        let mut labels = Labels::new();
        labels.insert("role".into(), role.into());
        labels.insert("pid".into(), pid.into());
        MetricRow {
            timestamp: t,
            source: "host".into(),
            metric: metric.into(),
            labels,
            value,
        }
    }

    #[test]
    fn app_cpu_is_the_window_mean_summed_over_app_units() {
        let host = HostSamples {
            rows: vec![
                row(1.0, "process_cpu_percent", "app", "10", 90.0), // before the window
                row(2.0, "process_cpu_percent", "app", "10", 20.0),
                row(3.0, "process_cpu_percent", "app", "10", 40.0),
                row(3.0, "process_cpu_percent", "app", "11", 5.0),
                row(3.0, "process_cpu_percent", "interference", "12", 100.0),
                row(3.0, "process_rss_bytes", "app", "10", 1e9),
            ],
            errors: Vec::new(),
        };
        assert_eq!(app_cpu_percent(&host, 1.5, 3.5), Some(30.0 + 5.0));
        // No sample inside: every sample of the case.
        assert_eq!(app_cpu_percent(&host, 10.0, 11.0), Some(50.0 + 5.0));
        assert_eq!(app_cpu_percent(&HostSamples::default(), 0.0, 1.0), None);
    }
}
