//! Simulated controllers of the fake cluster, run on a short tick: Deployment → ReplicaSet →
//! pods, StatefulSet and DaemonSet → pods, Job → one pod, PersistentVolumeClaim → a bound
//! PersistentVolume; the garbage collector ([`super::deletion::collect`]); the scheduler and
//! kubelet ([`super::kubelet`]); status of every workload. Controllers ignore terminating pods
//! when they count replicas, as the real ones do, and delete pods gracefully.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::deletion::{self, DeleteOptions};
use super::kubelet::{kubelet, mount_config_maps, rewrite_mounted};
use super::store::{key_of, Key, Store};

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
#[derive(Debug, Clone)]
pub struct Faults {
    /// Image substring → failure.
    pub images: Vec<(String, PodFailure)>,
    /// (verb, resource) pairs answered with 403 Forbidden, resource being a plural or
    /// `plural/subresource` (`("get", "pods/log")`, `("create", "pods/proxy")`,
    /// `("list", "jobs")`); `*` matches any verb or resource. See [`super::rbac`].
    pub forbidden: Vec<(String, String)>,
    /// Maximum pods per namespace; creating more is refused with 403 exceeded quota.
    pub pod_quota: Option<usize>,
    /// Answer every request with this error status (500 InternalError, 503 ServiceUnavailable,
    /// ...). Note that kube's client retries 429/503/504 with backoff before giving up.
    pub error_status: Option<u16>,
    /// Time from pod creation to readiness.
    pub ready_delay: Duration,
    /// Cut every watch connection this long after it opened (abruptly, as a load balancer or
    /// a restarting API server does).
    pub drop_watches_every: Option<Duration>,
    /// The next this many watches are answered with an ERROR event, 410 Expired.
    pub gone_next_watches: u32,
    /// Every this long, compact the event history and send 410 Expired to every open watch.
    pub gone_every: Option<Duration>,
    /// Interval of BOOKMARK events on watches that allow them (a real server: about a minute).
    pub bookmark_every: Duration,
    /// How long a deleted pod's containers take to stop: the pod disappears after the shorter
    /// of this and its grace period (a real container that handles SIGTERM stops quickly).
    pub termination_delay: Duration,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            images: Vec::new(),
            forbidden: Vec::new(),
            pod_quota: None,
            error_status: None,
            ready_delay: Duration::ZERO,
            drop_watches_every: None,
            gone_next_watches: 0,
            gone_every: None,
            bookmark_every: Duration::from_secs(1),
            termination_delay: Duration::from_secs(1),
        }
    }
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
    /// Container image (what a local runner may take the program name from when there is no
    /// command).
    pub image: String,
    /// Container environment, `valueFrom` Secret and ConfigMap keys resolved.
    pub env: Vec<(String, String)>,
    /// Container port mapping, as a container runtime gives one: (containerPort declared by the
    /// container, free port on 127.0.0.1 the local process should listen on instead). The pod
    /// proxy forwards `pods/NAME:containerPort/proxy/...` there.
    pub ports: Vec<(u16, u16)>,
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
    /// Container port → local port of each Job pod run by the harness ([`JobRun::ports`]).
    pub pod_ports: HashMap<Key, Vec<(u16, u16)>>,
    /// Job pods finished by the runner: exit code.
    pub finished_jobs: HashMap<Key, i32>,
    /// Where the kubelet emulation writes configMap volumes (created on first use).
    pub volumes_dir: Option<tempfile::TempDir>,
    /// When each Job started (for `activeDeadlineSeconds`).
    pub job_started: HashMap<Key, Instant>,
    /// Pods being deleted: when their containers will have stopped.
    pub terminating: HashMap<Key, Instant>,
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

/// Objects owned by `owner`; terminating pods are left out, as controllers do when counting.
fn owned_by<'a>(store: &'a Store, plural: &str, owner: &Value) -> Vec<&'a Value> {
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or_default();
    store
        .objects
        .iter()
        .filter(|((p, n, _), o)| {
            p == plural
                && n == ns
                && o["metadata"]["deletionTimestamp"].is_null()
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
    deletion::collect(store, world, faults);
    deployments(store, world, faults);
    replicasets(store, world, faults);
    statefulsets(store, world, faults);
    daemonsets(store, world);
    claims(store);
    let runs = jobs(store, world, faults);
    kubelet(store, world, faults);
    statuses(store);
    runs
}

/// Deletes a pod (or any object) the way a controller does: through the API, gracefully.
fn delete_gracefully(store: &mut Store, world: &mut World, faults: &Faults, key: &Key) {
    deletion::request(store, world, faults, key, &DeleteOptions::default());
}

fn deployments(store: &mut Store, world: &mut World, faults: &Faults) {
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
                delete_gracefully(store, world, faults, &key_of("replicasets", rs));
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
    faults: &Faults,
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
            let ns = owner["metadata"]["namespace"].as_str().unwrap_or_default();
            // A StatefulSet waits until the terminating pod of the same name is gone.
            if store.get("pods", ns, &name).is_none() {
                new_pod(world, store, owner, kind, "apps/v1", name, json!({}));
            }
        }
    } else if have > want {
        for p in pods.iter().skip(want as usize) {
            delete_gracefully(store, world, faults, &key_of("pods", p));
        }
    }
}

fn replicasets(store: &mut Store, world: &mut World, faults: &Faults) {
    for rs in store.list("replicasets", None) {
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let base = rs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        scale_pods(store, world, faults, &rs, "ReplicaSet", want, &|w, _| {
            format!("{base}-{}", next_suffix(w))
        });
    }
}

