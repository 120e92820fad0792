//! points.csv: one row per point of the sweep (every dimension but `round`), with each latency
//! percentile's mean over the point's valid rounds and its 95 % confidence interval (Student t,
//! n-1 degrees of freedom). Rebuilt from the journal, like `summary.csv`; the plots draw from the
//! same [`Point`]s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::journal::{Entry, Status};
use super::summary::cell;
use super::{write_atomic, ResultsError};
use crate::load::Percentiles;

/// The file's name in the experiment directory.
pub const FILE: &str = "points.csv";

/// Two-sided 95 % quantiles of Student's t, for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
    2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
    2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/// The 0.975 quantile of Student's t with `dof` degrees of freedom (`dof` >= 1): the table up
/// to 30, then the Cornish-Fisher expansion around the normal quantile (error below 1e-4 there).
pub fn t95(dof: usize) -> f64 {
    if let Some(t) = dof.checked_sub(1).and_then(|i| T95.get(i)) {
        return *t;
    }
    let z: f64 = 1.959_964;
    let n = dof.max(1) as f64;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * n)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * n * n)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * n * n * n)
}

/// The mean of a figure over rounds and its 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// How many values the mean is over.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Half-width of the 95 % confidence interval; `None` with a single value (unknown).
    pub half_width: Option<f64>,
}

impl Estimate {
    /// The estimate of a sample; `None` when it is empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half_width = (n > 1).then(|| {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t95(n - 1) * (var / n as f64).sqrt()
        });
        Some(Self {
            n,
            mean,
            half_width,
        })
    }

    /// Lower end of the interval.
    pub fn low(&self) -> Option<f64> {
        self.half_width.map(|h| self.mean - h)
    }

    /// Upper end of the interval.
    pub fn high(&self) -> Option<f64> {
        self.half_width.map(|h| self.mean + h)
    }
}

/// True when a case's figures count: it ran (`ok`) and was checked and found valid (an ok case
/// journaled before verdicts existed was never checked, so it does not count).
pub fn counts(e: &Entry) -> bool {
    e.status == Status::Ok && e.verdict.as_ref().is_some_and(|v| v.is_valid())
}

/// Picks one figure (µs) out of a case's latency percentiles.
pub type Pick = fn(&Percentiles) -> f64;

/// The latency percentiles a point reports, with their column stems.
pub const FIGURES: [(&str, Pick); 4] = [
    ("p50", |l| l.p50_us),
    ("p90", |l| l.p90_us),
    ("p99", |l| l.p99_us),
    ("p99_9", |l| l.p999_us),
];

/// Dimension values in display form, `(name, value)`.
type Labels = Vec<(String, String)>;

/// One point of the sweep, over its rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Dimension values (display form) except `round`, in the sweep's order; `rate` included.
    pub values: Vec<(String, String)>,
    /// Offered rate, req/s.
    pub offered: f64,
    /// Rounds recorded in the journal for this point (ok or failed).
    pub rounds: usize,
    /// Rounds that count ([`counts`]).
    pub valid_rounds: usize,
    /// Achieved rate over the valid rounds, req/s.
    pub achieved: Option<Estimate>,
    /// Latency per [`FIGURES`] entry over the valid rounds, ms.
    pub latency: [Option<Estimate>; 4],
    /// Why the point stopped taking rounds (`crate::schedule::Stop`), when known.
    pub rounds_stop: Option<&'static str>,
}

impl Point {
    /// The point's line label: every dimension but rate (`all cases` when there is none).
    pub fn level(&self) -> String {
        level_of(&self.values)
    }
}

/// The line label of a case or point: every dimension but rate and round, `dim=value`.
pub fn level_of(values: &[(String, String)]) -> String {
    let parts: Vec<String> = values
        .iter()
        .filter(|(n, _)| n != "rate" && n != "round")
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    if parts.is_empty() {
        "all cases".into()
    } else {
        parts.join(" ")
    }
}

