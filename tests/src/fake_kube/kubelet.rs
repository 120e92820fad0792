//! The kubelet of the fake cluster, run on the controllers' tick: binds pending pods through the
//! [`super::scheduler`], then runs them: Pending (ContainerCreating) for [`Faults::ready_delay`],
//! then Running and Ready, or the failure injected for an image (pull error, crash loop,
//! unschedulable); Job pods end Succeeded or Failed with the job runner's exit code. Images of
//! started pods are added to their node's `status.images`, as a node reports what it pulled. For Job pods,
//! which the harness runs as local processes, it materialises configMap volumes
//! ([`mount_config_maps`]). Pods bound to a node that no longer exists are removed at once (the
//! pod garbage collector); pods past their `activeDeadlineSeconds` fail (DeadlineExceeded).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::controllers::{Faults, PodFailure, World};
use super::scheduler;
use super::store::{key_of, now_rfc3339, Store};

/// Kubelet emulation for Job pods, which the harness runs as local processes: every configMap
/// volume mounted in the pod's first container is materialised as a local directory holding one
/// file per key of the ConfigMap's `data` (or per `items` entry, at its `path`), under a temp dir
/// of the fake. Returns (mountPath, local directory) pairs, or `None` while a ConfigMap is missing
/// (a kubelet keeps such a pod in ContainerCreating; here the run is retried on the next tick).
/// Secret volumes are materialised the same way ([`secret_as_config_map`]). `binaryData`,
/// `subPath` and other volume kinds are not emulated.
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
        let Some(vol) = volumes.iter().find(|v| v["name"] == vol_name) else {
            continue;
        };
        let cm = if let Some(secret) = vol["secret"]["secretName"].as_str() {
            secret_as_config_map(&store.get("secrets", ns, secret)?)
        } else if let Some(cm_name) = vol["configMap"]["name"].as_str() {
            store.get("configmaps", ns, cm_name)?
        } else {
            continue;
        };
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

/// A Secret's keys as ConfigMap `data` (values decoded from base64 `data`, or `stringData` as a
/// real API server would have folded it in), so secret volumes mount like configMap ones.
fn secret_as_config_map(secret: &Value) -> Value {
    use base64::Engine;
    let mut data = serde_json::Map::new();
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default();
        data.insert(
            k.clone(),
            serde_json::json!(String::from_utf8_lossy(&bytes)),
        );
    }
    for (k, v) in secret["stringData"].as_object().into_iter().flatten() {
        data.insert(k.clone(), v.clone());
    }
    serde_json::json!({"data": data})
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
pub(crate) fn rewrite_mounted(
    args: Vec<String>,
    mounts: &[(String, std::path::PathBuf)],
) -> Vec<String> {
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

/// Container statuses of every container of `spec`, all in `state`.
pub fn container_statuses(spec: &Value, state: Value, ready: bool, restarts: i64) -> Value {
    Value::Array(
        spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "restartCount": restarts, "state": state, "started": ready}))
            .collect(),
    )
}

/// When every container "started": long before any test's measurement window, since pods of
/// the fake run nothing (tests write their logs with the times they need, see
/// [`crate::fake_kube::FakeKube::write_log`]).
const CONTAINER_START: &str = "2026-01-01T00:00:00Z";

fn node_ip(nodes: &[Value], name: &str) -> Option<String> {
    nodes
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .and_then(|n| {
            n["status"]["addresses"]
                .as_array()?
                .iter()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str().map(str::to_string))
        })
}

/// Binds the pod to a node, or records why it cannot be (`PodScheduled=False`).
fn bind(
    store: &mut Store,
    p: &mut Value,
    nodes: &[Value],
    used: &mut BTreeMap<String, scheduler::Usage>,
    failure: Option<PodFailure>,
) -> bool {
    let decision = if failure == Some(PodFailure::Unschedulable) {
        Err(format!(
            "0/{n} nodes are available: {n} node(s) didn't match Pod's node affinity/selector.",
            n = nodes.len()
        ))
    } else {
        scheduler::schedule(store, p, nodes, used)
    };
    match decision {
        Ok(node) => {
            scheduler::add(used.entry(node.clone()).or_default(), &p["spec"]);
            p["spec"]["nodeName"] = json!(node);
            true
        }
        Err(message) => {
            p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message}]});
            store.update("pods", p.clone());
            false
        }
    }
}

