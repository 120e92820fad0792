//! Interference on a cluster: aefm-stress pods pinned to the chosen nodes (N per node, requests
//! equal to limits, labelled with experiment and test case), an iperf3 ring across nodes for
//! network interference, waiting until they run, and removing them again; [`verify`] checks a
//! case's pods from their logs.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use aefm_interference::{Placement, PodOptions, Stressor};
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::wait::await_condition;
use serde_json::{json, Value};

use super::client::{Kube, ObjectRef};
use super::error::{is_not_found, KubeError};
use super::labels;
use super::manifests::node_affinity;
use super::readiness::pod_problem;
use crate::config::kubernetes::KubernetesConfig;
use crate::config::{StressKind, StressLevel};

pub mod verify;

/// Who the pods belong to: written as labels so cleanup and analysis find them.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// Experiment name.
    pub experiment: &'a str,
    /// Test case name.
    pub test_case: &'a str,
}

/// Common labels of an interference pod.
fn pod_labels(owner: &Owner<'_>, kind: &str) -> BTreeMap<String, String> {
    [
        (labels::EXPERIMENT, labels::label_value(owner.experiment)),
        (labels::TEST_CASE, labels::label_value(owner.test_case)),
        (labels::COMPONENT, "interference".into()),
        (labels::MANAGED_BY, labels::MANAGER.into()),
        (labels::INTERFERENCE, kind.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Interference may go to control-plane nodes when they are listed (small clusters).
fn control_plane_tolerations() -> Vec<Toleration> {
    [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ]
    .into_iter()
    .map(|key| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    })
    .collect()
}

/// One stress pod pinned to `node`: the level's [`aefm_interference::InterferenceSpec`] (no
/// duration: it runs until AEFM deletes the pod) rendered by its `to_pod_with`, with the pod's
/// CPU and memory as requests and limits, the owner's labels, `restartPolicy: Always` (a stressor
/// that dies mid-case comes back), the config's pull policy and `command: [aefm-stress]` (any
/// image holding the binary works, whatever its entry point).
pub fn stress_pod(
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    spec: &StressLevel,
    node: &str,
    index: u32,
) -> Result<Value, KubeError> {
    let name = format!(
        "aefm-{}-{}-{}-{index}",
        labels::dns_fragment(owner.experiment, 20),
        spec.kind(),
        labels::dns_fragment(node, 20)
    );
    // Converted when the config was loaded; no cores: it sizes itself from the pod's limits.
    let mut s = spec.in_pod();
    s.labels = pod_labels(owner, &spec.kind().to_string());
    s.placement = Placement {
        node: Some(node.to_string()),
        cpus: None,
        cpu_limit: Some(cfg.interference.cpu.clone()),
        memory_limit: Some(cfg.interference.memory.clone()),
        tolerations: control_plane_tolerations(),
    };
    let opts = PodOptions {
        restart_policy: Some("Always".into()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(vec!["aefm-stress".into()]),
    };
    let pod = s.to_pod_with(
        &name,
        &cfg.interference.namespace,
        &cfg.interference.image,
        &opts,
    );
    let mut pod = serde_json::to_value(pod).map_err(|e| KubeError::Failed {
        object: format!("Pod/{}/{name}", cfg.interference.namespace),
        message: format!("cannot serialise: {e}"),
    })?;
    stamp_hash(&mut pod);
    Ok(pod)
}

/// The iperf3 ring: on each node a pod with an iperf3 server on a hostPort and a client sending
/// to the next node's IP (the last node sends to the first), `streams` streams at `bandwidth` each
/// (the level's net stressor, aimed at that IP: same defaults and units as everywhere else).
pub fn iperf_ring(
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    spec: &StressLevel,
    nodes: &[(String, String)],
) -> Result<Vec<Value>, KubeError> {
    let port = cfg.interference.iperf_port;
    let resources = json!({"cpu": cfg.interference.cpu, "memory": cfg.interference.memory});
    let mut out = Vec::new();
    for (i, (node, _ip)) in nodes.iter().enumerate() {
        let (_, target) = &nodes[(i + 1) % nodes.len()];
        // Bandwidth and streams as converted when the config was loaded; the target is the ring's.
        let Stressor::NetClient {
            bandwidth_bps,
            streams,
            ..
        } = spec.in_pod().stressor
        else {
            return Err(KubeError::Config {
                key: "sweep.interference".into(),
                message: format!("level {}: not a network stressor", spec.label()),
            });
        };
        let name = format!(
            "aefm-{}-net-{}",
            labels::dns_fragment(owner.experiment, 20),
            labels::dns_fragment(node, 30)
        );
        // The client retries forever: the next node's server may start after this client.
        let client = format!(
            "while true; do iperf3 -c {target} -p {port} -t 86400 -b {bandwidth_bps} -P {streams}; sleep 1; done"
        );
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": cfg.interference.namespace, "labels": pod_labels(owner, "net")},
            "spec": {
                "restartPolicy": "Always",
                "affinity": {"nodeAffinity": node_affinity(std::slice::from_ref(node))},
                "containers": [
                    {
                        "name": "server",
                        "image": cfg.interference.iperf_image,
                        "imagePullPolicy": cfg.image_pull_policy,
                        "command": ["iperf3", "-s", "-p", port.to_string()],
                        "ports": [{"containerPort": port, "hostPort": port, "protocol": "TCP"}],
                        "resources": {"requests": resources, "limits": resources},
                    },
                    {
                        "name": "client",
                        "image": cfg.interference.iperf_image,
                        "imagePullPolicy": cfg.image_pull_policy,
                        "command": ["sh", "-c", client],
                        "resources": {"requests": resources, "limits": resources},
                    }
                ],
            },
        });
        stamp_hash(&mut pod);
        out.push(pod);
    }
    Ok(out)
}

/// Records a hash of the pod's spec, so a later case with the same level keeps the pod.
fn stamp_hash(pod: &mut Value) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pod["spec"].to_string().hash(&mut h);
    // Added to the annotations the pod may already have (e.g. the metrics port).
    pod["metadata"]["annotations"][labels::SPEC_HASH] = json!(format!("{:016x}", h.finish()));
}

