use std::collections::BTreeMap;

use super::*;
use crate::schedule::tests::{config, drive, Outcome};
use crate::schedule::Schedule;

fn searched(capacity_none: f64, capacity_cpu: f64) -> (Schedule, BTreeMap<String, Entry>) {
    let cfg = config("  search: {slo: p99 <= 5ms, min: 20, max: 1000, precision: 2%}\n  interference:\n    stress: [none, {kind: cpu, load: 50}]\n");
    let cases = crate::sweep::expand(&cfg);
    let s = Schedule::new(&cfg, &cases);
    let mut entries = BTreeMap::new();
    drive(&s, &mut entries, 1000, |c| {
        let cpu = c.labels().iter().any(|(n, v)| n == "stress" && v != "none");
        let cap = if cpu { capacity_cpu } else { capacity_none };
        Outcome::P99(if c.rate() <= cap { 3.0 } else { 9.0 })
    });
    (s, entries)
}

#[test]
fn capacity_per_level_relative_to_no_interference() {
    let (s, entries) = searched(400.0, 250.0);
    let rows = build(&s, &entries);
    assert_eq!(rows.len(), 2);
    let (none, cpu) = (&rows[0], &rows[1]);
    assert_eq!(label(none), "stress=none");
    assert_eq!(none.status, SearchStatus::Found);
    let (p, f) = (none.bracket.pass.unwrap(), none.bracket.fail.unwrap());
    assert!(p <= 400.0 && 400.0 < f && f - p <= 0.02 * p, "{p}..{f}");
    let rel = cpu.relative.unwrap();
    assert!((rel - 250.0 / 400.0).abs() < 0.03, "{rel}");
    assert_eq!(none.relative, Some(1.0));
    assert_eq!(none.at_capacity.unwrap().mean, 3.0);
    let csv = render(&s, &rows);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "stress,slo,status,capacity_rps,pass_rps,fail_rps,relative_to_no_interference,probes,cases,p99_ms_at_capacity,p99_ms_ci95_low,p99_ms_ci95_high,rounds_stop,inversions");
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[..3], ["none", "p99 <= 5ms", "found"]);
    assert_eq!(row[3], fmt_num(p));
    assert_eq!(row[12], "fixed");
}

#[test]
fn ends_of_the_range_and_files() {
    let (s, entries) = searched(5000.0, 10.0);
    let rows = build(&s, &entries);
    assert_eq!(rows[0].status, SearchStatus::AtMax);
    assert_eq!(rows[0].bracket.pass, Some(1000.0));
    assert_eq!(rows[1].status, SearchStatus::BelowMin);
    assert_eq!(rows[1].relative, None);
    let csv = render(&s, &rows);
    let below: Vec<&str> = csv.lines().nth(2).unwrap().split(',').collect();
    assert_eq!((below[2], below[3], below[5]), ("below_min", "", "20"));
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &s, &entries).unwrap();
    assert!(d.path().join(FILE).is_file());
    let svg = std::fs::read_to_string(d.path().join("plots/capacity.svg")).unwrap();
    assert!(svg.contains("stress=none"), "labels on the axis");
}
