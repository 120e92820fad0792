//! The `kubernetes:` section of an experiment config: where the cluster is, what to deploy from the
//! YAML repository and how to rewrite it, where interference and distributed load go, and how long
//! to wait. Every key is documented in docs/kubernetes.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::stress::StressLevel;

mod placement;
pub use placement::*;

/// Placeholder in manifests that is replaced by [`KubernetesConfig::app_image`].
pub const APP_IMAGE_PLACEHOLDER: &str = "APP_IMG";

/// Tag of the images `images/build.sh` builds and the defaults below name: the crate version.
/// Not `latest`: a node keeps whatever `latest` it was once given (`IfNotPresent`, `kind load`,
/// `k3s ctr images import`), so an image from another AEFM version would silently run with
/// arguments it may not understand; a version tag ties the image to the manager that renders its
/// arguments, and a missing image fails loudly (`ErrImagePull`) instead.
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");
/// Default `interference.image`: `aefm/aefm-stress:<version>` (aefm-stress and iperf3).
pub const STRESS_IMAGE: &str = concat!("aefm/aefm-stress:", env!("CARGO_PKG_VERSION"));
/// Default `load.image`: `aefm/aefm-load:<version>` (aefm-load).
pub const LOAD_IMAGE: &str = concat!("aefm/aefm-load:", env!("CARGO_PKG_VERSION"));

/// The `kubernetes:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Kubeconfig file; default: `$KUBECONFIG`, then `~/.kube/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; default: the file's current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Namespace of the application (created if missing).
    pub namespace: String,
    /// YAML repository: a folder holding `infra/` and `under_test/` sets of multi-document manifests.
    pub yaml_repo: PathBuf,
    /// Image that replaces the `APP_IMG` placeholder in container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_image: Option<String>,
    /// `imagePullPolicy` written into every container (`Always`, `IfNotPresent`, `Never`).
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: String,
    /// Resources of the first container of every under-test workload (requests = limits unless
    /// both are given separately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_resources: Option<PodResources>,
    /// Replicas of under-test Deployments/StatefulSets by `metadata.name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, i32>,
    /// Cluster nodes AEFM uses and their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeConfig>,
    /// Where and how interference pods run.
    #[serde(default)]
    pub interference: InterferencePlacement,
    /// Distributed load generation with Kubernetes Jobs.
    #[serde(default)]
    pub load: LoadDistribution,
    /// Seconds to wait for applied objects (and interference pods) to become ready.
    #[serde(default = "default_readiness_timeout")]
    pub readiness_timeout_secs: u64,
    /// Seconds a pod may stay unschedulable before a wait gives up with the scheduler's message
    /// instead of waiting out `readiness_timeout_secs` (a scheduler may place a pod once another
    /// one terminates, hence a grace).
    #[serde(default = "default_pending_grace")]
    pub unschedulable_grace_secs: u64,
    /// Seconds a pod may keep failing to pull its image (`ErrImagePull`, `ImagePullBackOff`)
    /// before a wait gives up with the kubelet's message (a registry may fail briefly).
    #[serde(default = "default_pending_grace")]
    pub image_pull_grace_secs: u64,
    /// Field manager name used for server-side apply.
    #[serde(default = "default_field_manager")]
    pub field_manager: String,
    /// Explicit deployment actions run by `deploy` at the start of an experiment.
    #[serde(default)]
    pub actions: Actions,
    /// URL of the application's entry point the load is sent to (e.g. `http://10.0.0.5:30628`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
}

/// Requests and limits of an application container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodResources {
    /// CPU (a Kubernetes quantity such as `0.1` or `100m`); used for requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory (a Kubernetes quantity such as `200Mi`); used for requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Explicit requests (override `cpu`/`memory` for requests).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Explicit limits (override `cpu`/`memory` for limits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Role of a node in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Runs the stateful backends and tracing (`infra/` manifests).
    Infra,
    /// Runs the services under test and their interference.
    Testbed,
    /// Runs distributed load-generator Jobs.
    Loadgen,
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeRole::Infra => "infra",
            NodeRole::Testbed => "testbed",
            NodeRole::Loadgen => "loadgen",
        })
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name (matched against the `kubernetes.io/hostname` label).
    pub name: String,
    /// InternalIP; looked up from the cluster when missing (needed for network interference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Roles of the node.
    pub roles: Vec<NodeRole>,
}

