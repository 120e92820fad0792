//! The interference spec the manager builds: which stressor at which intensity, for how long, where.
//! It renders to `aefm-stress` arguments, to a Kubernetes pod manifest (k8s-openapi types), and
//! spawns as a local process ([`crate::local`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::geometry::CacheLevel;
use crate::units::{format_cpu_list, format_duration, Rate, Size};

/// One stressor and its intensity, in physical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stressor {
    /// `workers` threads (0 = one per effective CPU), each at `load_pct` % of a CPU, pinned to `cpus`
    /// (default: all allowed CPUs).
    Cpu {
        /// Worker threads; 0 = one per CPU the cpuset and quota allow.
        workers: usize,
        /// Target utilisation of each worker, 0..=100.
        load_pct: f64,
        /// CPUs to pin to (must be allowed).
        cpus: Option<Vec<usize>>,
    },
    /// Hold `size` of memory resident; optionally rewrite every page `retouch_per_s` times a second.
    MemCap {
        /// Bytes, or a percentage of the memory limit.
        size: Size,
        /// Full re-touch passes per second (None: touch once and hold).
        retouch_per_s: Option<f64>,
    },
    /// Stream memory at `rate` with `workers` threads (0 = one per effective CPU).
    MemBw {
        /// `Max` or a total GB/s target.
        rate: Rate,
        /// Worker threads; 0 = one per effective CPU.
        workers: usize,
    },
    /// Keep `fraction` of a cache level's size resident.
    Cache {
        /// L1d, L2 or LLC.
        level: CacheLevel,
        /// Footprint as a fraction of the level's size (0 < f <= 16).
        fraction: f64,
    },
    /// An iperf3 server on `port`.
    NetServer {
        /// TCP port.
        port: u16,
    },
    /// An iperf3 client sending `streams` streams of `bandwidth_bps` each to `target:port`.
    NetClient {
        /// Server host name or address.
        target: String,
        /// Server port.
        port: u16,
        /// Bits per second per stream (iperf3 `-b`).
        bandwidth_bps: u64,
        /// Parallel streams (iperf3 `-P`).
        streams: u32,
    },
}

impl Stressor {
    /// The `aefm-stress` subcommand and the report `kind` prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Stressor::Cpu { .. } => "cpu",
            Stressor::MemCap { .. } => "memcap",
            Stressor::MemBw { .. } => "membw",
            Stressor::Cache { .. } => "cache",
            Stressor::NetServer { .. } => "net-server",
            Stressor::NetClient { .. } => "net-client",
        }
    }
}

/// Where a stressor runs and what it may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Kubernetes node (`kubernetes.io/hostname`); ignored locally.
    pub node: Option<String>,
    /// Local runs: restrict the whole process to these CPUs (affinity set before exec). Pods: not
    /// expressible (needs the static CPU manager); use the stressor's own `cpus`.
    pub cpus: Option<Vec<usize>>,
    /// Pod CPU request and limit (a Kubernetes quantity, e.g. `1` or `500m`).
    pub cpu_limit: Option<String>,
    /// Pod memory request and limit (e.g. `4Gi`).
    pub memory_limit: Option<String>,
    /// Taints the pod tolerates, e.g. the control-plane taint so small clusters can put
    /// interference on every node; ignored locally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// How [`InterferenceSpec::to_pod_with`] runs the stressor's container: settings of the pod that
/// are about the cluster and the image rather than the stressor. The default is what
/// [`InterferenceSpec::to_pod`] uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodOptions {
    /// `restartPolicy`; None = `Never`, right for a stressor with a duration, which ends by itself.
    /// `Always` suits one without a duration that must keep going until its pod is deleted (the
    /// kubelet restarts it if it dies, e.g. OOM-killed).
    pub restart_policy: Option<String>,
    /// The container's `imagePullPolicy` (`Always`, `IfNotPresent`, `Never`); None = the cluster's
    /// default.
    pub image_pull_policy: Option<String>,
    /// The container's `command`; None = the image's entry point (`aefm-stress` in the image built
    /// from `images/`). Set it (e.g. `["aefm-stress"]`) for images whose entry point is another
    /// program: the arguments are always [`InterferenceSpec::to_args`].
    pub command: Option<Vec<String>>,
}

