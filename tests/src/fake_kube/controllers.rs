//! Simulated controllers of the fake cluster, run on a short tick: Deployment → ReplicaSet →
//! pods, StatefulSet and DaemonSet → pods, Job → one pod; the scheduler (node affinity on
//! `kubernetes.io/hostname`); the kubelet (readiness after a delay, or the failure injected for an
//! image: pull error, crash loop, unschedulable; configMap volumes of Job pods, see
//! [`mount_config_maps`]); status of every workload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::store::{Key, Store};

/// A failure injected into pods whose image contains a given text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFailure {
    /// The image cannot be pulled: `ErrImagePull`, then `ImagePullBackOff`.
    ImagePull,
    /// The container exits at once: `CrashLoopBackOff` with growing restarts.
    CrashLoop,
    /// No node fits: the pod stays Pending, `Unschedulable`.
    Unschedulable,
}

/// Everything injected by a test.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Image substring → failure.
    pub images: Vec<(String, PodFailure)>,
    /// (verb, plural) pairs answered with 403 Forbidden; verb `*` matches all.
    pub forbidden: Vec<(String, String)>,
    /// Maximum pods per namespace; creating more is refused with 403 exceeded quota.
    pub pod_quota: Option<usize>,
    /// Answer every request with this error status (500 InternalError, 503 ServiceUnavailable,
    /// ...). Note that kube's client retries 429/503/504 with backoff before giving up.
    pub error_status: Option<u16>,
    /// Time from pod creation to readiness.
    pub ready_delay: Duration,
}

/// A Job pod the harness should run (with the job runner).
#[derive(Debug, Clone)]
pub struct JobRun {
    /// Pod key.
    pub pod: Key,
    /// Container command.
    pub command: Vec<String>,
    /// Container args (under configMap mount paths rewritten to local dirs, see
    /// [`mount_config_maps`]).
    pub args: Vec<String>,
}

/// Mutable world state besides the store.
#[derive(Debug, Default)]
pub struct World {
    /// When each pod was created (for the readiness delay).
    pub born: HashMap<Key, Instant>,
    /// Pod logs, by pod key.
    pub logs: HashMap<Key, String>,
    /// Log lines written with the time they were written ([`crate::fake_kube::FakeKube::write_log`]),
    /// after `logs`: what `timestamps` prefixes and `sinceTime`/`sinceSeconds` filter.
    pub log_lines: HashMap<Key, Vec<(std::time::SystemTime, String)>>,
    /// Job pods already handed to the runner.
    pub started_jobs: HashSet<Key>,
    /// Job pods finished by the runner: exit code.
    pub finished_jobs: HashMap<Key, i32>,
    /// Where the kubelet emulation writes configMap volumes (created on first use).
    pub volumes_dir: Option<tempfile::TempDir>,
    counter: u64,
}

fn short_hash(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    let s = format!("{:x}", h.finish());
    s[..8.min(s.len())].to_string()
}

fn owner_ref(o: &Value, kind: &str, api_version: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

fn owned_by<'a>(store: &'a Store, plural: &str, owner: &Value) -> Vec<&'a Value> {
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or_default();
    store
        .objects
        .iter()
        .filter(|((p, n, _), o)| {
            p == plural
                && n == ns
                && o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["uid"] == owner["metadata"]["uid"]))
        })
        .map(|(_, o)| o)
        .collect()
}

/// Whether the pod counts as ready.
pub fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn new_pod(
    world: &mut World,
    store: &mut Store,
    owner: &Value,
    kind: &str,
    api_version: &str,
    name: String,
    extra_labels: Value,
) -> Value {
    let ns = owner["metadata"]["namespace"].clone();
    let template = &owner["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    if let Value::Object(extra) = extra_labels {
        for (k, v) in extra {
            labels[k] = v;
        }
    }
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner_ref(owner, kind, api_version),
                     "annotations": template["metadata"]["annotations"].clone()},
        "spec": template["spec"].clone(),
        "status": {"phase": "Pending"},
    });
    let pod = store.create("pods", pod);
    world
        .born
        .insert(super::store::key_of("pods", &pod), Instant::now());
    pod
}

