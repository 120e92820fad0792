//! Interference on a cluster: aefm-stress pods pinned to the chosen nodes (N per node, requests
//! equal to limits, labelled with experiment and test case), an iperf3 ring across nodes for
//! network interference, waiting until they run, and removing them again; [`verify`] checks a
//! case's pods from their logs.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use aefm_interference::{Placement, Stressor};
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use super::client::{Kube, ObjectRef};
use super::error::KubeError;
use super::labels;
use super::manifests::node_affinity;
use super::watch::Limits;
use crate::config::kubernetes::KubernetesConfig;
use crate::config::{StressKind, StressLevel};

mod naming;
pub mod pod;
#[cfg(test)]
mod render_tests;
pub mod verify;
mod waits;

pub use naming::name_fragment;
use naming::pod_name;
use pod::PodOptions;
pub use waits::{clear, wait_running};

/// Who the pods belong to: written as labels so cleanup and analysis find them.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// Experiment name.
    pub experiment: &'a str,
    /// Test case name.
    pub test_case: &'a str,
    /// Run id ([`labels::RUN`]); a label only, so a pod kept across cases (same spec hash) is
    /// relabelled, not recreated, and a leftover pod tells which run placed it last.
    pub run: &'a str,
}

/// Common labels of an interference pod.
fn pod_labels(owner: &Owner<'_>, kind: &str) -> BTreeMap<String, String> {
    [
        (labels::EXPERIMENT, labels::label_value(owner.experiment)),
        (labels::TEST_CASE, labels::label_value(owner.test_case)),
        (labels::RUN, labels::label_value(owner.run)),
        (labels::COMPONENT, "interference".into()),
        (labels::MANAGED_BY, labels::MANAGER.into()),
        (labels::INTERFERENCE, kind.into()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `activeDeadlineSeconds` for interference pods of an experiment run by `config` (unless the
/// section sets `interference.active_deadline_secs`): twice the plan's estimated total plus an
/// hour. A pod kept across cases lives at most as long as the experiment, and the estimate leaves
/// out waits (deploys, readiness), hence the margin; after a crash of the manager the pods end
/// within that bound instead of running forever. One value per experiment, not per case: the
/// deadline is part of the pod spec (and its hash), and a real API server refuses to raise it on
/// a running pod.
pub fn set_deadline(cfg: &mut KubernetesConfig, config: &crate::config::Config) {
    if cfg.interference.active_deadline_secs.is_some() {
        return;
    }
    let planned: Duration = crate::sweep::expand(config)
        .iter()
        .map(|c| crate::sweep::estimate_case(config, c))
        .sum();
    cfg.interference.active_deadline_secs = Some(2 * planned.as_secs() + 3600);
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
/// duration: it runs until AEFM deletes the pod) rendered by [`pod::render`], with its kind's
/// CPU and memory ([`InterferencePlacement::resources`](crate::config::kubernetes::InterferencePlacement::resources))
/// as requests and limits, the owner's labels, `restartPolicy: Always` (a stressor that dies
/// mid-case comes back), the control-plane taints tolerated,
/// `activeDeadlineSeconds` (it ends by itself if the manager dies), the
/// config's pull policy and `command: [aefm-stress]` (any image holding the binary works,
/// whatever its entry point).
pub fn stress_pod(
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    spec: &StressLevel,
    node: &str,
    index: u32,
) -> Result<Value, KubeError> {
    let kind = spec.kind().to_string();
    let name = pod_name(owner.experiment, &kind, node, Some(index));
    // Converted when the config was loaded; no cores: it sizes itself from the pod's limits.
    let mut s = spec.in_pod();
    let size = cfg.interference.resources(spec.kind());
    s.placement = Placement {
        node: Some(node.to_string()),
        cpus: None,
        cpu_limit: Some(size.cpu),
        memory_limit: Some(size.memory),
    };
    let opts = PodOptions {
        restart_policy: Some("Always".into()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(vec!["aefm-stress".into()]),
        tolerations: control_plane_tolerations(),
        labels: pod_labels(owner, &kind),
    };
    let mut pod = pod::render(
        &s,
        &name,
        &cfg.interference.namespace,
        &cfg.interference.image,
        &opts,
    );
    if let Some(ps) = pod.spec.as_mut() {
        ps.active_deadline_seconds = Some(deadline(cfg));
    }
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
    let size = cfg.interference.resources(StressKind::Net);
    let resources = json!({"cpu": size.cpu, "memory": size.memory});
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
        let name = pod_name(owner.experiment, "net", node, None);
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
                "activeDeadlineSeconds": deadline(cfg),
                "affinity": {"nodeAffinity": node_affinity(std::slice::from_ref(node))},
                "containers": [
                    {
                        "name": "server",
                        "image": cfg.interference.iperf_image(),
                        "imagePullPolicy": cfg.image_pull_policy,
                        "command": ["iperf3", "-s", "-p", port.to_string()],
                        "ports": [{"containerPort": port, "hostPort": port, "protocol": "TCP"}],
                        "resources": {"requests": resources, "limits": resources},
                    },
                    {
                        "name": "client",
                        "image": cfg.interference.iperf_image(),
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

/// The interference pods' `activeDeadlineSeconds`, as the API wants it.
fn deadline(cfg: &KubernetesConfig) -> i64 {
    i64::try_from(cfg.interference.deadline_secs()).unwrap_or(i64::MAX)
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

/// Every pod a case's levels need, across the interference nodes (see [`render_pods`]); the
/// nodes' InternalIPs are looked up only when a level is a network one.
pub async fn desired_pods(
    kube: &Kube,
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    wanted: &[StressLevel],
) -> Result<Vec<Value>, KubeError> {
    let nodes = cfg.interference_nodes();
    let nodes = if wanted.iter().any(|l| l.kind() == StressKind::Net) && nodes.len() >= 2 {
        node_ips(kube, cfg, &nodes).await?
    } else {
        nodes.into_iter().map(|n| (n, String::new())).collect()
    };
    render_pods(cfg, owner, wanted, &nodes)
}

/// Every pod a case's levels need on `nodes` (name, InternalIP; the IPs matter only to network
/// levels): each level's `pods` (default `pods_per_node`) per node, or its iperf3 ring. A level
/// that does not fit its pods (see
/// [`InterferencePlacement::check_level`](crate::config::kubernetes::InterferencePlacement::check_level))
/// is refused here too, for callers that did not validate a config. No cluster is contacted.
pub fn render_pods(
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    wanted: &[StressLevel],
    nodes: &[(String, String)],
) -> Result<Vec<Value>, KubeError> {
    if nodes.is_empty() && !wanted.is_empty() {
        return Err(KubeError::Config {
            key: "kubernetes.interference.nodes".into(),
            message: format!(
                "no nodes for interference: list some or give nodes the role {}",
                cfg.interference.role
            ),
        });
    }
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let mut pods = Vec::new();
    let mut of_kind: BTreeMap<String, usize> = BTreeMap::new();
    for spec in wanted {
        let first = pods.len();
        if spec.kind() == StressKind::Net {
            if nodes.len() < 2 {
                return Err(KubeError::Config {
                    key: "kubernetes.interference.nodes".into(),
                    message: "network interference needs at least two nodes for its iperf3 ring"
                        .into(),
                });
            }
            pods.extend(iperf_ring(cfg, owner, spec, nodes)?);
        } else {
            pods.extend(stress_pods(cfg, owner, spec, &names)?);
        }
        // A second level of the same kind in one case (two dimensions) gets its own names:
        // with the same names one would silently replace the other.
        let seen = of_kind.entry(spec.kind().to_string()).or_default();
        *seen += 1;
        if *seen > 1 {
            for p in &mut pods[first..] {
                let name = format!("{}-l{seen}", p["metadata"]["name"].as_str().unwrap_or(""));
                p["metadata"]["name"] = Value::String(name);
            }
        }
    }
    Ok(pods)
}

/// A non-network level's pods: its `pods` (default `pods_per_node`) on each node, after checking
/// that the level fits them.
pub fn stress_pods(
    cfg: &KubernetesConfig,
    owner: &Owner<'_>,
    spec: &StressLevel,
    nodes: &[String],
) -> Result<Vec<Value>, KubeError> {
    cfg.interference
        .check_level(spec)
        .map_err(|message| KubeError::Config {
            key: format!("sweep.interference ({})", spec.label()),
            message,
        })?;
    let mut pods = Vec::new();
    for node in nodes {
        for i in 0..cfg.interference.pods_for(spec) {
            pods.push(stress_pod(cfg, owner, spec, node, i)?);
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
    limits: &Limits,
) -> Result<Vec<ObjectRef>, KubeError> {
    let ns = &cfg.interference.namespace;
    super::namespace::ensure(kube.client(), ns, experiment).await?;
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
        // A pod that ended (its deadline passed, evicted) is never kept, whatever its spec.
        let ended = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
        if wanted.get(&name) != Some(&hash) || p.metadata.deletion_timestamp.is_some() || ended {
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
    kube.wait_deleted(&stale, limits).await?;
    let mut refs = Vec::new();
    for p in pods {
        refs.push(kube.apply(p).await?);
    }
    wait_running(kube, ns, &selector(experiment), &refs, limits).await?;
    Ok(refs)
}

fn name_of(p: &Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
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
mod tests;