/// Distributed load: when and where `aefm-load` runs as Jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadDistribution {
    /// Number of generator Jobs; when unset it is estimated as `ceil(rate / max_rate_per_generator)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generators: Option<u32>,
    /// Highest rate (requests/s) one generator offers reliably.
    #[serde(default = "default_max_rate")]
    pub max_rate_per_generator: f64,
    /// Image holding `aefm-load`.
    #[serde(default = "default_load_image")]
    pub image: String,
    /// Nodes by name; when empty, every node with role `loadgen`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Namespace of the load Jobs; default: the application namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Run load as Jobs even when one local generator could offer it.
    #[serde(default)]
    pub always: bool,
    /// Requests and limits of each load pod. Default: requests `cpu: 1, memory: 256Mi`, limit
    /// `memory: 1Gi` and no CPU limit (CFS throttling would show up as the generator's send lag).
    #[serde(default = "default_load_resources")]
    pub resources: PodResources,
}

fn default_load_resources() -> PodResources {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    PodResources {
        cpu: None,
        memory: None,
        requests: map(&[("cpu", "1"), ("memory", "256Mi")]),
        limits: map(&[("memory", "1Gi")]),
    }
}

impl Default for LoadDistribution {
    fn default() -> Self {
        LoadDistribution {
            generators: None,
            max_rate_per_generator: default_max_rate(),
            image: default_load_image(),
            nodes: Vec::new(),
            namespace: None,
            always: false,
            resources: default_load_resources(),
        }
    }
}

/// What `deploy` does at the start of an experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// Restart: delete the infra (stateful) objects and the services under test, then deploy both
    /// sets afresh (the original's `restart`).
    #[serde(default)]
    pub restart: bool,
    /// Reload: re-apply the services under test with the configured replicas (the original's
    /// `reload`). When both are false, deploy applies both sets idempotently.
    #[serde(default)]
    pub reload: bool,
    /// Delete the application at the end of the experiment.
    #[serde(default)]
    pub teardown: bool,
}

impl KubernetesConfig {
    /// Names of nodes with `role`, in file order.
    pub fn nodes_with(&self, role: NodeRole) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.roles.contains(&role))
            .map(|n| n.name.clone())
            .collect()
    }

    /// Nodes that receive interference: `interference.nodes`, else nodes with `interference.role`.
    pub fn interference_nodes(&self) -> Vec<String> {
        if self.interference.nodes.is_empty() {
            self.nodes_with(self.interference.role)
        } else {
            self.interference.nodes.clone()
        }
    }

    /// Nodes that run load Jobs: `load.nodes`, else nodes with role `loadgen`.
    pub fn load_nodes(&self) -> Vec<String> {
        if self.load.nodes.is_empty() {
            self.nodes_with(NodeRole::Loadgen)
        } else {
            self.load.nodes.clone()
        }
    }

    /// Checks values that serde cannot: returns `(key path, problem)` on the first bad value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("kubernetes.{k}"), m));
        if self.namespace.is_empty() {
            return bad("namespace", "must not be empty".into());
        }
        if !["Always", "IfNotPresent", "Never"].contains(&self.image_pull_policy.as_str()) {
            return bad(
                "image_pull_policy",
                format!(
                    "{:?} is not one of Always, IfNotPresent, Never",
                    self.image_pull_policy
                ),
            );
        }
        for (name, r) in &self.replicas {
            if *r < 0 {
                return bad(&format!("replicas.{name}"), format!("{r} is negative"));
            }
        }
        if self.load.max_rate_per_generator.is_nan() || self.load.max_rate_per_generator <= 0.0 {
            return bad("load.max_rate_per_generator", "must be positive".into());
        }
        if self.load.generators == Some(0) {
            return bad("load.generators", "must be at least 1".into());
        }
        if self.interference.pods_per_node == 0 {
            return bad("interference.pods_per_node", "must be at least 1".into());
        }
        if self.interference.active_deadline_secs == Some(0) {
            return bad(
                "interference.active_deadline_secs",
                "must be at least 1".into(),
            );
        }
        self.interference
            .validate_quantities()
            .map_err(|(k, m)| (format!("kubernetes.{k}"), m))?;
        if self.readiness_timeout_secs == 0 {
            return bad("readiness_timeout_secs", "must be at least 1".into());
        }
        for (key, secs) in [
            ("unschedulable_grace_secs", self.unschedulable_grace_secs),
            ("image_pull_grace_secs", self.image_pull_grace_secs),
        ] {
            if secs > MAX_GRACE_SECS {
                return bad(
                    key,
                    format!("{secs} is more than a day ({MAX_GRACE_SECS}); use readiness_timeout_secs to wait longer"),
                );
            }
        }
        for n in &self.interference.nodes {
            if !self.nodes.is_empty() && !self.nodes.iter().any(|c| &c.name == n) {
                return bad(
                    "interference.nodes",
                    format!("{n} is not listed in kubernetes.nodes"),
                );
            }
        }
        Ok(())
    }

    /// Checks every interference level of a sweep against the pods it would run in
    /// ([`InterferencePlacement::check_level`]); `(key of the level, problem)` on the first misfit.
    pub fn check_levels<'a>(
        &self,
        levels: impl IntoIterator<Item = (String, &'a StressLevel)>,
    ) -> Result<(), (String, String)> {
        for (key, level) in levels {
            self.interference.check_level(level).map_err(|m| (key, m))?;
        }
        Ok(())
    }
}

