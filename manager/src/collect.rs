//! Adapter over data collection: while a case runs, the collector's host sampler
//! ([`aefm_collector::host`]) samples CPU and memory of every unit AEFM started (app,
//! interference, this process) and of the whole host; before any load, Prometheus and Jaeger
//! are checked to be reachable and the OTLP receiver (`collect.otlp`) is started, to run until
//! the experiment ends; after the case, everything lands in the case directory.
//!
//! Each unit is sampled as a process tree (so `sh -c` wrappers and their children count), except
//! aefm itself, whose children are the units: it is sampled alone, with its threads (the
//! in-process load generator among them). What the host's CPU did beyond every sampled target
//! is the case's `other_cpu_cores`: the noise it was measured in, which `validity.max_other_cpu`
//! can bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aefm_collector::case::OtlpSource;
use aefm_collector::host::{HostSamples, Role, Sampler, Target};
use aefm_collector::output::MetricRow;
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

/// The value of label `key` of a row (`""` when absent).
fn label<'a>(r: &'a MetricRow, key: &str) -> &'a str {
    r.labels.get(key).map(String::as_str).unwrap_or("")
}

/// The mean of each series among the rows `keep` selects, keyed by its `(role, pid)` labels
/// (host-wide series have neither), over its samples inside `(start, end]`. Falls back to all of
/// the case's samples when none fell inside (a window shorter than the sampling interval); empty
/// without any.
fn window_means(
    host: &HostSamples,
    start: f64,
    end: f64,
    keep: impl Fn(&MetricRow) -> bool,
) -> BTreeMap<(&str, &str), f64> {
    let means = |inside: bool| {
        let mut sums: BTreeMap<(&str, &str), (f64, usize)> = BTreeMap::new();
        for r in host.rows.iter().filter(|r| keep(r)) {
            if !inside || (r.timestamp > start && r.timestamp <= end) {
                let e = sums.entry((label(r, "role"), label(r, "pid"))).or_default();
                e.0 += r.value;
                e.1 += 1;
            }
        }
        sums.into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect::<BTreeMap<_, _>>()
    };
    let inside = means(true);
    if inside.is_empty() {
        means(false)
    } else {
        inside
    }
}

/// Mean CPU of the app over the window, percent of one core: each app unit's mean over its
/// samples inside `[start, end]`, summed over units (with [`window_means`]'s fallback); `None`
/// without any sample.
fn app_cpu_percent(host: &HostSamples, start: f64, end: f64) -> Option<f64> {
    let means = window_means(host, start, end, |r| {
        r.metric == "process_cpu_percent" && label(r, "role") == "app"
    });
    (!means.is_empty()).then(|| means.values().sum())
}

/// Mean CPU over the window, in cores, of everything the sampler did not sample: the host's
/// busy share (of all `cores`) minus every target's mean CPU (app units, stressors, aefm),
/// clamped at 0 (a target's reaped children are charged when reaped, so the difference can dip
/// below 0). Same window rule as [`app_cpu_percent`]; `None` without a host CPU sample.
fn other_cpu_cores(host: &HostSamples, start: f64, end: f64, cores: f64) -> Option<f64> {
    let busy = window_means(host, start, end, |r| r.metric == "host_cpu_busy_share");
    let busy = *busy.values().next()?;
    let targets: f64 = window_means(host, start, end, |r| r.metric == "process_cpu_percent")
        .values()
        .sum();
    Some((busy * cores - targets / 100.0).max(0.0))
}

/// CPUs counted in `/proc/stat`'s `cpuN` lines: the online CPUs its aggregate `cpu` line (the
/// sampler's `host_cpu_busy_share`) is a share of. Not `available_parallelism`, which a cgroup
/// or an affinity mask may lower while the share stays one of the whole host.
fn stat_cpus(proc_stat: &str) -> usize {
    proc_stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
}

