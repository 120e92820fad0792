//! `aefm doctor CONFIG`: everything about the cluster that would fail a run, checked before any
//! load and reported together:
//!
//! * **permissions**: every verb of [`super::rbac::RULES`] in every namespace AEFM uses, and
//!   get/patch/delete of every kind in the app's YAML repository, through
//!   SelfSubjectAccessReview (what the credentials may do, not what happens to exist);
//! * **nodes**: every node the config names exists;
//! * **room**: the heaviest case's interference pods fit each node's allocatable CPU and memory,
//!   beside what already runs there;
//! * **images**: the stress image on the interference nodes and the load image on the load nodes
//!   are present (nodes report their images); with `--pre-pull`, a Job per node pulls them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use super::error::KubeError;
use super::quantity::parse_quantity;
use crate::config::kubernetes::KubernetesConfig;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The run would fail or measure wrongly.
    Error,
    /// Worth knowing (e.g. an image that will be pulled during the first case).
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Which check (`permission`, `node`, `room`, `image`).
    pub check: &'static str,
    /// What is wrong and what needs it.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} [{}]: {}", self.check, self.message)
    }
}

fn error(check: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        check,
        message,
    }
}

/// The namespaces AEFM works in for `cfg`: app, interference, load.
pub fn namespaces(cfg: &KubernetesConfig) -> BTreeSet<String> {
    let mut ns = BTreeSet::from([cfg.namespace.clone(), cfg.interference.namespace.clone()]);
    ns.insert(
        cfg.load
            .namespace
            .clone()
            .unwrap_or_else(|| cfg.namespace.clone()),
    );
    ns
}

/// Whether the credentials may `verb` the `resource` (`pods/log` style) of `group` in `namespace`.
async fn allowed(
    client: &kube::Client,
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
) -> Result<bool, KubeError> {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource: sub,
                verb: Some(verb.to_string()),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| KubeError::from_kube("create", "SelfSubjectAccessReview", e))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Permission findings: every rule's verbs in every namespace AEFM uses (cluster-wide ones once),
/// then `extra` (group, resource, why) for the kinds of the app's repository.
pub async fn check_permissions(
    client: &kube::Client,
    cfg: &KubernetesConfig,
    extra: &[(String, String)],
) -> Result<Vec<Finding>, KubeError> {
    let mut out = Vec::new();
    let nss = namespaces(cfg);
    for (group, resource, verb, namespaced, why) in super::rbac::checks() {
        let scopes: Vec<Option<&str>> = if namespaced {
            nss.iter().map(|n| Some(n.as_str())).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            if !allowed(client, group, resource, verb, ns).await? {
                out.push(error("permission", denial(group, resource, verb, ns, why)));
            }
        }
    }
    for (group, resource) in extra {
        for verb in ["get", "patch", "delete"] {
            if !allowed(client, group, resource, verb, Some(&cfg.namespace)).await? {
                let why = "applying and removing the app's YAML repository";
                out.push(error(
                    "permission",
                    denial(group, resource, verb, Some(&cfg.namespace), why),
                ));
            }
        }
    }
    Ok(out)
}

fn denial(group: &str, resource: &str, verb: &str, ns: Option<&str>, why: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let scope = ns.map(|n| format!(" in namespace {n}")).unwrap_or_default();
    format!("may not {verb} {resource} ({group} API group){scope}: needed for {why} (deploy/rbac.yaml grants it)")
}

/// Node findings: every node the config names exists (`nodes`, `interference.nodes`,
/// `load.nodes`).
pub fn check_nodes(cfg: &KubernetesConfig, nodes: &[Node]) -> Vec<Finding> {
    let have: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let mut named: Vec<(String, &str)> = cfg
        .nodes
        .iter()
        .map(|n| (n.name.clone(), "kubernetes.nodes"))
        .collect();
    named.extend(
        cfg.interference
            .nodes
            .iter()
            .map(|n| (n.clone(), "kubernetes.interference.nodes")),
    );
    named.extend(
        cfg.load
            .nodes
            .iter()
            .map(|n| (n.clone(), "kubernetes.load.nodes")),
    );
    named
        .into_iter()
        .filter(|(n, _)| !have.contains(n))
        .map(|(n, key)| {
            error(
                "node",
                format!("{key}: node {n} does not exist in the cluster"),
            )
        })
        .collect()
}

/// CPU (cores) and memory (bytes) requested by a pod's containers.
pub fn pod_requests(pod: &Value) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut mem = 0.0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"]["requests"];
        cpu += r["cpu"].as_str().and_then(parse_quantity).unwrap_or(0.0);
        mem += r["memory"].as_str().and_then(parse_quantity).unwrap_or(0.0);
    }
    (cpu, mem)
}

