//! Import tests: the sample-shaped fixture round-trips to a config that validates and plans the
//! original's cases in the original's order, and every note is raised where it should be.

use std::path::Path;

use super::*;
use crate::config::{Config, DimValue};

const FIXTURE: &str = include_str!("../../tests/data/original-aefm.yaml");

fn import(text: &str) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    import_text(text, Path::new("orig.yaml"), dir.path()).unwrap()
}

/// A minimal original config with `test_cases` replaced by `tc` (indented by two spaces).
fn minimal(tc: &str) -> String {
    format!("namespace: ns\nduration: 10\nfile_paths:\n  yaml_repo: repo\ntest_cases:\n{tc}")
}

const WORKLOAD: &str = "  orders: [workload, round]\n  round: [1]\n  workload:\n    configs: {threads: 1, connections: 2, rate: 20, url: 'http://h:1'}\n";

fn notes_of(imp: &Imported, key: &str) -> Vec<String> {
    imp.notes
        .iter()
        .filter(|n| n.key == key)
        .map(|n| n.message.clone())
        .collect()
}

fn config(imp: &Imported) -> Config {
    assert!(imp.invalid.is_none(), "{:?}\n{}", imp.invalid, imp.yaml);
    Config::parse(&imp.yaml, Path::new("c.yaml")).unwrap()
}

/// The original's §3.6 generation: a cartesian product whose first dimension varies fastest.
fn original_order(dims: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut cases: Vec<Vec<String>> = vec![vec![]];
    for values in dims {
        // Each outer value copies every case built so far.
        cases = values
            .iter()
            .flat_map(|v| {
                cases
                    .iter()
                    .map(move |c| [c.clone(), vec![v.clone()]].concat())
            })
            .collect();
    }
    cases
}