/// The host's online CPUs, from `/proc/stat`; `None` when unreadable.
fn host_cpus() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let n = stat_cpus(&text);
    (n > 0).then_some(n as f64)
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
            // Means over the measured window only (warm-up and grace excluded).
            let (start, end) = (unix_secs(window.start), unix_secs(window.end) + 0.5);
            summary.app_cpu_percent = app_cpu_percent(&host, start, end);
            summary.other_cpu_cores =
                host_cpus().and_then(|cpus| other_cpu_cores(&host, start, end, cpus));
            if summary.other_cpu_cores.is_none() {
                summary.noise_error =
                    Some("the host sampler recorded no host CPU for the window".into());
            }
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
/// without Prometheus, Jaeger, OTLP or a custom collection.
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
    sources.custom = ctx.collections.clone();
    if sources.prometheus.is_none()
        && sources.jaeger.is_none()
        && sources.otlp.is_none()
        && sources.custom.is_empty()
    {
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

    /// A host-wide row (no labels).
    fn busy(t: f64, share: f64) -> MetricRow {
        MetricRow {
            labels: Labels::new(),
            ..row(t, "host_cpu_busy_share", "", "", share)
        }
    }

    /// Two seconds of a 4-core host: app 150 %, a stressor 100 %, aefm 50 % (3 cores in all)
    /// under a host busy share of `share`, plus a sample before the window that must not count.
    fn busy_host(share: f64) -> HostSamples {
        let mut rows = vec![
            busy(1.0, 1.0),
            row(1.0, "process_cpu_percent", "app", "10", 0.0),
        ];
        for t in [2.0, 3.0] {
            rows.push(busy(t, share));
            rows.push(row(t, "process_cpu_percent", "app", "10", 150.0));
            rows.push(row(t, "process_cpu_percent", "interference", "12", 100.0));
            rows.push(row(t, "process_cpu_percent", "generator", "1", 50.0));
            rows.push(row(t, "process_rss_bytes", "app", "10", 1e9));
        }
        HostSamples {
            rows,
            errors: Vec::new(),
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn other_cpu_is_host_busy_minus_every_target() {
        // Quiet: the host was busy exactly with the targets.
        let quiet = other_cpu_cores(&busy_host(0.75), 1.5, 3.5, 4.0);
        assert!(close(quiet, 0.0), "{quiet:?}");
        // Half a core more than the targets: someone else's.
        let noisy = other_cpu_cores(&busy_host(0.875), 1.5, 3.5, 4.0);
        assert!(close(noisy, 0.5), "{noisy:?}");
        // No sample inside the window: every sample of the case (the first one's host was
        // fully busy with idle targets: (1 + 0.875 * 2) / 3 * 4 - (100 + 100 + 50) / 100).
        let all = other_cpu_cores(&busy_host(0.875), 10.0, 11.0, 4.0);
        assert!(close(all, 11.0 / 3.0 - 2.5), "{all:?}");
    }

    #[test]
    fn other_cpu_is_never_negative_and_needs_a_host_sample() {
        // Targets charged more than the host saw busy (reaped children): 0, not negative.
        assert_eq!(other_cpu_cores(&busy_host(0.5), 1.5, 3.5, 4.0), Some(0.0));
        let no_host = HostSamples {
            rows: vec![row(2.0, "process_cpu_percent", "app", "10", 50.0)],
            errors: Vec::new(),
        };
        assert_eq!(other_cpu_cores(&no_host, 1.5, 3.5, 4.0), None);
        // Only targets' rows missing: everything busy is someone else's.
        let only_host = HostSamples {
            rows: vec![busy(2.0, 0.25)],
            errors: Vec::new(),
        };
        assert!(close(other_cpu_cores(&only_host, 1.5, 3.5, 4.0), 1.0));
    }

    #[test]
    fn cpus_are_the_cpun_lines_of_proc_stat() {
        let stat = "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 5 0 2 50 0 0 0 0 0 0\ncpu1 5 0 3 50 0 0 0 0 0 0\nintr 1 2\ncpufreq x\nctxt 9\n";
        assert_eq!(stat_cpus(stat), 2);
        assert!(host_cpus().is_some_and(|n| n >= 1.0));
    }
}
