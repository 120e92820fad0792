//! Tests of the interference pods: placement, labels, sizes, the iperf3 ring, spec hashes.

use super::*;

fn cfg() -> KubernetesConfig {
    serde_yaml::from_str(
        "namespace: app\nyaml_repo: r\nnodes:\n- {name: w1, roles: [testbed]}\n- {name: w2, roles: [testbed]}\n- {name: w3, roles: [infra]}\ninterference: {pods_per_node: 2, cpu: '2', memory: 1Gi}\n",
    )
    .unwrap()
}

fn cpu() -> StressLevel {
    serde_yaml::from_str("{kind: cpu, load: 90, workers: 2}").unwrap()
}

/// A level as the Kubernetes backend converts it when the config is loaded.
fn level(yaml: &str) -> Result<StressLevel, String> {
    StressLevel::for_cluster(serde_yaml::from_str(yaml).unwrap()).map_err(|e| e.to_string())
}

#[test]
fn stress_pods_are_pinned_sized_and_labelled() {
    let c = cfg();
    let owner = Owner {
        experiment: "exp",
        test_case: "case-1",
        run: "r1",
    };
    let p = stress_pod(&c, &owner, &cpu(), "w1", 1).unwrap();
    assert_eq!(p["apiVersion"], "v1");
    assert_eq!(p["kind"], "Pod");
    assert_eq!(p["metadata"]["name"], "aefm-exp-cpu-w1-1");
    assert_eq!(p["metadata"]["namespace"], "aefm-interference");
    let l = &p["metadata"]["labels"];
    assert_eq!(l[labels::EXPERIMENT], "exp");
    assert_eq!(l[labels::TEST_CASE], "case-1");
    assert_eq!(l[labels::COMPONENT], "interference");
    assert_eq!(l[labels::MANAGED_BY], "aefm");
    assert_eq!(l[labels::INTERFERENCE], "cpu");
    assert!(p["metadata"]["annotations"][labels::SPEC_HASH].is_string());
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(
        p["spec"]["tolerations"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    let ctr = &p["spec"]["containers"][0];
    assert_eq!(ctr["image"], crate::config::kubernetes::STRESS_IMAGE);
    assert_eq!(l[labels::RUN], "r1");
    assert_eq!(
        p["spec"]["activeDeadlineSeconds"],
        crate::config::kubernetes::DEFAULT_STRESS_DEADLINE_SECS
    );
    assert_eq!(ctr["imagePullPolicy"], "IfNotPresent");
    assert_eq!(ctr["command"], json!(["aefm-stress"]));
    let r = &ctr["resources"];
    assert_eq!(r["requests"], r["limits"]);
    assert_eq!(r["limits"], json!({"cpu": "2", "memory": "1Gi"}));
    assert_eq!(
        ctr["args"],
        json!(["cpu", "--workers", "2", "--load", "90"])
    );
    assert_eq!(nodes_of(&[p]), BTreeSet::from(["w1".to_string()]));
}

#[test]
fn stress_pods_get_the_documented_defaults() {
    // Before the shared conversion these pods got only the keys given, and aefm-stress
    // refused to start without --rate, --level or --fraction.
    let owner = Owner {
        experiment: "e",
        test_case: "c",
        run: "r1",
    };
    let args = |yaml: &str| {
        stress_pod(&cfg(), &owner, &level(yaml).unwrap(), "w1", 0).unwrap()["spec"]["containers"][0]
            ["args"]
            .clone()
    };
    assert_eq!(args("{kind: cpu}"), json!(["cpu", "--load", "100"]));
    assert_eq!(args("{kind: membw}"), json!(["membw", "--rate", "max"]));
    assert_eq!(
        args("{kind: cache}"),
        json!(["cache", "--level", "llc", "--fraction", "1"])
    );
    assert_eq!(
        args("{kind: memcap, size: 50%}"),
        json!(["memcap", "--size", "50%"])
    );
    // A bad value never reaches a pod: the config's conversion refuses it.
    let e = level("{kind: memcap, size: lots}").unwrap_err();
    assert!(e.contains("`size`: invalid size \"lots\""), "{e}");
}

#[test]
fn ring_targets_the_next_node() {
    let c = cfg();
    let owner = Owner {
        experiment: "exp",
        test_case: "c",
        run: "r1",
    };
    let net = level("{kind: net, bandwidth: 2G, streams: 3}").unwrap();
    let ips = vec![
        ("w1".to_string(), "10.0.0.1".to_string()),
        ("w2".into(), "10.0.0.2".into()),
        ("w3".into(), "10.0.0.3".into()),
    ];
    let pods = iperf_ring(&c, &owner, &net, &ips).unwrap();
    assert_eq!(pods.len(), 3);
    let cmd = |i: usize| {
        pods[i]["spec"]["containers"][1]["command"][2]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        cmd(0).contains("-c 10.0.0.2 -p 34567") && cmd(0).contains("-b 2000000000 -P 3"),
        "{}",
        cmd(0)
    );
    assert!(cmd(2).contains("-c 10.0.0.1"));
    assert_eq!(
        pods[0]["spec"]["containers"][0]["ports"][0]["hostPort"],
        34567
    );
}

#[test]
fn ring_takes_the_net_defaults_and_ipv6_peers() {
    let owner = Owner {
        experiment: "exp",
        test_case: "c",
        run: "r1",
    };
    let net = level("{kind: net}").unwrap();
    let ips = vec![
        ("w1".to_string(), "fd00::1".to_string()),
        ("w2".into(), "fd00::2".into()),
    ];
    let pods = iperf_ring(&cfg(), &owner, &net, &ips).unwrap();
    let cmd = pods[0]["spec"]["containers"][1]["command"][2]
        .as_str()
        .unwrap();
    assert!(
        cmd.contains("-c fd00::2 -p 34567 -t 86400 -b 1000000000 -P 1;"),
        "{cmd}"
    );
    assert!(level("{kind: net, bandwidth: fast}").is_err());
    let cpu = level("{kind: cpu}").unwrap();
    assert!(iperf_ring(&cfg(), &owner, &cpu, &ips).is_err());
}

#[test]
fn same_spec_same_hash() {
    let c = cfg();
    let a = stress_pod(
        &c,
        &Owner {
            experiment: "e",
            test_case: "1",
            run: "r1",
        },
        &cpu(),
        "w1",
        0,
    )
    .unwrap();
    let b = stress_pod(
        &c,
        &Owner {
            experiment: "e",
            test_case: "2",
            run: "r2",
        },
        &cpu(),
        "w1",
        0,
    )
    .unwrap();
    assert_eq!(a["metadata"]["annotations"], b["metadata"]["annotations"]);
}
