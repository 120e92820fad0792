//! The fake scheduler: a pod is bound to a node only if it passes the filters of the real default
//! profile that matter here, in their order (the first failing one is the node's reason):
//! `spec.unschedulable`, taints with effect NoSchedule/NoExecute against the pod's tolerations,
//! `nodeSelector` and required node affinity (any label; In, NotIn, Exists, DoesNotExist, Gt, Lt;
//! `metadata.name` fields), host ports in use, and CPU, memory and pod count against the node's
//! allocatable (requests of the pods already bound, requests defaulting to limits). Before that,
//! the pod's PersistentVolumeClaims must exist and be Bound. Otherwise the pod gets
//! `PodScheduled=False`, reason `Unschedulable`, with the real summary ("0/4 nodes are available:
//! 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu.").

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::Store;

/// Parses a Kubernetes quantity (`500m`, `0.5`, `2`, `256Mi`, `32863984Ki`, `1G`, `1e3`) to its
/// value in base units (cores, bytes).
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    for (s, mult) in suffixes {
        if let Some(num) = q.strip_suffix(s) {
            return num.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    if let Some(num) = q.strip_suffix('E') {
        return num.parse::<f64>().ok().map(|n| n * 1e18);
    }
    q.parse::<f64>().ok()
}

/// What a pod asks for: (milli-CPU, memory bytes).
pub fn requests(spec: &Value) -> (u64, u64) {
    let one = |c: &Value, res: &str, scale: f64| -> u64 {
        let r = &c["resources"];
        let q = r["requests"][res]
            .as_str()
            .or_else(|| r["limits"][res].as_str());
        q.and_then(quantity)
            .map(|v| (v * scale).ceil() as u64)
            .unwrap_or(0)
    };
    let sum = |list: &str, res: &str, scale: f64| -> Vec<u64> {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| one(c, res, scale))
            .collect()
    };
    let need = |res: &str, scale: f64| {
        let main: u64 = sum("containers", res, scale).into_iter().sum();
        let init = sum("initContainers", res, scale)
            .into_iter()
            .max()
            .unwrap_or(0);
        main.max(init)
    };
    (need("cpu", 1000.0), need("memory", 1.0))
}

/// Host ports a pod binds: (protocol, hostIP, port).
fn host_ports(spec: &Value) -> Vec<(String, String, u64)> {
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| {
            let port = p["hostPort"].as_u64().filter(|p| *p > 0)?;
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
            let ip = p["hostIP"].as_str().unwrap_or("0.0.0.0").to_string();
            Some((proto, ip, port))
        })
        .collect()
}

fn ports_conflict(a: &(String, String, u64), b: &(String, String, u64)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let op = t["operator"].as_str().unwrap_or("Equal");
        let key_ok = match t["key"].as_str().unwrap_or_default() {
            "" => op == "Exists",
            k => k == taint["key"],
        };
        let value_ok = op == "Exists"
            || t["value"].as_str().unwrap_or_default()
                == taint["value"].as_str().unwrap_or_default();
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || e == taint["effect"]);
        key_ok && value_ok && effect_ok
    })
}

fn expression_matches(e: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let num = |s: &str| s.parse::<i64>().ok();
    match e["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(num), values.first().and_then(|s| num(s))), (Some(v), Some(x)) if v > x)
        }
        "Lt" => {
            matches!((value.and_then(num), values.first().and_then(|s| num(s))), (Some(v), Some(x)) if v < x)
        }
        _ => false,
    }
}

/// Whether the pod tolerates every NoSchedule and NoExecute taint of the node.
pub fn taints_tolerated(spec: &Value, node: &Value) -> bool {
    untolerated(spec, node).is_none()
}

fn untolerated<'a>(spec: &Value, node: &'a Value) -> Option<&'a Value> {
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|taint| {
            let effect = taint["effect"].as_str().unwrap_or_default();
            (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tolerations, taint)
        })
}

