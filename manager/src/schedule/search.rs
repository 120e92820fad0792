//! The capacity search of one group (an interference level with its custom values): which rate
//! to probe next, given the probes decided so far, and when the bracket is tight enough.
//!
//! The search assumes latency grows with the offered rate. It probes `start`, doubles while
//! probes pass (halves while they fail), then bisects between the highest passing and the
//! lowest failing rate until they are within the precision. Every decision is a pure function
//! of the probes' outcomes, which live in the journal: a search resumed after a kill continues
//! exactly where it stopped.

use serde::Serialize;

use crate::config::SearchConfig;

/// A probe's verdict on the SLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its rounds met the SLO (mean of the judged figure within the bound, every round valid).
    Pass,
    /// They did not, or the service could not keep up (rate not held, errors).
    Fail,
    /// No round measured anything that can be believed (every attempt invalid for a reason
    /// that is not the service's: a disturbed host, a stressor that did not run, ...).
    Unmeasured,
}

/// Where a group's search stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Probe this rate next.
    Probe(f64),
    /// Finished; see [`Status`].
    Done(Status),
}

/// How a group's search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Bracketed within the precision.
    Found,
    /// Even `max` passed: the capacity is at least `max`.
    AtMax,
    /// Even `min` failed: the capacity is below `min`.
    BelowMin,
    /// A probe could not be measured; the search stopped there.
    Unmeasured,
    /// Not finished (the run was interrupted).
    Incomplete,
}

impl Status {
    /// The name written in capacity.csv.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Found => "found",
            Status::AtMax => "at_max",
            Status::BelowMin => "below_min",
            Status::Unmeasured => "unmeasured",
            Status::Incomplete => "incomplete",
        }
    }
}

/// The bracket the decided probes give: the highest passing rate and the lowest failing rate
/// above it (a failure below a pass is noise or a non-monotonic service; it is counted in
/// `inversions`, and the search goes on above the pass).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bracket {
    /// Highest passing rate.
    pub pass: Option<f64>,
    /// Lowest failing rate above `pass`.
    pub fail: Option<f64>,
    /// Failures at or below a passing rate.
    pub inversions: usize,
}

impl Bracket {
    /// The bracket of decided probes `(rate, verdict)`; unmeasured probes are left out.
    pub fn of(probes: &[(f64, Verdict)]) -> Bracket {
        let pass = probes
            .iter()
            .filter(|(_, v)| *v == Verdict::Pass)
            .map(|(r, _)| *r)
            .reduce(f64::max);
        let fails = probes
            .iter()
            .filter(|(_, v)| *v == Verdict::Fail)
            .map(|(r, _)| *r);
        let above = |r: &f64| pass.is_none_or(|p| *r > p);
        Bracket {
            pass,
            fail: fails.clone().filter(above).reduce(f64::min),
            inversions: fails.filter(|r| !above(r)).count(),
        }
    }
}

/// The next step of a search whose decided probes are `probes` (in the order they ran).
pub fn next(cfg: &SearchConfig, probes: &[(f64, Verdict)]) -> Step {
    if probes.iter().any(|(_, v)| *v == Verdict::Unmeasured) {
        return Step::Done(Status::Unmeasured);
    }
    let b = Bracket::of(probes);
    let step = match (b.pass, b.fail) {
        (None, None) => return Step::Probe(cfg.first()),
        (Some(p), None) if p >= cfg.max => return Step::Done(Status::AtMax),
        (Some(p), None) => (2.0 * p).min(cfg.max),
        (None, Some(f)) if f <= cfg.min => return Step::Done(Status::BelowMin),
        (None, Some(f)) => (f / 2.0).max(cfg.min),
        (Some(p), Some(f)) if f - p <= cfg.precision.gap(p) => return Step::Done(Status::Found),
        (Some(p), Some(f)) => (p + f) / 2.0,
    };
    // Whole requests per second (precision is at least 1 req/s); a rate already probed means
    // the bracket cannot shrink further at that resolution.
    let rate = step.round().clamp(cfg.min, cfg.max);
    if probes.iter().any(|(r, _)| *r == rate) {
        return Step::Done(Status::Found);
    }
    Step::Probe(rate)
}

/// The most probes the search can take over any outcome of a monotonic service: the search run
/// against every capacity on a grid finer than the precision, plus the capacities at the ends.
pub fn worst_case_probes(cfg: &SearchConfig) -> usize {
    let step = match cfg.precision {
        crate::config::Precision::Absolute(a) => a / 2.0,
        crate::config::Precision::Relative(r) => r * cfg.min / 2.0,
    }
    .max(0.5);
    let span = cfg.max - cfg.min;
    // At most 20,000 simulated capacities: the count grows with log(span), so a coarser grid
    // over a huge span changes nothing that matters.
    let n = ((span / step).ceil() as usize).min(20_000);
    let mut worst = probes_against(cfg, cfg.min / 2.0).max(probes_against(cfg, cfg.max * 2.0));
    for i in 0..=n {
        let capacity = cfg.min + span * i as f64 / n.max(1) as f64;
        worst = worst.max(probes_against(cfg, capacity));
    }
    worst
}

