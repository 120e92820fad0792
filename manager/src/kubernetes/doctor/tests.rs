use super::*;
use serde_json::json;

fn node(name: &str, cpu: &str, mem: &str, images: &[&str]) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {
            "allocatable": {"cpu": cpu, "memory": mem},
            "images": [{"names": images, "sizeBytes": 1000}],
        },
    }))
    .unwrap()
}

fn pod_on(node: &str, cpu: &str, mem: &str) -> Value {
    json!({"spec": {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        "containers": [{"name": "s", "resources": {"requests": {"cpu": cpu, "memory": mem}}}],
    }})
}

#[test]
fn requests_and_pinning_are_read_from_rendered_pods() {
    let p = pod_on("w1", "500m", "256Mi");
    assert_eq!(pinned_node(&p).as_deref(), Some("w1"));
    assert_eq!(pod_requests(&p), (0.5, 256.0 * 1048576.0));
    assert_eq!(
        pinned_node(&json!({"spec": {"nodeName": "w2"}})).as_deref(),
        Some("w2")
    );
    assert_eq!(pinned_node(&json!({"spec": {}})), None);
}

#[test]
fn room_counts_every_pod_of_a_case_and_what_already_runs() {
    let nodes = [node("w1", "2", "1Gi", &[]), node("w2", "4", "8Gi", &[])];
    let fits = vec![(
        "c1".to_string(),
        vec![pod_on("w1", "1", "512Mi"), pod_on("w2", "3", "1Gi")],
    )];
    assert!(check_room(&fits, &nodes, &BTreeMap::new()).is_empty());
    // The same pods with 1.5 CPU already requested on w1 do not fit.
    let used = BTreeMap::from([("w1".to_string(), (1.5, 0.0))]);
    let f = check_room(&fits, &nodes, &used);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].message.contains("node w1") && f[0].message.contains("case c1"),
        "{}",
        f[0]
    );
    // Three pods per node of 1 CPU on a 2-CPU node: too many.
    let crowded = vec![("c2".to_string(), vec![pod_on("w1", "1", "1Mi"); 3])];
    assert_eq!(check_room(&crowded, &nodes, &BTreeMap::new()).len(), 1);
}

#[test]
fn missing_nodes_name_the_key() {
    let cfg: KubernetesConfig = serde_yaml::from_str(
        "namespace: a\nyaml_repo: r\nnodes: [{name: w1, roles: [testbed]}, {name: gone, roles: [infra]}]\n",
    )
    .unwrap();
    let f = check_nodes(&cfg, &[node("w1", "1", "1Gi", &[])]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].message.contains("kubernetes.nodes: node gone"),
        "{}",
        f[0]
    );
}

#[test]
fn images_are_matched_with_runtime_prefixes_and_never_pull_is_an_error() {
    let nodes = [
        node("w1", "1", "1Gi", &["docker.io/aefm/aefm-stress:0.1.0"]),
        node("w2", "1", "1Gi", &["other:1"]),
    ];
    let wanted = vec![(
        "aefm/aefm-stress:0.1.0".to_string(),
        vec!["w1".into(), "w2".into()],
    )];
    let f = check_images(&wanted, &nodes, "IfNotPresent");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.contains("w2") && !f[0].message.contains("w1"),
        "{}",
        f[0]
    );
    assert_eq!(
        check_images(&wanted, &nodes, "Never")[0].severity,
        Severity::Error
    );
    let only_w1 = vec![("aefm/aefm-stress:0.1.0".to_string(), vec!["w1".into()])];
    assert!(check_images(&only_w1, &nodes, "Never").is_empty());
}
