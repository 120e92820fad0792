//! Which test case runs next. A plain sweep runs its expanded cases in order. A sweep with
//! adaptive rounds (`rounds: {min, max, ci}`) or a capacity search (`sweep.search`) decides as it
//! goes: every decision is a pure function of the config and the journal, so `--resume` after a
//! kill continues exactly where the run stopped.
//!
//! Terms:
//! - a **point** is a case without its round (every dimension value but `round`);
//! - a **group** is a point without its rate (an interference level with its custom values):
//!   the unit a search runs in;
//! - a **round** of a point is one case of it; its judged figure (the SLO's, else p99) counts
//!   when the case is valid. A round that is invalid for a reason that is not the service's (a
//!   disturbed host, a stressor that did not run, a saturated generator) is *void*: it says
//!   nothing about the point and is replaced, up to `validity.attempts - 1` times per point.
//!   In a search, a round invalid because the service could not keep up (rate not held,
//!   errors, no answers) fails the SLO outright.
//!
//! Interleaving: the next case goes to the point (plain sweep) or group (search) with the fewest
//! cases so far, ties in sweep order, so slow drift of the machine is spread over every level
//! instead of posing as an effect.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::config::{Config, DimValue, Figure, Rounds, SearchConfig};
use crate::results::journal::{Entry, Status as RunStatus};
use crate::results::points::Estimate;
use crate::sweep::{self, TestCase};

mod progress;
pub mod search;

pub use search::{Bracket, Status as SearchStatus, Verdict};

/// Invalid reasons that say the service could not keep up at the offered rate: in a search they
/// fail the SLO. Every other reason voids the round.
pub const OVERLOAD_REASONS: [&str; 3] = ["rate_below_offered", "error_share", "no_responses"];

/// Why a point stopped taking rounds (`rounds_stop` in points.csv and capacity.csv).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// A fixed number of rounds ran.
    Fixed,
    /// The interval became narrower than `rounds.ci`.
    Ci,
    /// `rounds.max` rounds ran with the interval still wider than the target.
    Max,
    /// Search: the interval left the SLO's bound on one side, or the service could not keep up.
    Decided,
    /// Too many void rounds.
    Voids,
    /// Still running (interrupted).
    Open,
}

impl Stop {
    /// The name written in the CSV files.
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Fixed => "fixed",
            Stop::Ci => "ci",
            Stop::Max => "max",
            Stop::Decided => "decided",
            Stop::Voids => "voids",
            Stop::Open => "open",
        }
    }
}

/// What a point's rounds say.
#[derive(Clone, Debug, PartialEq)]
pub struct PointState {
    /// Cases of the point in the journal or tried in this run.
    pub runs: usize,
    /// Void rounds among them.
    pub voids: usize,
    /// The judged figure of every counted round, ms (`inf` for a search round the service
    /// could not keep up with).
    pub values: Vec<f64>,
    /// `None` while more rounds are wanted.
    pub stop: Option<Stop>,
    /// Highest round number used so far.
    pub last_round: usize,
}

impl PointState {
    /// The estimate of the judged figure over the counted rounds (finite values only).
    pub fn estimate(&self) -> Option<Estimate> {
        let finite: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        Estimate::of(&finite)
    }
}

/// The scheduler of one experiment.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expanded cases: the whole sweep when fixed, else one template per point (search:
    /// per group) holding round 1 and, in a search, the first probe's rate.
    templates: Vec<TestCase>,
    rounds: Rounds,
    search: Option<SearchConfig>,
    figure: Figure,
    extra_runs: usize,
}

/// Display labels of a case or journal entry without the named dimensions.
pub fn key_without(values: &[(String, String)], drop: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .filter(|(n, _)| !drop.contains(&n.as_str()))
        .cloned()
        .collect()
}

impl Schedule {
    /// The schedule of `cfg`, whose expanded cases are `cases` ([`sweep::expand`]).
    pub fn new(cfg: &Config, cases: &[TestCase]) -> Schedule {
        let figure = cfg
            .sweep
            .search
            .as_ref()
            .map_or(Figure::P99, |s| s.slo.figure);
        Schedule {
            templates: cases.to_vec(),
            rounds: cfg.sweep.rounds,
            search: cfg.sweep.search.clone(),
            figure,
            extra_runs: cfg.validity.attempts.saturating_sub(1),
        }
    }

    /// The expanded cases (a dynamic sweep's templates).
    pub fn templates(&self) -> &[TestCase] {
        &self.templates
    }

