//! Tests of the pod rendering: per-kind sizes, pods per level, deadlines, levels that do not fit.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::config::kubernetes::DEFAULT_STRESS_DEADLINE_SECS;

fn cfg(interference: &str) -> KubernetesConfig {
    serde_yaml::from_str(&format!(
        "namespace: app\nyaml_repo: r\nnodes:\n- {{name: w1, roles: [testbed]}}\n- {{name: w2, roles: [testbed]}}\ninterference: {interference}\n"
    ))
    .unwrap()
}

fn level(yaml: &str) -> StressLevel {
    StressLevel::for_cluster(serde_yaml::from_str(yaml).unwrap()).unwrap()
}

const OWNER: Owner<'static> = Owner {
    experiment: "exp",
    test_case: "c",
    run: "r1",
};

fn limits(p: &Value) -> Value {
    p["spec"]["containers"][0]["resources"]["limits"].clone()
}

fn nodes() -> Vec<String> {
    vec!["w1".into(), "w2".into()]
}

#[test]
fn each_kind_gets_its_own_size_and_the_rest_fall_back() {
    let c = cfg("{cpu: '1', memory: 512Mi, resources: {cpu: {cpu: '4'}, memcap: {cpu: '1', memory: 9Gi}, default: {memory: 1Gi}}}");
    let pod = |yaml: &str| stress_pod(&c, &OWNER, &level(yaml), "w1", 0).unwrap();
    // cpu: its own CPU, the default's memory.
    assert_eq!(
        limits(&pod("{kind: cpu, workers: 4}")),
        json!({"cpu": "4", "memory": "1Gi"})
    );
    assert_eq!(
        limits(&pod("{kind: memcap, size: 8GiB}")),
        json!({"cpu": "1", "memory": "9Gi"})
    );
    // membw: no entry; the default's memory, the section's CPU.
    assert_eq!(
        limits(&pod("{kind: membw}")),
        json!({"cpu": "1", "memory": "1Gi"})
    );
    let ips = vec![
        ("w1".to_string(), "10.0.0.1".to_string()),
        ("w2".into(), "10.0.0.2".into()),
    ];
    let ring = iperf_ring(&c, &OWNER, &level("{kind: net}"), &ips).unwrap();
    assert_eq!(limits(&ring[0]), json!({"cpu": "1", "memory": "1Gi"}));
}

#[test]
fn the_global_values_alone_still_size_every_pod() {
    let c = cfg("{cpu: '2', memory: 1Gi}");
    for yaml in ["{kind: cpu}", "{kind: cache}", "{kind: memcap, size: 50%}"] {
        let p = stress_pod(&c, &OWNER, &level(yaml), "w1", 0).unwrap();
        assert_eq!(limits(&p), json!({"cpu": "2", "memory": "1Gi"}), "{yaml}");
    }
}

#[test]
fn a_level_sets_its_pods_per_node() {
    let c = cfg("{pods_per_node: 2}");
    let names = |yaml: &str| -> Vec<String> {
        stress_pods(&c, &OWNER, &level(yaml), &nodes())
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("{kind: cpu}"),
        [
            "aefm-exp-cpu-w1-0",
            "aefm-exp-cpu-w1-1",
            "aefm-exp-cpu-w2-0",
            "aefm-exp-cpu-w2-1"
        ]
    );
    let three = names("{kind: cpu, pods: 3}");
    assert_eq!(three.len(), 6);
    assert!(three.contains(&"aefm-exp-cpu-w2-2".to_string()));
    assert_eq!(names("{kind: cache, pods: 1}").len(), 2);
    // The count is part of the level's name, so results tell the levels apart.
    assert_eq!(level("{kind: cpu, pods: 3}").label(), "cpu-100-x3");
}

#[test]
fn a_level_that_does_not_fit_its_pods_is_refused() {
    let c = cfg("{cpu: '2', memory: 512Mi}");
    let e = stress_pods(&c, &OWNER, &level("{kind: cpu, workers: 4}"), &nodes())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("4 cpu workers") && e.contains("kubernetes.interference.cpu"),
        "{e}"
    );
    let e = stress_pods(&c, &OWNER, &level("{kind: memcap, size: 1GiB}"), &nodes())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kubernetes.interference.memory") && e.contains("1073741824"),
        "{e}"
    );
    assert!(stress_pods(&c, &OWNER, &level("{kind: memcap, size: 256MiB}"), &nodes()).is_ok());
}

#[test]
fn every_interference_pod_has_a_deadline() {
    let c = cfg("{active_deadline_secs: 7200}");
    let p = stress_pod(&c, &OWNER, &level("{kind: cpu}"), "w1", 0).unwrap();
    assert_eq!(p["spec"]["activeDeadlineSeconds"], 7200);
    let ips = vec![
        ("w1".to_string(), "10.0.0.1".to_string()),
        ("w2".into(), "10.0.0.2".into()),
    ];
    let ring = iperf_ring(&c, &OWNER, &level("{kind: net}"), &ips).unwrap();
    assert!(ring
        .iter()
        .all(|p| p["spec"]["activeDeadlineSeconds"] == 7200));
    let p = stress_pod(&cfg("{}"), &OWNER, &level("{kind: cpu}"), "w1", 0).unwrap();
    assert_eq!(
        p["spec"]["activeDeadlineSeconds"],
        DEFAULT_STRESS_DEADLINE_SECS
    );
}

#[test]
fn the_deadline_comes_from_the_plan_unless_configured() {
    let text = "name: t\nbackend: kubernetes\nduration: 100s\nwarmup: 0s\ncooldown: 0s\nsweep:\n  rate: [10, 20]\n  interference:\n    c: [none, {kind: cpu}]\nkubernetes: {namespace: a, yaml_repo: r}\n";
    let config = crate::config::Config::parse(text, Path::new("c.yaml")).unwrap();
    let planned: u64 = crate::sweep::expand(&config)
        .iter()
        .map(|c| crate::sweep::estimate_case(&config, c).as_secs())
        .sum();
    assert!(planned >= 400, "4 cases of 100 s: {planned}");
    let mut k = config.kubernetes.clone().unwrap();
    set_deadline(&mut k, &config);
    let d = k.interference.active_deadline_secs.unwrap();
    // Twice the plan plus an hour (the sum of whole seconds may round below the exact total).
    assert!(
        (2 * planned + 3600..=2 * planned + 3610).contains(&d),
        "{d} for {planned}"
    );
    let mut k = config.kubernetes.clone().unwrap();
    k.interference.active_deadline_secs = Some(60);
    set_deadline(&mut k, &config);
    assert_eq!(k.interference.active_deadline_secs, Some(60));
}

#[test]
fn two_levels_of_one_kind_in_a_case_never_share_pod_names() {
    let c = cfg("{cpu: '2'}");
    let ips = vec![("w1".to_string(), "10.0.0.1".to_string())];
    let wanted = [
        level("{kind: cpu, workers: 1}"),
        level("{kind: cpu, workers: 2}"),
    ];
    let pods = render_pods(&c, &OWNER, &wanted, &ips).unwrap();
    let names: std::collections::BTreeSet<&str> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), pods.len(), "{names:?}");
    // The first level keeps the names a one-level case has (pods are kept across cases).
    let alone = render_pods(&c, &OWNER, &wanted[..1], &ips).unwrap();
    assert_eq!(alone[0]["metadata"]["name"], pods[0]["metadata"]["name"]);
}