/// Groups the journal's cases into points: levels in the order they first ran, rates ascending.
pub fn build(entries: &BTreeMap<String, Entry>) -> Vec<Point> {
    let mut rows: Vec<&Entry> = entries.values().collect();
    rows.sort_by_key(|e| e.index);
    // (values but round, offered rate, the point's cases in run order)
    let mut groups: Vec<(Labels, f64, Vec<&Entry>)> = Vec::new();
    for e in rows {
        let key: Labels = e
            .values
            .iter()
            .filter(|(n, _)| n != "round")
            .cloned()
            .collect();
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some(g) => g.2.push(e),
            None => groups.push((key, e.offered, vec![e])),
        }
    }
    let mut levels: Vec<String> = Vec::new();
    for (k, _, _) in &groups {
        let l = level_of(k);
        if !levels.contains(&l) {
            levels.push(l);
        }
    }
    groups.sort_by(|a, b| {
        let la = levels.iter().position(|l| *l == level_of(&a.0));
        let lb = levels.iter().position(|l| *l == level_of(&b.0));
        la.cmp(&lb).then(a.1.total_cmp(&b.1))
    });
    groups
        .into_iter()
        .map(|(values, offered, cases)| point(values, offered, &cases))
        .collect()
}

fn point(values: Labels, offered: f64, cases: &[&Entry]) -> Point {
    let valid: Vec<&Entry> = cases.iter().copied().filter(|e| counts(e)).collect();
    let achieved: Vec<f64> = valid.iter().filter_map(|e| e.achieved).collect();
    let lat: Vec<&Percentiles> = valid.iter().filter_map(|e| e.latency.as_ref()).collect();
    let latency = FIGURES.map(|(_, f)| {
        let ms: Vec<f64> = lat.iter().map(|l| f(l) / 1000.0).collect();
        Estimate::of(&ms)
    });
    Point {
        values,
        offered,
        rounds: cases.len(),
        valid_rounds: valid.len(),
        achieved: Estimate::of(&achieved),
        latency,
        rounds_stop: None,
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_default()
}

/// Renders points.csv. The dimension columns are those of the journal's cases (`round` left out).
pub fn render(entries: &BTreeMap<String, Entry>, points: &[Point]) -> String {
    let dims: Vec<&str> = entries
        .values()
        .next()
        .map(|e| {
            e.values
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| *n != "round")
                .collect()
        })
        .unwrap_or_default();
    let mut s = String::new();
    for d in &dims {
        s.push_str(&cell(d));
        s.push(',');
    }
    s.push_str("rounds,valid_rounds,achieved_rps_mean");
    for (stem, _) in FIGURES {
        let _ = write!(s, ",{stem}_ms_mean,{stem}_ms_ci95_low,{stem}_ms_ci95_high");
    }
    s.push_str(",rounds_stop\n");
    for p in points {
        for d in &dims {
            let v = p.values.iter().find(|(n, _)| n == d).map(|(_, v)| v);
            s.push_str(&cell(v.map_or("", |v| v.as_str())));
            s.push(',');
        }
        let _ = write!(
            s,
            "{},{},{}",
            p.rounds,
            p.valid_rounds,
            p.achieved
                .map(|a| format!("{:.2}", a.mean))
                .unwrap_or_default()
        );
        for e in &p.latency {
            let _ = write!(
                s,
                ",{},{},{}",
                num(e.map(|e| e.mean)),
                // A latency is never negative: the interval stops at 0.
                num(e.and_then(|e| e.low()).map(|l| l.max(0.0))),
                num(e.and_then(|e| e.high()))
            );
        }
        let _ = writeln!(s, ",{}", p.rounds_stop.unwrap_or(""));
    }
    s
}