/// Scheduler and kubelet: bind pods to nodes, then run them (or fail them as injected).
pub fn kubelet(store: &mut Store, world: &mut World, faults: &Faults) {
    let node_list = store.list("nodes", None);
    let mut used = scheduler::usage(store);
    for mut p in store.list("pods", None) {
        let key = key_of("pods", &p);
        if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let failure = failure_for(faults, &p["spec"]);
        // A pod bound to a node that no longer exists is removed (the pod garbage collector).
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            if !node_list.iter().any(|x| x["metadata"]["name"] == n) {
                store.delete(&key);
                continue;
            }
        }
        if p["spec"]["nodeName"].is_null() && !bind(store, &mut p, &node_list, &mut used, failure) {
            continue;
        }
        let node = p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let host_ip = node_ip(&node_list, &node).unwrap_or_else(|| "10.0.0.254".into());
        // Pods created through the API start their clock when the kubelet first sees them.
        let age = world
            .born
            .entry(key.clone())
            .or_insert_with(Instant::now)
            .elapsed();
        if past_deadline(&p, age) {
            p["status"] = json!({"phase": "Failed", "reason": "DeadlineExceeded", "hostIP": host_ip,
                "message": "Pod was active on the node longer than the specified deadline",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "PodFailed"}],
                "containerStatuses": container_statuses(&p["spec"], json!({"terminated": {"exitCode": 137, "reason": "Error"}}), false, 0)});
            store.update("pods", p);
            continue;
        }
        p["status"] = pod_status(&p, &key, world, faults, failure, age, &host_ip);
        if age >= faults.ready_delay && failure != Some(PodFailure::ImagePull) {
            pulled(store, &node, &p["spec"]);
        }
        store.update("pods", p);
    }
}

/// Whether a pod has been active longer than its `activeDeadlineSeconds` (the kubelet then
/// fails it, reason DeadlineExceeded).
fn past_deadline(p: &Value, age: Duration) -> bool {
    p["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .is_some_and(|d| age >= Duration::from_secs(d))
}

/// Records the pod's images on its node (`status.images`), as a node reports what it pulled.
pub fn pulled(store: &mut Store, node: &str, spec: &Value) {
    let Some(mut n) = store.get("nodes", "", node) else {
        return;
    };
    let mut images = n["status"]["images"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let before = images.len();
    for c in spec["containers"].as_array().into_iter().flatten() {
        let Some(image) = c["image"].as_str() else {
            continue;
        };
        if !images.iter().any(|i| {
            i["names"]
                .as_array()
                .is_some_and(|ns| ns.iter().any(|x| x == image))
        }) {
            images.push(json!({"names": [image], "sizeBytes": 10_000_000}));
        }
    }
    if images.len() != before {
        n["status"]["images"] = json!(images);
        store.update("nodes", n);
    }
}

/// The status a kubelet reports for a bound pod of the given age.
#[allow(clippy::too_many_arguments)]
fn pod_status(
    p: &Value,
    key: &super::store::Key,
    world: &World,
    faults: &Faults,
    failure: Option<PodFailure>,
    age: Duration,
    host_ip: &str,
) -> Value {
    let sched = json!({"type": "PodScheduled", "status": "True"});
    if age < faults.ready_delay {
        return json!({"phase": "Pending", "hostIP": host_ip, "conditions": [sched],
               "containerStatuses": container_statuses(&p["spec"], json!({"waiting": {"reason": "ContainerCreating"}}), false, 0)});
    }
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
        _ => match world.finished_jobs.get(key) {
            Some(code) => {
                let phase = if *code == 0 { "Succeeded" } else { "Failed" };
                json!({"phase": phase, "hostIP": host_ip, "conditions": [sched, {"type": "Ready", "status": "False"}],
                       "containerStatuses": container_statuses(&p["spec"], json!({"terminated": {"exitCode": code, "reason": if *code == 0 {"Completed"} else {"Error"}, "startedAt": CONTAINER_START, "finishedAt": now_rfc3339()}}), false, 0)})
            }
            None => {
                json!({"phase": "Running", "hostIP": host_ip, "podIP": format!("10.244.0.{}", 2 + key.2.len()),
                           "conditions": [sched, {"type": "Ready", "status": "True"}],
                           "containerStatuses": container_statuses(&p["spec"], json!({"running": {"startedAt": CONTAINER_START}}), true, 0)})
            }
        },
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
