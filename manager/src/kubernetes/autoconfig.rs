//! `aefm auto-config`: inspect a cluster (nodes, roles, allocatable CPU and memory, homogeneity,
//! Prometheus and Jaeger services and their NodePorts), propose node roles and interference levels
//! sized to the workers, with interference pods sized to those levels, and write a starter config
//! that `aefm validate` accepts. Every answer has a flag; missing answers are asked on stdin in
//! interactive mode, else the proposal is taken.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::KubeError;
use super::quantity::{parse_quantity, GIB};
use crate::config::kubernetes::{LOAD_IMAGE, MEMCAP_HEADROOM, STRESS_IMAGE};

/// Labels that mark a control-plane node (the current one and the legacy one).
const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// One node as auto-config sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// InternalIP (explicitly, not the first address).
    pub ip: Option<String>,
    /// Whether it is a control-plane (master) node.
    pub control_plane: bool,
    /// Allocatable CPU cores.
    pub cpu: f64,
    /// Allocatable memory in bytes.
    pub memory: f64,
    /// Whether the node is Ready.
    pub ready: bool,
}

/// A service found in the cluster, with the NodePort of its main port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service port.
    pub port: i32,
    /// NodePort, when the service is exposed as one.
    pub node_port: Option<i32>,
}

/// What auto-config found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterInfo {
    /// Every node.
    pub nodes: Vec<NodeInfo>,
    /// The Prometheus service (kube-prometheus-stack or plain).
    pub prometheus: Option<ServiceInfo>,
    /// The Jaeger query service.
    pub jaeger: Option<ServiceInfo>,
}

impl ClusterInfo {
    /// Worker (non control-plane) nodes; on a cluster that has none (single-node kind, k3s,
    /// minikube: the one node is control plane and worker) every node.
    pub fn workers(&self) -> Vec<&NodeInfo> {
        let workers: Vec<&NodeInfo> = self.nodes.iter().filter(|n| !n.control_plane).collect();
        if workers.is_empty() {
            self.nodes.iter().collect()
        } else {
            workers
        }
    }
}

/// InternalIP of a node.
pub fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

/// Reads one Node into a [`NodeInfo`]; quantities in any unit.
pub fn node_info(node: &Node) -> NodeInfo {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let res = status.allocatable.or(status.capacity).unwrap_or_default();
    let q = |k: &str| res.get(k).and_then(|v| parse_quantity(&v.0)).unwrap_or(0.0);
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        ip: internal_ip(node),
        control_plane: CONTROL_PLANE_LABELS.iter().any(|l| labels.contains_key(*l)),
        cpu: q("cpu"),
        memory: q("memory"),
        ready: status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
    }
}

/// Whether workers have the same allocatable CPU and memory (within 5%: allocatable memory
/// differs a little between identical machines).
pub fn homogeneous(workers: &[&NodeInfo]) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= 0.05 * a.max(b);
    workers
        .windows(2)
        .all(|w| close(w[0].cpu, w[1].cpu) && close(w[0].memory, w[1].memory))
}

fn find_service(
    services: &[Service],
    name_hint: &str,
    label_values: &[&str],
    port: i32,
) -> Option<ServiceInfo> {
    let mut candidates: Vec<ServiceInfo> = services
        .iter()
        .filter_map(|s| {
            let name = s.metadata.name.clone()?;
            let labels = s.metadata.labels.clone().unwrap_or_default();
            let by_label = [
                "app.kubernetes.io/name",
                "app",
                "app.kubernetes.io/component",
            ]
            .iter()
            .any(|k| {
                labels
                    .get(*k)
                    .is_some_and(|v| label_values.contains(&v.as_str()))
            });
            if !by_label && !name.contains(name_hint) {
                return None;
            }
            let ports = s.spec.as_ref()?.ports.clone()?;
            let p = ports.iter().find(|p| p.port == port)?;
            Some(ServiceInfo {
                namespace: s.metadata.namespace.clone().unwrap_or_default(),
                name,
                port: p.port,
                node_port: p.node_port,
            })
        })
        .collect();
    // Prefer a NodePort service (reachable from outside), then the shortest name (the main one).
    candidates.sort_by_key(|c| (c.node_port.is_none(), c.name.len()));
    candidates.into_iter().next()
}

