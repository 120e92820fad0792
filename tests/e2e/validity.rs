//! End-to-end tests of case validity: every verdict reason produced for real, by an app that
//! never answers, one that answers garbage, one that dies mid-case, a stressor whose target does
//! not exist, and a generator overloaded on purpose. Each runs the real `aefm` binary.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use aefm_tests::experiment::{experiment_dir, free_port, read_csv, run_aefm, text, write_config};

/// Experiments share the cores: one at a time in this binary.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny TCP server for the app role: `silent` accepts and never answers, `garbage` answers
/// bytes that are not HTTP and closes, `http` answers 200 and exits after `limit` requests
/// (0 = never).
const SERVER: &str = r#"
import os, socket, sys, threading
mode, port = sys.argv[1], int(sys.argv[2])
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 0
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(512)
served = 0
lock = threading.Lock()
kept = []
def handle(c):
    global served
    f = c.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        if mode == "garbage":
            c.sendall(b"garbage, not http\r\n")
            c.close()
            return
        with lock:
            served += 1
            n = served
        if limit and n > limit:
            os._exit(0)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
while True:
    c, _ = s.accept()
    if mode == "silent":
        kept.append(c)
    else:
        threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// A config whose app is [`SERVER`] in `mode` on a free port.
fn server_config(dir: &Path, mode: &str, limit: u32, sweep: &str) -> String {
    std::fs::write(dir.join("server.py"), SERVER).unwrap();
    let port = free_port();
    format!(
        r#"
name: validity
results_dir: results
duration: 2s
warmup: 500ms
app:
  commands:
    - name: app
      run: "exec python3 server.py {mode} {port} {limit}"
      ready: {{tcp: "127.0.0.1:{port}"}}
load:
  url: http://127.0.0.1:{port}/
  connections: 4
  timeout: 1s
sweep:
{sweep}
"#
    )
}

/// The demo app at 20 req/s for one 2 s case beside one interference level of dimension `dim`.
fn one_level(dim: &str, level: &str) -> String {
    format!(
        r#"
name: validity
results_dir: results
duration: 2s
warmup: 200ms
settle: 200ms
app:
  demo: {{front_work_us: 10, back_work_us: 10}}
sweep:
  rate: [20]
  interference:
    {dim}:
      - {level}
"#
    )
}

/// Runs `aefm run` on `config` in `dir`; returns exit code, stdout + stderr and summary.csv's
/// rows.
fn run(dir: &Path, config: &str) -> (Option<i32>, String, Vec<HashMap<String, String>>) {
    write_config(dir, "c.yaml", config);
    let out = run_aefm(
        &["run", "c.yaml", "--no-progress"],
        dir,
        Duration::from_secs(120),
    );
    let err = text(&out.stdout) + &text(&out.stderr);
    let exp = experiment_dir(&dir.join("results"));
    (out.status.code(), err, read_csv(&exp.join("summary.csv")))
}

fn reasons(row: &HashMap<String, String>) -> Vec<String> {
    row["invalid_reasons"]
        .split(';')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn an_app_that_never_answers_is_invalid_with_no_responses() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = server_config(tmp.path(), "silent", 0, "  rate: [20]");
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(rows[0]["status"], "ok", "it ran: {rows:?}");
    assert_eq!(rows[0]["validity"], "invalid", "{rows:?}");
    let r = reasons(&rows[0]);
    assert!(r.contains(&"no_responses".to_string()), "{r:?}");
    assert!(r.contains(&"error_share".to_string()), "{r:?}");
    assert!(err.contains("INVALID"), "said as it happens: {err}");
    assert!(err.contains("0 valid, 1 invalid, 0 failed"), "{err}");
}

#[test]
fn garbage_answers_are_invalid() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = server_config(tmp.path(), "garbage", 0, "  rate: [20]");
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[0]["validity"], "invalid");
    let r = reasons(&rows[0]);
    assert!(r.contains(&"no_responses".to_string()), "{r:?}");
    assert!(r.contains(&"error_share".to_string()), "{r:?}");
    assert!(rows[0]["invalid_detail"].contains("errors"), "{rows:?}");
}

#[test]
fn the_case_during_which_the_app_dies_is_the_invalid_one() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    // 40 req/s: 20 requests of warm-up, then the app exits after 60 answers, about one second
    // into the first case's 2 s window. The second round finds it gone.
    let cfg = server_config(tmp.path(), "http", 60, "  rate: [40]\n  rounds: 2");
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["status"], "ok", "{rows:?}");
    assert_eq!(rows[0]["validity"], "invalid", "{rows:?}");
    assert!(
        reasons(&rows[0]).contains(&"app_died".to_string()),
        "{rows:?}"
    );
    assert_eq!(rows[1]["status"], "failed", "{rows:?}");
    assert_eq!(rows[1]["validity"], "", "a failed case has no verdict");
    // One message per failed case.
    let n = err.matches("test case failed").count();
    assert_eq!(n, 1, "{err}");
}

#[test]
fn a_healthy_app_gives_valid_cases() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = server_config(tmp.path(), "http", 0, "  rate: [20]");
    let (code, err, rows) = run(tmp.path(), &cfg);
    // A busy machine may still make a case invalid (that is the point of the checks); then the
    // reason must be about the machine, never about the app's answers.
    if code == Some(0) {
        assert_eq!(rows[0]["validity"], "valid", "{rows:?}");
        assert_eq!(rows[0]["invalid_reasons"], "");
    } else {
        let r = reasons(&rows[0]);
        assert!(
            !r.iter().any(|c| c == "no_responses" || c == "app_died"),
            "{r:?} {err}"
        );
    }
}

