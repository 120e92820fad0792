use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::*;
use crate::config::Config;
use crate::load::Percentiles;
use crate::results::journal::Entry;
use crate::validity::{Reason, Verdict as CaseVerdict};

pub(crate) fn config(sweep: &str) -> Config {
    let text = format!("name: t\nsweep:\n{sweep}");
    Config::parse(&text, Path::new("c.yaml")).unwrap()
}

/// What a simulated case measured: its p99 in ms, or an invalid verdict's reason code.
pub(crate) enum Outcome {
    P99(f64),
    Invalid(&'static str),
}

/// The journal entry of `case` measuring `outcome`.
pub(crate) fn entry(case: &TestCase, outcome: Outcome) -> Entry {
    let (latency, verdict) = match outcome {
        Outcome::P99(ms) => {
            let us = ms * 1000.0;
            let l = Percentiles {
                p50_us: us / 2.0,
                p90_us: us * 0.8,
                p99_us: us,
                p999_us: us * 1.2,
                max_us: us * 1.5,
                mean_us: us * 0.6,
            };
            (Some(l), CaseVerdict::default())
        }
        Outcome::Invalid(code) => (
            None,
            CaseVerdict::from_reasons(vec![Reason::new(code, "simulated")]),
        ),
    };
    Entry {
        values: case.labels(),
        offered: case.rate(),
        latency,
        verdict: Some(verdict),
        ..Entry::sample(&case.name, case.index, RunStatus::Ok)
    }
}

/// Runs the schedule to its end (or `limit` cases) against `measure`; returns the cases in the
/// order they ran. `entries` carries the journal across calls, as `--resume` does.
pub(crate) fn drive(
    s: &Schedule,
    entries: &mut BTreeMap<String, Entry>,
    limit: usize,
    mut measure: impl FnMut(&TestCase) -> Outcome,
) -> Vec<TestCase> {
    let mut tried = HashSet::new();
    let mut ran = Vec::new();
    let mut index = entries.values().map(|e| e.index + 1).max().unwrap_or(0);
    while ran.len() < limit {
        let Some(case) = s.next(entries, &tried, index) else {
            break;
        };
        index += 1;
        assert!(!entries.contains_key(&case.name), "{} twice", case.name);
        entries.insert(case.name.clone(), entry(&case, measure(&case)));
        tried.insert(case.name.clone());
        ran.push(case);
    }
    ran
}

fn stress(c: &TestCase) -> String {
    c.labels()
        .into_iter()
        .find(|(n, _)| n == "stress")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A service whose p99 is 1 ms plus a queue that explodes at its capacity: 300 req/s alone,
/// 180 under cpu (capacity known analytically: p99 <= 5 ms exactly up to it).
fn service(c: &TestCase) -> Outcome {
    let capacity = if stress(c) == "none" { 300.0 } else { 180.0 };
    let rate = c.rate();
    if rate > capacity * 1.5 {
        return Outcome::Invalid("rate_below_offered");
    }
    Outcome::P99(if rate <= capacity {
        1.0 + 4.0 * rate / capacity
    } else {
        50.0
    })
}

const SEARCH: &str = "  search: {slo: p99 <= 5ms, min: 20, max: 1000, precision: 5}\n  interference:\n    stress: [none, {kind: cpu, load: 50}]\n";

#[test]
fn a_search_finds_each_levels_capacity_in_the_predicted_probes_interleaved() {
    let cfg = config(SEARCH);
    let cases = crate::sweep::expand(&cfg);
    let s = Schedule::new(&cfg, &cases);
    assert!(s.is_dynamic());
    let mut entries = BTreeMap::new();
    let ran = drive(&s, &mut entries, 1000, service);
    let search = cfg.sweep.search.as_ref().unwrap();
    let predicted = search::probes_against(search, 300.0) + search::probes_against(search, 180.0);
    assert_eq!(ran.len(), predicted);
    // Levels alternate while both search: drift cannot pose as interference.
    assert_ne!(stress(&ran[0]), stress(&ran[1]));
    assert_ne!(stress(&ran[1]), stress(&ran[2]));
    for (level, capacity) in [("none", 300.0), ("cpu-50", 180.0)] {
        let mine: Vec<&Entry> = entries
            .values()
            .filter(|e| e.values.iter().any(|(n, v)| n == "stress" && v == level))
            .collect();
        let b = Bracket::of(&s.probes(&mine));
        let (p, f) = (b.pass.unwrap(), b.fail.unwrap());
        assert!(
            p <= capacity && capacity < f && f - p <= 5.0,
            "{level}: {p}..{f}"
        );
    }
    assert!(s.next(&entries, &HashSet::new(), 99).is_none());
    assert!(s.worst_case_cases() >= ran.len());
}

#[test]
fn a_search_resumed_after_a_kill_continues_where_it_stopped() {
    let cfg = config(SEARCH);
    let cases = crate::sweep::expand(&cfg);
    let whole = drive(
        &Schedule::new(&cfg, &cases),
        &mut BTreeMap::new(),
        1000,
        service,
    );
    // Killed after 7 cases; a new process rebuilds everything from the journal.
    let mut journal = BTreeMap::new();
    let first = drive(&Schedule::new(&cfg, &cases), &mut journal, 7, service);
    let rest = drive(&Schedule::new(&cfg, &cases), &mut journal, 1000, service);
    let names = |v: &[TestCase]| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!([names(&first), names(&rest)].concat(), names(&whole));
    // An interrupted case is not journaled: it runs again first.
    let mut journal = BTreeMap::new();
    let first = drive(&Schedule::new(&cfg, &cases), &mut journal, 5, service);
    journal.remove(&first[4].name);
    let rest = drive(&Schedule::new(&cfg, &cases), &mut journal, 1000, service);
    assert_eq!(rest[0].name, first[4].name);
}

#[test]
fn void_rounds_are_replaced_and_overload_fails_the_probe() {
    let cfg = config(SEARCH);
    let cases = crate::sweep::expand(&cfg);
    let s = Schedule::new(&cfg, &cases);
    let mut entries = BTreeMap::new();
    let mut disturbed = 0;
    // The first two cases of every group fall on a disturbed host.
    let ran = drive(&s, &mut entries, 1000, |c| {
        let n = entries_of_group(c);
        if n < 2 {
            disturbed += 1;
            Outcome::Invalid("host_disturbed")
        } else {
            service(c)
        }
    });
    assert_eq!(disturbed, 4);
    assert_eq!(ran[0].name, "round-1_stress-none_rate-20");
    assert_eq!(ran[2].name, "round-2_stress-none_rate-20");
    assert_eq!(ran[4].name, "round-3_stress-none_rate-20");
    let caps = crate::results::capacity::build(&s, &entries);
    assert!(
        caps.iter().all(|c| c.status == SearchStatus::Found),
        "{caps:?}"
    );

    // One void too many: the search says the probe could not be measured.
    let mut entries = BTreeMap::new();
    drive(&s, &mut entries, 1000, |_| {
        Outcome::Invalid("interference_not_running")
    });
    let caps = crate::results::capacity::build(&s, &entries);
    assert!(
        caps.iter().all(|c| c.status == SearchStatus::Unmeasured),
        "{caps:?}"
    );
    assert_eq!(
        entries.len(),
        2 * 3,
        "3 attempts per group (validity.attempts)"
    );
}

thread_local! {
    static GROUP_RUNS: std::cell::RefCell<BTreeMap<String, usize>> = Default::default();
}

/// How many cases of `c`'s group ran before it (per test thread).
fn entries_of_group(c: &TestCase) -> usize {
    GROUP_RUNS.with(|m| {
        let mut m = m.borrow_mut();
        let n = m.entry(stress(c)).or_default();
        *n += 1;
        *n - 1
    })
}

#[test]
fn adaptive_rounds_interleave_and_stop_when_confident_or_at_max() {
    let cfg = config("  rate: [100, 200]\n  rounds: {min: 3, max: 8, ci: 0.05}\n");
    let cases = crate::sweep::expand(&cfg);
    assert_eq!(cases.len(), 2, "one template per point");
    let s = Schedule::new(&cfg, &cases);
    let mut entries = BTreeMap::new();
    // rate 100: steady (the interval is 0 after 3 rounds); rate 200: ±20 % noise that never
    // narrows to ±5 % in 8 rounds.
    let mut k = 0;
    let ran = drive(&s, &mut entries, 100, |c| {
        if c.rate() == 100.0 {
            Outcome::P99(2.0)
        } else {
            k += 1;
            Outcome::P99(if k % 2 == 0 { 2.4 } else { 1.6 })
        }
    });
    let names: Vec<&str> = ran.iter().take(4).map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "round-1_rate-100",
            "round-1_rate-200",
            "round-2_rate-100",
            "round-2_rate-200"
        ]
    );
    let count = |r: f64| ran.iter().filter(|c| c.rate() == r).count();
    assert_eq!((count(100.0), count(200.0)), (3, 8));
    let all: Vec<&Entry> = entries.values().collect();
    assert_eq!(s.point(&all, 100.0).stop, Some(Stop::Ci));
    assert_eq!(s.point(&all, 200.0).stop, Some(Stop::Max));
}