/// InternalIP of each node: from the config when given, else from the Node object.
pub async fn node_ips(
    kube: &Kube,
    cfg: &KubernetesConfig,
    nodes: &[String],
) -> Result<Vec<(String, String)>, KubeError> {
    let api: Api<Node> = Api::all(kube.client().clone());
    let mut out = Vec::new();
    for n in nodes {
        if let Some(ip) = cfg
            .nodes
            .iter()
            .find(|c| &c.name == n)
            .and_then(|c| c.ip.clone())
        {
            out.push((n.clone(), ip));
            continue;
        }
        let node = api
            .get(n)
            .await
            .map_err(|e| KubeError::from_kube("get", format!("Node/{n}"), e))?;
        let ip = super::autoconfig::internal_ip(&node).ok_or_else(|| KubeError::Failed {
            object: format!("Node/{n}"),
            message: "has no InternalIP address (needed for network interference)".into(),
        })?;
        out.push((n.clone(), ip));
    }
    Ok(out)
}

/// Every pod a case's levels need, across the interference nodes.
pub async fn desired_pods(
    kube: &Kube,
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    wanted: &[StressLevel],
) -> Result<Vec<Value>, KubeError> {
    let nodes = cfg.interference_nodes();
    if nodes.is_empty() && !wanted.is_empty() {
        return Err(KubeError::Config {
            key: "kubernetes.interference.nodes".into(),
            message: format!(
                "no nodes for interference: list some or give nodes the role {}",
                cfg.interference.role
            ),
        });
    }
    let mut pods = Vec::new();
    for spec in wanted {
        if spec.kind() == StressKind::Net {
            if nodes.len() < 2 {
                return Err(KubeError::Config {
                    key: "kubernetes.interference.nodes".into(),
                    message: "network interference needs at least two nodes for its iperf3 ring"
                        .into(),
                });
            }
            let ips = node_ips(kube, cfg, &nodes).await?;
            pods.extend(iperf_ring(cfg, owner, spec, &ips)?);
        } else {
            for node in &nodes {
                for i in 0..cfg.interference.pods_per_node {
                    pods.push(stress_pod(cfg, owner, spec, node, i)?);
                }
            }
        }
    }
    Ok(pods)
}

/// Label selector for an experiment's interference pods.
pub fn selector(experiment: &str) -> String {
    format!(
        "{}={},{}=interference",
        labels::EXPERIMENT,
        labels::label_value(experiment),
        labels::COMPONENT
    )
}

