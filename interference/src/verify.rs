//! Checks a stressor's own evidence over a measured window: did it run for the whole window, did
//! it report without errors, and did it reach its target? The input is the stressor's report lines
//! ([`ReportLine`]), each with the wall time it was read ([`Observed`]); the output is a list of
//! [`Finding`]s, each a machine-readable code and a sentence with the figures. No finding means
//! the interference the case claims is the interference that happened.
//!
//! Codes: [`EXITED`], [`NO_REPORTS`], [`ERROR`], [`BELOW_TARGET`]. The thresholds are
//! [`Tolerances`]; their defaults are the documented ones (cpu within 3 points, memcap within
//! 2 % + 16 MiB, membw and net clients at most 10 % below a numeric target, a report at least
//! every 3 s).

use std::time::{Duration, SystemTime};

use crate::report::ReportLine;
use crate::spec::Stressor;
use crate::units::Rate;

/// The stressor ended (exited, or wrote its final line) before the window's end.
pub const EXITED: &str = "stressor_exited";
/// Its reports do not cover the whole window (late first, early last, or a gap).
pub const NO_REPORTS: &str = "stressor_no_reports";
/// A report inside the window carries an `error` detail.
pub const ERROR: &str = "stressor_error";
/// What it achieved over the window is not its target.
pub const BELOW_TARGET: &str = "stressor_below_target";

const MIB: f64 = 1048576.0;

/// A report line and the wall time it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// When the line was read (the end of the interval it reports on).
    pub at: SystemTime,
    /// The line.
    pub line: ReportLine,
}

/// How far a stressor's evidence may be from its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    /// cpu: largest distance of the window's mean utilisation from the target, in percentage
    /// points. Default 3.
    pub cpu_points: f64,
    /// memcap: largest relative distance of the resident size from the target. Default 0.02.
    pub memcap_rel: f64,
    /// memcap: absolute slack added to `memcap_rel`, bytes. Default 16 MiB.
    pub memcap_slack_bytes: f64,
    /// membw and net clients with a numeric target: largest relative shortfall of the window's
    /// mean. Default 0.10.
    pub bandwidth_rel: f64,
    /// Largest time without a report inside the window (reports come once a second). Default 3 s.
    pub max_gap: Duration,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            cpu_points: 3.0,
            memcap_rel: 0.02,
            memcap_slack_bytes: 16.0 * MIB,
            bandwidth_rel: 0.10,
            max_gap: Duration::from_secs(3),
        }
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// [`EXITED`], [`NO_REPORTS`], [`ERROR`] or [`BELOW_TARGET`].
    pub code: String,
    /// A sentence naming the stressor, with the figures that failed.
    pub message: String,
}

impl Finding {
    fn new(code: &str, name: &str, message: String) -> Self {
        Self {
            code: code.into(),
            message: format!("{name}: {message}"),
        }
    }
}

/// Checks the evidence of the stressor `name` (a level label such as `cpu-80`, used in the
/// messages) running `stressor` over `window` (start, end). `lines` may hold lines from before
/// and after the window; only the window's are judged. `ended` is set when the process (or pod)
/// ended before the window's end, with its exit status or reason. Returns one finding per failed
/// check, none when the stressor did what it claims for the whole window.
pub fn check(
    name: &str,
    stressor: &Stressor,
    lines: &[Observed],
    window: (SystemTime, SystemTime),
    ended: Option<&str>,
    tol: &Tolerances,
) -> Vec<Finding> {
    let (start, end) = window;
    let mut inside: Vec<&Observed> = lines
        .iter()
        .filter(|o| o.at >= start && o.at <= end)
        .collect();
    inside.sort_by_key(|o| o.at);
    let at = |o: &Observed| secs_between(start, o.at);
    let mut out = Vec::new();
    if let Some(status) = ended {
        out.push(Finding::new(
            EXITED,
            name,
            format!("ended before the window's end ({status})"),
        ));
    } else if let Some(last) = inside.iter().find(|o| o.line.r#final) {
        out.push(Finding::new(
            EXITED,
            name,
            format!(
                "wrote its final report {:.1} s into the window (it stopped)",
                at(last)
            ),
        ));
    }
    if let Some(gaps) = coverage(&inside, window, tol.max_gap) {
        out.push(Finding::new(NO_REPORTS, name, gaps));
    }
    let errors: Vec<&str> = inside.iter().filter_map(|o| o.line.error()).collect();
    if let Some(first) = errors.first() {
        out.push(Finding::new(
            ERROR,
            name,
            format!(
                "{} of {} reports in the window carry an error, the first: {first}",
                errors.len(),
                inside.len()
            ),
        ));
    }
    // The final line reports the whole run, not an interval of the window.
    let samples: Vec<(f64, &ReportLine)> = inside
        .iter()
        .filter(|o| !o.line.r#final)
        .map(|o| (at(o), &o.line))
        .collect();
    if let Some(msg) = below_target(stressor, &samples, tol) {
        out.push(Finding::new(BELOW_TARGET, name, msg));
    }
    out
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// What is wrong with the reports' coverage of the window (sorted in-window lines), if anything.
fn coverage(
    inside: &[&Observed],
    (start, end): (SystemTime, SystemTime),
    max_gap: Duration,
) -> Option<String> {
    let span = secs_between(start, end);
    let gap = max_gap.as_secs_f64();
    let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
        return Some(format!("no report in the {span:.1} s window"));
    };
    let mut problems = Vec::new();
    let lead = secs_between(start, first.at);
    if lead > gap {
        problems.push(format!("first report {lead:.1} s after the window start"));
    }
    let tail = secs_between(last.at, end);
    if tail > gap {
        problems.push(format!("last report {tail:.1} s before the window end"));
    }
    if let Some((from, len)) = inside
        .windows(2)
        .map(|w| (secs_between(start, w[0].at), secs_between(w[0].at, w[1].at)))
        .filter(|(_, len)| *len > gap)
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        problems.push(format!(
            "no report for {len:.1} s from {from:.1} s into the window"
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{} (reports are due every second; at most {gap} s without one)",
            problems.join("; ")
        )
    })
}