fn statefulsets(store: &mut Store, world: &mut World, faults: &Faults) {
    for s in store.list("statefulsets", None) {
        let want = s["spec"]["replicas"].as_i64().unwrap_or(1);
        let base = s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        scale_pods(store, world, faults, &s, "StatefulSet", want, &|_, i| {
            format!("{base}-{i}")
        });
    }
}

fn daemonsets(store: &mut Store, world: &mut World) {
    for ds in store.list("daemonsets", None) {
        let spec = &ds["spec"]["template"]["spec"];
        let targets: Vec<String> = store
            .list("nodes", None)
            .iter()
            .filter(|n| {
                super::scheduler::affinity_matches(spec, n)
                    && super::scheduler::taints_tolerated(spec, n)
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
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

/// A free local port for every `containerPort` the container declares.
fn host_ports(container: &Value) -> Vec<(u16, u16)> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let cp = u16::try_from(p["containerPort"].as_u64()?).ok()?;
            let local = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            Some((cp, local.local_addr().ok()?.port()))
        })
        .collect()
}

/// A Job active longer than its `activeDeadlineSeconds` fails (DeadlineExceeded) and its active
/// pods are deleted, as the Job controller does.
fn job_deadline(store: &mut Store, world: &mut World, faults: &Faults, j: &Value) {
    let key = key_of("jobs", j);
    let started = *world.job_started.entry(key).or_insert_with(Instant::now);
    let Some(deadline) = j["spec"]["activeDeadlineSeconds"].as_u64() else {
        return;
    };
    if !j["status"]["conditions"].is_null() || started.elapsed() < Duration::from_secs(deadline) {
        return;
    }
    let mut failed = j.clone();
    failed["status"]["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline"}]);
    store.update("jobs", failed);
    let active: Vec<Key> = owned_by(store, "pods", j)
        .into_iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(|p| key_of("pods", p))
        .collect();
    for k in active {
        delete_gracefully(store, world, faults, &k);
    }
}

fn jobs(store: &mut Store, world: &mut World, faults: &Faults) -> Vec<JobRun> {
    let mut runs = Vec::new();
    for j in store.list("jobs", None) {
        job_deadline(store, world, faults, &j);
        let (_, ns, name) = key_of("jobs", &j);
        let Some(j) = store.get("jobs", &ns, &name) else {
            continue;
        };
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
            let key = key_of("pods", &p);
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
                let ns = key.1.clone();
                let Some(env) = resolve_env(store, &ns, &c["env"]) else {
                    continue;
                };
                world.started_jobs.insert(key.clone());
                let ports = host_ports(c);
                world.pod_ports.insert(key.clone(), ports.clone());
                runs.push(JobRun {
                    ports,
                    pod: key,
                    command: rewrite_mounted(strs(&c["command"]), &mounts),
                    args: rewrite_mounted(strs(&c["args"]), &mounts),
                    image: c["image"].as_str().unwrap_or_default().to_string(),
                    env,
                });
            }
        }
    }
    runs
}

/// A container's environment with `valueFrom` Secret and ConfigMap keys resolved; `None` while
/// one is missing (a kubelet keeps the container in CreateContainerConfigError).
fn resolve_env(store: &Store, ns: &str, env: &Value) -> Option<Vec<(String, String)>> {
    use base64::Engine;
    let mut out = Vec::new();
    for e in env.as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let from = &e["valueFrom"];
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else if from["secretKeyRef"].is_object() {
            let r = &from["secretKeyRef"];
            let secret = store.get("secrets", ns, r["name"].as_str().unwrap_or_default())?;
            let raw = secret["data"][r["key"].as_str().unwrap_or_default()].as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else if from["configMapKeyRef"].is_object() {
            let r = &from["configMapKeyRef"];
            let cm = store.get("configmaps", ns, r["name"].as_str().unwrap_or_default())?;
            cm["data"][r["key"].as_str().unwrap_or_default()]
                .as_str()?
                .to_string()
        } else {
            String::new()
        };
        out.push((name, value));
    }
    Some(out)
}

/// The volume binder with a default dynamic provisioner: a Pending claim is bound to a new
/// PersistentVolume of its requested size on the next tick; a volume whose claim is gone is
/// deleted (reclaim policy Delete).
fn claims(store: &mut Store) {
    for mut c in store.list("persistentvolumeclaims", None) {
        if c["status"]["phase"] == "Bound" || c["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let uid = c["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pv_name = format!("pvc-{uid}");
        let size = c["spec"]["resources"]["requests"]["storage"].clone();
        let modes = c["spec"]["accessModes"].clone();
        store.create("persistentvolumes", json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "persistentVolumeReclaimPolicy": "Delete",
                     "storageClassName": c["spec"]["storageClassName"], "hostPath": {"path": format!("/var/lib/fake-kube/{pv_name}")},
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": c["metadata"]["namespace"], "name": c["metadata"]["name"], "uid": uid}},
            "status": {"phase": "Bound"},
        }));
        c["spec"]["volumeName"] = json!(pv_name);
        c["status"] =
            json!({"phase": "Bound", "capacity": {"storage": size}, "accessModes": modes});
        store.update("persistentvolumeclaims", c);
    }
    for pv in store.list("persistentvolumes", None) {
        let r = &pv["spec"]["claimRef"];
        let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) else {
            continue;
        };
        let claim = store.get("persistentvolumeclaims", ns, name);
        if claim.is_none_or(|c| c["metadata"]["uid"] != r["uid"]) {
            store.remove(&key_of("persistentvolumes", &pv));
        }
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
