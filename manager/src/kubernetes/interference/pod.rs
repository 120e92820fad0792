//! Renders an [`InterferenceSpec`] as a Kubernetes pod running `aefm-stress`: the cluster side of
//! a stressor, kept in the manager so that the stressor crate (which runs alone in a container)
//! needs no Kubernetes types. The command line itself is the stressor crate's
//! ([`InterferenceSpec::to_args`]), encoded beside its parser.

use std::collections::BTreeMap;

use aefm_interference::{InterferenceSpec, Stressor};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Label put on every stressor pod with value `aefm-stress`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label with the stressor kind (`cpu`, `memcap`, ...).
pub const KIND_LABEL: &str = "aefm.io/interference-kind";

/// Settings of a stressor pod that are about the cluster, the image and the experiment rather
/// than the stressor. The default renders a plain pod: `restartPolicy: Never`, no tolerations,
/// only the name and kind labels.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Taints the pod tolerates, e.g. the control-plane taint so small clusters can put
    /// interference on every node.
    pub tolerations: Vec<Toleration>,
    /// Labels that identify the experiment (used for cleanup); [`NAME_LABEL`] and [`KIND_LABEL`]
    /// are added.
    pub labels: BTreeMap<String, String>,
}

/// The labels on the pod: `extra` plus the name and kind labels.
pub fn labels(stressor: &Stressor, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = extra.clone();
    l.insert(NAME_LABEL.into(), "aefm-stress".into());
    l.insert(KIND_LABEL.into(), stressor.kind().into());
    l
}

/// A pod `name` in `namespace` running `image` with [`InterferenceSpec::to_args`]: requests equal
/// to limits (the placement's CPU and memory), required node affinity to `placement.node`, a 5 s
/// termination grace period, a container port for an iperf3 server or the metrics endpoint (with
/// Prometheus scrape annotations), and the restart policy, pull policy, command, tolerations and
/// labels of `opts`.
pub fn render(
    spec: &InterferenceSpec,
    name: &str,
    namespace: &str,
    image: &str,
    opts: &PodOptions,
) -> Pod {
    let (ports, annotations) = ports_and_annotations(spec);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels(&spec.stressor, &opts.labels)),
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
            affinity: spec.placement.node.as_deref().map(hostname_affinity),
            tolerations: (!opts.tolerations.is_empty()).then(|| opts.tolerations.clone()),
            containers: vec![Container {
                name: "stress".into(),
                image: Some(image.to_string()),
                image_pull_policy: opts.image_pull_policy.clone(),
                command: opts.command.clone(),
                args: Some(spec.to_args()),
                resources: resources(spec),
                ports: (!ports.is_empty()).then_some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Requests equal to limits, from the placement's CPU and memory; None when neither is set.
fn resources(spec: &InterferenceSpec) -> Option<ResourceRequirements> {
    let mut res = BTreeMap::new();
    if let Some(c) = &spec.placement.cpu_limit {
        res.insert("cpu".to_string(), Quantity(c.clone()));
    }
    if let Some(m) = &spec.placement.memory_limit {
        res.insert("memory".to_string(), Quantity(m.clone()));
    }
    (!res.is_empty()).then(|| ResourceRequirements {
        limits: Some(res.clone()),
        requests: Some(res),
        ..Default::default()
    })
}

/// The container ports (an iperf3 server's, the metrics endpoint's) and the pod annotations that
/// tell Prometheus where to scrape.
fn ports_and_annotations(
    spec: &InterferenceSpec,
) -> (Vec<ContainerPort>, BTreeMap<String, String>) {
    let mut ports = Vec::new();
    if let Stressor::NetServer { port } = spec.stressor {
        ports.push(ContainerPort {
            name: Some("iperf3".into()),
            container_port: port.into(),
            ..Default::default()
        });
    }
    let mut annotations = BTreeMap::new();
    if let Some(m) = spec.metrics_addr {
        ports.push(ContainerPort {
            name: Some("metrics".into()),
            container_port: m.port().into(),
            ..Default::default()
        });
        annotations.insert("prometheus.io/scrape".to_string(), "true".to_string());
        annotations.insert("prometheus.io/port".to_string(), m.port().to_string());
    }
    (ports, annotations)
}

/// Required node affinity to the node named `node` (`kubernetes.io/hostname`).
fn hostname_affinity(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec![node.to_string()]),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aefm_interference::{Placement, Size};
    use serde_json::json;

    use super::*;

    #[test]
    fn pod_manifest() {
        let mut s = InterferenceSpec::new(Stressor::MemCap {
            size: Size::PercentOfLimit(90.0),
            retouch_per_s: None,
        });
        s.duration = Some(Duration::from_secs(30));
        s.placement = Placement {
            node: Some("node-2".into()),
            cpus: None,
            cpu_limit: Some("100m".into()),
            memory_limit: Some("4Gi".into()),
        };
        s.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
        let opts = PodOptions {
            labels: BTreeMap::from([("aefm.io/experiment".into(), "exp-1".into())]),
            ..Default::default()
        };
        let pod = render(
            &s,
            "memcap-node-2-0",
            "interference",
            "aefm-stress:dev",
            &opts,
        );
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "memcap-node-2-0");
        assert_eq!(v["metadata"]["namespace"], "interference");
        assert_eq!(v["metadata"]["labels"]["aefm.io/experiment"], "exp-1");
        assert_eq!(v["metadata"]["labels"][NAME_LABEL], "aefm-stress");
        assert_eq!(v["metadata"]["labels"][KIND_LABEL], "memcap");
        assert_eq!(v["metadata"]["annotations"]["prometheus.io/port"], "9100");
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 5);
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["image"], "aefm-stress:dev");
        assert_eq!(c["args"], json!(s.to_args()));
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
        let s = InterferenceSpec::new(Stressor::NetServer { port: 5201 });
        let v = serde_json::to_value(render(&s, "s", "ns", "img", &PodOptions::default())).unwrap();
        let c = &v["spec"]["containers"][0];
        assert!(c.get("resources").is_none());
        assert!(v["spec"].get("affinity").is_none());
        assert!(v["spec"].get("tolerations").is_none());
        assert!(v["metadata"].get("annotations").is_none());
        assert!(c.get("command").is_none() && c.get("imagePullPolicy").is_none());
        assert_eq!(c["ports"][0]["containerPort"], 5201);
        assert_eq!(c["ports"][0]["name"], "iperf3");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Pod");
    }

    #[test]
    fn pod_options_and_tolerations() {
        let s = InterferenceSpec::new(Stressor::Cpu {
            workers: 0,
            load_pct: 50.0,
            cpus: None,
        });
        let opts = PodOptions {
            restart_policy: Some("Always".into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["aefm-stress".into()]),
            tolerations: vec![Toleration {
                key: Some("node-role.kubernetes.io/control-plane".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            labels: BTreeMap::new(),
        };
        let v = serde_json::to_value(render(&s, "p", "ns", "img", &opts)).unwrap();
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(
            v["spec"]["tolerations"],
            json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}])
        );
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], json!(["aefm-stress"]));
        assert_eq!(c["args"], json!(["cpu", "--load", "50"]));
        assert_eq!(
            v["metadata"]["labels"],
            json!({NAME_LABEL: "aefm-stress", KIND_LABEL: "cpu"})
        );
    }
}