/// Makes the interference namespace hold exactly `pods`: pods with the same name and spec hash are
/// kept (relabelled with the new test case), others deleted (and awaited), missing ones created;
/// then waits until all run and are ready. On any error the caller must [`clear`].
pub async fn place(
    kube: &Kube,
    cfg: &KubernetesConfig,
    experiment: &str,
    pods: &[Value],
    timeout: Duration,
) -> Result<Vec<ObjectRef>, KubeError> {
    let ns = &cfg.interference.namespace;
    kube.apply(&super::manifests::namespace_object(ns, experiment))
        .await?;
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), ns);
    let existing = api
        .list(&ListParams::default().labels(&selector(experiment)))
        .await
        .map_err(|e| {
            KubeError::from_kube(
                "list",
                format!("pods in {ns} ({})", selector(experiment)),
                e,
            )
        })?;
    let wanted: BTreeMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                name_of(p),
                p["metadata"]["annotations"][labels::SPEC_HASH]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut stale = Vec::new();
    for p in &existing.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let hash = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::SPEC_HASH))
            .cloned()
            .unwrap_or_default();
        if wanted.get(&name) != Some(&hash) || p.metadata.deletion_timestamp.is_some() {
            stale.push(ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: Some(ns.clone()),
                name,
            });
        }
    }
    for r in &stale {
        kube.delete(r).await?;
    }
    kube.wait_deleted(&stale, timeout).await?;
    let mut refs = Vec::new();
    for p in pods {
        refs.push(kube.apply(p).await?);
    }
    wait_running(kube, ns, &refs, timeout).await?;
    Ok(refs)
}

fn name_of(p: &Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits (with watches) until every pod runs with all containers ready; a pod that fails, or a
/// timeout, is reported with each pod's reason.
pub async fn wait_running(
    kube: &Kube,
    ns: &str,
    refs: &[ObjectRef],
    timeout: Duration,
) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), ns);
    let futs = refs.iter().map(|r| {
        let api = api.clone();
        async move {
            let cond = |p: Option<&Pod>| {
                p.is_some_and(|p| {
                    pod_problem(p).is_none()
                        || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
                })
            };
            let pod =
                await_condition(api, &r.name, cond)
                    .await
                    .map_err(|e| KubeError::Transport {
                        action: "watch".into(),
                        object: r.to_string(),
                        message: e.to_string(),
                    })?;
            if let Some(why) = pod.as_ref().and_then(pod_problem) {
                return Err(KubeError::Failed {
                    object: r.to_string(),
                    message: why,
                });
            }
            Ok(())
        }
    });
    match tokio::time::timeout(timeout, try_join_all(futs)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => {
            let mut lines = Vec::new();
            let mut names = Vec::new();
            for r in refs {
                if let Ok(Some(p)) = api.get_opt(&r.name).await {
                    if let Some(why) = pod_problem(&p) {
                        lines.push(format!("pod {ns}/{}: {why}", r.name));
                        names.push(r.to_string());
                    }
                }
            }
            Err(KubeError::NotReady {
                secs: timeout.as_secs(),
                objects: names.join(", "),
                pods: lines,
            })
        }
    }
}

/// Deletes every interference pod of the experiment and waits until they are gone.
pub async fn clear(
    kube: &Kube,
    namespace: &str,
    experiment: &str,
    timeout: Duration,
) -> Result<usize, KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), namespace);
    let list = match api
        .list(&ListParams::default().labels(&selector(experiment)))
        .await
    {
        Ok(l) => l,
        Err(e) if is_not_found(&e) => return Ok(0),
        Err(e) => {
            return Err(KubeError::from_kube(
                "list",
                format!("pods in {namespace}"),
                e,
            ))
        }
    };
    let mut refs = Vec::new();
    for p in list.items {
        let name = p.metadata.name.unwrap_or_default();
        let r = ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(namespace.into()),
            name,
        };
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(KubeError::from_kube("delete", r.to_string(), e)),
        }
        refs.push(r);
    }
    kube.wait_deleted(&refs, timeout).await?;
    Ok(refs.len())
}

/// Nodes (by name) that hold at least one of the pods: for checks and messages.
pub fn nodes_of(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| {
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
        assert_eq!(ctr["image"], "aefm/aefm-stress:latest");
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
        };
        let args = |yaml: &str| {
            stress_pod(&cfg(), &owner, &level(yaml).unwrap(), "w1", 0).unwrap()["spec"]
                ["containers"][0]["args"]
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
            },
            &cpu(),
            "w1",
            0,
        )
        .unwrap();
        assert_eq!(a["metadata"]["annotations"], b["metadata"]["annotations"]);
    }
}