/// Inspects the cluster.
pub async fn inspect(client: &kube::Client) -> Result<ClusterInfo, KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::from_kube("list", "nodes", e))?;
    let services: Api<Service> = Api::all(client.clone());
    let services = services
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::from_kube("list", "services (all namespaces)", e))?;
    Ok(ClusterInfo {
        nodes: nodes.items.iter().map(node_info).collect(),
        prometheus: find_service(&services.items, "prometheus", &["prometheus"], 9090),
        jaeger: find_service(
            &services.items,
            "jaeger",
            &["jaeger", "jaeger-query", "jaeger-all-in-one"],
            16686,
        ),
    })
}

/// Answers to auto-config's questions; `None` takes the proposal (or asks, interactively).
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Experiment name.
    pub name: Option<String>,
    /// Application namespace.
    pub namespace: Option<String>,
    /// YAML repository.
    pub yaml_repo: Option<String>,
    /// Image replacing `APP_IMG`.
    pub app_image: Option<String>,
    /// Infra nodes.
    pub infra: Option<Vec<String>>,
    /// Testbed nodes.
    pub testbed: Option<Vec<String>>,
    /// Load-generator nodes.
    pub loadgen: Option<Vec<String>>,
    /// Host/IP through which NodePorts are reached (default: the first infra node's InternalIP).
    pub host: Option<String>,
    /// Prometheus URL.
    pub prometheus: Option<String>,
    /// Jaeger URL.
    pub jaeger: Option<String>,
    /// Jaeger entrance service.
    pub jaeger_service: Option<String>,
    /// URL the load is sent to.
    pub url: Option<String>,
}

/// A complete proposal, ready to be written as a config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// Experiment name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// YAML repository.
    pub yaml_repo: String,
    /// App image, if any.
    pub app_image: Option<String>,
    /// Role → nodes.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Whether the chosen testbed workers are homogeneous.
    pub homogeneous: bool,
    /// Prometheus URL, if found or given.
    pub prometheus: Option<String>,
    /// Jaeger URL, if found or given.
    pub jaeger: Option<String>,
    /// Jaeger entrance service.
    pub jaeger_service: String,
    /// Load URL, if given.
    pub url: Option<String>,
    /// CPU interference levels: 1-CPU interference pods per node (one busy worker each).
    pub cpu_levels: Vec<u32>,
    /// Memory-capacity interference levels, GiB per node (one pod sized to the largest).
    pub memcap_levels: Vec<u32>,
}

/// The proposal's default roles:
/// - 1 worker (single-node kind or k3s): it is `infra` and `testbed`, so the backends share the
///   node with the services under test and their interference (fine for trying AEFM out; the
///   config's header says so);
/// - 2: the first is `infra`, the second `testbed`;
/// - 3: the first is `infra`, the others `testbed`;
/// - 4 or more: as 3, and the last is `loadgen`.
///
/// Load generation stays on the machine running `aefm` unless a node is given that role: with
/// few nodes, load Jobs would compete with what they measure.
pub fn default_roles(workers: &[&NodeInfo]) -> Result<BTreeMap<String, Vec<String>>, KubeError> {
    let names: Vec<String> = workers.iter().map(|w| w.name.clone()).collect();
    let Some(first) = names.first() else {
        return Err(KubeError::Config {
            key: "nodes".into(),
            message: "the cluster has no nodes".into(),
        });
    };
    let n = names.len();
    let (testbed, loadgen) = match n {
        1 => (names.clone(), Vec::new()),
        2 | 3 => (names[1..].to_vec(), Vec::new()),
        _ => (names[1..n - 1].to_vec(), vec![names[n - 1].clone()]),
    };
    Ok(BTreeMap::from([
        ("infra".to_string(), vec![first.clone()]),
        ("testbed".to_string(), testbed),
        ("loadgen".to_string(), loadgen),
    ]))
}

