//! The YAML repository: loading multi-document manifests from `infra/` and `under_test/`, and
//! rewriting each object per config (namespace, labels, `APP_IMG`, resources, replicas, node
//! affinity by role, image pull policy) before it is applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::KubeError;
use super::labels;
use crate::config::kubernetes::{KubernetesConfig, NodeRole, APP_IMAGE_PLACEHOLDER};

/// The two sets of a YAML repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestSet {
    /// Stateful backends and tracing, placed on infra nodes, never resized.
    Infra,
    /// Services under test, placed on testbed nodes, with resources and replicas from the config.
    UnderTest,
}

impl ManifestSet {
    /// The folder name inside the repository.
    pub fn dir(self) -> &'static str {
        match self {
            ManifestSet::Infra => "infra",
            ManifestSet::UnderTest => "under_test",
        }
    }
}

/// One Kubernetes object read from the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// File it came from.
    pub source: PathBuf,
    /// 1-based document index in that file.
    pub document: usize,
    /// The object, as JSON.
    pub object: Value,
}

impl Manifest {
    /// `apiVersion` of the object.
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    /// `metadata.namespace` of the object, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
    /// `Kind/namespace/name` (or `Kind/name` when cluster-scoped), for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{}/{}", self.kind(), ns, self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }
    fn error(&self, message: impl Into<String>) -> KubeError {
        KubeError::Manifest {
            path: self.source.clone(),
            document: self.document,
            message: message.into(),
        }
    }
}

/// Kinds that are cluster-scoped: they never get a namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Whether objects of `kind` live in a namespace.
pub fn is_namespaced(kind: &str) -> bool {
    !CLUSTER_SCOPED.contains(&kind)
}

/// Kinds whose `spec.template` is a pod template.
const WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "ReplicaSet",
];

/// Loads every `*.yaml`/`*.yml` file of `dir` (sorted by name, not recursive), every non-empty
/// document, expanding `List` kinds.
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, KubeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KubeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| KubeError::Io {
            path: file.clone(),
            source,
        })?;
        out.extend(parse_documents(&file, &text)?);
    }
    Ok(out)
}

/// Parses the documents of one multi-document YAML text.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Manifest>, KubeError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |message: String| KubeError::Manifest {
            path: file.to_path_buf(),
            document,
            message,
        };
        let value = Value::deserialize(doc).map_err(|e| err(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let items: Vec<Value> = match value["kind"].as_str() {
            Some(k) if k.ends_with("List") && value["items"].is_array() => {
                value["items"].as_array().cloned().unwrap_or_default()
            }
            _ => vec![value],
        };
        for object in items {
            if !object.is_object() {
                return Err(err("not a mapping".into()));
            }
            for key in ["apiVersion", "kind"] {
                if !object[key].is_string() {
                    return Err(err(format!("missing {key}")));
                }
            }
            if !object["metadata"]["name"].is_string() {
                return Err(err("missing metadata.name".into()));
            }
            out.push(Manifest {
                source: file.to_path_buf(),
                document,
                object,
            });
        }
    }
    Ok(out)
}

/// Loads one set of the repository named in the config.
pub fn load_set(cfg: &KubernetesConfig, set: ManifestSet) -> Result<Vec<Manifest>, KubeError> {
    load_dir(&cfg.yaml_repo.join(set.dir()))
}

/// Everything a rewrite needs besides the config.
#[derive(Debug, Clone)]
pub struct RewriteContext<'a> {
    /// The `kubernetes:` section.
    pub config: &'a KubernetesConfig,
    /// Experiment name, written as the `aefm.io/experiment` label.
    pub experiment: &'a str,
}

