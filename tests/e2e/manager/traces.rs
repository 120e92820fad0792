//! Traces inside `aefm run`: the demo, instrumented with OpenTelemetry, sends its spans to the
//! OTLP receiver AEFM runs (`collect.otlp`), each case gets the trace tables of its window, and
//! the generator's slow traced requests (`load.traceparent`) are joined with their traces.

use super::*;

/// One 2 s case of the demo at 100 req/s, a third of the requests carrying a `traceparent`.
fn traced_config(port: u16) -> String {
    format!(
        r#"
name: traced
results_dir: results
duration: 2s
warmup: 0s
settle: 0s
app:
  demo: {{front_work_us: 300, back_work_us: 500}}
load:
  connections: 8
  traceparent: 0.3
collect:
  otlp: {{listen: "127.0.0.1:{port}", grace: 1s}}
sweep:
  rate: [100]
"#
    )
}

/// A table of the case, as rows.
fn table(case: &Path, name: &str) -> Vec<std::collections::HashMap<String, String>> {
    let path = case.join(name);
    assert!(path.is_file(), "{} missing", path.display());
    read_csv(&path)
}

#[test]
fn the_demos_traces_reach_the_receiver_and_slow_requests_join_them() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let port = aefm_tests::experiment::free_port();
    let cfg = write_config(tmp.path(), "traced.yaml", &traced_config(port));
    let mut cmd = Command::new(aefm());
    cmd.args(["run", cfg.to_str().unwrap(), "--no-progress"]);
    let out = run_with_deadline(cmd, Duration::from_secs(180));
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "aefm run failed: {}",
        text(&out.stderr)
    );
    let dir = experiment_dir(&tmp.path().join("results"));
    let rows = summary(&dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let case = dir.join("cases").join(&rows[0]["case"]);

    // Every request is a trace (the demo samples everything): front end, two calls, two back
    // ends, the front end's span a child of the generator's span when it sent a traceparent.
    let e2e = table(&case, "end_to_end.csv");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("loadgen.json")).unwrap()).unwrap();
    let requests = report["summary"]["requests"].as_u64().unwrap() as usize;
    assert!(
        e2e.len() * 10 >= requests * 8 && e2e.len() <= requests + 10,
        "{} traces for {requests} requests",
        e2e.len()
    );
    assert!(e2e.iter().all(|t| t["spans"] == "5"), "{:?}", &e2e[..3]);
    // Per-service self times: the work is CPU time, so each service's p50 self time is at least
    // its work (a busy machine only adds).
    let ops = table(&case, "operations.csv");
    let self_p50 = |service: &str| -> f64 {
        ops.iter()
            .filter(|o| o["microservice"].starts_with(service))
            .map(|o| o["self_p50"].parse::<f64>().unwrap())
            .fold(0.0, f64::max)
    };
    assert!(self_p50("demo-front") >= 300.0, "{ops:?}");
    assert!(self_p50("demo-back") >= 500.0, "{ops:?}");

    // The join: every kept slow request found, its time split around the front end's span.
    let join = table(&case, "join.csv");
    let traced = report["traced"]["slowest"].as_array().unwrap().len();
    assert!(traced >= 30, "{traced} traced requests kept");
    assert_eq!(join.len(), traced);
    let found = join.iter().filter(|r| r["found"] == "true").count();
    assert!(found * 10 >= traced * 9, "{found} of {traced} found");
    for r in join.iter().filter(|r| r["found"] == "true") {
        assert!(r["server_service"].starts_with("demo-front"), "{r:?}");
        assert!(r["critical_path"].contains("demo-back"), "{r:?}");
        let server: i64 = r["server_us"].parse().unwrap();
        let uncorrected: i64 = r["uncorrected_us"].parse().unwrap();
        assert!(server >= 800 && server <= uncorrected, "{r:?}");
    }
    let s: std::collections::HashMap<String, String> = table(&case, "join_summary.csv")
        .into_iter()
        .map(|r| (r["key"].clone(), r["value"].clone()))
        .collect();
    assert_eq!(s["found"], found.to_string());
    let otlp: std::collections::HashMap<String, String> = table(&case, "traces_summary.csv")
        .into_iter()
        .map(|r| (r["key"].clone(), r["value"].clone()))
        .collect();
    assert_eq!(otlp["otlp_rejected_requests"], "0", "{otlp:?}");
}
