//! The objects of one case's distributed load: the Jobs, the ConfigMap holding the Lua script and
//! the Secret holding the headers. Names carry the run id and a hash of the full case name, so
//! two cases, or two runs of one case (resume), never share an object.

use serde_json::{json, Value};

use super::super::labels;
use super::super::manifests::{node_affinity, resources_json};
use super::LoadScript;
use crate::config::kubernetes::{KubernetesConfig, NodeRole};

/// Where the script ConfigMap is mounted in load Job pods.
pub const SCRIPT_DIR: &str = "/etc/aefm-load";
/// Where the headers Secret is mounted in load Job pods.
pub const HEADERS_DIR: &str = "/etc/aefm-load-headers";
/// The key (file name) of the headers in their Secret.
pub const HEADERS_KEY: &str = "headers";
/// The container port `aefm-load --control-port` listens on (the start barrier).
pub const CONTROL_PORT: u16 = 7431;

/// Volume name of the script ConfigMap in load Job pods.
const SCRIPT_VOLUME: &str = "script";
/// Volume name of the headers Secret.
const HEADERS_VOLUME: &str = "headers";

/// Who a case's load objects belong to: experiment, test case and run.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// Experiment name.
    pub experiment: &'a str,
    /// Full test case name.
    pub test_case: &'a str,
    /// The run id ([`labels::RUN`]).
    pub run: &'a str,
}

impl Owner<'_> {
    /// `aefm-load-<run>-<experiment:16>-<hash of experiment and case:8>`: at most 44 characters,
    /// DNS-1123, unique per run and case (truncation never merges two cases: the hash is of the
    /// full names).
    pub fn stem(&self) -> String {
        let exp = labels::dns_fragment(self.experiment, 16);
        let run = labels::dns_fragment(self.run, 8);
        let hash = fnv1a(&format!("{}\0{}", self.experiment, self.test_case));
        let exp = if exp.is_empty() { "x".to_string() } else { exp };
        format!("aefm-load-{run}-{exp}-{:08x}", hash as u32)
    }

    /// Labels of every object (Jobs, their pods, the ConfigMap, the Secret).
    pub fn labels(&self) -> Value {
        json!({
            labels::EXPERIMENT: labels::label_value(self.experiment),
            labels::TEST_CASE: labels::label_value(self.test_case),
            labels::COMPONENT: "load",
            labels::RUN: labels::label_value(self.run),
            labels::MANAGED_BY: labels::MANAGER,
        })
    }

    /// Selector of this run's load pods.
    pub fn selector(&self) -> String {
        format!(
            "{}=load,{}={}",
            labels::COMPONENT,
            labels::RUN,
            labels::label_value(self.run)
        )
    }
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The namespace of load Jobs: `load.namespace`, else the application's.
pub fn load_namespace(cfg: &KubernetesConfig) -> String {
    cfg.load
        .namespace
        .clone()
        .unwrap_or_else(|| cfg.namespace.clone())
}

/// The ConfigMap holding a case's script (key [`super::script_key`]).
pub fn script_config_map(cfg: &KubernetesConfig, owner: &Owner, script: &LoadScript) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{}-script", owner.stem()),
            "namespace": load_namespace(cfg),
            "labels": owner.labels(),
        },
        "data": {super::script_key(&script.path): script.content},
    })
}

/// The Secret holding the load headers, one `Name: value` a line under [`HEADERS_KEY`]:
/// header values (tokens, cookies) never appear in a Job's arguments.
pub fn headers_secret(
    cfg: &KubernetesConfig,
    owner: &Owner,
    headers: &[(String, String)],
) -> Value {
    let text: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": format!("{}-headers", owner.stem()),
            "namespace": load_namespace(cfg),
            "labels": owner.labels(),
        },
        "stringData": {HEADERS_KEY: text},
    })
}

/// Placement of one load Job.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// The node it must run on (a configured load node).
    pub node: Option<String>,
    /// Nodes it must avoid (the testbed, when no load node is configured).
    pub avoid: Vec<String>,
}

impl Placement {
    /// Job `index`'s placement: round-robin over the load nodes, else anywhere but the testbed.
    pub fn of(cfg: &KubernetesConfig, index: usize) -> Placement {
        let nodes = cfg.load_nodes();
        if nodes.is_empty() {
            Placement {
                node: None,
                avoid: cfg.nodes_with(NodeRole::Testbed),
            }
        } else {
            Placement {
                node: Some(nodes[index % nodes.len()].clone()),
                avoid: Vec::new(),
            }
        }
    }
}

/// What a load Job mounts and how long it may live.
#[derive(Clone, Debug, Default)]
pub struct JobParts<'a> {
    /// The script ConfigMap's name, mounted at [`SCRIPT_DIR`].
    pub script_config_map: Option<&'a str>,
    /// The headers Secret's name, mounted at [`HEADERS_DIR`].
    pub headers_secret: Option<&'a str>,
    /// `activeDeadlineSeconds`: the Job is stopped after it (load, barrier and a margin).
    pub deadline_secs: u64,
}

