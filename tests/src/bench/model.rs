//! The open-loop model of coordinated omission, and the check of a generator's report against it.
//!
//! A generator sends at a constant total rate R; the server freezes K times for S seconds inside
//! the window of W seconds the generator records. Under the open-loop model every request due
//! during a stall waits for its end, so the R·S latencies of each stall are uniform on (0, S] and
//! the rest are baseline: for a percentile q, `x_q = S − (1−q)·W/K` when that is positive, else
//! baseline, and max = S. A generator that does not correct (wrk, `-U`) only sees the C requests
//! in flight when a stall starts: S at the top K·C ranks of N = R·W values, baseline elsewhere.

/// One stall test: rate, stall length, recorded window and stalls in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StallModel {
    /// Total request rate R, requests/s.
    pub rate: f64,
    /// Stall length S, s.
    pub stall_s: f64,
    /// Recorded window W, s.
    pub window_s: f64,
    /// Stalls K inside the window.
    pub stalls: u32,
}

impl StallModel {
    /// Corrected latency at percentile `q` (0..=1), s; `None` where it is a baseline value.
    pub fn corrected(&self, q: f64) -> Option<f64> {
        if self.stalls == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.stall_s);
        }
        let x = self.stall_s - (1.0 - q) * self.window_s / self.stalls as f64;
        // Not a stall value below a nanosecond (float rounding at the ramp's foot).
        (x > 1e-9).then_some(x)
    }

    /// Uncorrected latency at `q` with `conns` connections (HdrHistogram's rank rule: the value
    /// of rank `max(1, round(q·N))`), s; `None` where it is a baseline value.
    pub fn uncorrected(&self, q: f64, conns: u32) -> Option<f64> {
        if self.stalls == 0 {
            return None;
        }
        let n = self.rate * self.window_s;
        let rank = (q * n).round().max(1.0);
        let stuck = (self.stalls * conns) as f64;
        (q >= 1.0 || rank > n - stuck).then_some(self.stall_s)
    }
}

/// The percentiles a check looks at, with their names in reports.
pub const PERCENTILES: [(&str, f64); 7] = [
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
];

/// How close a measured value must be to the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative deviation allowed (0.015 = 1.5 %).
    pub relative: f64,
    /// Absolute deviation always allowed, s (HdrHistogram buckets and baseline latency).
    pub absolute_s: f64,
    /// Model values below this (s) are too low on the ramp to judge: baseline latency and the
    /// server's drain time dominate them.
    pub ramp_min_s: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            relative: 0.015,
            absolute_s: 0.002,
            ramp_min_s: 0.05,
        }
    }
}

/// One percentile of a check.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckRow {
    /// Name, e.g. `p90`.
    pub name: String,
    /// Percentile as a fraction.
    pub q: f64,
    /// Model value, s (`None`: baseline).
    pub expected_s: Option<f64>,
    /// Reported value, s (`None`: not in the report).
    pub measured_s: Option<f64>,
    /// |measured − expected| / expected, when judged.
    pub deviation: Option<f64>,
    /// Judged and within tolerance (`None`: not judged).
    pub ok: Option<bool>,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// Every percentile looked at.
    pub rows: Vec<CheckRow>,
    /// At least one percentile judged and all judged ones within tolerance.
    pub pass: bool,
    /// The judged row with the largest relative deviation, by name.
    pub worst: Option<String>,
}

/// Judges `measured` (name → corrected value in s, names from [`PERCENTILES`]) against the
/// model: every percentile in `judge` (all of [`PERCENTILES`] when empty) whose model value lies
/// on the stall's ramp must be within the tolerance.
pub fn check(
    model: &StallModel,
    measured: &dyn Fn(&str) -> Option<f64>,
    judge: &[String],
    tol: &Tolerance,
) -> Verdict {
    let rows: Vec<CheckRow> = PERCENTILES
        .iter()
        .map(|&(name, q)| {
            let judged = judge.is_empty() || judge.iter().any(|j| j == name);
            row(name, q, model.corrected(q), measured(name), judged, tol)
        })
        .collect();
    let judged: Vec<&CheckRow> = rows.iter().filter(|r| r.ok.is_some()).collect();
    let pass = !judged.is_empty() && judged.iter().all(|r| r.ok == Some(true));
    let worst = judged
        .iter()
        .max_by(|a, b| a.deviation.partial_cmp(&b.deviation).unwrap())
        .map(|r| r.name.clone());
    Verdict { rows, pass, worst }
}