fn pods(v: Option<&DimValue>) -> String {
    match v {
        Some(DimValue::Interference(None)) => "0".into(),
        Some(DimValue::Interference(Some(l))) => l.pods().unwrap().to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sample_shaped_config_plans_the_originals_cases_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let imp = import_text(FIXTURE, Path::new("sample.yaml"), dir.path()).unwrap();
    let cfg = config(&imp);
    // workload, round, mem_capacity, cpu, cache_size: innermost first, as the original's orders.
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let expected = original_order(&[
        s(&["20", "40", "60"]),
        s(&["1", "2"]),
        s(&["1", "2"]),
        s(&["0", "2"]),
        s(&["small", "large"]),
    ]);
    let ours: Vec<Vec<String>> = crate::sweep::expand(&cfg)
        .iter()
        .map(|c| {
            vec![
                crate::config::fmt_num(c.rate()),
                c.round().to_string(),
                pods(c.get("mem_capacity")),
                pods(c.get("cpu")),
                c.get("cache_size").unwrap().display(),
            ]
        })
        .collect();
    assert_eq!(ours.len(), 48);
    assert_eq!(ours, expected);
    // The file validates as `aefm validate` reads it (paths, results_dir).
    let path = dir.path().join("converted.yaml");
    std::fs::write(&path, &imp.yaml).unwrap();
    let loaded = Config::load(&path).unwrap();
    let k = loaded.kubernetes.as_ref().unwrap();
    assert_eq!(k.namespace, "social-network");
    assert_eq!(k.app_image.as_deref(), Some("nicklin9907/aefm:social-1.1"));
    assert_eq!(k.replicas["user-timeline-service"], 4);
    assert_eq!(
        k.nodes_with(crate::config::kubernetes::NodeRole::Infra),
        ["node-a", "node-b"]
    );
    assert_eq!(k.nodes[1].ip.as_deref(), Some("10.0.0.12"));
    let memcap = k.interference.resources(crate::config::StressKind::Memcap);
    assert_eq!(
        (memcap.cpu.as_str(), memcap.memory.as_str()),
        ("0.01", "4Gi")
    );
    assert_eq!(loaded.duration, std::time::Duration::from_secs(40));
    assert_eq!(loaded.load.url.as_deref(), Some("http://localhost:30628"));
    // 4 connections per wrk process, up to 60 // 20 = 3 processes.
    assert_eq!((loaded.load.threads, loaded.load.connections), (2, 12));
    assert_eq!(
        loaded.collect.jaeger.as_ref().unwrap().service,
        "nginx-web-server"
    );
    assert_eq!(
        loaded
            .extra_as::<String>("experimenter")
            .unwrap()
            .as_deref(),
        Some("lab-7")
    );
    assert_eq!(loaded.extra_as::<u16>("port").unwrap(), Some(30628));
    assert!(loaded.extra("sample_customize").is_some());
    // Comments name the source and the original keys.
    assert!(imp
        .yaml
        .starts_with("# Converted by `aefm import-config` from sample.yaml"));
    assert!(imp
        .yaml
        .contains("# from prometheus_host, jaeger_host, jaeger_entrance\ncollect:"));
    assert!(imp.yaml.contains("order = orders reversed"));
}

#[test]
fn the_sample_shaped_config_lists_what_it_could_not_convert() {
    let imp = import(FIXTURE);
    let keys: Vec<&str> = imp.notes.iter().map(|n| n.key.as_str()).collect();
    for key in [
        "test_cases.workload.configs.script",
        "file_paths.log",
        "file_paths.wrk_output_path",
        "file_paths.yaml_repo",
        "app",
        "port",
        "test_cases.sample_customize",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert!(notes_of(&imp, "file_paths.log")[0].contains("aefm.log"));
    assert!(notes_of(&imp, "app")[0].contains("hook"));
    assert!(notes_of(&imp, "test_cases.workload.configs.script")[0].contains("aefm init --app"));
    // Every note is also in the file.
    assert!(imp.yaml.contains("# - file_paths.log: no counterpart"));
}

#[test]
fn orders_are_reversed_into_outermost_first() {
    let imp = import(&minimal(
        &format!("{WORKLOAD}    range: [20]\n  orders: [round, workload]\n")
            .replace("  orders: [workload, round]\n", ""),
    ));
    let cfg = config(&imp);
    let names: Vec<&str> = cfg.dimensions().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["rate", "round"]);
}

#[test]
fn per_process_rates_fold_into_totals_with_a_note_when_a_value_changes() {
    let imp = import(&minimal(&format!("{WORKLOAD}    range: [20, 30, 50]\n")));
    assert_eq!(config(&imp).rates(), vec![20.0, 40.0]);
    let n = notes_of(&imp, "test_cases.workload.range");
    assert!(n.iter().any(|m| m.contains("30 -> 20, 50 -> 40")), "{n:?}");
    assert!(n.iter().any(|m| m.contains("same total (20)")), "{n:?}");
    // An exact range stays a range, without notes.
    let imp = import(&minimal(&format!(
        "{WORKLOAD}    range: {{min: 20, max: 60, step: 20}}\n"
    )));
    assert!(notes_of(&imp, "test_cases.workload.range").is_empty());
    assert!(imp.yaml.contains("rate:\n    min: 20\n"), "{}", imp.yaml);
}

#[test]
fn a_throughput_below_the_per_process_rate_is_left_out_with_a_note() {
    let imp = import(&minimal(&format!("{WORKLOAD}    range: [10, 40]\n")));
    assert_eq!(config(&imp).rates(), vec![40.0]);
    let n = notes_of(&imp, "test_cases.workload.range");
    assert!(
        n[0].contains("10 is below configs.rate 20") && n[0].contains("no load"),
        "{n:?}"
    );
}

#[test]
fn scripts_are_kept_when_they_exist_and_named_when_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.lua"), "").unwrap();
    let with = |script: &str| {
        let text = minimal(&format!("{WORKLOAD}    range: [20]\n"))
            .replace("url:", &format!("script: {script}, url:"));
        import_text(&text, Path::new("o.yaml"), dir.path()).unwrap()
    };
    let imp = with("s.lua");
    assert!(notes_of(&imp, "test_cases.workload.configs.script").is_empty());
    assert!(imp.yaml.contains("  script: s.lua\n"), "{}", imp.yaml);
    let imp = with("missing.lua");
    assert!(notes_of(&imp, "test_cases.workload.configs.script")[0]
        .contains("missing.lua does not exist"));
    assert!(
        !imp.yaml.contains("  script: missing.lua\n"),
        "{}",
        imp.yaml
    );
}