/// A complete interference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterferenceSpec {
    /// What to stress and how hard.
    pub stressor: Stressor,
    /// Wall-clock duration; None = until stopped.
    pub duration: Option<Duration>,
    /// Serve Prometheus metrics here (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// Node, CPUs and resource limits.
    pub placement: Placement,
    /// Labels that identify the experiment (put on the pod, used for cleanup).
    pub labels: BTreeMap<String, String>,
}

/// Label put on every stressor pod with value `aefm-stress`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label with the stressor kind (`cpu`, `memcap`, ...).
pub const KIND_LABEL: &str = "aefm.io/interference-kind";

impl InterferenceSpec {
    /// A spec with no duration, placement, metrics or labels.
    pub fn new(stressor: Stressor) -> Self {
        InterferenceSpec {
            stressor,
            duration: None,
            metrics_addr: None,
            placement: Placement::default(),
            labels: BTreeMap::new(),
        }
    }

    /// `aefm-stress` arguments (without the program name).
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        fn push(a: &mut Vec<String>, k: &str, v: String) {
            a.push(k.to_string());
            a.push(v);
        }
        let sub = match &self.stressor {
            Stressor::Cpu {
                workers,
                load_pct,
                cpus,
            } => {
                if *workers > 0 {
                    push(&mut a, "--workers", workers.to_string());
                }
                push(&mut a, "--load", load_pct.to_string());
                if let Some(c) = cpus.as_ref().filter(|c| !c.is_empty()) {
                    push(&mut a, "--cpus", format_cpu_list(c));
                }
                "cpu"
            }
            Stressor::MemCap {
                size,
                retouch_per_s,
            } => {
                push(&mut a, "--size", size.to_string());
                if let Some(r) = retouch_per_s {
                    push(&mut a, "--retouch", r.to_string());
                }
                "memcap"
            }
            Stressor::MemBw { rate, workers } => {
                push(&mut a, "--rate", rate.to_string());
                if *workers > 0 {
                    push(&mut a, "--workers", workers.to_string());
                }
                "membw"
            }
            Stressor::Cache { level, fraction } => {
                push(&mut a, "--level", level.as_str().to_string());
                push(&mut a, "--fraction", fraction.to_string());
                "cache"
            }
            Stressor::NetServer { port } => {
                a.push("--server".into());
                push(&mut a, "--port", port.to_string());
                "net"
            }
            Stressor::NetClient {
                target,
                port,
                bandwidth_bps,
                streams,
            } => {
                let host = if target.contains(':') {
                    format!("[{target}]")
                } else {
                    target.clone()
                };
                push(&mut a, "--target", format!("{host}:{port}"));
                push(&mut a, "--bandwidth", bandwidth_bps.to_string());
                push(&mut a, "--streams", streams.to_string());
                "net"
            }
        };
        let mut args = vec![sub.to_string()];
        args.append(&mut a);
        if let Some(d) = self.duration {
            args.push("--duration".into());
            args.push(format_duration(d));
        }
        if let Some(m) = self.metrics_addr {
            args.push("--metrics-addr".into());
            args.push(m.to_string());
        }
        args
    }

    /// The labels on the pod: the spec's labels plus name and kind labels.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(NAME_LABEL.into(), "aefm-stress".into());
        l.insert(KIND_LABEL.into(), self.stressor.kind().into());
        l
    }

    /// A pod running `image` with [`Self::to_args`]: requests equal to limits (the given CPU and
    /// memory), required node affinity to `placement.node`, the placement's tolerations, the
    /// labels, `restartPolicy: Never`, and a container port for an iperf3 server or the metrics
    /// endpoint. [`Self::to_pod_with`] sets the restart policy, pull policy and command.
    pub fn to_pod(&self, name: &str, namespace: &str, image: &str) -> Pod {
        self.to_pod_with(name, namespace, image, &PodOptions::default())
    }

    /// [`Self::to_pod`] with the restart policy, image pull policy and container command of `opts`.
    pub fn to_pod_with(&self, name: &str, namespace: &str, image: &str, opts: &PodOptions) -> Pod {
        let mut res = BTreeMap::new();
        if let Some(c) = &self.placement.cpu_limit {
            res.insert("cpu".to_string(), Quantity(c.clone()));
        }
        if let Some(m) = &self.placement.memory_limit {
            res.insert("memory".to_string(), Quantity(m.clone()));
        }
        let resources = (!res.is_empty()).then(|| ResourceRequirements {
            limits: Some(res.clone()),
            requests: Some(res),
            ..Default::default()
        });
        let mut ports = Vec::new();
        if let Stressor::NetServer { port } = self.stressor {
            ports.push(ContainerPort {
                name: Some("iperf3".into()),
                container_port: port.into(),
                ..Default::default()
            });
        }
        let mut annotations = BTreeMap::new();
        if let Some(m) = self.metrics_addr {
            ports.push(ContainerPort {
                name: Some("metrics".into()),
                container_port: m.port().into(),
                ..Default::default()
            });
            annotations.insert("prometheus.io/scrape".to_string(), "true".to_string());
            annotations.insert("prometheus.io/port".to_string(), m.port().to_string());
        }
        let affinity = self.placement.node.as_ref().map(|node| Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.clone()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(self.pod_labels()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some(
                    opts.restart_policy
                        .clone()
                        .unwrap_or_else(|| "Never".into()),
                ),
                // aefm-stress stops within 0.5 s of SIGTERM: no need for the default 30 s.
                termination_grace_period_seconds: Some(5),
                affinity,
                tolerations: (!self.placement.tolerations.is_empty())
                    .then(|| self.placement.tolerations.clone()),
                containers: vec![Container {
                    name: "stress".into(),
                    image: Some(image.to_string()),
                    image_pull_policy: opts.image_pull_policy.clone(),
                    command: opts.command.clone(),
                    args: Some(self.to_args()),
                    resources,
                    ports: (!ports.is_empty()).then_some(ports),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// The `aefm-stress` binary: next to the current executable (or its parent directory, for test
/// executables in `target/<profile>/deps`), then on `$PATH`.
pub fn find_stress_binary() -> Option<PathBuf> {
    let name = "aefm-stress";
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent();
        for _ in 0..2 {
            if let Some(d) = dir {
                let p = d.join(name);
                if p.is_file() {
                    return Some(p);
                }
                dir = d.parent();
            }
        }
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d: PathBuf| d.join(name))
        .find(|p: &PathBuf| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: Stressor) -> InterferenceSpec {
        let mut sp = InterferenceSpec::new(s);
        sp.duration = Some(Duration::from_secs(30));
        sp
    }

    #[test]
    fn args_for_every_kind() {
        let a = |s| spec(s).to_args().join(" ");
        assert_eq!(
            a(Stressor::Cpu {
                workers: 2,
                load_pct: 50.0,
                cpus: Some(vec![0, 1])
            }),
            "cpu --workers 2 --load 50 --cpus 0,1 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemCap {
                size: Size::PercentOfLimit(50.0),
                retouch_per_s: None
            }),
            "memcap --size 50% --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemCap {
                size: Size::Bytes(1 << 30),
                retouch_per_s: Some(0.5)
            }),
            "memcap --size 1073741824 --retouch 0.5 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemBw {
                rate: Rate::GBps(8.0),
                workers: 1
            }),
            "membw --rate 8GB/s --workers 1 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemBw {
                rate: Rate::Max,
                workers: 0
            }),
            "membw --rate max --duration 30s"
        );
        assert_eq!(
            a(Stressor::Cache {
                level: CacheLevel::L2,
                fraction: 0.5
            }),
            "cache --level l2 --fraction 0.5 --duration 30s"
        );
        assert_eq!(
            a(Stressor::NetServer { port: 5201 }),
            "net --server --port 5201 --duration 30s"
        );
        assert_eq!(
            a(Stressor::NetClient {
                target: "10.0.0.2".into(),
                port: 5201,
                bandwidth_bps: 1_000_000_000,
                streams: 2
            }),
            "net --target 10.0.0.2:5201 --bandwidth 1000000000 --streams 2 --duration 30s"
        );
        assert!(a(Stressor::NetClient {
            target: "::1".into(),
            port: 7,
            bandwidth_bps: 1,
            streams: 1
        })
        .contains("--target [::1]:7"));
        let mut s = InterferenceSpec::new(Stressor::NetServer { port: 1 });
        s.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
        assert_eq!(
            s.to_args().join(" "),
            "net --server --port 1 --metrics-addr 0.0.0.0:9100"
        );
    }

    #[test]
    fn pod_manifest() {
        let mut s = spec(Stressor::MemCap {
            size: Size::PercentOfLimit(90.0),
            retouch_per_s: None,
        });
        s.placement = Placement {
            node: Some("node-2".into()),
            cpus: None,
            cpu_limit: Some("100m".into()),
            memory_limit: Some("4Gi".into()),
            tolerations: Vec::new(),
        };
        s.labels.insert("aefm.io/experiment".into(), "exp-1".into());
        s.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
        let pod = s.to_pod("memcap-node-2-0", "interference", "aefm-stress:dev");
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "memcap-node-2-0");
        assert_eq!(v["metadata"]["namespace"], "interference");
        assert_eq!(v["metadata"]["labels"]["aefm.io/experiment"], "exp-1");
        assert_eq!(v["metadata"]["labels"][NAME_LABEL], "aefm-stress");
        assert_eq!(v["metadata"]["labels"][KIND_LABEL], "memcap");
        assert_eq!(v["metadata"]["annotations"]["prometheus.io/port"], "9100");
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["image"], "aefm-stress:dev");
        assert_eq!(c["args"][0], "memcap");
        assert_eq!(c["args"][2], "90%");
        assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
        assert_eq!(c["resources"]["limits"]["memory"], "4Gi");
        assert_eq!(c["resources"]["limits"]["cpu"], "100m");
        assert_eq!(c["ports"][0]["containerPort"], 9100);
        let term = &v["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchExpressions"][0]["key"], "kubernetes.io/hostname");
        assert_eq!(term["matchExpressions"][0]["values"][0], "node-2");
    }

    #[test]
    fn pod_without_placement_has_no_resources_or_affinity() {
        let pod =
            InterferenceSpec::new(Stressor::NetServer { port: 5201 }).to_pod("s", "ns", "img");
        let v = serde_json::to_value(&pod).unwrap();
        let c = &v["spec"]["containers"][0];
        assert!(c.get("resources").is_none());
        assert!(v["spec"].get("affinity").is_none());
        assert!(v["spec"].get("tolerations").is_none());
        assert!(c.get("command").is_none() && c.get("imagePullPolicy").is_none());
        assert_eq!(c["ports"][0]["containerPort"], 5201);
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Pod");
    }

    #[test]
    fn pod_options_and_tolerations() {
        let mut s = InterferenceSpec::new(Stressor::Cpu {
            workers: 0,
            load_pct: 50.0,
            cpus: None,
        });
        s.placement.tolerations = vec![Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }];
        let opts = PodOptions {
            restart_policy: Some("Always".into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["aefm-stress".into()]),
        };
        let v = serde_json::to_value(s.to_pod_with("p", "ns", "img", &opts)).unwrap();
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(
            v["spec"]["tolerations"][0]["key"],
            "node-role.kubernetes.io/control-plane"
        );
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], serde_json::json!(["aefm-stress"]));
        assert_eq!(c["args"], serde_json::json!(["cpu", "--load", "50"]));
    }
}
