//! `kubernetes.interference`: where interference pods go and how big they are (one size, or one
//! per stressor kind), how long they may live, and whether a level fits the pods it runs in.

use serde::{Deserialize, Serialize};

use super::super::stress::{StressKind, StressLevel};
use super::{NodeRole, STRESS_IMAGE};
use crate::kubernetes::quantity::parse_quantity;

/// Memory an `aefm-stress memcap` pod needs besides the block it holds: the process itself and
/// the stressor's own reserve (8 MiB), with room to spare. A memcap size plus this must fit in
/// the pod's memory limit, or the stressor refuses to start and the pod crash-loops.
pub const MEMCAP_HEADROOM: u64 = 32 << 20;

/// Placement of interference pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterferencePlacement {
    /// Namespace of interference pods (created if missing).
    #[serde(default = "default_interference_namespace")]
    pub namespace: String,
    /// Image holding `aefm-stress`.
    #[serde(default = "default_stress_image")]
    pub image: String,
    /// Image holding `iperf3`, `sh` and `sleep` for the network interference ring; unset: `image`
    /// (the stress image has them), so pointing `image` at a registry moves both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iperf_image: Option<String>,
    /// Nodes by name; when empty, every node with `role`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Role whose nodes receive interference when `nodes` is empty.
    #[serde(default = "default_interference_role")]
    pub role: NodeRole,
    /// TCP port of the iperf3 ring (a hostPort on every node).
    #[serde(default = "default_iperf_port")]
    pub iperf_port: u16,
    /// Interference pods per node for each stressor of a case (the original's intensity `N`);
    /// a level's own `pods` overrides it.
    #[serde(default = "default_pods_per_node")]
    pub pods_per_node: u32,
    /// CPU of each interference pod (requests = limits), unless `resources` says otherwise.
    #[serde(default = "default_stress_cpu")]
    pub cpu: String,
    /// Memory of each interference pod (requests = limits), unless `resources` says otherwise;
    /// a memcap `size` plus [`MEMCAP_HEADROOM`] must fit in it.
    #[serde(default = "default_stress_memory")]
    pub memory: String,
    /// Per-kind pod sizes (the original sized each kind of stressor differently); a kind's entry,
    /// then `default`, then `cpu`/`memory` above, field by field.
    #[serde(default, skip_serializing_if = "KindResources::is_empty")]
    pub resources: KindResources,
    /// `activeDeadlineSeconds` of interference pods, so they end by themselves when the manager
    /// dies. Unset: twice the experiment's planned duration plus an hour (filled in when the
    /// backend starts), or [`DEFAULT_STRESS_DEADLINE_SECS`] when no plan is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_secs: Option<u64>,
}

/// Deadline of interference pods when neither the config nor a plan gives one: a day.
pub const DEFAULT_STRESS_DEADLINE_SECS: u64 = 24 * 3600;

/// CPU and memory of one kind's interference pods; unset fields fall back (see
/// [`InterferencePlacement::resources`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StressResources {
    /// CPU (requests = limits), a Kubernetes quantity such as `2` or `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory (requests = limits), a Kubernetes quantity such as `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// `interference.resources`: pod sizes per stressor kind, and a `default` for the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindResources {
    /// Every kind without its own entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<StressResources>,
    /// cpu pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<StressResources>,
    /// memcap pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcap: Option<StressResources>,
    /// membw pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membw: Option<StressResources>,
    /// cache pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<StressResources>,
    /// Each container (server, client) of the iperf3 ring's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<StressResources>,
}

impl KindResources {
    fn is_empty(&self) -> bool {
        self == &KindResources::default()
    }

    fn of(&self, kind: StressKind) -> Option<&StressResources> {
        match kind {
            StressKind::Cpu => self.cpu.as_ref(),
            StressKind::Memcap => self.memcap.as_ref(),
            StressKind::Membw => self.membw.as_ref(),
            StressKind::Cache => self.cache.as_ref(),
            StressKind::Net => self.net.as_ref(),
        }
    }