#[test]
fn interference_ranges_become_pod_counts_with_per_kind_pod_sizes() {
    let tc = format!("{WORKLOAD}    range: [20]\n  interferences:\n    mem_bandwidth:\n      configs: {{cpu_size: 2, mem_size: 1Gi}}\n      range: [0, 1, 3]\n    network:\n      configs: {{cpu_size: 1, mem_size: 100Mi, throughput: 500M}}\n      range: [1, 2]\n")
        .replace("orders: [workload, round]", "orders: [workload, round, mem_bandwidth, network]");
    let imp = import(&minimal(&tc));
    let cfg = config(&imp);
    let labels = |d: &str| {
        cfg.dimensions()
            .iter()
            .find(|x| x.name == d)
            .unwrap()
            .values
            .iter()
            .map(|v| v.display())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        labels("mem_bandwidth"),
        ["none", "membw-max-x1", "membw-max-x3"]
    );
    assert_eq!(labels("network"), ["net-500M-x1", "net-500M-x2"]);
    let k = cfg.kubernetes.as_ref().unwrap();
    assert_eq!(
        k.interference
            .resources(crate::config::StressKind::Membw)
            .cpu,
        "2"
    );
    assert_eq!(
        k.interference
            .resources(crate::config::StressKind::Net)
            .memory,
        "100Mi"
    );
}

#[test]
fn dimensions_the_original_never_varied_are_noted() {
    let tc = format!("{WORKLOAD}    range: [20]\n  interferences:\n    cpu: {{configs: {{cpu_size: 1}}, range: [1]}}\n    disk: {{range: [1]}}\n  extra_dim: [a, b]\n  grid: {{min: 1, max: 3, step: 1}}\n")
        .replace("orders: [workload, round]", "orders: [workload, round, typo, grid]");
    let imp = import(&minimal(&tc));
    let cfg = config(&imp);
    assert!(notes_of(&imp, "test_cases.interferences.cpu")[0].contains("not in test_cases.orders"));
    assert!(notes_of(&imp, "test_cases.interferences.disk")[0].contains("not an interference type"));
    assert!(notes_of(&imp, "test_cases.orders[2]")[0].contains("\"typo\""));
    assert!(notes_of(&imp, "test_cases.extra_dim")[0].contains("extra.extra_dim"));
    assert!(notes_of(&imp, "test_cases.grid")[0].contains("iterated the mapping's keys"));
    assert_eq!(cfg.case_count(), 3);
    assert!(cfg.extra("extra_dim").is_some());
}

#[test]
fn rounds_are_counted_and_relabelled_with_a_note() {
    let imp = import(&minimal(
        &format!("{WORKLOAD}    range: [20]\n")
            .replace("round: [1]", "round: {min: 3, max: 4, step: 1}"),
    ));
    assert_eq!(config(&imp).case_count(), 2);
    assert!(notes_of(&imp, "test_cases.round")[0].contains("labelled them 3, 4"));
}

#[test]
fn missing_deployment_and_tracing_keys_are_noted_and_the_result_still_validates() {
    let text = format!(
        "duration: 5\njaeger_host: http://j:16686\ntest_cases:\n{WORKLOAD}    range: [20]\n"
    );
    let imp = import(&text);
    config(&imp);
    assert!(notes_of(&imp, "namespace")[0].contains("\"orig\""));
    assert!(notes_of(&imp, "file_paths.yaml_repo")[0].contains("missing"));
    assert!(notes_of(&imp, "jaeger_host")[0].contains("jaeger_entrance"));
}

#[test]
fn a_config_without_test_cases_is_an_error_naming_the_key() {
    let e = import_text("namespace: a\n", Path::new("o.yaml"), Path::new(".")).unwrap_err();
    assert!(
        e.to_string().starts_with("o.yaml: test_cases: missing"),
        "{e}"
    );
    let e = import_text(
        &minimal(&format!("{WORKLOAD}    range: [20]\n").replace("round: [1]", "round: {min: 1}")),
        Path::new("o.yaml"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(e.to_string().contains("test_cases.round.max"), "{e}");
}