/// The node a rendered pod is pinned to (nodeName, or its single required hostname affinity).
pub fn pinned_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod["spec"]["nodeName"].as_str() {
        return Some(n.to_string());
    }
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    terms.as_array()?.iter().find_map(|t| {
        t["matchExpressions"].as_array()?.iter().find_map(|e| {
            (e["key"] == "kubernetes.io/hostname" && e["operator"] == "In")
                .then(|| e["values"][0].as_str().map(str::to_string))
                .flatten()
        })
    })
}

/// Room findings: `cases` (each a set of interference pods that run together) against each
/// node's allocatable minus `used` (requests of what already runs there, by node).
pub fn check_room(
    cases: &[(String, Vec<Value>)],
    nodes: &[Node],
    used: &BTreeMap<String, (f64, f64)>,
) -> Vec<Finding> {
    let alloc: BTreeMap<String, (f64, f64)> = nodes
        .iter()
        .filter_map(|n| {
            let a = n.status.as_ref()?.allocatable.as_ref()?;
            let q = |k: &str| a.get(k).and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0);
            Some((n.metadata.name.clone()?, (q("cpu"), q("memory"))))
        })
        .collect();
    let mut out = Vec::new();
    let mut reported = BTreeSet::new();
    for (case, pods) in cases {
        let mut need: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for p in pods {
            if let Some(node) = pinned_node(p) {
                let (c, m) = pod_requests(p);
                let e = need.entry(node).or_default();
                e.0 += c;
                e.1 += m;
            }
        }
        for (node, (cpu, mem)) in need {
            let Some((acpu, amem)) = alloc.get(&node) else {
                continue;
            };
            let (ucpu, umem) = used.get(&node).copied().unwrap_or_default();
            let short_cpu = cpu + ucpu > *acpu + 1e-9;
            let short_mem = mem + umem > *amem + 0.5;
            if (short_cpu || short_mem) && reported.insert(node.clone()) {
                out.push(error(
                    "room",
                    format!(
                        "case {case}: interference on node {node} requests {cpu:.2} CPU and {:.0} MiB; \
                         the node has {acpu:.2} CPU and {:.0} MiB allocatable, {ucpu:.2} CPU and {:.0} MiB \
                         already requested: the pods would stay Pending (lower the interference \
                         resources or the pods per node)",
                        mem / 1048576.0,
                        amem / 1048576.0,
                        umem / 1048576.0
                    ),
                ));
            }
        }
    }
    out
}

/// Requests of the pods already on each node (AEFM's own interference pods left out: they are
/// replaced case by case).
pub async fn used_by_node(
    client: &kube::Client,
) -> Result<BTreeMap<String, (f64, f64)>, KubeError> {
    let api: Api<Pod> = Api::all(client.clone());
    let sel = format!("{}!=interference", super::labels::COMPONENT);
    let pods = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| KubeError::from_kube("list", "pods (all namespaces)", e))?;
    let mut used: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for p in &pods.items {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let v = serde_json::to_value(p).unwrap_or_default();
        let (c, m) = pod_requests(&v);
        let e = used.entry(node).or_default();
        e.0 += c;
        e.1 += m;
    }
    Ok(used)
}

/// Whether `image` is among the images `node` reports (exact name, or with the `docker.io/`
/// and `docker.io/library/` prefixes runtimes add).
pub fn node_has_image(node: &Node, image: &str) -> bool {
    let wanted = [
        image.to_string(),
        format!("docker.io/{image}"),
        format!("docker.io/library/{image}"),
    ];
    node.status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|i| i.names.iter().flatten())
        .any(|n| wanted.iter().any(|w| w == n))
}

/// Image findings: `(image, nodes that need it)` against the images each node reports. Missing
/// with pull policy `Never` is an error (the pod cannot start); otherwise a warning (the first
/// case that needs it waits for the pull).
pub fn check_images(
    wanted: &[(String, Vec<String>)],
    nodes: &[Node],
    pull_policy: &str,
) -> Vec<Finding> {
    let by_name: BTreeMap<String, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .collect();
    let mut out = Vec::new();
    for (image, on) in wanted {
        let missing: Vec<&str> = on
            .iter()
            .filter(|n| {
                by_name
                    .get(*n)
                    .is_some_and(|node| !node_has_image(node, image))
            })
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let severity = if pull_policy == "Never" {
            Severity::Error
        } else {
            Severity::Warning
        };
        out.push(Finding {
            severity,
            check: "image",
            message: format!(
                "image {image} is not on node(s) {} (pull policy {pull_policy}); build it with \
                 images/build.sh and load it into the cluster, or run `aefm doctor --pre-pull`",
                missing.join(", ")
            ),
        });
    }
    out
}

mod prepull;
mod run;

pub use prepull::prepull_job;
pub use run::diagnose;

#[cfg(test)]
mod tests;
