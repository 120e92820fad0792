//! Resume safety, the crashed and interrupted states, stale temp files and the umask: `aefm run`
//! killed with SIGKILL or interrupted twice, `aefm status`, `--resume` with a changed config.

use super::*;

/// Two 1 s cases of the demo app.
const TWO_CASES: &str = r#"
name: two
results_dir: results
duration: 1s
warmup: 0s
settle: 0s
app:
  demo: {front_work_us: 50, back_work_us: 50}
sweep:
  rate: [50, 100]
"#;

/// Ran to its end: exit 0, or 3 when a case came out invalid on a busy machine (the resume
/// logic under test does not depend on validity).
fn ran_to_the_end(out: &Output) -> bool {
    matches!(out.status.code(), Some(0) | Some(3))
}

fn aefm_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(aefm());
    cmd.args(args);
    cmd
}

fn metadata(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap()
}

fn journal_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_resume_with_a_changed_config_is_refused_unless_overridden() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "two.yaml", TWO_CASES);
    let cfg_s = cfg.to_str().unwrap();
    let out = run_with_deadline(
        aefm_cmd(&["run", cfg_s, "--no-progress"]),
        Duration::from_secs(90),
    );
    assert!(ran_to_the_end(&out), "{}", text(&out.stderr));
    let dir = experiment_dir(&tmp.path().join("results"));
    let resume = format!("--resume={}", dir.display());

    // rate 50 leaves the sweep, 200 joins, and the load duration changes.
    write_config(
        tmp.path(),
        "two.yaml",
        &TWO_CASES
            .replace("[50, 100]", "[100, 200]")
            .replace("duration: 1s", "duration: 2s"),
    );
    let before = metadata(&dir);
    let out = run_with_deadline(
        aefm_cmd(&["run", cfg_s, &resume, "--no-progress"]),
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sweep.rate"), "{stderr}");
    assert!(stderr.contains("duration: \"1s\" -> \"2s\""), "{stderr}");
    assert!(stderr.contains("--resume-anyway"), "{stderr}");
    // Refused before anything started: nothing changed in the experiment.
    assert_eq!(metadata(&dir), before);
    assert_eq!(journal_lines(&dir), 2);

    let out = run_with_deadline(
        aefm_cmd(&["run", cfg_s, &resume, "--resume-anyway", "--no-progress"]),
        Duration::from_secs(90),
    );
    let stdout = text(&out.stdout);
    assert!(ran_to_the_end(&out), "{}", text(&out.stderr));
    assert!(stdout.contains("2 of 2 done"), "{stdout}");
    assert!(stdout.contains("1 finished earlier"), "{stdout}");
    // One row per case of the new sweep, indices 0 and 1 once each; rate 50 is set aside.
    let rows = summary(&dir);
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["index"].clone(), r["offered_rps"].clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("0".into(), "100".into()), ("1".into(), "200".into())]
    );
    assert_eq!(journal_lines(&dir), 3);
    let meta = metadata(&dir);
    let change = &meta["config_changes"][0];
    let changes = change["changes"].to_string();
    assert!(changes.contains("sweep.rate"), "{changes}");
    assert_eq!(change["previous"], "config.resolved.1.yaml");
    assert_eq!(change["set_aside"].as_array().unwrap().len(), 1, "{change}");
    assert!(dir.join("config.resolved.1.yaml").is_file());
    assert_eq!(meta["cases"], 2);
    assert_eq!(meta["ok_cases"], 2);
}

