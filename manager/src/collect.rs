//! Adapter over data collection: the local collector samples CPU and memory of every unit AEFM
//! started (app, interference, this process) while a case runs, and checks Prometheus and Jaeger
//! are reachable before any load is sent.
//!
//! Process CPU is read from `/proc/<pid>/stat` for every process of the unit's process group
//! (so `sh -c` wrappers and their children count), which is what the manager needs for the
//! summary's mean app CPU.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::components::{AppUnit, CollectSummary, ComponentError, DataCollector, UnitRole, Window};
use crate::context::Context;
use crate::load::LoadReport;

/// One sample of one unit.
#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    unit: String,
    role: UnitRole,
    cpu_percent: f64,
    rss_bytes: u64,
}

struct Sampling {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    samples: Arc<Mutex<Vec<Sample>>>,
    app_start_ticks: u64,
    app_pids: Vec<u32>,
    started: Instant,
}

/// Collects host samples for each case and checks external sources.
#[derive(Default)]
pub struct LocalCollector {
    sampling: Option<Sampling>,
}

impl LocalCollector {
    /// A collector with nothing running.
    pub fn new() -> Self {
        Self::default()
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// (utime+stime ticks, rss pages) of every process whose process group is `pgid`.
pub fn group_usage(pgid: u32) -> (u64, u64) {
    let mut ticks = 0;
    let mut rss = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((pg, t, r)) = read_stat(pid) {
            if pg == pgid {
                ticks += t;
                rss += r;
            }
        }
    }
    (ticks, rss)
}

/// (pgrp, utime+stime, rss pages) from /proc/<pid>/stat.
fn read_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] = state (field 3); pgrp = field 5, utime 14, stime 15, rss 24.
    let pgrp = f.get(2)?.parse().ok()?;
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    let rss: u64 = f.get(21)?.parse().ok()?;
    Some((pgrp, ut + st, rss))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl DataCollector for LocalCollector {
    fn preflight(&mut self, ctx: &Context) -> Result<(), ComponentError> {
        let t = Duration::from_secs(3);
        if let Some(p) = &ctx.config.collect.prometheus {
            let url = format!("{}/api/v1/status/buildinfo", p.url.trim_end_matches('/'));
            match crate::probe::http_status(&url, t) {
                Ok(200) => {}
                Ok(code) => {
                    return Err(ComponentError::Unreachable {
                        what: "Prometheus (collect.prometheus.url)".into(),
                        url,
                        reason: format!("answered status {code}, expected 200"),
                    })
                }
                Err(reason) => {
                    return Err(ComponentError::Unreachable {
                        what: "Prometheus (collect.prometheus.url)".into(),
                        url,
                        reason,
                    })
                }
            }
        }
        if let Some(j) = &ctx.config.collect.jaeger {
            let url = format!("{}/api/services", j.url.trim_end_matches('/'));
            match crate::probe::http_status(&url, t) {
                Ok(200) => {}
                other => {
                    return Err(ComponentError::Unreachable {
                        what: "Jaeger query (collect.jaeger.url)".into(),
                        url,
                        reason: match other {
                            Ok(c) => format!("answered status {c}, expected 200"),
                            Err(e) => e,
                        },
                    })
                }
            }
        }
        Ok(())
    }

    fn begin(&mut self, ctx: &Context, units: &[AppUnit]) -> Result<(), ComponentError> {
        if let Some(old) = self.sampling.take() {
            old.stop.store(true, Ordering::SeqCst);
            let _ = old.thread.join();
        }
        let mut targets: Vec<(String, UnitRole, u32)> = units
            .iter()
            .filter_map(|u| u.pid.map(|p| (u.name.clone(), u.role, p)))
            .collect();
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        targets.push(("aefm".into(), UnitRole::Load, own));
        let app_pids: Vec<u32> = targets
            .iter()
            .filter(|t| t.1 == UnitRole::App)
            .map(|t| t.2)
            .collect();
        let app_start_ticks = app_pids.iter().map(|p| group_usage(*p).0).sum();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let interval = ctx.config.collect.interval.max(Duration::from_millis(100));
        let thread = {
            let stop = stop.clone();
            let samples = samples.clone();
            std::thread::spawn(move || {
                let tck = clk_tck();
                let page = page_size();
                let mut prev: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
                for (name, _, pid) in &targets {
                    prev.insert(name.clone(), (group_usage(*pid).0, Instant::now()));
                }
                let mut next = Instant::now() + interval;
                while !stop.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    next += interval;
                    let t = now_unix();
                    let mut batch = Vec::new();
                    for (name, role, pid) in &targets {
                        let (ticks, rss) = group_usage(*pid);
                        let now = Instant::now();
                        let (pt, pi) = prev
                            .insert(name.clone(), (ticks, now))
                            .unwrap_or((ticks, now));
                        let dt = now.duration_since(pi).as_secs_f64();
                        let cpu = if dt > 0.0 {
                            (ticks.saturating_sub(pt)) as f64 / tck / dt * 100.0
                        } else {
                            0.0
                        };
                        batch.push(Sample {
                            t,
                            unit: name.clone(),
                            role: *role,
                            cpu_percent: cpu,
                            rss_bytes: rss * page,
                        });
                    }
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(batch);
                }
            })
        };
        self.sampling = Some(Sampling {
            stop,
            thread,
            samples,
            app_start_ticks,
            app_pids,
            started: Instant::now(),
        });
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
        collect_external(ctx, case_dir, window, report, &mut summary);
        if let Some(s) = self.sampling.take() {
            s.stop.store(true, Ordering::SeqCst);
            let _ = s.thread.join();
            let elapsed = s.started.elapsed().as_secs_f64();
            let end_ticks: u64 = s.app_pids.iter().map(|p| group_usage(*p).0).sum();
            if elapsed > 0.0 && !s.app_pids.is_empty() {
                summary.app_cpu_percent = Some(
                    end_ticks.saturating_sub(s.app_start_ticks) as f64 / clk_tck() / elapsed
                        * 100.0,
                );
            }
            let path = case_dir.join("host.csv");
            let samples = s.samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // Mean app CPU over the measured window only (warm-up and grace excluded): the mean
            // of each app unit's samples inside the window, summed over units.
            let ws = unix(window.start);
            let we = unix(window.end) + 0.5;
            let mut per_unit: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
            for x in samples
                .iter()
                .filter(|x| x.role == UnitRole::App && x.t > ws && x.t <= we)
            {
                let e = per_unit.entry(&x.unit).or_default();
                e.0 += x.cpu_percent;
                e.1 += 1;
            }
            if !per_unit.is_empty() {
                summary.app_cpu_percent = Some(per_unit.values().map(|(s, n)| s / *n as f64).sum());
            }
            let write = || -> std::io::Result<()> {
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                writeln!(f, "timestamp,unit,role,cpu_percent,rss_bytes")?;
                for x in &samples {
                    let role = match x.role {
                        UnitRole::App => "app",
                        UnitRole::Interference => "interference",
                        UnitRole::Load => "aefm",
                    };
                    writeln!(
                        f,
                        "{:.3},{},{},{:.2},{}",
                        x.t, x.unit, role, x.cpu_percent, x.rss_bytes
                    )?;
                }
                f.flush()
            };
            match write() {
                Ok(()) => summary.files.push(path),
                Err(e) => summary.errors.push(format!("{}: {e}", path.display())),
            }
        }
        Ok(summary)
    }
}