/// Whether `nodeSelector` and required node affinity admit the node.
pub fn affinity_matches(spec: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selector_ok = spec["nodeSelector"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels[k] == *v));
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affinity_ok = terms.as_array().is_none_or(|terms| {
        terms.iter().any(|t| {
            let exprs = t["matchExpressions"].as_array().into_iter().flatten();
            let fields = t["matchFields"].as_array().into_iter().flatten();
            exprs.clone().count() + fields.clone().count() > 0
                && exprs.into_iter().all(|e| {
                    expression_matches(e, labels[e["key"].as_str().unwrap_or_default()].as_str())
                })
                && fields.into_iter().all(|e| {
                    e["key"] == "metadata.name"
                        && expression_matches(e, node["metadata"]["name"].as_str())
                })
        })
    });
    selector_ok && affinity_ok
}

/// What is already used on each node: (milli-CPU, bytes, pods, host ports).
#[derive(Debug, Default, Clone)]
pub struct Usage {
    cpu: u64,
    memory: u64,
    pods: u64,
    ports: Vec<(String, String, u64)>,
}

/// Usage of every node by the pods bound to it that have not terminated.
pub fn usage(store: &Store) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for p in store.list("pods", None) {
        let Some(node) = p["spec"]["nodeName"].as_str() else {
            continue;
        };
        if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        add(out.entry(node.to_string()).or_default(), &p["spec"]);
    }
    out
}

/// Counts a pod just bound to a node.
pub fn add(u: &mut Usage, spec: &Value) {
    let (cpu, mem) = requests(spec);
    u.cpu += cpu;
    u.memory += mem;
    u.pods += 1;
    u.ports.extend(host_ports(spec));
}

fn allocatable(node: &Value, res: &str, scale: f64) -> u64 {
    node["status"]["allocatable"][res]
        .as_str()
        .and_then(quantity)
        .map(|v| (v * scale).floor() as u64)
        .unwrap_or(u64::MAX)
}

/// Why a node does not fit the pod (one filter's reasons), or empty when it does.
fn node_reasons(spec: &Value, node: &Value, used: &Usage) -> Vec<String> {
    if node["spec"]["unschedulable"] == true {
        return vec!["node(s) were unschedulable".into()];
    }
    if let Some(taint) = untolerated(spec, node) {
        return vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint["key"].as_str().unwrap_or_default(),
            taint["value"].as_str().unwrap_or_default()
        )];
    }
    if !affinity_matches(spec, node) {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    let mine = host_ports(spec);
    if mine
        .iter()
        .any(|a| used.ports.iter().any(|b| ports_conflict(a, b)))
    {
        return vec!["node(s) didn't have free ports for the requested pod ports".into()];
    }
    let (cpu, mem) = requests(spec);
    let mut out = Vec::new();
    if used.pods + 1 > allocatable(node, "pods", 1.0) {
        out.push("Too many pods".into());
    }
    if cpu > 0 && used.cpu + cpu > allocatable(node, "cpu", 1000.0) {
        out.push("Insufficient cpu".into());
    }
    if mem > 0 && used.memory + mem > allocatable(node, "memory", 1.0) {
        out.push("Insufficient memory".into());
    }
    out
}

/// The PersistentVolumeClaim problem that keeps the pod from scheduling anywhere, if any.
fn claim_problem(store: &Store, ns: &str, spec: &Value) -> Option<String> {
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        match store.get("persistentvolumeclaims", ns, claim) {
            None => return Some(format!("persistentvolumeclaim \"{claim}\" not found")),
            Some(pvc) if pvc["metadata"]["deletionTimestamp"].is_string() => {
                return Some(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ))
            }
            Some(pvc) if pvc["status"]["phase"] != "Bound" => {
                return Some("pod has unbound immediate PersistentVolumeClaims".into())
            }
            Some(_) => {}
        }
    }
    None
}

