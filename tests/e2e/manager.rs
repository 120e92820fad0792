//! End-to-end tests: the `aefm` manager on the local backend (demo service, aefm-stress, load in
//! process), with short cases. Every test runs the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aefm_tests::bins;
use aefm_tests::experiment::{
    aefm, experiment_dir, read_csv, run_with_deadline, text, write_config,
};

/// summary.csv of an experiment directory, as rows of column -> value.
fn summary(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    read_csv(&dir.join("summary.csv"))
}

/// Resume safety, crashed and interrupted states, temp files, umask.
#[path = "manager/resume.rs"]
mod resume;

/// The capacity search against a service of known capacity, killed and resumed.
#[path = "manager/capacity.rs"]
mod capacity;

/// Explicit case lists (config and library) and custom collections.
#[path = "manager/cases.rs"]
mod cases;

/// Traces inside a run: the OTLP receiver, the traced demo, the join.
#[path = "manager/traces.rs"]
mod traces;

/// `aefm export --format original` on a real traced run.
#[path = "manager/export.rs"]
mod export;

/// One 30 s case with a cpu stressor: long enough to be interrupted.
const LONG_CASE: &str = r#"
name: long
results_dir: results
duration: 30s
warmup: 0s
app:
  demo: {front_work_us: 50, back_work_us: 50}
sweep:
  rate: [50]
  interference:
    stress: [{kind: cpu, load: 30}]
"#;

/// Tests that run experiments take this lock: they share the machine's cores, and the latency
/// comparison must not compete with another experiment of the same test binary.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Direct children of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let ppid: u32 = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
            if ppid == pid {
                out.push(p);
            }
        }
    }
    out
}

/// True when the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            !rest.starts_with('Z') && !rest.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

const INTERFERENCE_CONFIG: &str = r#"
name: e2e
results_dir: results
duration: 2s
warmup: 500ms
settle: 500ms
app:
  demo: {front_work_us: 200, back_work_us: 300}
  cores: [0]
load:
  connections: 32
  timeout: 5s
sweep:
  rate: [100, 300]
  interference:
    stress:
      - none
      - {kind: cpu, load: 100}
"#;

/// The interference test's experiment: 3 rounds, the levels interleaved inside each (order
/// round > rate > stress), so every cpu case runs next to the no-interference case it is compared
/// with and slow drift of a busy machine hits both alike. The stressor is two workers at 25 %
/// each on the app's core: 50 % of the core, which it can reach beside the app (about a third of
/// the core at 300 req/s in a debug build), and which stretches every request (p50 about 1.9x on
/// a quiet machine), not only the tail.
const ROUNDS_CONFIG: &str = r#"
name: e2e
results_dir: results
duration: 2s
warmup: 500ms
settle: 500ms
app:
  demo: {front_work_us: 200, back_work_us: 300}
  cores: [0]
load:
  connections: 32
  timeout: 5s
sweep:
  rate: [100, 300]
  rounds: 3
  interference:
    stress:
      - none
      - {kind: cpu, load: 25, workers: 2}
  order: [round, rate, stress]
"#;

/// Smallest median, over the (round, rate) pairs, of p50 with interference / p50 without.
const MIN_P50_RATIO: f64 = 1.2;

/// Smallest mean CPU of the stressor in a cpu case, percent of one core (its target is 50).
const MIN_STRESSOR_CPU: f64 = 20.0;

/// Runs [`ROUNDS_CONFIG`] in `tmp`; returns the experiment directory. Exit code 3 (a case
/// judged invalid, e.g. a generator starved by a busy machine) is accepted: the comparison below
/// does not depend on it, and the validity checks have tests of their own.
fn run_rounds_experiment(tmp: &Path) -> PathBuf {
    let cfg = write_config(tmp, "e2e.yaml", ROUNDS_CONFIG);
    let mut cmd = Command::new(aefm());
    cmd.args(["run", cfg.to_str().unwrap(), "--no-progress"]);
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    let stderr = text(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "aefm run failed: {stderr}"
    );
    let dir = experiment_dir(&tmp.join("results"));
    assert!(
        text(&out.stdout).contains(&dir.display().to_string()),
        "{}",
        text(&out.stdout)
    );
    dir
}