/// Rewrites every manifest of `set` per config. Fails on an `APP_IMG` placeholder without
/// `app_image`, and on a `replicas` entry that names no workload of the under-test set.
pub fn rewrite_set(
    ctx: &RewriteContext<'_>,
    set: ManifestSet,
    manifests: &mut [Manifest],
) -> Result<(), KubeError> {
    let cfg = ctx.config;
    let role = match set {
        ManifestSet::Infra => NodeRole::Infra,
        ManifestSet::UnderTest => NodeRole::Testbed,
    };
    let nodes = cfg.nodes_with(role);
    let mut seen_replicas = BTreeSet::new();
    for m in manifests.iter_mut() {
        set_namespace(m, &cfg.namespace);
        set_labels(m, ctx.experiment, set);
        replace_image_placeholder(m, cfg.app_image.as_deref())?;
        set_pull_policy(m, &cfg.image_pull_policy);
        if !nodes.is_empty() {
            set_node_affinity(m, &nodes);
        }
        if set == ManifestSet::UnderTest {
            if let Some(res) = &cfg.pod_resources {
                set_resources(m, &resources_json(res))?;
            }
            if matches!(m.kind(), "Deployment" | "StatefulSet") {
                if let Some(r) = cfg.replicas.get(m.name()) {
                    m.object["spec"]["replicas"] = json!(r);
                    seen_replicas.insert(m.name().to_string());
                }
            }
        }
    }
    if set == ManifestSet::UnderTest {
        if let Some(missing) = cfg.replicas.keys().find(|k| !seen_replicas.contains(*k)) {
            return Err(KubeError::Config {
                key: format!("kubernetes.replicas.{missing}"),
                message: format!(
                    "no Deployment or StatefulSet named {missing} in {}",
                    cfg.yaml_repo.join(set.dir()).display()
                ),
            });
        }
    }
    Ok(())
}

/// Loads and rewrites both sets: `(infra, under_test)`.
pub fn prepare(
    cfg: &KubernetesConfig,
    experiment: &str,
) -> Result<(Vec<Manifest>, Vec<Manifest>), KubeError> {
    let ctx = RewriteContext {
        config: cfg,
        experiment,
    };
    let mut infra = load_set(cfg, ManifestSet::Infra)?;
    rewrite_set(&ctx, ManifestSet::Infra, &mut infra)?;
    let mut under_test = load_set(cfg, ManifestSet::UnderTest)?;
    rewrite_set(&ctx, ManifestSet::UnderTest, &mut under_test)?;
    Ok((infra, under_test))
}

/// The application namespace as an object (applied first so it exists). It carries the
/// managed-by label and remembers the experiment that created it, for `aefm clean`.
pub fn namespace_object(name: &str, experiment: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {labels::MANAGED_BY: labels::MANAGER},
            "annotations": {labels::CREATED_BY: experiment},
        },
    })
}

/// Renders manifests as one multi-document YAML stream (what `aefm plan` prints).
pub fn render(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str(&format!(
            "# {} (from {} document {})\n",
            m.describe(),
            m.source.display(),
            m.document
        ));
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&m.object).unwrap_or_default());
    }
    out
}

/// Sets `metadata.namespace` on namespaced kinds (cluster-scoped ones such as PersistentVolume are
/// left alone, unlike the original).
pub fn set_namespace(m: &mut Manifest, namespace: &str) {
    if is_namespaced(m.kind()) {
        m.object["metadata"]["namespace"] = json!(namespace);
    }
}

/// Adds the AEFM labels to the object and to its pod template (never to selectors, which are
/// immutable and owned by the manifest's author).
pub fn set_labels(m: &mut Manifest, experiment: &str, set: ManifestSet) {
    let extra = [
        (labels::EXPERIMENT, experiment),
        (labels::MANAGED_BY, labels::MANAGER),
        (labels::SET, set.dir()),
    ];
    let mut targets = vec![vec!["metadata", "labels"]];
    if WORKLOADS.contains(&m.kind()) {
        targets.push(vec!["spec", "template", "metadata", "labels"]);
    }
    for path in targets {
        let map = ensure_object(&mut m.object, &path);
        for (k, v) in extra {
            map.insert(k.to_string(), json!(v));
        }
    }
}