fn next_suffix(world: &mut World) -> String {
    world.counter += 1;
    format!("{:05x}", world.counter)
}

/// One tick of every controller.
pub fn tick(store: &mut Store, world: &mut World, faults: &Faults) -> Vec<JobRun> {
    deployments(store);
    replicasets(store, world);
    statefulsets(store, world);
    daemonsets(store, world);
    let runs = jobs(store, world);
    kubelet(store, world, faults);
    statuses(store);
    runs
}

fn deployments(store: &mut Store) {
    for d in store.list("deployments", None) {
        let hash = short_hash(&d["spec"]["template"]);
        let rs_name = format!(
            "{}-{hash}",
            d["metadata"]["name"].as_str().unwrap_or_default()
        );
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let existing: Vec<Value> = owned_by(store, "replicasets", &d)
            .into_iter()
            .cloned()
            .collect();
        for rs in &existing {
            if rs["metadata"]["name"] != rs_name.as_str() {
                store.delete(&super::store::key_of("replicasets", rs));
            }
        }
        let ns = d["metadata"]["namespace"].clone();
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"].clone(),
                         "ownerReferences": owner_ref(&d, "Deployment", "apps/v1")},
            "spec": {"replicas": replicas, "selector": d["spec"]["selector"].clone(), "template": template},
        });
        match existing
            .iter()
            .find(|r| r["metadata"]["name"] == rs_name.as_str())
        {
            Some(old) => {
                let mut new = old.clone();
                new["spec"] = rs["spec"].clone();
                store.update("replicasets", new);
            }
            None => {
                store.create("replicasets", rs);
            }
        }
    }
}

fn scale_pods(
    store: &mut Store,
    world: &mut World,
    owner: &Value,
    kind: &str,
    want: i64,
    name_for: &dyn Fn(&mut World, usize) -> String,
) {
    let pods: Vec<Value> = owned_by(store, "pods", owner)
        .into_iter()
        .cloned()
        .collect();
    let have = pods.len() as i64;
    if have < want {
        for i in have..want {
            let name = name_for(world, i as usize);
            new_pod(world, store, owner, kind, "apps/v1", name, json!({}));
        }
    } else if have > want {
        for p in pods.iter().skip(want as usize) {
            store.delete(&super::store::key_of("pods", p));
        }
    }
}

fn replicasets(store: &mut Store, world: &mut World) {
    for rs in store.list("replicasets", None) {
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let base = rs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        scale_pods(store, world, &rs, "ReplicaSet", want, &|w, _| {
            format!("{base}-{}", next_suffix(w))
        });
    }
}

fn statefulsets(store: &mut Store, world: &mut World) {
    for s in store.list("statefulsets", None) {
        let want = s["spec"]["replicas"].as_i64().unwrap_or(1);
        let base = s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        scale_pods(store, world, &s, "StatefulSet", want, &|_, i| {
            format!("{base}-{i}")
        });
    }
}

fn nodes(store: &Store) -> Vec<Value> {
    store.list("nodes", None)
}

/// Node names a pod spec allows through `kubernetes.io/hostname In [...]`; `None` = any.
fn allowed_nodes(spec: &Value) -> Option<Vec<String>> {
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?;
    let mut out = Vec::new();
    for t in terms {
        for e in t["matchExpressions"].as_array().into_iter().flatten() {
            if e["key"] == "kubernetes.io/hostname" && e["operator"] == "In" {
                out.extend(
                    e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_string)),
                );
            }
        }
    }
    Some(out)
}

fn daemonsets(store: &mut Store, world: &mut World) {
    for ds in store.list("daemonsets", None) {
        let allowed = allowed_nodes(&ds["spec"]["template"]["spec"]);
        let targets: Vec<String> = nodes(store)
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .filter(|n| allowed.as_ref().is_none_or(|a| a.contains(n)))
            .collect();
        let pods: Vec<Value> = owned_by(store, "pods", &ds).into_iter().cloned().collect();
        for node in &targets {
            if !pods.iter().any(|p| p["spec"]["nodeName"] == node.as_str()) {
                let name = format!(
                    "{}-{}",
                    ds["metadata"]["name"].as_str().unwrap_or_default(),
                    next_suffix(world)
                );
                let mut p = new_pod(world, store, &ds, "DaemonSet", "apps/v1", name, json!({}));
                p["spec"]["nodeName"] = json!(node);
                store.update("pods", p);
            }
        }
    }
}