/// Writes points.csv into `dir`, each point's `rounds_stop` from `stop`; returns the points.
pub fn write(
    dir: &Path,
    entries: &BTreeMap<String, Entry>,
    stop: impl Fn(&Point) -> Option<&'static str>,
) -> Result<Vec<Point>, ResultsError> {
    let mut points = build(entries);
    for p in &mut points {
        p.rounds_stop = stop(p);
    }
    write_atomic(&dir.join(FILE), render(entries, &points).as_bytes())?;
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validity::{Reason, Verdict};

    #[test]
    fn mean_and_interval_of_known_values() {
        let e = Estimate::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(e.n, 3);
        assert!((e.mean - 2.0).abs() < 1e-12);
        // s = 1, t(0.975, 2) = 4.3027: 4.3027 / sqrt(3) = 2.4841.
        assert!((e.half_width.unwrap() - 2.4841).abs() < 1e-3, "{e:?}");
        assert!((e.low().unwrap() + 0.4841).abs() < 1e-3);
        let one = Estimate::of(&[5.0]).unwrap();
        assert_eq!((one.mean, one.half_width, one.high()), (5.0, None, None));
        assert!(Estimate::of(&[]).is_none());
        let same = Estimate::of(&[4.0, 4.0]).unwrap();
        assert_eq!(same.half_width, Some(0.0));
    }

    #[test]
    fn t_quantiles_follow_the_table_and_approach_the_normal() {
        assert_eq!(t95(1), 12.7062);
        assert_eq!(t95(30), 2.0423);
        // Published values: t(0.975, 40) = 2.0211, 60 = 2.0003, 120 = 1.9799.
        for (dof, t) in [(31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799)] {
            assert!(
                (t95(dof) - t).abs() < 2e-4,
                "dof {dof}: {} vs {t}",
                t95(dof)
            );
        }
        assert!((t95(1_000_000) - 1.96).abs() < 1e-3);
    }

    fn entry(index: usize, stress: &str, rate: f64, round: usize, p99_ms: f64) -> Entry {
        Entry::measured(index, stress, rate, round, p99_ms, rate - 1.0)
    }

    fn journal(list: Vec<Entry>) -> BTreeMap<String, Entry> {
        list.into_iter().map(|e| (e.case.clone(), e)).collect()
    }

    #[test]
    fn points_leave_out_invalid_and_failed_rounds() {
        let mut bad = entry(5, "cpu-80", 600.0, 2, 100.0);
        bad.verdict = Some(Verdict::from_reasons(vec![Reason::new("x", "y")]));
        let mut failed = entry(7, "cpu-80", 600.0, 3, 0.0);
        failed.status = Status::Failed;
        failed.latency = None;
        let mut old = entry(9, "cpu-80", 600.0, 4, 4.0);
        old.verdict = None; // a journal from before verdicts: never checked, so not counted
        let j = journal(vec![
            entry(0, "none", 600.0, 1, 1.0),
            entry(1, "none", 300.0, 1, 0.5),
            entry(2, "cpu-80", 600.0, 1, 2.0),
            entry(3, "none", 600.0, 2, 2.0),
            entry(4, "none", 600.0, 3, 3.0),
            bad,
            failed,
            old,
        ]);
        let pts = build(&j);
        let keys: Vec<(String, f64)> = pts.iter().map(|p| (p.level(), p.offered)).collect();
        assert_eq!(
            keys,
            [
                ("stress=none".to_string(), 300.0),
                ("stress=none".to_string(), 600.0),
                ("stress=cpu-80".to_string(), 600.0)
            ]
        );
        let none = &pts[1];
        assert_eq!((none.rounds, none.valid_rounds), (3, 3));
        let p99 = none.latency[2].unwrap();
        assert!((p99.mean - 2.0).abs() < 1e-9 && (p99.half_width.unwrap() - 2.4841).abs() < 1e-3);
        let cpu = &pts[2];
        assert_eq!((cpu.rounds, cpu.valid_rounds), (4, 1));
        assert!((cpu.latency[2].unwrap().mean - 2.0).abs() < 1e-9);
        assert!((cpu.achieved.unwrap().mean - 599.0).abs() < 1e-9);

        let csv = render(&j, &pts);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "stress,rate,rounds,valid_rounds,achieved_rps_mean,\
             p50_ms_mean,p50_ms_ci95_low,p50_ms_ci95_high,\
             p90_ms_mean,p90_ms_ci95_low,p90_ms_ci95_high,\
             p99_ms_mean,p99_ms_ci95_low,p99_ms_ci95_high,\
             p99_9_ms_mean,p99_9_ms_ci95_low,p99_9_ms_ci95_high,rounds_stop"
        );
        // One round: the interval is unknown, its cells empty.
        assert!(
            lines[1].starts_with("none,300,1,1,299.00,0.250,,,0.400,,,0.500,,,"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(",2.000,0.000,4.484,"), "{}", lines[2]);
    }

    #[test]
    fn a_point_without_valid_rounds_has_empty_figures() {
        let mut e = entry(0, "none", 100.0, 1, 1.0);
        e.status = Status::Failed;
        let j = journal(vec![e]);
        let csv = render(&j, &build(&j));
        assert_eq!(csv.lines().nth(1).unwrap(), "none,100,1,0,,,,,,,,,,,,,,");
    }
}
