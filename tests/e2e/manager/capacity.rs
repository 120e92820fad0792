//! The capacity search end to end: `aefm run` against `capacity-server`, a service answering at
//! once up to 330 req/s and in 100 ms above (p99 <= 50 ms holds exactly up to 330), killed mid-
//! search and resumed. The bound is far from both answers, so a busy machine's hiccups (tens of
//! ms) cannot flip a verdict; rounds the busy machine voids (a late generator) are run again.

use super::*;

/// The search's probes against a capacity of 330 from 100 in 100..1600 to within 20 req/s:
/// 100, 200, 400 (fail), 300, 350 (fail), 325, 338 (fail): bracket 325..338.
const PROBES: [&str; 7] = ["100", "200", "400", "300", "350", "325", "338"];

fn config(port: u16) -> String {
    let server = bins::bin("capacity-server");
    format!(
        r#"
name: cap
results_dir: results
duration: 2s             # 200 requests at the lowest rate: one in flight at the end is 0.5 %
warmup: 1s               # the server counts arrivals over 1 s: the window is this case's alone
settle: 0s
app:
  commands:
    - name: srv
      run: "{} --port {port} --capacity 330 --slow-ms 100"
      ready: {{tcp: "127.0.0.1:{port}"}}
load:
  url: "http://127.0.0.1:{port}/"
  connections: 64          # slow answers at the highest probes keep up: no backlog bursts
  threads: 1
validity:
  max_send_lag_p99: 50ms
  max_generator_busy: 1.0
  attempts: 6
sweep:
  search: {{slo: p99 <= 50ms, min: 100, max: 1600, precision: 20}}
"#,
        server.display()
    )
}

#[test]
fn a_search_finds_the_known_capacity_and_resumes_after_a_kill() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "cap.yaml",
        &config(aefm_tests::experiment::free_port()),
    );

    let plan = run_with_deadline(
        {
            let mut c = Command::new(aefm());
            c.args(["plan", cfg.to_str().unwrap()]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    assert!(
        text(&plan.stdout).contains("probes per level"),
        "{}",
        text(&plan.stdout)
    );

    let before = run_until_killed(tmp.path(), &cfg, 3);
    let results = tmp.path().join("results");
    assert!(before < PROBES.len(), "the search ended before the kill");

    resume_to_end(&cfg, Duration::from_secs(180));
    let dir = experiment_dir(&results);
    // Every probe once, in the predicted order: the resumed run went on where the kill left it.
    let rows = summary(&dir);
    // Void rounds (a late generator on a busy machine) repeat a rate: count the rates.
    let mut rates: Vec<&str> = rows.iter().map(|r| r["offered_rps"].as_str()).collect();
    rates.dedup();
    let mut sorted = rates.clone();
    let mut want = PROBES.to_vec();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "{rates:?}");
    let cap = read_csv(&dir.join("capacity.csv"));
    assert_eq!(cap.len(), 1);
    let c = &cap[0];
    assert_eq!(c["status"], "found", "{c:?}");
    assert_eq!(
        (c["pass_rps"].as_str(), c["fail_rps"].as_str()),
        ("325", "338"),
        "{c:?}"
    );
    assert_eq!(c["capacity_rps"], "325");
    assert_eq!(c["probes"], "7");
    assert_eq!(c["slo"], "p99 <= 50ms");
    assert!(dir.join("plots/capacity.svg").is_file());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["resumed"].as_array().unwrap().len(), 1);
}