/// Every file of the layout is there and agrees with the load report it came from.
fn check_results_are_consistent(dir: &Path, rows: &[std::collections::HashMap<String, String>]) {
    for f in [
        "config.yaml",
        "config.resolved.yaml",
        "metadata.json",
        "journal.jsonl",
        "summary.csv",
        "points.csv",
        "aefm.log",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["cases"], 12);
    assert!(meta["ended"].is_string());
    assert_eq!(rows.len(), 12, "{rows:?}");
    for r in rows {
        assert_eq!(r["status"], "ok", "{r:?}");
        let case_dir = dir.join("cases").join(&r["case"]);
        for f in [
            "loadgen.json",
            "latency.hlog",
            "latency_percentiles.txt",
            "host.csv",
            "host_summary.csv",
            "case.json",
        ] {
            assert!(
                case_dir.join(f).is_file(),
                "{} missing in {}",
                f,
                case_dir.display()
            );
        }
        // The collector's host sampler: app units by name, aefm itself, and the host.
        let host = std::fs::read_to_string(case_dir.join("host.csv")).unwrap();
        assert!(host.starts_with("timestamp,source,metric,labels,value\n"));
        let has = |metric: &str, label: &str| {
            host.lines()
                .any(|l| l.contains(&format!(",host,{metric},")) && l.contains(label))
        };
        assert!(has("process_cpu_percent", "role=app;unit="), "{host}");
        assert!(
            has("process_rss_bytes", "role=generator;unit=aefm"),
            "{host}"
        );
        assert!(has("host_cpu_busy_share", ""), "{host}");
        // The summary agrees with the loadgen report it came from.
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case_dir.join("loadgen.json")).unwrap())
                .unwrap();
        let p99_json = report["corrected"]["stats"]["p99"].as_f64().unwrap() / 1000.0;
        let p99_csv: f64 = r["p99_ms"].parse().unwrap();
        assert!(
            (p99_json - p99_csv).abs() <= 0.01 + p99_json * 0.001,
            "{p99_json} vs {p99_csv}"
        );
        let offered: f64 = r["offered_rps"].parse().unwrap();
        let achieved: f64 = r["achieved_rps"].parse().unwrap();
        assert!(
            achieved > offered * 0.3 && achieved < offered * 1.3,
            "{r:?}"
        );
        let cpu: f64 = r["app_cpu_percent"].parse().unwrap();
        assert!(cpu > 1.0, "{r:?}");
        // What else the host did: always measured locally, never negative; how much depends on
        // the machine, so no bound here.
        let other: f64 = r["other_cpu_cores"].parse().unwrap();
        assert!(other >= 0.0, "{r:?}");
    }
    assert!(dir.join("plots/latency_vs_rate_p99.svg").is_file());
    let timelines = std::fs::read_dir(dir.join("plots/timeline"))
        .unwrap()
        .count();
    assert_eq!(timelines, 12);
    check_points(dir);
}

/// points.csv: one row per (stress, rate) over the 3 rounds, each interval around its mean.
fn check_points(dir: &Path) {
    let points = read_csv(&dir.join("points.csv"));
    assert_eq!(points.len(), 4, "{points:?}");
    for p in &points {
        assert_eq!(p["rounds"], "3", "{p:?}");
        if p["valid_rounds"].parse::<usize>().unwrap() < 2 {
            continue;
        }
        for stem in ["p50", "p90", "p99"] {
            let v = |c: &str| -> f64 { p[&format!("{stem}_ms_{c}")].parse().unwrap() };
            let (lo, mean, hi) = (v("ci95_low"), v("mean"), v("ci95_high"));
            assert!(lo <= mean && mean <= hi, "{stem}: {p:?}");
        }
    }
}