    /// Whether cases are decided while running (adaptive rounds or a search).
    pub fn is_dynamic(&self) -> bool {
        self.rounds.is_adaptive() || self.search.is_some()
    }

    /// The search, if any.
    pub fn search(&self) -> Option<&SearchConfig> {
        self.search.as_ref()
    }

    /// The figure rounds are judged on (the SLO's; p99 without a search).
    pub fn figure(&self) -> Figure {
        self.figure
    }

    /// Whether a journal entry belongs to this schedule's sweep (same group as a template).
    pub fn owns(&self, values: &[(String, String)]) -> bool {
        let drop: &[&str] = if self.search.is_some() {
            &["round", "rate"]
        } else {
            &["round"]
        };
        let k = key_without(values, drop);
        self.templates
            .iter()
            .any(|t| key_without(&t.labels(), drop) == k)
    }

    /// The next case to run, or `None` when the sweep is done. `tried` holds the cases already
    /// run in this run (a failed case is not retried within it); `index` is the new case's.
    pub fn next(
        &self,
        entries: &BTreeMap<String, Entry>,
        tried: &HashSet<String>,
        index: usize,
    ) -> Option<TestCase> {
        if !self.is_dynamic() {
            return self
                .templates
                .iter()
                .find(|c| {
                    !tried.contains(&c.name)
                        && !entries
                            .get(&c.name)
                            .is_some_and(|e| e.status == RunStatus::Ok)
                })
                .cloned();
        }
        // Each entry's group once, not once per unit.
        let mut by_group: BTreeMap<Vec<(String, String)>, Vec<&Entry>> = BTreeMap::new();
        for e in entries.values() {
            if e.status == RunStatus::Ok || tried.contains(&e.case) {
                by_group
                    .entry(key_without(&e.values, &["round", "rate"]))
                    .or_default()
                    .push(e);
            }
        }
        let mut best: Option<(usize, TestCase)> = None;
        for unit in self.units() {
            let group = key_without(&unit.labels(), &["round", "rate"]);
            let mine = by_group.get(&group).map_or(&[][..], |v| v.as_slice());
            let Some((rate, round, runs)) = self.unit_next(unit, mine) else {
                continue;
            };
            if best.as_ref().is_none_or(|(n, _)| runs < *n) {
                best = Some((runs, instantiate(unit, rate, round, index)));
            }
        }
        best.map(|(_, c)| c)
    }

    /// The units cases are interleaved over: one template per point, or per group in a search
    /// (a search's templates differ only in group, its rate being the first probe).
    fn units(&self) -> impl Iterator<Item = &TestCase> {
        let mut seen: Vec<Vec<(String, String)>> = Vec::new();
        self.templates.iter().filter(move |t| {
            let k = key_without(&t.labels(), &["round"]);
            if seen.contains(&k) {
                false
            } else {
                seen.push(k);
                true
            }
        })
    }

    /// The next (rate, round) of a unit, given its group's entries, and how many cases it has
    /// run; `None` when it is done.
    fn unit_next(&self, unit: &TestCase, mine: &[&Entry]) -> Option<(f64, usize, usize)> {
        let rate = match &self.search {
            None => unit.rate(),
            Some(s) => match search::next(s, &self.probes(mine)) {
                search::Step::Probe(r) => r,
                search::Step::Done(_) => return None,
            },
        };
        let state = self.point(mine, rate);
        // A search interleaves groups, a plain sweep its points.
        let runs = if self.search.is_some() {
            mine.len()
        } else {
            state.runs
        };
        state
            .stop
            .is_none()
            .then_some((rate, state.last_round + 1, runs))
    }

    /// The decided probes of a group's entries, in the order they first ran.
    pub fn probes(&self, entries: &[&Entry]) -> Vec<(f64, Verdict)> {
        let mut rates: Vec<(usize, f64)> = Vec::new();
        for e in entries {
            match rates.iter_mut().find(|(_, r)| *r == e.offered) {
                Some(x) => x.0 = x.0.min(e.index),
                None => rates.push((e.index, e.offered)),
            }
        }
        rates.sort_by_key(|(i, _)| *i);
        rates
            .into_iter()
            .filter_map(|(_, r)| self.verdict(&self.point(entries, r)).map(|v| (r, v)))
            .collect()
    }