/// Picks a node for the pod (the feasible one with the fewest pods), or says why none fits in the
/// real scheduler's words.
pub fn schedule(
    store: &Store,
    pod: &Value,
    nodes: &[Value],
    used: &BTreeMap<String, Usage>,
) -> Result<String, String> {
    let spec = &pod["spec"];
    let total = nodes.len();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    if let Some(problem) = claim_problem(store, ns, spec) {
        return Err(format!("0/{total} nodes are available: {problem}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."));
    }
    let empty = Usage::default();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(u64, String)> = None;
    for n in nodes {
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let u = used.get(&name).unwrap_or(&empty);
        let why = node_reasons(spec, n, u);
        if why.is_empty() {
            if best.as_ref().is_none_or(|(pods, _)| u.pods < *pods) {
                best = Some((u.pods, name));
            }
        } else {
            for r in why {
                *reasons.entry(r).or_default() += 1;
            }
        }
    }
    match best {
        Some((_, name)) => Ok(name),
        None => {
            let parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
            Err(format!(
                "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                parts.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cpu: &str, taints: Value, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}})
    }

    fn pod(cpu: &str, extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": cpu, "memory": "1Gi"}}}]});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                spec[k] = v;
            }
        }
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("8000m"), Some(8.0));
        assert_eq!(quantity("256Mi"), Some(268435456.0));
        assert_eq!(quantity("32863984Ki"), Some(32863984.0 * 1024.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("x"), None);
        assert_eq!(requests(&pod("1500m", json!({}))["spec"]), (1500, 1 << 30));
    }

    #[test]
    fn requests_taints_ports_and_affinity_decide_and_explain() {
        let cp = json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
        let nodes = vec![
            node("cp", "4", cp, json!({"kubernetes.io/hostname": "cp"})),
            node(
                "w1",
                "2",
                json!([]),
                json!({"kubernetes.io/hostname": "w1", "disk": "ssd"}),
            ),
            node(
                "w2",
                "2",
                json!([]),
                json!({"kubernetes.io/hostname": "w2"}),
            ),
        ];
        let store = Store::default();
        let mut used = BTreeMap::new();
        let p = pod("1500m", json!({}));
        let first = schedule(&store, &p, &nodes, &used).unwrap();
        assert_eq!(first, "w1");
        add(used.entry(first).or_default(), &p["spec"]);
        assert_eq!(schedule(&store, &p, &nodes, &used).unwrap(), "w2");
        add(used.entry("w2".into()).or_default(), &p["spec"]);
        let msg = schedule(&store, &p, &nodes, &used).unwrap_err();
        assert_eq!(msg, "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.");
        // A toleration opens the control plane.
        let tol = pod(
            "1500m",
            json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(schedule(&store, &tol, &nodes, &used).unwrap(), "cp");
        // nodeSelector and affinity.
        let sel = pod("100m", json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(schedule(&store, &sel, &nodes, &used).unwrap(), "w1");
        let aff = pod(
            "100m",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["w1", "cp"]}]}]}}}}),
        );
        assert_eq!(
            schedule(&store, &aff, &nodes, &BTreeMap::new()).unwrap(),
            "w2"
        );
        // Host ports.
        let hp = pod(
            "0",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                                 "nodeSelector": {"kubernetes.io/hostname": "w1"}}),
        );
        let mut u = BTreeMap::new();
        add(u.entry("w1".to_string()).or_default(), &hp["spec"]);
        assert!(schedule(&store, &hp, &nodes, &u)
            .unwrap_err()
            .contains("1 node(s) didn't have free ports for the requested pod ports"));
    }

    #[test]
    fn pods_wait_for_their_claims() {
        let mut store = Store::default();
        let nodes = vec![node("w1", "2", json!([]), json!({}))];
        let p = pod(
            "100m",
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}),
        );
        assert!(schedule(&store, &p, &nodes, &BTreeMap::new())
            .unwrap_err()
            .contains("persistentvolumeclaim \"data\" not found"));
        store.create("persistentvolumeclaims", json!({"metadata": {"name": "data", "namespace": "ns"}, "status": {"phase": "Pending"}}));
        assert!(schedule(&store, &p, &nodes, &BTreeMap::new())
            .unwrap_err()
            .contains("unbound immediate PersistentVolumeClaims"));
    }
}