/// Mean CPU of the stressor over a case's window, percent of one core (0 when it was not seen).
fn stressor_cpu(dir: &Path, case: &str) -> f64 {
    let p = dir.join("cases").join(case).join("host_summary.csv");
    let rows = read_csv(&p);
    rows.iter()
        .filter(|r| {
            r["metric"] == "process_cpu_percent" && r["labels"].contains("role=interference")
        })
        .map(|r| r["mean"].parse::<f64>().unwrap())
        .sum()
}

/// The median over (round, rate) of p50 with cpu interference / p50 without, with the pairs.
fn median_p50_ratio(rows: &[std::collections::HashMap<String, String>]) -> (f64, String) {
    let mut ratios = Vec::new();
    let mut shown = Vec::new();
    for cpu in rows.iter().filter(|r| r["stress"] == "cpu-25") {
        let none = rows
            .iter()
            .find(|r| {
                r["stress"] == "none" && r["round"] == cpu["round"] && r["rate"] == cpu["rate"]
            })
            .expect("every cpu case has its no-interference pair");
        let (a, b): (f64, f64) = (
            cpu["p50_ms"].parse().unwrap(),
            none["p50_ms"].parse().unwrap(),
        );
        ratios.push(a / b.max(1e-3));
        shown.push(format!(
            "round {} at {} req/s: {a} vs {b} ms",
            cpu["round"], cpu["rate"]
        ));
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    assert!(n > 0, "no cpu cases");
    let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
    (median, shown.join("; "))
}

/// Interference must raise latency, measured so that a busy machine cannot fake or hide it:
/// p50 (every request slowed, not a few tail samples), compared within interleaved pairs, the
/// median of the pairs against a margin, and the whole experiment repeated (up to 3 times)
/// before failing. It cannot pass when interference does nothing: the stressor's own CPU is
/// checked in every cpu case (a stressor that did not run fails at once), and without its
/// effect the paired p50s are two samples of one distribution, whose ratio's median stays near
/// 1 (a p50 over 200-600 requests moves by a few percent), far from the 1.2 margin, in every
/// attempt.
#[test]
fn run_writes_consistent_results_and_cpu_interference_raises_latency() {
    let _serial = serial();
    const ATTEMPTS: usize = 3;
    let mut seen = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = run_rounds_experiment(tmp.path());
        let rows = summary(&dir);
        if attempt == 1 {
            check_results_are_consistent(&dir, &rows);
        }
        for r in rows.iter().filter(|r| r["stress"] == "cpu-25") {
            let cpu = stressor_cpu(&dir, &r["case"]);
            assert!(
                cpu >= MIN_STRESSOR_CPU,
                "stressor used {cpu:.1} % of a core in {} (target 50 %)",
                r["case"]
            );
        }
        let (ratio, pairs) = median_p50_ratio(&rows);
        let line = format!("attempt {attempt}: median p50 ratio {ratio:.2} ({pairs})");
        eprintln!("{line}");
        if ratio >= MIN_P50_RATIO {
            return;
        }
        seen.push(line);
    }
    panic!(
        "cpu interference did not raise p50 by {MIN_P50_RATIO}x in {ATTEMPTS} attempts:\n{}",
        seen.join("\n")
    );
}

const SHORT_CONFIG: &str = r#"
name: short
results_dir: results
duration: 1s
warmup: 0s
app:
  demo: {front_work_us: 50, back_work_us: 50}
sweep:
  rate: [50, 100]
  rounds: 3
"#;