    /// Every entry with its key, for validation.
    fn entries(&self) -> impl Iterator<Item = (&'static str, &StressResources)> {
        [
            ("default", &self.default),
            ("cpu", &self.cpu),
            ("memcap", &self.memcap),
            ("membw", &self.membw),
            ("cache", &self.cache),
            ("net", &self.net),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }
}

/// The resolved size of one kind's interference pods, with the key each value came from (for
/// messages).
#[derive(Debug, Clone, PartialEq)]
pub struct PodSize {
    /// CPU quantity.
    pub cpu: String,
    /// Config key `cpu` came from.
    pub cpu_key: String,
    /// Memory quantity.
    pub memory: String,
    /// Config key `memory` came from.
    pub memory_key: String,
}

impl InterferencePlacement {
    /// The size of `kind`'s pods: its `resources` entry, then `resources.default`, then the
    /// section's `cpu` and `memory`, field by field.
    pub fn resources(&self, kind: StressKind) -> PodSize {
        let base = "kubernetes.interference";
        let kind_key = kind.to_string();
        let pick = |field: fn(&StressResources) -> Option<&String>, global: &String, name: &str| {
            [
                (kind_key.as_str(), self.resources.of(kind)),
                ("default", self.resources.default.as_ref()),
            ]
            .into_iter()
            .find_map(|(k, r)| {
                r.and_then(field)
                    .map(|v| (v.clone(), format!("{base}.resources.{k}.{name}")))
            })
            .unwrap_or_else(|| (global.clone(), format!("{base}.{name}")))
        };
        let (cpu, cpu_key) = pick(|r| r.cpu.as_ref(), &self.cpu, "cpu");
        let (memory, memory_key) = pick(|r| r.memory.as_ref(), &self.memory, "memory");
        PodSize {
            cpu,
            cpu_key,
            memory,
            memory_key,
        }
    }

    /// The image of the iperf3 ring's containers: `iperf_image`, else the stress image.
    pub fn iperf_image(&self) -> &str {
        self.iperf_image.as_deref().unwrap_or(&self.image)
    }

    /// Interference pods per node for `level`: its own `pods`, else `pods_per_node`.
    pub fn pods_for(&self, level: &StressLevel) -> u32 {
        level.pods().unwrap_or(self.pods_per_node)
    }

    /// `activeDeadlineSeconds` of interference pods (see [`Self::active_deadline_secs`]).
    pub fn deadline_secs(&self) -> u64 {
        self.active_deadline_secs
            .unwrap_or(DEFAULT_STRESS_DEADLINE_SECS)
    }