#[test]
fn a_killed_run_is_crashed_and_a_resume_finishes_it_and_removes_stale_temp_files() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "two.yaml",
        &TWO_CASES.replace("duration: 1s", "duration: 3s"),
    );
    let cfg_s = cfg.to_str().unwrap();
    let mut child = aefm_cmd(&["run", cfg_s, "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let results = tmp.path().join("results");
    let first_done = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .is_some_and(|e| journal_lines(&e.path()) >= 1)
    });
    // Mid-way through the second case (3 s of load).
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first_done, "no case finished in time");
    let dir = experiment_dir(&results);
    assert_eq!(metadata(&dir)["status"], "running");

    let out = run_with_deadline(
        aefm_cmd(&["status", dir.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("status:     crashed"), "{stdout}");
    assert!(stdout.contains("1 of 2 done"), "{stdout}");
    assert!(
        stdout.contains("left:       1 (1 not run, 0 failed"),
        "{stdout}"
    );
    let resume_line = format!("resume:     aefm run {cfg_s} --resume={}", dir.display());
    assert!(stdout.contains(&resume_line), "{stdout}");
    // The config names its newest experiment.
    let by_config = run_with_deadline(aefm_cmd(&["status", cfg_s]), Duration::from_secs(30));
    assert_eq!(text(&by_config.stdout), stdout);

    // Temp files a killed writer left (a pid above the kernel's limit is never alive).
    let stale = format!(
        "{}4194305.1.summary.csv.AbC123",
        aefm_collector::output::temp::PREFIX
    );
    std::fs::write(dir.join(&stale), "half").unwrap();
    let case_dir = std::fs::read_dir(dir.join("cases"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(case_dir.join(&stale), "half").unwrap();

    let out = run_with_deadline(
        aefm_cmd(&["run", cfg_s, "--resume", "--no-progress"]),
        Duration::from_secs(90),
    );
    let stderr = text(&out.stderr);
    assert!(ran_to_the_end(&out), "{stderr}");
    assert!(stderr.contains("crashed"), "{stderr}");
    assert!(
        text(&out.stdout).contains("2 of 2 done"),
        "{}",
        text(&out.stdout)
    );
    assert!(!dir.join(&stale).exists());
    assert!(!case_dir.join(&stale).exists());
    let meta = metadata(&dir);
    assert_ne!(meta["status"], "running");
    // The resumed run recorded its own process.
    assert!(
        meta["pid"].as_u64().is_some_and(|p| p != u64::from(killed)),
        "{meta}"
    );
    let out = run_with_deadline(
        aefm_cmd(&["status", dir.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 of 2 done"), "{stdout}");
    assert!(!stdout.contains("crashed"), "{stdout}");
}

#[test]
fn a_double_interrupt_records_interrupted_and_prints_the_resume_command() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // A clean-up that hangs: what a second Ctrl-C is for (and a window to send it in).
    let text = format!("{LONG_CASE}hooks:\n  - {{on: cleanup, run: \"sleep 30\"}}\n");
    let cfg = write_config(tmp.path(), "long.yaml", &text);
    let mut child = aefm_cmd(&["run", cfg.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let mut stderr = String::new();
    let mut wait_for = |what: &str| -> bool {
        let end = Instant::now() + Duration::from_secs(60);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(l) => {
                    stderr.push_str(&l);
                    stderr.push('\n');
                    if l.contains(what) {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    };
    let running = wait_for("interference running");
    let kids = children_of(pid);
    // SAFETY: signalling our own child.
    unsafe { libc_kill(pid as i32, 2) };
    // The second once the first is being handled (two at once may merge into one).
    let first_seen = running && wait_for("interrupted: stopping");
    // SAFETY: as above (our child, not yet waited for).
    unsafe { libc_kill(pid as i32, 2) };
    let exited = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(5)) {
        stderr.push_str(&l);
        stderr.push('\n');
    }
    assert!(
        first_seen,
        "the case did not start, or the first interrupt was not handled: {stderr}"
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second interrupt"), "{stderr}");
    let dir = experiment_dir(&tmp.path().join("results"));
    let resume = format!(
        "Resume with: aefm run {} --resume={}",
        cfg.display(),
        dir.display()
    );
    assert!(stderr.contains(&resume), "{stderr}");
    assert!(kids.len() >= 4, "app and stressor: {kids:?}");
    assert!(
        wait_until(Duration::from_secs(5), || kids.iter().all(|k| !alive(*k))),
        "children survived: {kids:?}"
    );
    let meta = metadata(&dir);
    assert_eq!(meta["status"], "interrupted", "{meta}");
    assert!(meta["ended"].is_string(), "{meta}");
}

/// The lines of a child's stderr, as they come (the channel closes at its end).
fn stderr_lines(err: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn result_files_honour_the_umask() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "one.yaml",
        &TWO_CASES.replace("[50, 100]", "[50]"),
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 027 && exec \"$0\" run \"$1\" --no-progress"])
        .arg(aefm())
        .arg(&cfg);
    let out = run_with_deadline(cmd, Duration::from_secs(90));
    assert!(ran_to_the_end(&out), "{}", text(&out.stderr));
    let dir = experiment_dir(&tmp.path().join("results"));
    let mut checked = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode() & 0o777;
                assert_eq!(mode, 0o640, "{}", e.path().display());
                checked.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    for f in [
        "metadata.json",
        "summary.csv",
        "config.resolved.yaml",
        "case.json",
    ] {
        assert!(
            checked.iter().any(|c| c == f),
            "{f} not written: {checked:?}"
        );
    }
}