fn jobs(store: &mut Store, world: &mut World) -> Vec<JobRun> {
    let mut runs = Vec::new();
    for j in store.list("jobs", None) {
        let name = j["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if owned_by(store, "pods", &j).is_empty() && j["status"]["conditions"].is_null() {
            let labels = json!({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": j["metadata"]["uid"]});
            let pod_name = format!("{name}-{}", next_suffix(world));
            let mut p = new_pod(world, store, &j, "Job", "batch/v1", pod_name, labels);
            p["metadata"]["ownerReferences"][0]["apiVersion"] = json!("batch/v1");
            store.update("pods", p);
        }
        for p in owned_by(store, "pods", &j)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
        {
            let key = super::store::key_of("pods", &p);
            if p["status"]["phase"] == "Running" && !world.started_jobs.contains(&key) {
                let c = &p["spec"]["containers"][0];
                let strs = |v: &Value| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                };
                // Like a kubelet, the container starts only once its volumes are mounted.
                let Some(mounts) = mount_config_maps(store, world, &p) else {
                    continue;
                };
                world.started_jobs.insert(key.clone());
                runs.push(JobRun {
                    pod: key,
                    command: rewrite_mounted(strs(&c["command"]), &mounts),
                    args: rewrite_mounted(strs(&c["args"]), &mounts),
                });
            }
        }
    }
    runs
}

/// Kubelet emulation for Job pods, which the harness runs as local processes: every configMap
/// volume mounted in the pod's first container is materialised as a local directory holding one
/// file per key of the ConfigMap's `data` (or per `items` entry, at its `path`), under a temp dir
/// of the fake. Returns (mountPath, local directory) pairs, or `None` while a ConfigMap is missing
/// (a kubelet keeps such a pod in ContainerCreating; here the run is retried on the next tick).
/// `binaryData`, `subPath` and other volume kinds are not emulated.
pub fn mount_config_maps(
    store: &Store,
    world: &mut World,
    pod: &Value,
) -> Option<Vec<(String, std::path::PathBuf)>> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(vol_name), Some(mount_path)) = (m["name"].as_str(), m["mountPath"].as_str())
        else {
            continue;
        };
        let Some(cm_name) = volumes
            .iter()
            .find(|v| v["name"] == vol_name)
            .and_then(|v| v["configMap"]["name"].as_str())
        else {
            continue;
        };
        let cm = store.get("configmaps", ns, cm_name)?;
        let root = world
            .volumes_dir
            .get_or_insert_with(|| tempfile::tempdir().expect("kubelet volumes dir"))
            .path()
            .to_path_buf();
        let dir = root.join(ns).join(pod_name).join(vol_name);
        std::fs::create_dir_all(&dir).expect("create volume dir");
        let data = cm["data"].as_object().cloned().unwrap_or_default();
        let files: Vec<(String, String)> = match cm_items(&volumes, vol_name) {
            Some(items) => items
                .into_iter()
                .filter(|(k, _)| data.contains_key(k))
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in files {
            let file = dir.join(&path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("create volume subdir");
            }
            std::fs::write(&file, data[&key].as_str().unwrap_or_default())
                .expect("write volume file");
        }
        out.push((mount_path.trim_end_matches('/').to_string(), dir));
    }
    Some(out)
}

fn cm_items(volumes: &[Value], vol_name: &str) -> Option<Vec<(String, String)>> {
    let v = volumes.iter().find(|v| v["name"] == vol_name)?;
    let items = v["configMap"]["items"].as_array()?;
    Some(
        items
            .iter()
            .filter_map(|i| Some((i["key"].as_str()?.into(), i["path"].as_str()?.into())))
            .collect(),
    )
}

/// Rewrites arguments under a mount path (the path itself or `mountPath/...`) to the local
/// directory the kubelet emulation materialised it in.
fn rewrite_mounted(args: Vec<String>, mounts: &[(String, std::path::PathBuf)]) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            for (mount, dir) in mounts {
                if let Some(rest) = a.strip_prefix(mount.as_str()) {
                    if rest.is_empty() || rest.starts_with('/') {
                        return format!("{}{rest}", dir.display());
                    }
                }
            }
            a
        })
        .collect()
}