/// Every container (and init container) of the object's pod spec, if it has one.
fn containers_mut(object: &mut Value) -> Vec<&mut Value> {
    let spec = if object["kind"] == "Pod" {
        object.get_mut("spec")
    } else {
        object
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec"))
    };
    let Some(spec) = spec else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(Value::Object(map)) = Some(spec) {
        for (key, list) in map.iter_mut() {
            if key == "containers" || key == "initContainers" {
                if let Value::Array(items) = list {
                    out.extend(items.iter_mut());
                }
            }
        }
    }
    out
}

/// Replaces the `APP_IMG` placeholder in every container image.
pub fn replace_image_placeholder(
    m: &mut Manifest,
    app_image: Option<&str>,
) -> Result<(), KubeError> {
    let mut missing = false;
    for c in containers_mut(&mut m.object) {
        if c["image"] == APP_IMAGE_PLACEHOLDER {
            match app_image {
                Some(img) => c["image"] = json!(img),
                None => missing = true,
            }
        }
    }
    if missing {
        return Err(m.error(format!(
            "{} uses the {APP_IMAGE_PLACEHOLDER} image placeholder but kubernetes.app_image is not set",
            m.describe()
        )));
    }
    Ok(())
}

/// Writes `imagePullPolicy` into every container.
pub fn set_pull_policy(m: &mut Manifest, policy: &str) {
    for c in containers_mut(&mut m.object) {
        c["imagePullPolicy"] = json!(policy);
    }
}

/// The `resources` block from the config's `pod_resources`.
pub fn resources_json(res: &crate::config::kubernetes::PodResources) -> Value {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for (key, v) in [("cpu", &res.cpu), ("memory", &res.memory)] {
        if let Some(v) = v {
            requests.insert(key.into(), json!(v));
            limits.insert(key.into(), json!(v));
        }
    }
    for (k, v) in &res.requests {
        requests.insert(k.clone(), json!(v));
    }
    for (k, v) in &res.limits {
        limits.insert(k.clone(), json!(v));
    }
    json!({"requests": requests, "limits": limits})
}

/// Sets the resources of the first container of a workload (the app container; sidecars keep
/// theirs, as in the original).
pub fn set_resources(m: &mut Manifest, resources: &Value) -> Result<(), KubeError> {
    if !WORKLOADS.contains(&m.kind()) {
        return Ok(());
    }
    let describe = m.describe();
    let containers = m.object["spec"]["template"]["spec"]["containers"].as_array_mut();
    match containers.and_then(|c| c.first_mut()) {
        Some(first) => {
            first["resources"] = resources.clone();
            Ok(())
        }
        None => Err(m.error(format!("{describe} has no containers"))),
    }
}

/// Pins the pod template to `nodes` with a required node affinity on `kubernetes.io/hostname`,
/// replacing only `nodeAffinity` (pod affinity and anti-affinity are kept).
pub fn set_node_affinity(m: &mut Manifest, nodes: &[String]) {
    if !WORKLOADS.contains(&m.kind()) {
        return;
    }
    let affinity = ensure_object(&mut m.object, &["spec", "template", "spec", "affinity"]);
    affinity.insert("nodeAffinity".into(), node_affinity(nodes));
}

/// A required node affinity on `kubernetes.io/hostname In nodes`.
pub fn node_affinity(nodes: &[String]) -> Value {
    json!({
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{
                "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]
            }]
        }
    })
}

/// Walks `path`, creating empty maps where keys are missing or not maps.
fn ensure_object<'v>(root: &'v mut Value, path: &[&str]) -> &'v mut Map<String, Value> {
    let mut cur = root;
    for key in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(key.to_string())
            .or_insert(json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut().expect("just made an object")
}

#[cfg(test)]
mod tests;
