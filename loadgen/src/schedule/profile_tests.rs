//! Tests of [`RateProfile`]: every text form, every refusal, and `Λ` against a numeric integral.

use super::*;

fn p(text: &str) -> RateProfile {
    RateProfile::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> String {
    RateProfile::parse(text).unwrap_err().0
}

fn point(at_ms: u64, rate: f64, shape: Shape) -> Point {
    Point {
        at: Duration::from_millis(at_ms),
        rate,
        shape,
    }
}

/// `Λ(t)` by the midpoint rule on `r(t)`.
fn numeric_integral(profile: &RateProfile, t: f64) -> f64 {
    let n = 200_000;
    let h = t / n as f64;
    (0..n)
        .map(|i| profile.rate_at((i as f64 + 0.5) * h) * h)
        .sum()
}

#[test]
fn constant_forms_keep_metric_suffixes() {
    assert_eq!(p("2000").as_constant(), Some(2000.0));
    assert_eq!(p("10k").as_constant(), Some(10_000.0));
    assert_eq!(p("1.5M").as_constant(), Some(1.5e6));
    assert_eq!(p("0.5").as_constant(), Some(0.5));
    let c = p("2000");
    assert_eq!(c.offered_in(0), 2000.0);
    assert_eq!(c.offered_in(1234), 2000.0);
    assert_eq!(c.cumulative(2.5), 5000.0);
}

#[test]
fn ramp_form() {
    let r = p("1000:5000:60s");
    assert_eq!(
        r.points(),
        &[
            point(0, 1000.0, Shape::Step),
            point(60_000, 5000.0, Shape::Ramp)
        ]
    );
    assert_eq!(r.as_constant(), None);
    assert_eq!(r.rate_at(30.0), 3000.0);
    assert_eq!(r.rate_at(90.0), 5000.0);
    // Second 0 offers the mean of 1000 and 1000 + 4000/60.
    assert!((r.offered_in(0) - (1000.0 + 2000.0 / 60.0)).abs() < 1e-9);
    assert!((r.cumulative(60.0) - 180_000.0).abs() < 1e-6);
    assert!((r.offered_in(61) - 5000.0).abs() < 1e-6);
    assert!((r.mean_rate(Duration::from_secs(120)) - 4000.0).abs() < 1e-9);
    assert_eq!(p("2k:1k:500ms").rate_at(0.25), 1500.0);
}

#[test]
fn list_forms() {
    let s = p("1000@0s,5000@30s");
    assert_eq!(
        s.points(),
        &[
            point(0, 1000.0, Shape::Step),
            point(30_000, 5000.0, Shape::Step)
        ]
    );
    assert_eq!(s.rate_at(29.999), 1000.0);
    assert_eq!(s.offered_in(29), 1000.0);
    assert_eq!(s.offered_in(30), 5000.0);
    // The first point may omit @0; ramps (~) and steps mix; 0 is a pause.
    let m = p("1k, 3k~10s, 3k@20s, 0@25s, 500@30s");
    assert_eq!(m.points().len(), 5);
    assert_eq!(m.rate_at(5.0), 2000.0);
    assert_eq!(m.rate_at(22.0), 3000.0);
    assert_eq!(m.offered_in(26), 0.0);
    assert_eq!(m.offered_in(40), 500.0);
    assert_eq!(p("5@0").as_constant(), Some(5.0));
}

#[test]
fn closed_form_integral_matches_numeric() {
    for text in [
        "1000:5000:60s",
        "3000,200~20s,200@25s,1500~30s",
        "0,100~1s,0~2s,7@3s",
    ] {
        let profile = p(text);
        for t in [0.3, 1.0, 2.5, 20.0, 27.7, 61.0, 100.0] {
            let exact = profile.cumulative(t);
            let numeric = numeric_integral(&profile, t);
            assert!(
                (exact - numeric).abs() <= 1e-5 * numeric.max(1.0),
                "{text} at {t}: {exact} vs {numeric}"
            );
        }
    }
}

#[test]
fn rate_file() {
    let text = "# warm up\n0 1k\n\n10s 5k ramp   # climb\n20 5k\n 30s 0 step\n";
    let f = RateProfile::parse_file(text).unwrap();
    assert_eq!(f, p("1k@0,5k~10s,5k@20s,0@30s"));
    for (text, needle) in [
        ("0 1k\n10 5k linear\n", "line 2: invalid shape 'linear'"),
        ("0 1k\n10\n", "line 2: invalid line '10'"),
        ("0 1k\nsoon 5k\n", "line 2: invalid time 'soon'"),
        ("0 -1\n", "line 1: invalid rate '-1': must not be negative"),
        ("0 1k\n10 2k\n5 3k\n", "must increase"),
        ("# nothing\n", "rate file has no points"),
        ("5 1k\n", "must be at 0s"),
    ] {
        let e = RateProfile::parse_file(text).unwrap_err().0;
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rates.txt");
    std::fs::write(&path, "0 100\n1 0\n").unwrap();
    assert_eq!(RateProfile::read_file(&path).unwrap(), p("100,0@1s"));
    let missing = dir.path().join("missing.txt");
    let e = RateProfile::read_file(&missing).unwrap_err().0;
    assert!(e.contains("missing.txt"), "{e}");
}

#[test]
fn every_refusal_names_its_token() {
    for (text, needle) in [
        ("-5", "invalid rate '-5': must not be negative"),
        ("fast", "invalid rate 'fast'"),
        ("", "invalid rate ''"),
        ("0", "0 everywhere"),
        ("0,0@10s", "0 everywhere"),
        ("1000:5000", "invalid rate '1000:5000'"),
        ("1000:5000:0s", "ramp time '0s' must be > 0"),
        ("1000:5000:soon", "invalid time 'soon'"),
        ("1000:-5:10s", "invalid rate '-5'"),
        (
            "1000@0s,5000@30s,2000@20s",
            "'2000@20s': times must increase",
        ),
        ("1000@0s,5000@0s", "'5000@0s': times must increase"),
        (
            "1000@5s,2000@10s",
            "'1000@5s': the first point must be at 0s",
        ),
        ("1000~0s", "'1000~0s': the first point cannot be a ramp"),
        ("1000,5000", "rate point '5000' needs a time"),
        ("1000,-1@5s", "invalid rate '-1'"),
        ("1000,5@-1s", "invalid time '-1s': must not be negative"),
        ("1000,5x@1s", "invalid rate '5x'"),
    ] {
        let e = err(text);
        assert!(e.contains(needle), "{text:?}: {e}");
        assert!(!e.contains('\n'), "{text:?}: multi-line: {e}");
    }
    let bad_points = [
        (vec![], "no points"),
        (vec![point(1, 5.0, Shape::Step)], "must be at 0s"),
        (vec![point(0, f64::NAN, Shape::Step)], "must be >= 0"),
        (vec![point(0, 5.0, Shape::Ramp)], "cannot be a ramp"),
    ];
    for (points, needle) in bad_points {
        let e = RateProfile::from_points(&points).unwrap_err().0;
        assert!(e.contains(needle), "{points:?}: {e}");
    }
    assert!(p("10").scaled(0.0).is_err());
}

#[test]
fn display_parses_back() {
    for text in [
        "2000",
        "0.25",
        "1000:5000:60s",
        "1k,3k~10.123456789s,3k@20s,0@25s,500@30.5s",
        "0,0.001@1ms",
    ] {
        let profile = p(text);
        let shown = profile.to_string();
        assert_eq!(
            RateProfile::parse(&shown),
            Ok(profile.clone()),
            "{text} -> {shown}"
        );
    }
}

#[test]
fn scaled_splits_the_rate() {
    let r = p("1000:5000:60s");
    let half = r.scaled(0.5).unwrap();
    assert_eq!(half.rate_at(30.0), 1500.0);
    assert!((half.cumulative(100.0) * 2.0 - r.cumulative(100.0)).abs() < 1e-6);
}