#[test]
fn confidence_stopping_takes_the_expected_rounds_on_average() {
    // Normal noise with a known spread: sd 10 % of the mean. The 95 % half-width is
    // t(n-1) * 0.1 / sqrt(n) relative; it falls under 0.08 at about n = 8 (t = 2.36:
    // 0.083; n = 9: 0.077). Over 100 points the average stop sits near there, and the
    // reported interval covers the true mean about 95 % of the time.
    let cfg =
        config("  rate: {min: 1, max: 100, step: 1}\n  rounds: {min: 3, max: 30, ci: 0.08}\n");
    let cases = crate::sweep::expand(&cfg);
    let s = Schedule::new(&cfg, &cases);
    let mut entries = BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut normal = move || {
        // Box-Muller over a xorshift: deterministic, so the test cannot flake.
        let mut u = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let (a, b) = (u().max(1e-12), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    drive(&s, &mut entries, 100_000, |_| Outcome::P99(10.0 + normal()));
    let all: Vec<&Entry> = entries.values().collect();
    let points: Vec<PointState> = (1..=100).map(|r| s.point(&all, r as f64)).collect();
    let mean_rounds = points.iter().map(|p| p.runs as f64).sum::<f64>() / 100.0;
    assert!((6.5..=10.5).contains(&mean_rounds), "{mean_rounds}");
    let covered = points
        .iter()
        .filter(|p| {
            let e = p.estimate().unwrap();
            (e.low().unwrap()..=e.high().unwrap()).contains(&10.0)
        })
        .count();
    // Sequential stopping costs some coverage; it must stay honest, not nominal.
    assert!(covered >= 85, "{covered} of 100 intervals cover the mean");
    assert!(points
        .iter()
        .all(|p| matches!(p.stop, Some(Stop::Ci) | Some(Stop::Max))));
}

#[test]
fn a_fixed_sweep_runs_its_cases_in_order_and_skips_finished_ones() {
    let cfg = config("  rate: [1, 2, 3]\n  rounds: 2\n");
    let cases = crate::sweep::expand(&cfg);
    let s = Schedule::new(&cfg, &cases);
    assert!(!s.is_dynamic());
    let mut entries = BTreeMap::new();
    entries.insert(cases[1].name.clone(), entry(&cases[1], Outcome::P99(1.0)));
    let ran = drive(&s, &mut entries, 100, |_| Outcome::P99(1.0));
    assert_eq!(ran.len(), 5);
    assert_eq!(ran[0].name, cases[0].name);
    assert_eq!(ran[1].name, cases[2].name);
    assert_eq!(s.worst_case_cases(), 6);
}