fn default_pull_policy() -> String {
    "IfNotPresent".into()
}
fn default_readiness_timeout() -> u64 {
    300
}
/// Longest grace accepted for stuck pods: beyond a day it is surely a typo.
const MAX_GRACE_SECS: u64 = 86_400;
fn default_pending_grace() -> u64 {
    30
}
fn default_field_manager() -> String {
    "aefm".into()
}
fn default_max_rate() -> f64 {
    5000.0
}
fn default_load_image() -> String {
    LOAD_IMAGE.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_section_gets_defaults() {
        let c: KubernetesConfig =
            serde_yaml::from_str("namespace: social\nyaml_repo: repo\n").unwrap();
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert_eq!(c.field_manager, "aefm");
        assert_eq!(c.interference.namespace, "aefm-interference");
        assert_eq!(c.readiness_timeout_secs, 300);
        assert_eq!(c.unschedulable_grace_secs, 30);
        assert_eq!(c.image_pull_grace_secs, 30);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e =
            serde_yaml::from_str::<KubernetesConfig>("namespace: a\nyaml_repo: r\nnamspace: b\n")
                .unwrap_err();
        assert!(e.to_string().contains("namspace"), "{e}");
    }

    #[test]
    fn roles_select_nodes() {
        let c: KubernetesConfig = serde_yaml::from_str(
            "namespace: a\nyaml_repo: r\nnodes:\n- {name: w1, roles: [infra]}\n- {name: w2, roles: [testbed, loadgen]}\n",
        )
        .unwrap();
        assert_eq!(c.nodes_with(NodeRole::Infra), vec!["w1"]);
        assert_eq!(c.interference_nodes(), vec!["w2"]);
        assert_eq!(c.load_nodes(), vec!["w2"]);
    }

    #[test]
    fn validation_names_the_key() {
        let mut c: KubernetesConfig = serde_yaml::from_str("namespace: a\nyaml_repo: r\n").unwrap();
        c.image_pull_policy = "Sometimes".into();
        assert_eq!(c.validate().unwrap_err().0, "kubernetes.image_pull_policy");
        c.image_pull_policy = "Always".into();
        c.unschedulable_grace_secs = 100_000;
        assert_eq!(
            c.validate().unwrap_err().0,
            "kubernetes.unschedulable_grace_secs"
        );
        c.unschedulable_grace_secs = 0; // fail as soon as the scheduler says no
        c.validate().unwrap();
    }
}