/// One load Job: `aefm-load <args>`, never retried (a retried run would add load nobody
/// measured at its instant), with the load resources, placement, the control port declared and
/// the script and headers mounted read-only.
pub fn load_job(
    cfg: &KubernetesConfig,
    owner: &Owner,
    index: usize,
    placement: &Placement,
    args: &[String],
    parts: &JobParts,
) -> Value {
    let lbl = owner.labels();
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [{
            "name": "load",
            "image": cfg.load.image,
            "imagePullPolicy": cfg.image_pull_policy,
            "command": ["aefm-load"],
            "args": args,
            "ports": [{"name": "control", "containerPort": CONTROL_PORT, "protocol": "TCP"}],
            "resources": resources_json(&cfg.load.resources),
        }],
    });
    if let Some(node) = &placement.node {
        pod_spec["affinity"] = json!({"nodeAffinity": node_affinity(std::slice::from_ref(node))});
    } else if !placement.avoid.is_empty() {
        pod_spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": placement.avoid}
            ]}]
        }}});
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(cm) = parts.script_config_map {
        volumes.push(json!({"name": SCRIPT_VOLUME, "configMap": {"name": cm}}));
        mounts.push(json!({"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": true}));
    }
    if let Some(secret) = parts.headers_secret {
        volumes.push(json!({"name": HEADERS_VOLUME, "secret": {"secretName": secret}}));
        mounts.push(json!({"name": HEADERS_VOLUME, "mountPath": HEADERS_DIR, "readOnly": true}));
    }
    if !volumes.is_empty() {
        pod_spec["volumes"] = json!(volumes);
        pod_spec["containers"][0]["volumeMounts"] = json!(mounts);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("{}-{index}", owner.stem()),
            "namespace": load_namespace(cfg),
            "labels": lbl,
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": parts.deadline_secs.max(1),
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": lbl}, "spec": pod_spec},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> KubernetesConfig {
        serde_yaml::from_str(&format!(
            "namespace: app\nyaml_repo: r\nload: {{max_rate_per_generator: 1000}}\n{extra}"
        ))
        .unwrap()
    }

    fn owner<'a>(case: &'a str, run: &'a str) -> Owner<'a> {
        Owner {
            experiment: "A very long experiment name_with stuff",
            test_case: case,
            run,
        }
    }

    fn dns1123(name: &str) -> bool {
        name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_unique_per_run_and_case_and_short() {
        // Cases that differ only after any truncation point, and the same case in two runs.
        let long = "rate=100|cpu=cpu-4w-85pct|membw=none|round=1|extra=aaaaaaaaaaaaaaaa";
        let names = [
            owner(long, "0badc0de").stem(),
            owner(&long.replace("rate=100", "rate=200"), "0badc0de").stem(),
            owner(&long.replace("round=1", "round=2"), "0badc0de").stem(),
            owner(long, "12345678").stem(),
        ];
        for (i, a) in names.iter().enumerate() {
            assert!(dns1123(&format!("{a}-9999-script")), "{a}");
            assert!(dns1123(&format!("{a}-9999-headers")), "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(
            names[0].starts_with("aefm-load-0badc0de-a-very-long-expe-"),
            "{}",
            names[0]
        );
        assert_eq!(names[0], owner(long, "0badc0de").stem(), "stable");
    }

    #[test]
    fn job_has_resources_deadline_port_mounts_and_run_label() {
        let c = cfg("");
        let o = owner("case 1", "0badc0de");
        let parts = JobParts {
            script_config_map: Some("cm"),
            headers_secret: Some("sec"),
            deadline_secs: 700,
        };
        let j = load_job(
            &c,
            &o,
            2,
            &Placement::default(),
            &["-R".into(), "10".into()],
            &parts,
        );
        assert_eq!(j["metadata"]["name"], format!("{}-2", o.stem()));
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 700);
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        for l in [
            &j["metadata"]["labels"],
            &j["spec"]["template"]["metadata"]["labels"],
        ] {
            assert_eq!(l[labels::RUN], "0badc0de");
            assert_eq!(l[labels::COMPONENT], "load");
            assert_eq!(l[labels::TEST_CASE], "case_1");
        }
        let ctr = &spec["containers"][0];
        assert_eq!(ctr["ports"][0]["containerPort"], CONTROL_PORT);
        assert_eq!(
            ctr["resources"],
            json!({"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "script", "configMap": {"name": "cm"}}, {"name": "headers", "secret": {"secretName": "sec"}}])
        );
        assert_eq!(ctr["volumeMounts"][1]["mountPath"], HEADERS_DIR);
        assert!(spec["affinity"].is_null());
    }

    #[test]
    fn placement_pins_to_load_nodes_or_avoids_the_testbed() {
        let nodes = "nodes:\n- {name: w1, roles: [testbed]}\n- {name: w2, roles: [testbed]}\n";
        let c = cfg(nodes);
        let o = owner("c", "r1");
        let j = load_job(&c, &o, 0, &Placement::of(&c, 0), &[], &JobParts::default());
        let expr = &j["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
        assert_eq!(expr["operator"], "NotIn");
        assert_eq!(expr["values"], json!(["w1", "w2"]));
        let c = cfg(&format!("{nodes}- {{name: w3, roles: [loadgen]}}\n"));
        let j = load_job(&c, &o, 1, &Placement::of(&c, 1), &[], &JobParts::default());
        let expr = &j["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
        assert_eq!(
            (expr["operator"].as_str(), expr["values"].clone()),
            (Some("In"), json!(["w3"]))
        );
    }

    #[test]
    fn headers_go_into_a_labelled_secret() {
        let o = owner("c", "r1");
        let s = headers_secret(
            &cfg(""),
            &o,
            &[
                ("Authorization".into(), "Bearer t0k".into()),
                ("X-A".into(), "b".into()),
            ],
        );
        assert_eq!(s["kind"], "Secret");
        assert_eq!(s["metadata"]["labels"][labels::RUN], "r1");
        assert_eq!(
            s["stringData"][HEADERS_KEY],
            "Authorization: Bearer t0k\nX-A: b\n"
        );
    }
}
