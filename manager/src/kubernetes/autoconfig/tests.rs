//! Tests of auto-config: node roles, levels and the starter config it writes.

use super::*;

fn node(name: &str, labels: Value, cpu: &str, mem: &str, ip: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
            "allocatable": {"cpu": cpu, "memory": mem},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .unwrap()
}

fn cluster() -> ClusterInfo {
    ClusterInfo {
        nodes: vec![
            node_info(&node(
                "m",
                json!({"node-role.kubernetes.io/master": ""}),
                "4",
                "8Gi",
                "10.0.0.1",
            )),
            node_info(&node("w1", json!({}), "8", "32863984Ki", "10.0.0.2")),
            node_info(&node("w2", json!({}), "8", "32Gi", "10.0.0.3")),
            node_info(&node("w3", json!({}), "8000m", "34359738368", "10.0.0.4")),
        ],
        prometheus: Some(ServiceInfo {
            namespace: "monitor".into(),
            name: "prom".into(),
            port: 9090,
            node_port: Some(30090),
        }),
        jaeger: None,
    }
}

#[test]
fn legacy_master_label_and_internal_ip() {
    let c = cluster();
    assert!(c.nodes[0].control_plane);
    assert_eq!(c.workers().len(), 3);
    assert_eq!(c.nodes[1].ip.as_deref(), Some("10.0.0.2"));
    assert!(homogeneous(&c.workers()));
}

#[test]
fn proposal_for_one_master_three_workers() {
    let p = propose(&cluster(), &Answers::default()).unwrap();
    assert_eq!(p.roles["infra"], vec!["w1"]);
    assert_eq!(p.roles["testbed"], vec!["w2", "w3"]);
    assert_eq!(p.cpu_levels, vec![3, 4, 5, 6]);
    assert_eq!(p.memcap_levels, vec![4, 11, 17, 24]);
    assert_eq!(p.prometheus.as_deref(), Some("http://10.0.0.2:30090"));
    assert!(p.homogeneous);
}

#[test]
fn bad_node_answer_is_named() {
    let a = Answers {
        testbed: Some(vec!["m".into()]),
        ..Default::default()
    };
    let e = propose(&cluster(), &a).unwrap_err();
    assert!(
        e.to_string().contains("--testbed") && e.to_string().contains("m is not a worker"),
        "{e}"
    );
}

#[test]
fn interactive_answers_and_retry() {
    let input = "exp9\n\n\n\nw1\nbogus\nw2,w3\n\n\n\n\nhttp://10.0.0.3:30000\n";
    let mut out = Vec::new();
    let p = ask(
        &cluster(),
        Answers::default(),
        &mut input.as_bytes(),
        &mut out,
    )
    .unwrap();
    assert_eq!(p.name, "exp9");
    assert_eq!(p.roles["testbed"], vec!["w2", "w3"]);
    assert_eq!(p.url.as_deref(), Some("http://10.0.0.3:30000"));
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("bogus is not a worker"));
}

/// The starter config as `aefm validate` reads it.
fn validated(p: &Proposal) -> crate::config::Config {
    let text = render_config(p);
    crate::config::Config::parse(&text, std::path::Path::new("auto.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_written_config_validates_and_its_levels_fit_their_pods() {
    let p = propose(&cluster(), &Answers::default()).unwrap();
    let c = validated(&p);
    let k = c.kubernetes.as_ref().unwrap();
    assert_eq!(k.interference.image, STRESS_IMAGE);
    assert_eq!(k.load.image, LOAD_IMAGE);
    // CPU: N pods of one CPU each, not N workers in one 1-CPU pod.
    let cpu = &c.sweep.interference["cpu"];
    assert_eq!(cpu.len(), 5);
    let crate::config::InterferenceLevelSpec::Stress(top) = &cpu[4] else {
        panic!("{cpu:?}")
    };
    assert_eq!((top.pods, top.workers), (Some(6), None));
    let cpu_size = k.interference.resources(crate::config::StressKind::Cpu);
    assert_eq!(parse_quantity(&cpu_size.cpu), Some(1.0));
    // memcap: the pod holds the largest level (24 GiB) and the stressor.
    let mem = k.interference.resources(crate::config::StressKind::Memcap);
    assert!(
        parse_quantity(&mem.memory).unwrap() >= 24.0 * GIB + MEMCAP_HEADROOM as f64,
        "{mem:?}"
    );
}

#[test]
fn a_single_node_cluster_gets_every_role_it_needs() {
    // kind and k3s: one node, labelled control plane, also the only worker.
    let info = ClusterInfo {
        nodes: vec![node_info(&node(
            "kind-control-plane",
            json!({"node-role.kubernetes.io/control-plane": ""}),
            "2",
            "8Gi",
            "172.18.0.2",
        ))],
        prometheus: None,
        jaeger: None,
    };
    let p = propose(&info, &Answers::default()).unwrap();
    assert_eq!(p.roles["infra"], vec!["kind-control-plane"]);
    assert_eq!(p.roles["testbed"], vec!["kind-control-plane"]);
    assert!(p.roles["loadgen"].is_empty());
    assert_eq!(p.cpu_levels, vec![1]);
    assert!(render_config(&p).contains("both infra and testbed"));
    validated(&p);
}

#[test]
fn two_workers_split_infra_and_testbed() {
    let mut c = cluster();
    c.nodes.truncate(3);
    let p = propose(&c, &Answers::default()).unwrap();
    assert_eq!(p.roles["infra"], vec!["w1"]);
    assert_eq!(p.roles["testbed"], vec!["w2"]);
    validated(&p);
    // Four workers: the last one generates load.
    let mut c = cluster();
    c.nodes
        .push(node_info(&node("w4", json!({}), "8", "32Gi", "10.0.0.5")));
    let p = propose(&c, &Answers::default()).unwrap();
    assert_eq!(p.roles["testbed"], vec!["w2", "w3"]);
    assert_eq!(p.roles["loadgen"], vec!["w4"]);
}