    /// Every CPU and memory value is a Kubernetes quantity above zero; `(key below
    /// `kubernetes.`, problem)` on the first that is not.
    pub(super) fn validate_quantities(&self) -> Result<(), (String, String)> {
        let i = self;
        let mut all = vec![
            ("interference.cpu".to_string(), &i.cpu),
            ("interference.memory".to_string(), &i.memory),
        ];
        for (k, r) in i.resources.entries() {
            all.extend(
                r.cpu
                    .iter()
                    .map(|v| (format!("interference.resources.{k}.cpu"), v)),
            );
            all.extend(
                r.memory
                    .iter()
                    .map(|v| (format!("interference.resources.{k}.memory"), v)),
            );
        }
        for (key, v) in all {
            if !parse_quantity(v).is_some_and(|q| q > 0.0) {
                return Err((
                    key,
                    format!("{v:?} is not a positive Kubernetes quantity (e.g. 2, 500m, 4Gi)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `level` fits the pods it would run in: a cpu or membw level may not ask for more
    /// workers than its pods' CPU limit (each worker would get a fraction of a core, and every
    /// level would measure the same quota), and a memcap size plus [`MEMCAP_HEADROOM`] must fit
    /// in its pods' memory (else `aefm-stress` refuses and the pod crash-loops). The error names
    /// the keys and the numbers.
    pub fn check_level(&self, level: &StressLevel) -> Result<(), String> {
        use aefm_interference::{Size, Stressor};
        let size = self.resources(level.kind());
        let cpu = parse_quantity(&size.cpu).unwrap_or(f64::NAN);
        let memory = parse_quantity(&size.memory).unwrap_or(f64::NAN);
        let workers = match level.in_pod().stressor {
            Stressor::Cpu { workers, .. } | Stressor::MemBw { workers, .. } => workers,
            Stressor::MemCap {
                size: Size::Bytes(b),
                ..
            } => return fits_memory(b as f64, level, &size, memory),
            Stressor::MemCap {
                size: Size::PercentOfLimit(p),
                ..
            } => return fits_memory(memory * p / 100.0, level, &size, memory),
            _ => 0,
        };
        if workers as f64 > cpu {
            return Err(format!(
                "{workers} {} workers do not fit in pods limited to {} CPU ({} = {:?}): each \
                 worker would get a fraction of a core; give the pods at least {workers} CPUs \
                 or sweep `pods` instead",
                level.kind(),
                crate::config::fmt_num(cpu),
                size.cpu_key,
                size.cpu
            ));
        }
        Ok(())
    }
}

/// A memcap block of `bytes` plus [`MEMCAP_HEADROOM`] within the pod memory `limit`.
fn fits_memory(bytes: f64, level: &StressLevel, size: &PodSize, limit: f64) -> Result<(), String> {
    if bytes + MEMCAP_HEADROOM as f64 > limit {
        return Err(format!(
            "memcap size {} ({} bytes) plus {} MiB for the stressor itself does not fit in the \
             pod memory {} = {:?} ({} bytes); raise it or lower the size",
            level.spec().size.as_deref().unwrap_or_default(),
            bytes as u64,
            MEMCAP_HEADROOM >> 20,
            size.memory_key,
            size.memory,
            limit as u64
        ));
    }
    Ok(())
}

impl Default for InterferencePlacement {
    fn default() -> Self {
        InterferencePlacement {
            namespace: default_interference_namespace(),
            image: default_stress_image(),
            iperf_image: None,
            nodes: Vec::new(),
            role: default_interference_role(),
            iperf_port: default_iperf_port(),
            pods_per_node: default_pods_per_node(),
            cpu: default_stress_cpu(),
            memory: default_stress_memory(),
            resources: KindResources::default(),
            active_deadline_secs: None,
        }
    }
}

fn default_interference_namespace() -> String {
    "aefm-interference".into()
}
fn default_stress_image() -> String {
    STRESS_IMAGE.into()
}
fn default_interference_role() -> NodeRole {
    NodeRole::Testbed
}
fn default_iperf_port() -> u16 {
    34567
}
fn default_pods_per_node() -> u32 {
    1
}
fn default_stress_cpu() -> String {
    "1".into()
}
fn default_stress_memory() -> String {
    "512Mi".into()
}

#[cfg(test)]
mod tests {
    use super::super::{KubernetesConfig, IMAGE_TAG};
    use super::*;

    fn section(interference: &str) -> KubernetesConfig {
        serde_yaml::from_str(&format!(
            "namespace: a\nyaml_repo: r\ninterference: {interference}\n"
        ))
        .unwrap()
    }

    fn level(yaml: &str) -> StressLevel {
        StressLevel::for_cluster(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn default_images_are_the_built_version_tags() {
        let c = section("{}");
        assert_eq!(
            c.interference.image,
            format!("aefm/aefm-stress:{IMAGE_TAG}")
        );
        assert_eq!(c.load.image, format!("aefm/aefm-load:{IMAGE_TAG}"));
        assert_eq!(c.interference.iperf_image(), STRESS_IMAGE);
        let moved = section("{image: reg.example/s:1}");
        assert_eq!(moved.interference.iperf_image(), "reg.example/s:1");
        let own = section("{image: reg.example/s:1, iperf_image: iperf:3}");
        assert_eq!(own.interference.iperf_image(), "iperf:3");
        assert!(!IMAGE_TAG.is_empty() && IMAGE_TAG != "latest");
    }

    #[test]
    fn per_kind_resources_fall_back_field_by_field() {
        let c = section(
            "{cpu: '2', memory: 1Gi, resources: {memcap: {memory: 8Gi}, default: {cpu: '3'}}}",
        );
        let m = c.interference.resources(StressKind::Memcap);
        assert_eq!((m.cpu.as_str(), m.memory.as_str()), ("3", "8Gi"));
        assert_eq!(
            m.memory_key,
            "kubernetes.interference.resources.memcap.memory"
        );
        assert_eq!(m.cpu_key, "kubernetes.interference.resources.default.cpu");
        let n = c.interference.resources(StressKind::Net);
        assert_eq!((n.cpu.as_str(), n.memory.as_str()), ("3", "1Gi"));
        assert_eq!(n.memory_key, "kubernetes.interference.memory");
        // The old global keys alone size every kind, as before.
        let old = section("{cpu: '2', memory: 1Gi}");
        let s = old.interference.resources(StressKind::Cache);
        assert_eq!((s.cpu.as_str(), s.memory.as_str()), ("2", "1Gi"));
        let e = serde_yaml::from_str::<KubernetesConfig>(
            "namespace: a\nyaml_repo: r\ninterference: {resources: {disk: {cpu: '1'}}}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("disk"), "{e}");
        let bad = section("{resources: {cpu: {cpu: lots}}}")
            .validate()
            .unwrap_err();
        assert_eq!(bad.0, "kubernetes.interference.resources.cpu.cpu");
    }

    #[test]
    fn levels_must_fit_their_pods() {
        let c = section("{cpu: '1', memory: 512Mi, resources: {cpu: {cpu: '4'}}}");
        let i = &c.interference;
        assert!(i.check_level(&level("{kind: cpu, workers: 4}")).is_ok());
        let e = i
            .check_level(&level("{kind: cpu, workers: 5}"))
            .unwrap_err();
        assert!(
            e.contains("5 cpu workers")
                && e.contains("4 CPU")
                && e.contains("kubernetes.interference.resources.cpu.cpu"),
            "{e}"
        );
        let e = i
            .check_level(&level("{kind: membw, workers: 2}"))
            .unwrap_err();
        assert!(e.contains("kubernetes.interference.cpu"), "{e}");
        // Default workers: one per CPU of the quota, always fits.
        assert!(i.check_level(&level("{kind: membw}")).is_ok());
        // memcap: the size and the stressor's headroom within the pod memory.
        assert!(i
            .check_level(&level("{kind: memcap, size: 256MiB}"))
            .is_ok());
        assert!(i.check_level(&level("{kind: memcap, size: 50%}")).is_ok());
        for size in ["1GiB", "500MiB", "99%"] {
            let e = i
                .check_level(&level(&format!("{{kind: memcap, size: {size}}}")))
                .unwrap_err();
            assert!(
                e.contains("kubernetes.interference.memory") && e.contains("536870912 bytes"),
                "{size}: {e}"
            );
        }
    }

    #[test]
    fn validate_refuses_a_level_that_does_not_fit_before_any_cluster_contact() {
        let text = "name: t\nbackend: kubernetes\nsweep:\n  rate: [10]\n  interference:\n    c:\n      - none\n      - {kind: memcap, size: 1GiB}\nkubernetes:\n  namespace: a\n  yaml_repo: r\n";
        let e = crate::config::Config::parse(text, std::path::Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sweep.interference.c[1]")
                && e.contains("1073741824 bytes")
                && e.contains("kubernetes.interference.memory = \"512Mi\""),
            "{e}"
        );
        let ok = text.replace("1GiB", "256MiB");
        crate::config::Config::parse(&ok, std::path::Path::new("c.yaml")).unwrap();
        // A net level needs no target on a cluster (the iperf3 ring picks the peers); locally it does.
        let net = text.replace("{kind: memcap, size: 1GiB}", "{kind: net, bandwidth: 500M}");
        crate::config::Config::parse(&net, std::path::Path::new("c.yaml")).unwrap();
        let e = crate::config::Config::parse(
            &net.replace("backend: kubernetes", "backend: local"),
            std::path::Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("net needs `target`"), "{e}");
        // The local backend has no pods: its levels are not checked against them.
        let local = text.replace("backend: kubernetes", "backend: local");
        crate::config::Config::parse(&local, std::path::Path::new("c.yaml")).unwrap();
    }
}
