//! Runs one stressor for its duration (or until stopped): starts it, writes a report line every
//! interval and a final line, serves the latest line on the metrics endpoint, and stops the
//! stressor (workers joined, memory freed, iperf3 killed) before returning.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::{write_line, ReportLine, ERROR_KEY};
use crate::spec::Stressor;
use crate::stop::StopSignal;
use crate::stressors::{self, round, Active, Ctx};
use crate::{metrics, units};

/// How to run a stressor.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Wall-clock duration; None = until the stop signal.
    pub duration: Option<Duration>,
    /// Serve Prometheus text metrics here.
    pub metrics_addr: Option<SocketAddr>,
    /// Report interval (1 s).
    pub interval: Duration,
    /// Root under which `/proc` and `/sys` are read (`/`; a fixture tree in tests).
    pub root: PathBuf,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            duration: None,
            metrics_addr: None,
            interval: Duration::from_secs(1),
            root: PathBuf::from("/"),
        }
    }
}

fn start(stressor: &Stressor, ctx: &Ctx) -> Result<Box<dyn Active>> {
    Ok(match stressor {
        Stressor::Cpu {
            workers,
            load_pct,
            cpus,
        } => Box::new(stressors::cpu::start(
            ctx,
            *workers,
            *load_pct,
            cpus.as_deref(),
        )?),
        Stressor::MemCap {
            size,
            retouch_per_s,
        } => Box::new(stressors::memcap::start(ctx, *size, *retouch_per_s)?),
        Stressor::MemBw { rate, workers } => {
            Box::new(stressors::membw::start(ctx, *rate, *workers, None)?)
        }
        Stressor::Cache { level, fraction } => {
            Box::new(stressors::cache::start(ctx, *level, *fraction)?)
        }
        Stressor::NetServer { port } => Box::new(stressors::net::start(
            ctx,
            stressors::net::Mode::Server { port: *port },
        )?),
        Stressor::NetClient {
            target,
            port,
            bandwidth_bps,
            streams,
        } => Box::new(stressors::net::start(
            ctx,
            stressors::net::Mode::Client {
                target: target.clone(),
                port: *port,
                bandwidth_bps: *bandwidth_bps,
                streams: *streams,
            },
        )?),
    })
}

fn line(
    a: &dyn Active,
    elapsed: Duration,
    achieved: f64,
    details: serde_json::Map<String, serde_json::Value>,
    last: bool,
) -> ReportLine {
    ReportLine {
        kind: a.kind().to_string(),
        elapsed_s: round(elapsed.as_secs_f64(), 3),
        target: a.target(),
        achieved,
        unit: a.unit().to_string(),
        r#final: last,
        details,
    }
}

/// Runs `stressor`, writing report lines to `out`; returns the final line. Errors only when the
/// stressor cannot start (bad request, above the limit, no iperf3, ...): then nothing was
/// allocated and nothing is written. A stressor that started but could not do its job (a worker
/// ended early, a net client never reached its server) carries an `error` detail on the lines
/// written meanwhile and on the final line ([`ReportLine::error`]); `aefm-stress` then exits 1.
/// Write errors on `out` are ignored (the stressor keeps its duration even if nobody reads the
/// report).
pub fn run(
    stressor: &Stressor,
    opts: &RunOptions,
    stop: &StopSignal,
    out: &mut dyn Write,
) -> Result<ReportLine> {
    let latest: metrics::Latest = Arc::new(Mutex::new(None));
    if let Some(addr) = opts.metrics_addr {
        metrics::serve(addr, latest.clone())?;
    }
    let begin = Instant::now();
    let ctx = Ctx {
        root: opts.root.clone(),
        stop: stop.flag(),
        duration: opts.duration,
    };
    let mut active = start(stressor, &ctx)?;
    let deadline = opts.duration.map(|d| begin + d);
    let interval = opts.interval.max(Duration::from_millis(10));
    let mut next = begin + interval;
    loop {
        let wake = deadline.map_or(next, |d| d.min(next));
        if stop.wait_until(wake) {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next {
            let failure = active.failure();
            let (achieved, mut details) = active.sample();
            if let Some(e) = failure {
                details.insert(ERROR_KEY.into(), e.into());
            }
            let l = line(active.as_ref(), now - begin, achieved, details, false);
            // Publish before printing: a reader that saw the line can scrape it.
            *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(l.clone());
            let _ = write_line(out, &l);
            while next <= now {
                next += interval;
            }
        }
    }
    // The end: look for a failure while the workers still should run, tell every worker to
    // stop, then collect the whole-run figure.
    let failure = active.failure();
    stop.flag().store(true, std::sync::atomic::Ordering::SeqCst);
    let elapsed = begin.elapsed();
    let (kind, unit, target) = (active.kind(), active.unit(), active.target());
    let (achieved, mut details) = active.finish();
    if let Some(e) = failure {
        details.entry(ERROR_KEY).or_insert_with(|| e.into());
    }
    if let Some(d) = opts.duration {
        details.insert("duration".into(), units::format_duration(d).into());
    }
    let l = ReportLine {
        kind: kind.into(),
        elapsed_s: round(elapsed.as_secs_f64(), 3),
        target,
        achieved,
        unit: unit.into(),
        r#final: true,
        details,
    };
    *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(l.clone());
    let _ = write_line(out, &l);
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_run_reports_each_interval_and_a_final_line() {
        let stop = StopSignal::new().unwrap();
        let opts = RunOptions {
            duration: Some(Duration::from_millis(700)),
            interval: Duration::from_millis(200),
            ..Default::default()
        };
        let mut out = Vec::new();
        let t0 = Instant::now();
        let fin = run(
            &Stressor::Cpu {
                workers: 1,
                load_pct: 20.0,
                cpus: None,
            },
            &opts,
            &stop,
            &mut out,
        )
        .unwrap();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let lines: Vec<ReportLine> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.last().unwrap().r#final && lines.iter().filter(|l| l.r#final).count() == 1);
        assert_eq!(fin.kind, "cpu");
        assert_eq!(fin.unit, "%");
        assert_eq!(fin.target, 20.0);
        assert!(fin.achieved > 0.0 && fin.achieved < 60.0, "{fin:?}");
    }

    #[test]
    fn stop_ends_a_run_without_duration() {
        let stop = StopSignal::new().unwrap();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            s2.trigger();
        });
        let mut out = Vec::new();
        let t0 = Instant::now();
        let fin = run(
            &Stressor::Cpu {
                workers: 1,
                load_pct: 5.0,
                cpus: None,
            },
            &RunOptions::default(),
            &stop,
            &mut out,
        )
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(fin.r#final);
        t.join().unwrap();
    }

    #[test]
    fn refusal_writes_nothing() {
        let stop = StopSignal::new().unwrap();
        let mut out = Vec::new();
        let e = run(
            &Stressor::MemCap {
                size: crate::units::Size::Bytes(1 << 62),
                retouch_per_s: None,
            },
            &RunOptions::default(),
            &stop,
            &mut out,
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceeds the memory limit"));
        assert!(out.is_empty());
    }
}