fn row(
    name: &str,
    q: f64,
    expected: Option<f64>,
    measured: Option<f64>,
    judged: bool,
    tol: &Tolerance,
) -> CheckRow {
    let on_ramp = expected.filter(|&e| judged && e >= tol.ramp_min_s);
    let (deviation, ok) = match (on_ramp, measured) {
        (Some(e), Some(m)) => {
            let dev = (m - e).abs();
            (
                Some(dev / e),
                Some(dev <= (tol.relative * e).max(tol.absolute_s)),
            )
        }
        (Some(_), None) => (None, Some(false)), // judged but missing from the report
        _ => (None, None),
    };
    CheckRow {
        name: name.to_string(),
        q,
        expected_s: expected,
        measured_s: measured,
        deviation,
        ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk2.md §9.2 test 1: R 1000, S 5 s, W 29.95 s, one stall.
    const TEST1: StallModel = StallModel {
        rate: 1000.0,
        stall_s: 5.0,
        window_s: 29.95,
        stalls: 1,
    };

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn corrected_model_matches_the_worked_example() {
        assert_eq!(TEST1.corrected(0.5), None);
        assert_eq!(TEST1.corrected(0.75), None);
        assert!(close(TEST1.corrected(0.9), 2.005));
        assert!(close(TEST1.corrected(0.99), 4.7005));
        assert!(close(TEST1.corrected(0.999), 4.97005));
        assert!(close(TEST1.corrected(1.0), 5.0));
    }

    #[test]
    fn issue_stall_test_p90_is_half_a_second() {
        let m = StallModel {
            rate: 800.0,
            stall_s: 4.0,
            window_s: 35.0,
            stalls: 1,
        };
        assert!(close(m.corrected(0.9), 0.5));
    }

    #[test]
    fn periodic_stalls_divide_the_window() {
        let m = StallModel {
            stalls: 3,
            stall_s: 1.0,
            window_s: 30.0,
            rate: 1000.0,
        };
        assert!(close(m.corrected(0.99), 0.9));
        assert_eq!(m.corrected(0.9), None);
    }

    #[test]
    fn uncorrected_shows_the_stall_only_in_the_top_k_c_ranks() {
        // N = 29,950; K·C = 10: p99.9 (rank 29,920) is baseline, p99.99 (29,947) is the stall.
        assert_eq!(TEST1.uncorrected(0.999, 10), None);
        assert!(close(TEST1.uncorrected(0.9999, 10), 5.0));
        assert!(close(TEST1.uncorrected(1.0, 10), 5.0));
    }

    fn measured<'a>(values: &'a [(&'a str, f64)]) -> impl Fn(&str) -> Option<f64> + 'a {
        move |name| values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn check_passes_within_tolerance_and_ignores_baseline() {
        let m = [
            ("p50", 0.001),
            ("p90", 2.02),
            ("p99", 4.71),
            ("p99.9", 4.97),
            ("p99.99", 5.0),
            ("max", 5.0),
        ];
        let v = check(&TEST1, &measured(&m), &[], &Tolerance::default());
        assert!(v.pass, "{v:?}");
        assert_eq!(v.rows[0].ok, None); // p50 is baseline
        assert_eq!(v.worst.as_deref(), Some("p90"));
    }

    #[test]
    fn check_fails_off_the_model_or_when_missing() {
        let tol = Tolerance::default();
        let off = [("p90", 2.1), ("p99", 4.70), ("p99.9", 4.97), ("max", 5.0)];
        assert!(!check(&TEST1, &measured(&off), &[], &tol).pass);
        let missing = [("p90", 2.005)];
        assert!(!check(&TEST1, &measured(&missing), &[], &tol).pass);
        let only_p90 = check(&TEST1, &measured(&missing), &["p90".to_string()], &tol);
        assert!(only_p90.pass);
    }

    #[test]
    fn absolute_tolerance_covers_short_values() {
        let m = StallModel {
            rate: 1000.0,
            stall_s: 0.1,
            window_s: 10.0,
            stalls: 1,
        };
        // p99.9 model = 0.09 s; 1.9 ms off is 2.1 % but within the 2 ms floor.
        let v = check(
            &m,
            &measured(&[("p99.9", 0.0919)]),
            &["p99.9".into()],
            &Tolerance::default(),
        );
        assert!(v.pass, "{v:?}");
    }
}