/// Lines in the journal of the (only) experiment under `results`; 0 before it exists.
/// Starts `aefm run CONFIG` in `tmp` (stderr to `first.log`), kills it once `lines` cases are
/// journaled (within 90 s, or the test fails with the log), and returns the journal's lines
/// then: the state a crash leaves for `--resume`.
fn run_until_killed(tmp: &Path, cfg: &Path, lines: usize) -> usize {
    let log = std::fs::File::create(tmp.join("first.log")).unwrap();
    let mut child: Child = Command::new(aefm())
        .args(["run", cfg.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let results = tmp.join("results");
    let got = wait_until(Duration::from_secs(90), || journal_lines(&results) >= lines);
    child.kill().unwrap();
    child.wait().unwrap();
    let first = std::fs::read_to_string(tmp.join("first.log")).unwrap_or_default();
    assert!(got, "no {lines} cases finished in time: {first}");
    journal_lines(&results)
}

/// `aefm run CONFIG --resume` to its end (within `limit`), which must have run (exit 0, or 3: a
/// case may be invalid on a busy machine; what ran is for the caller to check).
fn resume_to_end(cfg: &Path, limit: Duration) -> Output {
    let mut cmd = Command::new(aefm());
    cmd.args(["run", cfg.to_str().unwrap(), "--resume", "--no-progress"]);
    let out = run_with_deadline(cmd, limit);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "resume failed: {}",
        text(&out.stderr)
    );
    out
}

fn journal_lines(results: &Path) -> usize {
    std::fs::read_dir(results)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::read_to_string(e.path().join("journal.jsonl")).ok())
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn resume_after_kill_skips_finished_cases() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "short.yaml", SHORT_CONFIG);
    let mut child: Child = Command::new(aefm())
        .args(["run", cfg.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let results = tmp.path().join("results");
    let got = wait_until(Duration::from_secs(60), || journal_lines(&results) >= 2);
    let kids = children_of(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(got, "no case finished in time");
    let done_before = journal_lines(&results);
    assert!(
        done_before < 6,
        "all cases finished before the kill ({done_before})"
    );
    // The app died with aefm (PDEATHSIG): nothing left behind even after SIGKILL.
    assert!(
        wait_until(Duration::from_secs(5), || kids.iter().all(|p| !alive(*p))),
        "children survived: {kids:?}"
    );

    let out = resume_to_end(&cfg, Duration::from_secs(90));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("finished earlier"), "{stdout}");
    let dir = experiment_dir(&results);
    let rows = summary(&dir);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    // Finished cases were not run again: one journal line per case.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 6, "{journal}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["resumed"].as_array().unwrap().len(), 1);
    assert_eq!(meta["status"], "finished");
}

#[test]
fn sigint_stops_everything_and_keeps_results() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "long.yaml", LONG_CASE);
    let child = Command::new(aefm())
        .args(["run", cfg.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the app (3 units) and the stressor run: 4 children.
    let started = wait_until(Duration::from_secs(30), || children_of(pid).len() >= 4);
    let kids = children_of(pid);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe {
        libc_kill(pid as i32, 2);
    }
    let out = run_with_deadline_wait(child, Duration::from_secs(30));
    assert!(started, "app and stressor did not start: {kids:?}");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--resume"), "{stderr}");
    for k in &kids {
        assert!(!alive(*k), "process {k} survived SIGINT");
    }
    let dir = experiment_dir(&tmp.path().join("results"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "interrupted");
}

fn run_with_deadline_wait(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: our own child (harmless if it already exited and was reaped: ESRCH).
        unsafe {
            libc_kill(pid as i32, 9);
        }
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    out
}

/// Runs `aefm` with a config and returns (exit code, stderr).
fn aefm_fails(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(aefm());
    cmd.args(args).current_dir(dir);
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    (out.status.code(), text(&out.stderr))
}

#[test]
fn bad_key_is_named_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(
        tmp.path(),
        "bad.yaml",
        "name: x\nsweep:\n  rate: [10]\n  rouds: 2\n",
    );
    let (code, err) = aefm_fails(&["validate", "bad.yaml"], tmp.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("sweep: unknown field `rouds`"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
}

#[test]
fn huge_sweep_is_refused_at_once_naming_the_dimension() {
    // 10^12 rates: expanding them grew by ~450 MB/s until killed. Counted, it is refused at
    // once; the deadline is only a backstop against the old behaviour, not a timing assertion.
    let tmp = tempfile::tempdir().unwrap();
    write_config(
        tmp.path(),
        "huge.yaml",
        "name: x\nsweep:\n  rate: {min: 1, max: 1000000000000, step: 1}\n  rounds: 2\n",
    );
    for cmd in ["validate", "plan", "run"] {
        let (code, err) = aefm_fails(&[cmd, "huge.yaml"], tmp.path());
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(
            err.contains("huge.yaml: sweep.rate: {min: 1, max: 1000000000000, step: 1} gives 1000000000000 rates, sweep.rounds: 2 rounds; the sweep would have 2000000000000 cases, more than the limit of 100000"),
            "{cmd}: {err}"
        );
        assert!(err.contains("line 3"), "{err}");
    }
}

#[test]
fn unusable_results_dir_is_named_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "").unwrap();
    write_config(
        tmp.path(),
        "c.yaml",
        "name: x\nresults_dir: file/results\nsweep:\n  rate: [10]\n",
    );
    for cmd in ["validate", "run"] {
        let (code, err) = aefm_fails(&[cmd, "c.yaml"], tmp.path());
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(err.contains("c.yaml: results_dir: "), "{cmd}: {err}");
        assert!(
            err.contains("file/results cannot be created: ")
                && err.contains("file is not a directory"),
            "{cmd}: {err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }
}

#[test]
fn missing_script_is_named_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(
        tmp.path(),
        "c.yaml",
        "name: x\nresults_dir: results\nload:\n  script: scripts/missing.lua\nsweep:\n  rate: [10]\n",
    );
    let (code, err) = aefm_fails(&["run", "c.yaml"], tmp.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("load.script"), "{err}");
    assert!(err.contains("missing.lua"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(!tmp.path().join("results").exists(), "nothing may start");
}

#[test]
fn app_that_fails_to_start_is_reported_before_load() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(
        tmp.path(),
        "c.yaml",
        r#"
name: x
results_dir: results
app:
  commands:
    - name: api
      run: "echo 'listen: address already in use' >&2; exit 3"
      ready: {tcp: "127.0.0.1:9"}
load:
  url: http://127.0.0.1:9/
sweep:
  rate: [10]
"#,
    );
    let (code, err) = aefm_fails(&["run", "c.yaml", "--no-progress"], tmp.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("app unit \"api\""), "{err}");
    assert!(err.contains("address already in use"), "{err}");
    assert!(err.contains("init_environment"), "{err}");
    let dir = experiment_dir(&tmp.path().join("results"));
    assert!(!dir.join("cases").exists(), "no case may run");
}

#[test]
fn app_that_never_becomes_ready_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_config(
        tmp.path(),
        "c.yaml",
        &format!(
            "name: x\nresults_dir: results\napp:\n  ready_timeout: 1s\n  commands:\n    - name: sleeper\n      run: sleep 30\n      ready: {{http: \"http://127.0.0.1:{port}/health\"}}\nload:\n  url: http://127.0.0.1:{port}/\nsweep:\n  rate: [10]\n"
        ),
    );
    aefm(); // build first: the time limit is for the run
    let start = Instant::now();
    let (code, err) = aefm_fails(&["run", "c.yaml", "--no-progress"], tmp.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("app unit \"sleeper\""), "{err}");
    assert!(err.contains("not ready after 1.0s"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn unreachable_prometheus_is_reported_before_the_app_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_config(
        tmp.path(),
        "c.yaml",
        &format!(
            "name: x\nresults_dir: results\ncollect:\n  prometheus:\n    url: http://127.0.0.1:{port}\nsweep:\n  rate: [10]\n"
        ),
    );
    let (code, err) = aefm_fails(&["run", "c.yaml", "--no-progress"], tmp.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Prometheus"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("start_experiment"), "{err}");
    let dir = experiment_dir(&tmp.path().join("results"));
    assert!(!dir.join("app").exists(), "the app must not start");
}

#[test]
fn missing_working_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(
        tmp.path(),
        "c.yaml",
        "name: x\napp:\n  commands:\n    - name: api\n      run: 'true'\n      cwd: no/such/dir\nload:\n  url: http://127.0.0.1:9/\nsweep:\n  rate: [10]\n",
    );
    let (code, err) = aefm_fails(&["validate", "c.yaml"], tmp.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("app.commands[0].cwd"), "{err}");
    assert!(err.contains("no/such/dir"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn plan_lists_cases_in_run_order_with_estimate() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "e2e.yaml", INTERFERENCE_CONFIG);
    let out = Command::new(aefm())
        .args(["plan", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = text(&out.stdout);
    let a = s.find("round-1_stress-none_rate-100").unwrap();
    let b = s.find("round-1_stress-cpu-100_rate-300").unwrap();
    assert!(a < b, "{s}");
    assert!(s.contains("4 test cases"), "{s}");
    assert!(s.contains("estimated total"), "{s}");
}

#[test]
fn import_config_writes_a_config_that_validates_and_lists_what_it_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let original = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("manager/tests/data/original-aefm.yaml");
    let out_file = tmp.path().join("converted.yaml");
    let out = Command::new(aefm())
        .args(["import-config"])
        .arg(&original)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("aefm: import: file_paths.log: "), "{err}");
    assert!(
        err.contains("aefm: import: test_cases.workload.configs.script: "),
        "{err}"
    );
    let out = Command::new(aefm())
        .arg("validate")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(48 test cases)"),
        "{}",
        text(&out.stdout)
    );
    // Not overwritten without --force.
    let again = Command::new(aefm())
        .args(["import-config"])
        .arg(&original)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn init_scaffolds_a_project_whose_custom_handler_runs() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("myexp");
    // The dependency as chosen at init time (the default depends on the package metadata).
    let manager = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("manager");
    let out = Command::new(aefm())
        .args(["init", "-d", proj.to_str().unwrap(), "--aefm-path"])
        .arg(&manager)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        "Cargo.toml",
        "src/main.rs",
        "src/handlers.rs",
        "config.yaml",
    ] {
        assert!(proj.join(f).is_file(), "{f}");
    }
    // Again without --force: refused, nothing overwritten.
    let again = Command::new(aefm())
        .args(["init", "-d", proj.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());

    // Build against the path dependency, reusing this workspace's lock file and target dir.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), proj.join("Cargo.lock")).unwrap();
    let target = bins::target_dir().parent().unwrap().to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--offline"])
        .current_dir(&proj)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success(), "scaffolded project does not build");
    let exe = target.join("debug").join("myexp");
    assert!(exe.is_file());

    std::fs::write(
        proj.join("config.yaml"),
        "name: custom\nresults_dir: results\nduration: 1s\nwarmup: 0s\napp:\n  demo: {front_work_us: 50, back_work_us: 50}\nsweep:\n  rate: [50, 100]\n",
    )
    .unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["run", "config.yaml", "--no-progress"])
        .current_dir(&proj);
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    // 3: a case may be invalid on a busy machine; the custom handler's file is what is checked.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("test case failed"),
        "{}",
        text(&out.stderr)
    );
    let dir = experiment_dir(&proj.join("results"));
    let custom = std::fs::read_to_string(dir.join("custom_p99.csv")).unwrap();
    assert_eq!(custom.lines().count(), 2, "{custom}");
    assert!(custom.starts_with("round-1_rate-50,"), "{custom}");
    // The custom event fired by the handler ran its own handler.
    let log = std::fs::read_to_string(dir.join("aefm.log")).unwrap();
    assert!(log.contains("custom handler ran"), "{log}");
}