fn failure_for(faults: &Faults, spec: &Value) -> Option<PodFailure> {
    let images: Vec<String> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect();
    faults
        .images
        .iter()
        .find(|(sub, _)| images.iter().any(|i| i.contains(sub.as_str())))
        .map(|(_, f)| *f)
}

fn container_statuses(spec: &Value, state: Value, ready: bool, restarts: i64) -> Value {
    Value::Array(
        spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "restartCount": restarts, "state": state, "started": ready}))
            .collect(),
    )
}

/// Scheduler and kubelet: bind pods to nodes, then run them (or fail them as injected).
fn kubelet(store: &mut Store, world: &mut World, faults: &Faults) {
    let node_list = nodes(store);
    let node_ip = |name: &str| -> Option<String> {
        node_list
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .and_then(|n| {
                n["status"]["addresses"]
                    .as_array()?
                    .iter()
                    .find(|a| a["type"] == "InternalIP")
                    .and_then(|a| a["address"].as_str().map(str::to_string))
            })
    };
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in store.list("pods", None) {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *per_node.entry(n.to_string()).or_default() += 1;
        }
    }
    for mut p in store.list("pods", None) {
        let key = super::store::key_of("pods", &p);
        let phase = p["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_string();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let failure = failure_for(faults, &p["spec"]);
        // A pod bound to a node that no longer exists is evicted (the node controller).
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            if node_ip(n).is_none() && !node_list.iter().any(|x| x["metadata"]["name"] == n) {
                store.delete(&key);
                continue;
            }
        }
        if p["spec"]["nodeName"].is_null() {
            let allowed = allowed_nodes(&p["spec"]);
            let candidates: Vec<String> = node_list
                .iter()
                .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
                .filter(|n| allowed.as_ref().is_none_or(|a| a.contains(n)))
                .collect();
            if candidates.is_empty() || failure == Some(PodFailure::Unschedulable) {
                p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": format!("0/{} nodes are available: {} node(s) didn't match Pod's node affinity/selector.", node_list.len(), node_list.len())}]});
                store.update("pods", p);
                continue;
            }
            let node = candidates
                .iter()
                .min_by_key(|n| per_node.get(*n).copied().unwrap_or(0))
                .cloned()
                .unwrap_or_default();
            *per_node.entry(node.clone()).or_default() += 1;
            p["spec"]["nodeName"] = json!(node);
        }
        let node = p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let host_ip = node_ip(&node).unwrap_or_else(|| "10.0.0.254".into());
        let age = world
            .born
            .get(&key)
            .map(|b| b.elapsed())
            .unwrap_or(Duration::MAX);
        let sched = json!({"type": "PodScheduled", "status": "True"});
        let status = if age < faults.ready_delay {
            json!({"phase": "Pending", "hostIP": host_ip, "conditions": [sched],
                   "containerStatuses": container_statuses(&p["spec"], json!({"waiting": {"reason": "ContainerCreating"}}), false, 0)})
        } else {
            match failure {
                Some(PodFailure::ImagePull) => {
                    let image = p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let reason = if age < faults.ready_delay * 2 {
                        "ErrImagePull"
                    } else {
                        "ImagePullBackOff"
                    };
                    json!({"phase": "Pending", "hostIP": host_ip, "conditions": [sched, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                           "containerStatuses": container_statuses(&p["spec"], json!({"waiting": {"reason": reason, "message": format!("Back-off pulling image \"{image}\"")}}), false, 0)})
                }
                Some(PodFailure::CrashLoop) => {
                    let restarts = (age.as_millis() / 500) as i64 + 1;
                    json!({"phase": "Running", "hostIP": host_ip, "conditions": [sched, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                           "containerStatuses": container_statuses(&p["spec"], json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}), false, restarts.min(5))})
                }
                _ => {
                    if let Some(code) = world.finished_jobs.get(&key) {
                        let phase = if *code == 0 { "Succeeded" } else { "Failed" };
                        json!({"phase": phase, "hostIP": host_ip, "conditions": [sched, {"type": "Ready", "status": "False"}],
                               "containerStatuses": container_statuses(&p["spec"], json!({"terminated": {"exitCode": code, "reason": if *code == 0 {"Completed"} else {"Error"}}}), false, 0)})
                    } else {
                        json!({"phase": "Running", "hostIP": host_ip, "podIP": format!("10.244.0.{}", 2 + key.2.len()),
                               "conditions": [sched, {"type": "Ready", "status": "True"}],
                               "containerStatuses": container_statuses(&p["spec"], json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), true, 0)})
                    }
                }
            }
        };
        p["status"] = status;
        store.update("pods", p);
    }
}