/// Prometheus and Jaeger for the case window, through aefm-collector (which also writes its
/// load-report summary files). Failures are recorded in the summary, not fatal.
fn collect_external(
    ctx: &Context,
    case_dir: &Path,
    window: &Window,
    report: Option<&LoadReport>,
    summary: &mut CollectSummary,
) {
    let cfg = &ctx.config.collect;
    if cfg.prometheus.is_none() && cfg.jaeger.is_none() {
        return;
    }
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
    sources.loadgen = report.and_then(|r| r.raw.clone());
    let tctx = aefm_collector::prometheus::TemplateContext {
        case: ctx
            .case
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let w = aefm_collector::Window {
        start: window.start,
        end: window.end,
    };
    let outcome = aefm_collector::case::collect_case(case_dir, &w, &tctx, &sources);
    for written in outcome.written() {
        summary.files.push(written.path.clone());
    }
    for (source, e) in outcome.errors() {
        summary.errors.push(format!("{source}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_group_has_cpu_ticks() {
        // SAFETY: getpgrp has no preconditions.
        let pg = unsafe { libc::getpgrp() } as u32;
        crate::demo::burn(30_000);
        let (ticks, rss) = group_usage(pg);
        assert!(ticks > 0);
        assert!(rss > 0);
    }
}