/// Probes the search takes against a service that passes exactly up to `capacity`.
pub fn probes_against(cfg: &SearchConfig, capacity: f64) -> usize {
    let mut probes = Vec::new();
    while let Step::Probe(r) = next(cfg, &probes) {
        let v = if r <= capacity {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        probes.push((r, v));
        if probes.len() > 200 {
            break; // cannot happen with a bracket that halves; a guard, not a limit
        }
    }
    probes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Precision, Slo};

    fn cfg(min: f64, max: f64, precision: Precision) -> SearchConfig {
        SearchConfig {
            slo: Slo::parse("p99 <= 5ms").unwrap(),
            min,
            max,
            start: None,
            precision,
        }
    }

    /// Runs the search against a monotonic service; returns the probes and how it ended.
    fn search(c: &SearchConfig, capacity: f64) -> (Vec<(f64, Verdict)>, Status) {
        let mut probes = Vec::new();
        loop {
            match next(c, &probes) {
                Step::Probe(r) => {
                    let v = if r <= capacity {
                        Verdict::Pass
                    } else {
                        Verdict::Fail
                    };
                    probes.push((r, v));
                }
                Step::Done(s) => return (probes, s),
            }
        }
    }

    #[test]
    fn finds_the_capacity_within_the_precision() {
        let c = cfg(50.0, 3200.0, Precision::Absolute(10.0));
        for capacity in [50.0, 77.0, 380.0, 1234.5, 3199.0] {
            let (probes, status) = search(&c, capacity);
            assert_eq!(status, Status::Found, "{capacity}: {probes:?}");
            let b = Bracket::of(&probes);
            let (p, f) = (b.pass.unwrap(), b.fail.unwrap());
            assert!(
                p <= capacity && capacity < f && f - p <= 10.0,
                "{capacity}: {p}..{f}"
            );
            assert!(probes.len() <= worst_case_probes(&c), "{capacity}");
        }
    }

    #[test]
    fn probing_doubles_then_bisects() {
        let c = cfg(100.0, 3200.0, Precision::Absolute(25.0));
        let (probes, _) = search(&c, 500.0);
        let rates: Vec<f64> = probes.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            rates,
            [100.0, 200.0, 400.0, 800.0, 600.0, 500.0, 550.0, 525.0]
        );
    }

    #[test]
    fn ends_at_the_range_and_below_it() {
        let c = cfg(100.0, 1000.0, Precision::Relative(0.05));
        let (probes, status) = search(&c, 5000.0);
        assert_eq!(status, Status::AtMax);
        assert_eq!(probes.last().unwrap().0, 1000.0);
        let (probes, status) = search(&c, 10.0);
        assert_eq!((status, probes.len()), (Status::BelowMin, 1));
        let mut started = c.clone();
        started.start = Some(800.0);
        let (probes, status) = search(&started, 150.0);
        assert_eq!(status, Status::Found);
        assert_eq!(
            probes[..3].iter().map(|p| p.0).collect::<Vec<_>>(),
            [800.0, 400.0, 200.0]
        );
    }

    #[test]
    fn an_unmeasured_probe_stops_the_search_and_inversions_are_counted() {
        let c = cfg(100.0, 1000.0, Precision::Absolute(10.0));
        assert_eq!(
            next(&c, &[(100.0, Verdict::Pass), (200.0, Verdict::Unmeasured)]),
            Step::Done(Status::Unmeasured)
        );
        let b = Bracket::of(&[
            (100.0, Verdict::Fail),
            (200.0, Verdict::Pass),
            (400.0, Verdict::Fail),
        ]);
        assert_eq!(
            (b.pass, b.fail, b.inversions),
            (Some(200.0), Some(400.0), 1)
        );
    }

    #[test]
    fn worst_case_is_reached_and_not_exceeded() {
        let c = cfg(50.0, 3200.0, Precision::Absolute(10.0));
        let worst = worst_case_probes(&c);
        // 50..3200 doubles 7 times (8 probes with the start), then 1600 -> 10 halves 8 times.
        assert!((14..=17).contains(&worst), "{worst}");
        let seen = (0..3300)
            .map(|cap| probes_against(&c, cap as f64))
            .max()
            .unwrap();
        assert_eq!(seen, worst);
    }
}