/// Workload statuses from their pods.
fn statuses(store: &mut Store) {
    for mut rs in store.list("replicasets", None) {
        let pods: Vec<Value> = owned_by(store, "pods", &rs).into_iter().cloned().collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        rs["status"] = json!({"replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]});
        store.update("replicasets", rs);
    }
    for mut d in store.list("deployments", None) {
        let hash = short_hash(&d["spec"]["template"]);
        let current = format!(
            "{}-{hash}",
            d["metadata"]["name"].as_str().unwrap_or_default()
        );
        let (mut total, mut updated, mut ready) = (0, 0, 0);
        for rs in owned_by(store, "replicasets", &d) {
            for p in owned_by(store, "pods", rs) {
                total += 1;
                if rs["metadata"]["name"] == current.as_str() {
                    updated += 1;
                    if pod_ready(p) {
                        ready += 1;
                    }
                }
            }
        }
        d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "replicas": total, "updatedReplicas": updated,
                             "readyReplicas": ready, "availableReplicas": ready});
        store.update("deployments", d);
    }
    for mut s in store.list("statefulsets", None) {
        let pods: Vec<Value> = owned_by(store, "pods", &s).into_iter().cloned().collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        s["status"] = json!({"observedGeneration": s["metadata"]["generation"], "replicas": pods.len(), "readyReplicas": ready,
                             "updatedReplicas": pods.len(), "availableReplicas": ready});
        store.update("statefulsets", s);
    }
    for mut ds in store.list("daemonsets", None) {
        let pods: Vec<Value> = owned_by(store, "pods", &ds).into_iter().cloned().collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        ds["status"] = json!({"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": pods.len(),
                              "currentNumberScheduled": pods.len(), "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": pods.len()});
        store.update("daemonsets", ds);
    }
    for mut j in store.list("jobs", None) {
        let pods: Vec<Value> = owned_by(store, "pods", &j).into_iter().cloned().collect();
        let succeeded = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .count();
        let failed = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .count();
        let active = pods.len() - succeeded - failed;
        let mut st = json!({"active": active, "succeeded": succeeded, "failed": failed});
        if succeeded > 0 {
            st["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        } else if failed > 0 {
            st["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]);
        } else if !j["status"]["conditions"].is_null() {
            st["conditions"] = j["status"]["conditions"].clone();
        }
        j["status"] = st;
        store.update("jobs", j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_emulation_materialises_config_map_volumes() {
        let mut store = Store::default();
        let mut world = World::default();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "volumes": [{"name": "v", "configMap": {"name": "cm"}}],
                "containers": [{"volumeMounts": [{"name": "v", "mountPath": "/etc/x/"}]}],
            },
        });
        assert!(
            mount_config_maps(&store, &mut world, &pod).is_none(),
            "waits for the ConfigMap"
        );
        store.create(
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "namespace": "ns"}, "data": {"s.lua": "x = 1"}}),
        );
        let mounts = mount_config_maps(&store, &mut world, &pod).unwrap();
        let dir = mounts[0].1.clone();
        assert_eq!(std::fs::read_to_string(dir.join("s.lua")).unwrap(), "x = 1");
        let args = rewrite_mounted(
            vec![
                "-s".into(),
                "/etc/x/s.lua".into(),
                "/etc/xy".into(),
                "/etc/x".into(),
            ],
            &mounts,
        );
        let d = dir.display().to_string();
        assert_eq!(
            args,
            ["-s".to_string(), format!("{d}/s.lua"), "/etc/xy".into(), d]
        );
    }
}