/// Interference levels sized to the smallest testbed worker: CPU at 40/55/70/85% of its cores (as
/// that many 1-CPU pods), memory at 15/35/55/75% of its memory in GiB (the original's fractions;
/// it only looked at the first worker and assumed `Ki`).
pub fn levels(testbed: &[&NodeInfo]) -> (Vec<u32>, Vec<u32>) {
    let cpu = testbed.iter().map(|n| n.cpu).fold(f64::INFINITY, f64::min);
    let mem = testbed
        .iter()
        .map(|n| n.memory)
        .fold(f64::INFINITY, f64::min)
        / GIB;
    if !cpu.is_finite() {
        return (Vec::new(), Vec::new());
    }
    let mut c: Vec<u32> = [0.4, 0.55, 0.7, 0.85]
        .iter()
        .map(|p| (cpu * p) as u32)
        .filter(|v| *v > 0)
        .collect();
    let mut m: Vec<u32> = [0.15, 0.35, 0.55, 0.75]
        .iter()
        .map(|p| (mem * p) as u32)
        .filter(|v| *v > 0)
        .collect();
    c.dedup();
    m.dedup();
    (c, m)
}

fn check_nodes(flag: &str, names: &[String], workers: &[&NodeInfo]) -> Result<(), KubeError> {
    for n in names {
        if !workers.iter().any(|w| &w.name == n) {
            return Err(KubeError::Config {
                key: flag.into(),
                message: format!(
                    "{n} is not a worker node (workers: {})",
                    workers
                        .iter()
                        .map(|w| w.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Builds the proposal from what was found and the answers given.
pub fn propose(info: &ClusterInfo, a: &Answers) -> Result<Proposal, KubeError> {
    let workers = info.workers();
    let mut roles = default_roles(&workers)?;
    for (role, given) in [
        ("infra", &a.infra),
        ("testbed", &a.testbed),
        ("loadgen", &a.loadgen),
    ] {
        if let Some(names) = given {
            check_nodes(&format!("--{role}"), names, &workers)?;
            roles.insert(role.into(), names.clone());
        }
    }
    let testbed: Vec<&NodeInfo> = workers
        .iter()
        .copied()
        .filter(|w| roles["testbed"].contains(&w.name))
        .collect();
    if testbed.is_empty() {
        return Err(KubeError::Config {
            key: "--testbed".into(),
            message: "at least one testbed node is needed".into(),
        });
    }
    let (cpu_levels, memcap_levels) = levels(&testbed);
    let host = a.host.clone().or_else(|| {
        let infra = roles["infra"].first()?;
        workers.iter().find(|w| &w.name == infra)?.ip.clone()
    });
    let via_node_port = |s: &Option<ServiceInfo>| -> Option<String> {
        let s = s.as_ref()?;
        Some(match (s.node_port, &host) {
            (Some(np), Some(h)) => format!("http://{h}:{np}"),
            _ => format!("http://{}.{}.svc:{}", s.name, s.namespace, s.port),
        })
    };
    Ok(Proposal {
        name: a.name.clone().unwrap_or_else(|| "experiment".into()),
        namespace: a.namespace.clone().unwrap_or_else(|| "aefm-app".into()),
        yaml_repo: a.yaml_repo.clone().unwrap_or_else(|| "yaml_repo".into()),
        app_image: a.app_image.clone(),
        homogeneous: homogeneous(&testbed),
        roles,
        prometheus: a
            .prometheus
            .clone()
            .or_else(|| via_node_port(&info.prometheus)),
        jaeger: a.jaeger.clone().or_else(|| via_node_port(&info.jaeger)),
        jaeger_service: a
            .jaeger_service
            .clone()
            .unwrap_or_else(|| "frontend".into()),
        url: a.url.clone(),
        cpu_levels,
        memcap_levels,
    })
}

/// Asks every question whose answer is missing, showing the proposal's value as the default
/// (an empty line accepts it), then re-proposes. Bad node names are asked again (3 tries).
pub fn ask(
    info: &ClusterInfo,
    mut a: Answers,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<Proposal, KubeError> {
    let io = |e: std::io::Error| KubeError::Io {
        path: "stdin".into(),
        source: e,
    };
    let first = propose(info, &a)?;
    let workers = info.workers();
    writeln!(out, "Worker nodes:").map_err(io)?;
    for w in &workers {
        writeln!(
            out,
            "  {} ip={} cpu={} memory={:.1}GiB{}",
            w.name,
            w.ip.as_deref().unwrap_or("?"),
            w.cpu,
            w.memory / GIB,
            if w.ready { "" } else { " (NotReady)" }
        )
        .map_err(io)?;
    }
    if !first.homogeneous {
        writeln!(out, "warning: the testbed workers differ in CPU or memory; levels are sized to the smallest").map_err(io)?;
    }
    macro_rules! text {
        ($field:ident, $q:expr, $def:expr) => {
            if a.$field.is_none() {
                let d: String = $def;
                let v = prompt(input, out, $q, &d)?;
                a.$field = (!v.is_empty()).then_some(v);
            }
        };
    }
    text!(name, "Experiment name", first.name.clone());
    text!(namespace, "Application namespace", first.namespace.clone());
    text!(
        yaml_repo,
        "YAML repository (with infra/ and under_test/)",
        first.yaml_repo.clone()
    );
    text!(
        app_image,
        "Image replacing APP_IMG (empty: none)",
        first.app_image.clone().unwrap_or_default()
    );
    for (role, slot) in [
        ("infra", &mut a.infra),
        ("testbed", &mut a.testbed),
        ("loadgen", &mut a.loadgen),
    ] {
        if slot.is_some() {
            continue;
        }
        let mut tries = 0;
        loop {
            let v = prompt(
                input,
                out,
                &format!("{role} nodes (comma-separated)"),
                &first.roles[role].join(","),
            )?;
            let names: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            match check_nodes(role, &names, &workers) {
                Ok(()) => {
                    *slot = Some(names);
                    break;
                }
                Err(e) if tries < 2 => {
                    tries += 1;
                    writeln!(out, "{e}").map_err(io)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    text!(
        prometheus,
        "Prometheus URL",
        first.prometheus.clone().unwrap_or_default()
    );
    text!(
        jaeger,
        "Jaeger query URL",
        first.jaeger.clone().unwrap_or_default()
    );
    text!(
        jaeger_service,
        "Jaeger entrance service",
        first.jaeger_service.clone()
    );
    text!(
        url,
        "URL the load is sent to",
        first.url.clone().unwrap_or_default()
    );
    propose(info, &a)
}

/// Asks one question; an empty answer takes `default`.
fn prompt(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    q: &str,
    default: &str,
) -> Result<String, KubeError> {
    let io = |e: std::io::Error| KubeError::Io {
        path: "stdin".into(),
        source: e,
    };
    write!(out, "{q} [{default}]: ").map_err(io)?;
    out.flush().map_err(io)?;
    let mut s = String::new();
    if input.read_line(&mut s).map_err(io)? == 0 {
        // End of input: take the default rather than looping on an empty stdin.
        return Ok(default.to_string());
    }
    let s = s.trim();
    Ok(if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    })
}

/// The starter config (a complete `aefm` config file) for a proposal.
pub fn render_config(p: &Proposal) -> String {
    let nodes: Vec<Value> = {
        let mut by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (role, names) in &p.roles {
            for n in names {
                by_node.entry(n.as_str()).or_default().push(role.as_str());
            }
        }
        by_node
            .into_iter()
            .map(|(n, roles)| json!({"name": n, "roles": roles}))
            .collect()
    };
    let (interference, resources) = interference_levels(p);
    let mut placement = json!({"image": STRESS_IMAGE});
    if !resources.is_empty() {
        placement["resources"] = Value::Object(resources);
    }
    let mut kube = json!({
        "namespace": p.namespace,
        "yaml_repo": p.yaml_repo,
        "nodes": nodes,
        "interference": placement,
        "load": {"image": LOAD_IMAGE},
    });
    if let Some(img) = &p.app_image {
        kube["app_image"] = json!(img);
    }
    let mut cfg = json!({
        "name": p.name,
        "backend": "kubernetes",
        "duration": "40s",
        "sweep": {"rate": {"min": 20, "max": 200, "step": 20}, "rounds": 3, "interference": interference},
        "kubernetes": kube,
    });
    if let Some(u) = &p.url {
        cfg["load"] = json!({"url": u});
    }
    let mut collect = serde_json::Map::new();
    if let Some(u) = &p.prometheus {
        collect.insert("prometheus".into(), json!({"url": u}));
    }
    if let Some(u) = &p.jaeger {
        collect.insert(
            "jaeger".into(),
            json!({"url": u, "service": p.jaeger_service}),
        );
    }
    if !collect.is_empty() {
        cfg["collect"] = Value::Object(collect);
    }
    let shared = p.roles["infra"]
        .iter()
        .any(|n| p.roles["testbed"].contains(n));
    let header = format!(
        "# Starter config written by `aefm auto-config`.\n# Testbed workers homogeneous: {}. Interference levels are sized to the smallest testbed worker;\n# each kind's pods are sized to its levels (kubernetes.interference.resources).\n{}# Images: build them with images/build.sh and load them into the cluster (see images/README.md).\n# Set kubernetes.replicas, pod_resources and the load URL for your application; see docs/kubernetes.md.\n",
        p.homogeneous,
        if shared {
            "# One node is both infra and testbed (a small cluster): the backends share it with the\n# services under test and their interference.\n"
        } else {
            ""
        }
    );
    header + &serde_yaml::to_string(&cfg).unwrap_or_default()
}

/// The sweep's interference levels and the pod sizes that fit them: CPU levels as that many
/// 1-CPU pods per node (one worker each: a level of N measures N busy cores, not N workers
/// sharing one core's quota), memcap levels in one pod per node whose memory holds the largest
/// level plus twice [`MEMCAP_HEADROOM`].
fn interference_levels(
    p: &Proposal,
) -> (
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
) {
    let mut levels = serde_json::Map::new();
    let mut resources = serde_json::Map::new();
    if !p.cpu_levels.is_empty() {
        let mut lv = vec![json!("none")];
        lv.extend(p.cpu_levels.iter().map(
            |n| json!({"kind": "cpu", "label": format!("cpu-{n}cpu"), "pods": n, "load": 100}),
        ));
        levels.insert("cpu".into(), Value::Array(lv));
        resources.insert("cpu".into(), json!({"cpu": "1", "memory": "128Mi"}));
    }
    if let Some(max) = p.memcap_levels.iter().max() {
        let mut lv = vec![json!("none")];
        lv.extend(
            p.memcap_levels
                .iter()
                .map(|g| json!({"kind": "memcap", "size": format!("{g}GiB")})),
        );
        levels.insert("memcap".into(), Value::Array(lv));
        let mib = u64::from(*max) * 1024 + 2 * (MEMCAP_HEADROOM >> 20);
        resources.insert(
            "memcap".into(),
            json!({"cpu": "1", "memory": format!("{mib}Mi")}),
        );
    }
    (levels, resources)
}

#[cfg(test)]
mod tests;