#[test]
fn an_overloaded_generator_is_named() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    // request() busy-waits 5 ms: one thread can send at most 200 requests a second, so at
    // 1000 req/s the generator is late by construction.
    std::fs::write(
        tmp.path().join("slow.lua"),
        "request = function()\n  local t = os.clock()\n  while os.clock() - t < 0.005 do end\n  return wrk.format()\nend\n",
    )
    .unwrap();
    let cfg = r#"
name: validity
results_dir: results
duration: 2s
warmup: 200ms
app:
  demo: {front_work_us: 10, back_work_us: 10}
load:
  script: slow.lua
  connections: 8
sweep:
  rate: [1000]
"#;
    let (code, err, rows) = run(tmp.path(), cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(rows[0]["validity"], "invalid");
    let r = reasons(&rows[0]);
    assert!(r.contains(&"generator_overloaded".to_string()), "{r:?}");
    assert!(r.contains(&"rate_below_offered".to_string()), "{r:?}");
}

#[test]
fn a_net_stressor_without_a_target_never_gives_a_valid_case() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = one_level(
        "net",
        r#"{kind: net, target: "127.0.0.1:1", bandwidth: 10M}"#,
    );
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    let row = &rows[0];
    assert_eq!(row["status"], "ok", "the case ran: {row:?}");
    assert_eq!(
        row["validity"], "invalid",
        "no bit moved, so the case is no measurement: {row:?}"
    );
    let r = reasons(row);
    assert!(r.iter().any(|c| c.starts_with("stressor_")), "{r:?}");
    assert!(row["invalid_detail"].contains("net"), "{row:?}");
}

#[test]
fn a_refused_load_target_stops_once_before_the_sweep() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        r#"
name: validity
results_dir: results
duration: 1s
app:
  demo: {{front_work_us: 10, back_work_us: 10}}
load:
  url: http://127.0.0.1:{port}/
sweep:
  rate: [10, 20, 30]
"#
    );
    write_config(tmp.path(), "c.yaml", &cfg);
    let out = run_aefm(
        &["run", "c.yaml", "--no-progress"],
        tmp.path(),
        Duration::from_secs(60),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("load.url"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let exp = experiment_dir(&tmp.path().join("results"));
    assert!(!exp.join("cases").exists(), "no case may run");
}

#[test]
fn bad_headers_and_a_failing_script_are_caught_by_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let base = "name: v\nsweep:\n  rate: [10]\nload:\n";
    for (what, extra, needle) in [
        (
            "no colon",
            "  headers: [\"X-Token abc\"]\n",
            "load.headers[0]",
        ),
        (
            "bad name",
            "  headers: [\"Bad Name: x\"]\n",
            "load.headers[0]",
        ),
        (
            "CR/LF",
            "  headers: [\"X-A: a\\r\\nX-B: b\"]\n",
            "load.headers[0]",
        ),
    ] {
        write_config(tmp.path(), "c.yaml", &format!("{base}{extra}"));
        let out = run_aefm(&["validate", "c.yaml"], tmp.path(), Duration::from_secs(30));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert!(err.contains("line 5"), "{what}: {err}");
    }
    std::fs::write(
        tmp.path().join("bad.lua"),
        "request = function()\n  return nil .. 'x'\nend\n",
    )
    .unwrap();
    write_config(tmp.path(), "c.yaml", &format!("{base}  script: bad.lua\n"));
    let out = run_aefm(&["validate", "c.yaml"], tmp.path(), Duration::from_secs(30));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("load.script"), "{err}");
    assert!(err.contains("bad.lua:2"), "names the script's line: {err}");
}

#[test]
fn on_invalid_rerun_keeps_every_attempt_and_abort_stops() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = server_config(tmp.path(), "silent", 0, "  rate: [20]")
        + "on_invalid: rerun\nvalidity:\n  attempts: 2\n";
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(rows.len(), 1, "one row per case: {rows:?}");
    assert_eq!(rows[0]["attempt"], "2", "{rows:?}");
    let exp = experiment_dir(&tmp.path().join("results"));
    let journal = std::fs::read_to_string(exp.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2, "{journal}");
    let case = &rows[0]["case"];
    assert!(exp
        .join("cases")
        .join(format!("{case}.attempt-1"))
        .join("case.json")
        .is_file());
    assert!(exp.join("cases").join(case).join("case.json").is_file());

    let tmp = tempfile::tempdir().unwrap();
    let cfg = server_config(tmp.path(), "silent", 0, "  rate: [20, 30]") + "on_invalid: abort\n";
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        rows.len(),
        1,
        "stopped after the first invalid case: {rows:?}"
    );
    assert!(err.contains("on_invalid: abort"), "{err}");
}

#[test]
fn a_membw_level_runs_once_its_arrays_are_ready_and_is_checked() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = one_level("stress", r#"{kind: membw, rate: max, workers: 1}"#);
    let (code, err, rows) = run(tmp.path(), &cfg);
    assert!(matches!(code, Some(0 | 3)), "{err}");
    assert_eq!(
        rows[0]["status"], "ok",
        "the stressor started: {rows:?} {err}"
    );
    // Its own reports covered the window (it was ready before the settle time began).
    let r = reasons(&rows[0]);
    assert!(
        !r.iter()
            .any(|c| c == "stressor_no_reports" || c == "stressor_exited"),
        "{r:?}"
    );
}
