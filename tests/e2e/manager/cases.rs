//! Explicit case lists and custom collections: `sweep.cases` run in its order once per round,
//! killed and resumed; and through the library, a handler project's own list
//! (`Experiment::set_cases`) and its own collections (`Experiment::add_collection`), recorded in
//! `collection.json`, with a failing one making its case invalid.

use super::*;

/// A config against `capacity-server` (fast answers up to 1,000 req/s) with `sweep`.
fn config(port: u16, sweep: &str) -> String {
    format!(
        r#"
name: listed
results_dir: results
duration: 1s
warmup: 0s
settle: 0s
app:
  commands:
    - name: srv
      run: "{} --port {port} --capacity 1000 --slow-ms 100"
      ready: {{tcp: "127.0.0.1:{port}"}}
load:
  url: "http://127.0.0.1:{port}/"
  connections: 8
validity:
  max_send_lag_p99: 50ms
  max_generator_busy: 1.0
sweep:
{sweep}"#,
        bins::bin("capacity-server").display()
    )
}

const LISTED: &str = "  rounds: 2
  custom:
    variant: [a, b]
  cases:
    - {rate: 60, variant: b}
    - {rate: 40, variant: a}
    - {rate: 50, variant: b}
";

/// The list in its order, once per round (round is the outermost dimension).
const ORDER: [&str; 6] = [
    "round-1_variant-b_rate-60",
    "round-1_variant-a_rate-40",
    "round-1_variant-b_rate-50",
    "round-2_variant-b_rate-60",
    "round-2_variant-a_rate-40",
    "round-2_variant-b_rate-50",
];

#[test]
fn an_explicit_case_list_runs_in_its_order_and_resumes_after_a_kill() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let port = aefm_tests::experiment::free_port();
    let cfg = write_config(tmp.path(), "listed.yaml", &config(port, LISTED));
    let plan = run_with_deadline(
        {
            let mut c = Command::new(aefm());
            c.args(["plan", cfg.to_str().unwrap()]);
            c
        },
        Duration::from_secs(30),
    );
    let planned = text(&plan.stdout);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let at = |name: &str| {
        planned
            .find(name)
            .unwrap_or_else(|| panic!("{name}: {planned}"))
    };
    assert!(ORDER.windows(2).all(|w| at(w[0]) < at(w[1])), "{planned}");

    let before = run_until_killed(tmp.path(), &cfg, 2);
    let results = tmp.path().join("results");
    assert!(before < ORDER.len(), "the list ended before the kill");

    resume_to_end(&cfg, Duration::from_secs(120));
    let dir = experiment_dir(&results);
    let rows = summary(&dir);
    let names: Vec<&str> = rows.iter().map(|r| r["case"].as_str()).collect();
    assert_eq!(names, ORDER, "every listed case once, in list order");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    let points = read_csv(&dir.join("points.csv"));
    assert_eq!(points.len(), 3, "one point per entry: {points:?}");
    assert!(points.iter().all(|p| p["rounds"] == "2"), "{points:?}");
}

#[test]
fn a_projects_own_case_list_and_collections_land_in_the_results() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let port = aefm_tests::experiment::free_port();
    let text = config(
        port,
        "  rate: [10, 20, 30]\n  custom:\n    variant: [a, b]\n",
    );
    let cfg_path = write_config(tmp.path(), "project.yaml", &text);
    let cfg = aefm::config::Config::load(&cfg_path).unwrap();
    let mut exp = aefm::experiment::Experiment::new(cfg);
    let entry = |yaml: &str| serde_yaml::from_str(yaml).unwrap();
    exp.set_cases(vec![
        entry("{rate: 45, variant: b}"),
        entry("{rate: 35, variant: a}"),
    ])
    .unwrap();
    let e = exp
        .set_cases(vec![entry("{rate: 45, variant: c}")])
        .unwrap_err();
    assert!(e.to_string().contains("sweep.cases[0].variant"), "{e}");
    exp.add_collection("marker", |dir, window, tctx| {
        let p = dir.join("marker.txt");
        let secs = window.end_secs() - window.start_secs();
        std::fs::write(&p, format!("{} {secs:.1}\n", tctx.case)).map_err(|e| e.to_string())?;
        Ok(vec![p])
    });
    exp.add_collection("flaky", |_, _, tctx| {
        if tctx.case.contains("variant-a") {
            Err("the database dump was refused".into())
        } else {
            Ok(vec![])
        }
    });
    let out = exp
        .run(aefm::experiment::RunOptions {
            config_file: Some(cfg_path.clone()),
            ..Default::default()
        })
        .unwrap();
    let rows = summary(&out.dir);
    let names: Vec<&str> = rows.iter().map(|r| r["case"].as_str()).collect();
    assert_eq!(
        names,
        ["round-1_variant-b_rate-45", "round-1_variant-a_rate-35"]
    );
    for r in &rows {
        let case = out.dir.join("cases").join(&r["case"]);
        let marker = std::fs::read_to_string(case.join("marker.txt")).unwrap();
        assert!(marker.starts_with(&format!("{} 1.", r["case"])), "{marker}");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("collection.json")).unwrap())
                .unwrap();
        let source = |name: &str| {
            record["sources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["source"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} in {record}"))
        };
        assert_eq!(source("custom:marker")["files"][0], "marker.txt");
        let flaky = source("custom:flaky");
        if r["case"].contains("variant-a") {
            assert_eq!(flaky["status"], "error", "{flaky}");
            assert!(r["invalid_reasons"].contains("collection_failed"), "{r:?}");
            assert!(r["invalid_detail"].contains("dump was refused"), "{r:?}");
        } else {
            assert_eq!(flaky["status"], "ok", "{flaky}");
            assert!(!r["invalid_reasons"].contains("collection_failed"), "{r:?}");
        }
    }
    // The list is part of the resolved config: a resume would notice a different one.
    let resolved = std::fs::read_to_string(out.dir.join("config.resolved.yaml")).unwrap();
    assert!(
        resolved.contains("cases:") && resolved.contains("rate: 45"),
        "{resolved}"
    );
}
