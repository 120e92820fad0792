//! `aefm export --format original` on a real run: the traced demo, two 1 s cases (no interference
//! and a light cpu level) with a custom dimension, exported into the original AEFM's five files.

use std::collections::HashMap;

use super::*;

/// Two 1 s cases of the traced demo at 50 req/s: stress none and cpu-10, custom `mode: a`.
fn export_config(port: u16) -> String {
    format!(
        r#"
name: exported
results_dir: results
duration: 1s
warmup: 0s
settle: 500ms
app:
  demo: {{front_work_us: 300, back_work_us: 500}}
load:
  connections: 4
collect:
  otlp: {{listen: "127.0.0.1:{port}", grace: 1s}}
sweep:
  rate: [50]
  interference:
    stress: [none, {{kind: cpu, load: 10, workers: 1, label: cpu-10}}]
  custom:
    mode: [a]
"#
    )
}

/// The original's data columns (aefm-original.md §10; raw_data without `merged_child_duration`
/// and `step`), then the test-case columns this sweep has.
const FILES: [(&str, &[&str]); 5] = [
    ("throughput_data.csv", &["real_throughput"]),
    (
        "raw_data.csv",
        &[
            "trace_id",
            "parent_id",
            "trace_time",
            "start_time",
            "end_time",
            "child_id",
            "child_operation",
            "parent_operation",
            "child_ms",
            "child_pod",
            "parent_ms",
            "parent_pod",
            "parent_duration",
            "child_duration",
            "exact_parent_duration",
        ],
    ),
    (
        "statistical_data.csv",
        &["microservice", "pod", "p50", "p95"],
    ),
    ("end_to_end_data.csv", &["trace_id", "trace_duration"]),
    (
        "hardware_data.csv",
        &["microservice", "pod", "cpu_usage", "mem_usage"],
    ),
];
const TEST_CASE_COLUMNS: [&str; 4] = ["round", "throughput", "cpu", "mode"];

fn header(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap_or_default();
    first.split(',').map(String::from).collect()
}

/// Rows of a file grouped by their `cpu` cell (the case's level).
fn by_level(rows: &[HashMap<String, String>]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for r in rows {
        *n.entry(r["cpu"].clone()).or_default() += 1;
    }
    n
}

fn num(r: &HashMap<String, String>, col: &str) -> f64 {
    r[col]
        .parse()
        .unwrap_or_else(|e| panic!("{col} = {:?}: {e} in {r:?}", r[col]))
}

#[test]
fn a_real_run_exports_to_the_originals_five_files() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let port = aefm_tests::experiment::free_port();
    let cfg = write_config(tmp.path(), "exported.yaml", &export_config(port));
    let mut cmd = Command::new(aefm());
    cmd.args(["run", cfg.to_str().unwrap(), "--no-progress"]);
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "aefm run failed: {}",
        text(&out.stderr)
    );
    let dir = experiment_dir(&tmp.path().join("results"));
    let cases = summary(&dir);
    assert_eq!(cases.len(), 2, "{cases:?}");
    assert!(cases.iter().all(|c| c["status"] == "ok"), "{cases:?}");

    // Every ok case, valid or not (a busy machine may make one invalid): rows per case.
    let data = tmp.path().join("data");
    let mut cmd = Command::new(aefm());
    cmd.arg("export")
        .arg(&dir)
        .args(["--format", "original", "--include-invalid", "--out"]);
    cmd.arg(&data);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "aefm export failed: {stderr}");
    assert!(
        stderr.contains("hardware_data.csv has its header only"),
        "no Prometheus locally: {stderr}"
    );

    for (file, columns) in FILES {
        let mut want: Vec<&str> = columns.to_vec();
        want.extend(TEST_CASE_COLUMNS);
        assert_eq!(header(&data.join(file)), want, "{file}");
    }
    assert!(read_csv(&data.join("hardware_data.csv")).is_empty());

    // The cpu column holds the case's level label, as summary.csv's `stress` column.
    let levels = |c: &HashMap<String, String>| c["stress"].clone();
    let tp = read_csv(&data.join("throughput_data.csv"));
    assert_eq!(tp.len(), 2);
    for (row, case) in tp.iter().zip(&cases) {
        assert_eq!(row["cpu"], levels(case));
        assert_eq!((row["round"].as_str(), row["mode"].as_str()), ("1", "a"));
        assert_eq!(row["throughput"], "50");
        // req/s over the window, as summary.csv's achieved_rps (which has 2 decimals).
        let real = num(row, "real_throughput");
        assert!(
            (real - num(case, "achieved_rps")).abs() < 0.01,
            "{row:?} {case:?}"
        );
        assert!(real > 25.0 && real < 75.0, "{row:?}");
    }

    let raw = read_csv(&data.join("raw_data.csv"));
    let e2e = read_csv(&data.join("end_to_end_data.csv"));
    let stats = read_csv(&data.join("statistical_data.csv"));
    for case in &cases {
        let level = levels(case);
        let case_dir = dir.join("cases").join(&case["case"]);
        let edges = read_csv(&case_dir.join("edges.csv")).len();
        let traces = read_csv(&case_dir.join("end_to_end.csv")).len();
        assert!(
            traces > 0 && edges >= traces,
            "{traces} traces, {edges} edges"
        );
        assert_eq!(by_level(&raw).get(&level), Some(&edges), "{level}");
        assert_eq!(by_level(&e2e).get(&level), Some(&traces), "{level}");
        assert!(
            by_level(&stats).get(&level).is_some_and(|n| *n >= 3),
            "{level}"
        );
    }
    for r in raw.iter().chain(&e2e).chain(&stats) {
        for c in TEST_CASE_COLUMNS {
            assert!(!r[c].is_empty(), "{c} empty in {r:?}");
        }
    }
    // µs: a request costs at least 800 µs of CPU in the demo; well under 10 s.
    for r in &e2e {
        let d = num(r, "trace_duration");
        assert!((800.0..10_000_000.0).contains(&d), "{r:?}");
    }
    for r in &raw {
        let (own, total) = (num(r, "exact_parent_duration"), num(r, "parent_duration"));
        assert!(own >= 0.0 && own <= total, "{r:?}");
        assert!(num(r, "trace_time") > 1.6e15, "µs since the epoch: {r:?}");
    }
    let front = stats
        .iter()
        .find(|r| r["microservice"].starts_with("demo-front"))
        .expect("the front end's statistics");
    assert!(
        num(front, "p50") >= 300.0 && num(front, "p95") >= num(front, "p50"),
        "{front:?}"
    );

    // Without --include-invalid: the valid cases only.
    let valid = cases.iter().filter(|c| c["validity"] == "valid").count();
    let data2 = tmp.path().join("data-valid");
    let mut cmd = Command::new(aefm());
    cmd.arg("export")
        .arg(&dir)
        .args(["--format", "original", "--out"]);
    cmd.arg(&data2);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read_csv(&data2.join("throughput_data.csv")).len(), valid);

    // A directory that is not an experiment, an unknown format: refused, named.
    let mut cmd = Command::new(aefm());
    cmd.arg("export")
        .arg(tmp.path())
        .args(["--format", "original", "--out"]);
    cmd.arg(tmp.path().join("x"));
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&tmp.path().display().to_string())
            && stderr.contains("not an aefm results directory"),
        "{stderr}"
    );
    let mut cmd = Command::new(aefm());
    cmd.arg("export")
        .arg(&dir)
        .args(["--format", "pandas", "--out"]);
    cmd.arg(tmp.path().join("y"));
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("supported formats: original"), "{stderr}");
}