    /// A finished point's verdict on the SLO (`None` while it runs or without a search).
    pub fn verdict(&self, p: &PointState) -> Option<Verdict> {
        let s = self.search.as_ref()?;
        p.stop?;
        if p.values.iter().any(|v| v.is_infinite()) {
            return Some(Verdict::Fail);
        }
        Some(match p.estimate() {
            None => Verdict::Unmeasured,
            Some(e) if e.mean * 1000.0 <= s.slo.bound_us() => Verdict::Pass,
            Some(_) => Verdict::Fail,
        })
    }

    /// The state of the point at `rate` among a group's entries.
    pub fn point(&self, group: &[&Entry], rate: f64) -> PointState {
        let mut st = PointState {
            runs: 0,
            voids: 0,
            values: Vec::new(),
            stop: None,
            last_round: 0,
        };
        for e in group.iter().filter(|e| e.offered == rate) {
            st.runs += 1;
            st.last_round = st.last_round.max(round_of(e));
            match self.value(e) {
                Some(v) => st.values.push(v),
                None => st.voids += 1,
            }
        }
        st.stop = self.stop(&st);
        st
    }

    /// The judged figure of a round in ms; `inf` for an overloaded search round; `None` if void.
    fn value(&self, e: &Entry) -> Option<f64> {
        if e.status != RunStatus::Ok {
            return None;
        }
        let verdict = e.verdict.as_ref()?;
        if verdict.is_valid() {
            return e.latency.as_ref().map(|l| self.figure.of(l) / 1000.0);
        }
        let overload = verdict
            .reasons
            .iter()
            .all(|r| OVERLOAD_REASONS.contains(&r.code.as_str()));
        (self.search.is_some() && overload).then_some(f64::INFINITY)
    }

    /// Whether a point has had enough rounds, and why.
    fn stop(&self, st: &PointState) -> Option<Stop> {
        let n = st.values.len();
        if self.search.is_some() && st.values.iter().any(|v| v.is_infinite()) {
            return Some(Stop::Decided);
        }
        if st.voids > self.extra_runs {
            return Some(Stop::Voids);
        }
        let (min, max, ci) = match self.rounds {
            Rounds::Fixed(k) => return (n >= k).then_some(Stop::Fixed),
            Rounds::Adaptive { min, max, ci } => (min, max, ci),
        };
        if n < min {
            return None;
        }
        if let Some(Estimate {
            mean,
            half_width: Some(h),
            ..
        }) = st.estimate()
        {
            if mean > 0.0 && h / mean <= ci {
                return Some(Stop::Ci);
            }
            if let Some(s) = &self.search {
                let bound = s.slo.bound_us() / 1000.0;
                if mean + h < bound || mean - h > bound {
                    return Some(Stop::Decided);
                }
            }
        }
        (n >= max).then_some(Stop::Max)
    }

    /// Why the point with these values (every dimension but round) stopped taking rounds.
    pub fn stop_of(
        &self,
        entries: &BTreeMap<String, Entry>,
        values: &[(String, String)],
        rate: f64,
    ) -> Option<Stop> {
        if !self.is_dynamic() {
            return Some(Stop::Fixed);
        }
        let group = key_without(values, &["round", "rate"]);
        let mine: Vec<&Entry> = entries
            .values()
            .filter(|e| key_without(&e.values, &["round", "rate"]) == group)
            .collect();
        Some(self.point(&mine, rate).stop.unwrap_or(Stop::Open))
    }

    /// The most cases the sweep can take: the expanded sweep, or per unit its worst case
    /// (`max` rounds, plus the void allowance, per point; a search's worst-case probe count).
    pub fn worst_case_cases(&self) -> usize {
        if !self.is_dynamic() {
            return self.templates.len();
        }
        let per_point = self.rounds.max();
        let probes = self.search.as_ref().map_or(1, search::worst_case_probes);
        self.units().count() * probes * per_point
    }
}

/// The round number of a journal entry.
fn round_of(e: &Entry) -> usize {
    e.values
        .iter()
        .find(|(n, _)| n == "round")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

/// A case of `unit` at `rate` and `round`, named as the sweep names cases.
fn instantiate(unit: &TestCase, rate: f64, round: usize, index: usize) -> TestCase {
    let mut c = unit.clone();
    for (n, v) in &mut c.values {
        match n.as_str() {
            "rate" => *v = DimValue::Number(rate),
            "round" => *v = DimValue::Number(round as f64),
            _ => {}
        }
    }
    c.index = index;
    c.name = sweep::case_name(&c.values);
    c
}

#[cfg(test)]
pub(crate) mod tests;