/// Whether the window's samples (seconds into the window, line) reach the stressor's target.
fn below_target(
    stressor: &Stressor,
    samples: &[(f64, &ReportLine)],
    tol: &Tolerances,
) -> Option<String> {
    let (_, first) = samples.first()?;
    // The stressor's own resolved target (e.g. a memcap percentage in bytes).
    let target = first.target;
    let mean = samples.iter().map(|(_, l)| l.achieved).sum::<f64>() / samples.len() as f64;
    let n = samples.len();
    match stressor {
        Stressor::Cpu { .. } => ((mean - target).abs() > tol.cpu_points).then(|| {
            format!(
                "achieved {mean:.1} % over the window (mean of {n} reports), target {} % \
                 (±{} points)",
                num(target),
                num(tol.cpu_points)
            )
        }),
        Stressor::MemCap { .. } => {
            let allowed = target * tol.memcap_rel + tol.memcap_slack_bytes;
            let (t, worst) = worst(samples, |l| (l.achieved - target).abs())?;
            ((worst.achieved - target).abs() > allowed).then(|| {
                format!(
                    "resident {:.1} MiB {t:.1} s into the window, target {:.1} MiB (±{} % + {:.0} MiB)",
                    worst.achieved / MIB,
                    target / MIB,
                    num(tol.memcap_rel * 100.0),
                    tol.memcap_slack_bytes / MIB
                )
            })
        }
        Stressor::Cache { .. } => {
            // A pass over the footprint each interval: short of it by more than a cache line's
            // rounding means the walk stalled.
            let (t, worst) = worst(samples, |l| target - l.achieved)?;
            (worst.achieved < target * 0.99).then(|| {
                format!(
                    "walked {:.2} MiB {t:.1} s into the window, footprint {:.2} MiB not reached",
                    worst.achieved / MIB,
                    target / MIB
                )
            })
        }
        Stressor::MemBw { rate, .. } => {
            let max = matches!(rate, Rate::Max);
            bandwidth(mean, n, target, max, tol, |v| format!("{v:.3} GB/s"))
        }
        Stressor::NetClient { .. } => bandwidth(mean, n, target, false, tol, bits),
        Stressor::NetServer { .. } => None,
    }
}

/// A bandwidth check: at most `bandwidth_rel` below a numeric target, above zero for `max`.
fn bandwidth(
    mean: f64,
    n: usize,
    target: f64,
    max: bool,
    tol: &Tolerances,
    fmt: impl Fn(f64) -> String,
) -> Option<String> {
    if max || target <= 0.0 {
        return (mean <= 0.0)
            .then(|| format!("moved nothing over the window (mean of {n} reports), target max"));
    }
    (mean < target * (1.0 - tol.bandwidth_rel)).then(|| {
        format!(
            "achieved {} over the window (mean of {n} reports), target {} (at most {} % below)",
            fmt(mean),
            fmt(target),
            num(tol.bandwidth_rel * 100.0)
        )
    })
}

/// The sample with the largest `badness`.
fn worst<'a>(
    samples: &[(f64, &'a ReportLine)],
    badness: impl Fn(&ReportLine) -> f64,
) -> Option<(f64, &'a ReportLine)> {
    samples
        .iter()
        .max_by(|a, b| badness(a.1).total_cmp(&badness(b.1)))
        .map(|(t, l)| (*t, *l))
}

/// A number without trailing zeros (80, 2.5, 0.125).
fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Bits per second with a decimal prefix.
fn bits(v: f64) -> String {
    let (div, unit) = match v.abs() {
        x if x >= 1e9 => (1e9, "Gbit/s"),
        x if x >= 1e6 => (1e6, "Mbit/s"),
        x if x >= 1e3 => (1e3, "kbit/s"),
        _ => (1.0, "bit/s"),
    };
    format!("{} {unit}", num(v / div))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
