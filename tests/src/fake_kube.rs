//! A fake Kubernetes API server for end-to-end tests: a hyper server on 127.0.0.1 speaking the real
//! REST and JSON protocol for what AEFM uses (discovery, namespaces, nodes, pods and their logs,
//! services, configmaps, secrets, persistent volumes and claims, deployments, replicasets,
//! statefulsets, daemonsets, jobs, SelfSubjectAccessReview; create, get, list, server-side apply,
//! replace, delete, deletecollection, watch), with simulated controllers, scheduler and kubelet.
//! Product code reaches it through an ordinary kubeconfig file ([`FakeKube::kubeconfig`]); the
//! `fake-kube` binary runs it standalone.
//!
//! It is as strict as a real API server where AEFM could go wrong:
//! - **resourceVersion**: lists carry `metadata.resourceVersion` and page with `limit`/`continue`;
//!   only the last [`store::DEFAULT_WINDOW`] events are kept ([`FakeKube::set_watch_window`]), and a
//!   watch from an older resourceVersion gets an ERROR event with a 410 `Expired` Status; a watch
//!   without one (or at `0`) starts with synthetic ADDED events ([`watch`]).
//! - **Watch streams**: end at `timeoutSeconds`; BOOKMARK events with `allowWatchBookmarks`;
//!   injected faults cut every stream after a while, answer the next watches 410, or expire every
//!   open watch ([`Faults`], [`FakeKube::expire_watches`]).
//! - **Validation** (422 `Invalid`, [`validation`]): names, label keys and values; immutable Job
//!   template and selector, workload selectors, StatefulSet spec, Pod spec apart from images,
//!   `activeDeadlineSeconds` and added tolerations; a Job selector the server did not generate.
//! - **Scheduling** ([`scheduler`]): requests against allocatable, taints and tolerations, host
//!   ports, nodeSelector and node affinity, PersistentVolumeClaims bound; otherwise
//!   `Unschedulable` with the real summary message.
//! - **PersistentVolumeClaims** are bound to a provisioned volume on the next tick and protected
//!   from deletion while a pod uses them.
//! - **Deletion** is asynchronous ([`deletion`]): pods terminate for their grace period (cut short
//!   by [`Faults::termination_delay`]), finalizers and foreground deletion hold objects, namespaces
//!   terminate with their content, dependents are garbage collected or orphaned.
//! - **RBAC** ([`rbac`]): any (verb, resource or resource/subresource) can be refused with the
//!   real 403 message, and SelfSubjectAccessReview answers accordingly.
//! - **Deadlines**: a pod past its `activeDeadlineSeconds` fails (DeadlineExceeded), and so does a
//!   Job, whose active pods are then deleted.
//! - **Pod logs** ([`logs`]): the container must be named when there are several and must have
//!   started; `timestamps`, `sinceTime`/`sinceSeconds`, `tailLines`, `limitBytes`.
//!
//! Faults on command: image pull errors, crash loops, unschedulable pods, pod quotas, an
//! unavailable server ([`Faults`]); evicted pods ([`FakeKube::evict_pod`]), vanished nodes
//! ([`FakeKube::remove_node`]). Nodes report the images of the pods they ran in `status.images`
//! ([`FakeKube::preload_images`]). Load Jobs can run for real through a job runner (e.g. the
//! `aefm-load` binary, [`runner::local_process_runner`]) whose stdout and stderr become the pod log;
//! as a kubelet would, the fake first materialises the pod's configMap volumes in a local temp dir
//! and rewrites arguments under their mount paths to it ([`kubelet::mount_config_maps`]), and
//! resolves its environment from Secrets and ConfigMaps.

pub mod controllers;
pub mod deletion;
pub mod kubelet;
pub mod logs;
pub mod proxy;
pub mod rbac;
pub mod runner;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod validation;
pub mod watch;
pub mod writes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use controllers::{Faults, JobRun, PodFailure};
pub use runner::JobOutput;
use store::Store;

/// Runs a Job's container: its exit code and output, which becomes the pod log.
pub type JobRunner = Arc<dyn Fn(&JobRun) -> JobOutput + Send + Sync>;

/// State shared by the HTTP handlers, the controllers and the test.
pub struct Shared {
    store: Mutex<Store>,
    world: Mutex<controllers::World>,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<String>>,
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped to expire every open watch (410).
    expiry: tokio::sync::watch::Sender<u64>,
    runner: Mutex<Option<JobRunner>>,
}

impl Shared {
    /// The store, locked (lock the store before the world when both are needed).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The controllers' world (logs, timers), locked.
    pub fn world(&self) -> MutexGuard<'_, controllers::World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Current faults (a copy).
    pub fn faults(&self) -> Faults {
        self.faults_mut().clone()
    }
    /// The faults, locked for a change.
    pub fn faults_mut(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn log_request(&self, method: &http::Method, uri: &http::Uri) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{method} {uri}"));
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
    /// Wakes the watches after a change to the store.
    pub fn notify(&self) {
        let rv = self.store().rv;
        self.changes.send_replace(rv);
    }
    /// Compacts the history and sends 410 Expired to every open watch.
    pub fn expire_watches(&self) {
        self.store().compact();
        self.expiry.send_modify(|n| *n += 1);
    }
}

/// How to start a fake.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Port on 127.0.0.1 (`None`: a free one).
    pub port: Option<u16>,
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    /// Starts the server on 127.0.0.1 (a free port) with its controllers, and writes a kubeconfig.
    pub fn start() -> FakeKube {
        FakeKube::start_with(Options::default())
    }

    /// Starts the server as `options` say.
    pub fn start_with(options: Options) -> FakeKube {
        let (changes, _) = tokio::sync::watch::channel(0);
        let (expiry, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            world: Mutex::new(controllers::World::default()),
            faults: Mutex::new(Faults {
                ready_delay: Duration::from_millis(150),
                ..Faults::default()
            }),
            requests: Mutex::new(Vec::new()),
            changes,
            expiry,
            runner: Mutex::new(None),
        });
        for ns in ["default", "kube-system"] {
            shared.store().create(
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", options.port.unwrap_or(0)))
            .expect("bind fake API server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::spawn(move || serve(sh, listener, stop_rx));
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube {
            addr,
            shared,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        fake.write_kubeconfig(&fake.kubeconfig())
            .expect("write kubeconfig");
        fake
    }

    /// Writes a kubeconfig pointing at this server to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_text())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Path of a kubeconfig whose current context (`fake`) points at this server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The kubeconfig's text.
    pub fn kubeconfig_text(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: default\ncurrent-context: fake\nusers:\n- name: tester\n  user:\n    token: fake-token\n",
            self.url()
        )
    }

    /// Direct access to the shared state (store and faults).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds a node with allocatable CPU and memory (quantities as strings) and an InternalIP.
    /// `labels` are added to `kubernetes.io/hostname`.
    pub fn add_node(&self, name: &str, cpu: &str, memory: &str, ip: &str, labels: Value) {
        self.add_tainted_node(name, cpu, memory, ip, labels, json!([]));
    }

    /// Adds a node with taints (`[{"key": ..., "value": ..., "effect": "NoSchedule"}]`).
    pub fn add_tainted_node(
        &self,
        name: &str,
        cpu: &str,
        memory: &str,
        ip: &str,
        labels: Value,
        taints: Value,
    ) {
        let mut lbl = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
        if let Value::Object(m) = labels {
            for (k, v) in m {
                lbl[k] = v;
            }
        }
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": lbl},
            "spec": {"taints": taints},
            "status": {
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        self.shared.store().create("nodes", node);
        self.shared.notify();
    }

    /// A cluster of one master (legacy `master` label and NoSchedule taint, as kubeadm set
    /// them) and three identical workers w1..w3 (8 CPUs, 32 GiB each).
    pub fn with_standard_nodes(self) -> FakeKube {
        self.add_tainted_node(
            "master",
            "4",
            "8Gi",
            "10.0.0.10",
            json!({"node-role.kubernetes.io/master": ""}),
            json!([{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}]),
        );
        self.add_node("w1", "8", "32863984Ki", "10.0.0.11", json!({}));
        self.add_node("w2", "8", "32Gi", "10.0.0.12", json!({}));
        self.add_node("w3", "8000m", "34359738368", "10.0.0.13", json!({}));
        self
    }

    /// Makes a node report images as already pulled (`status.images`).
    pub fn preload_images(&self, node: &str, images: &[&str]) {
        let containers: Vec<Value> = images.iter().map(|i| json!({"image": i})).collect();
        kubelet::pulled(
            &mut self.shared.store(),
            node,
            &json!({"containers": containers}),
        );
        self.shared.notify();
    }

    /// Evicts a pod as a kubelet under node pressure does: phase Failed, reason `Evicted`, its
    /// containers terminated (exit 137); a Job that allows no retry fails. Returns whether the
    /// pod existed.
    pub fn evict_pod(&self, namespace: &str, name: &str) -> bool {
        let mut store = self.shared.store();
        let Some(mut p) = store.get("pods", namespace, name) else {
            return false;
        };
        let spec = p["spec"].clone();
        let terminated = json!({"terminated": {"exitCode": 137, "reason": "Error"}});
        p["status"]["phase"] = json!("Failed");
        p["status"]["reason"] = json!("Evicted");
        p["status"]["message"] = json!(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 10Mi."
        );
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "PodFailed"},
            {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}]);
        p["status"]["containerStatuses"] = kubelet::container_statuses(&spec, terminated, false, 0);
        store.update("pods", p);
        drop(store);
        self.shared.notify();
        true
    }

    /// Removes a node; pods bound to it are evicted on the next tick.
    pub fn remove_node(&self, name: &str) {
        self.shared
            .store()
            .delete(&("nodes".into(), String::new(), name.into()));
        self.shared.notify();
    }

    /// Stores any object (e.g. a Service in `monitor`), creating its namespace when missing.
    pub fn insert(&self, plural: &str, object: Value) -> Value {
        let mut store = self.shared.store();
        if let Some(ns) = object["metadata"]["namespace"].as_str() {
            if store.get("namespaces", "", ns).is_none() {
                store.create(
                    "namespaces",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                );
            }
        }
        let o = store.create(plural, object);
        drop(store);
        self.shared.notify();
        o
    }

    /// Changes the injected faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.shared.faults_mut());
    }

    /// Compacts the event history and sends 410 Expired to every open watch, as after an etcd
    /// compaction: clients must list again.
    pub fn expire_watches(&self) {
        self.shared.expire_watches();
    }

    /// Keeps only the last `events` changes for watches to resume from.
    pub fn set_watch_window(&self, events: usize) {
        let mut store = self.shared.store();
        store.window = events.max(1);
        while store.events.len() > store.window {
            if let Some(e) = store.events.pop_front() {
                store.compacted = e.rv;
            }
        }
    }

    /// Appends a line to a pod's log as if its container printed it at `at` (served with
    /// `timestamps` and filtered by `sinceTime` as a real API server does).
    pub fn write_log(&self, namespace: &str, pod: &str, at: std::time::SystemTime, line: &str) {
        let key = ("pods".to_string(), namespace.to_string(), pod.to_string());
        self.shared
            .world()
            .log_lines
            .entry(key)
            .or_default()
            .push((at, line.to_string()));
    }

    /// Installs the runner for Job pods (e.g. [`runner::local_process_runner`]).
    pub fn set_job_runner(&self, runner: JobRunner) {
        *self.shared.runner.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner);
    }

    /// Objects of a resource (all namespaces), e.g. `objects("pods")`.
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        self.shared.store().list(plural, None)
    }

    /// One object.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store().get(plural, namespace, name)
    }

    /// Every request received so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Objects of `plural` carrying label `key=value`.
    pub fn labelled(&self, plural: &str, key: &str, value: &str) -> Vec<Value> {
        self.objects(plural)
            .into_iter()
            .filter(|o| o["metadata"]["labels"][key] == value)
            .collect()
    }

    /// Waits (bounded) until `cond` holds on the store; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&FakeKube) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond(self)
    }

    /// Directory for test files that lives as long as the fake.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The server thread: accepts connections and ticks the controllers until `stop`.
fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let ctl = shared.clone();
        tokio::spawn(async move {
            let mut last_gone = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                run_controllers(&ctl);
                if let Some(every) = ctl.faults().gone_every {
                    if last_gone.elapsed() >= every {
                        ctl.expire_watches();
                        last_gone = Instant::now();
                    }
                }
            }
        });
        loop {
            tokio::select! {
                _ = &mut stop => break,
                acc = listener.accept() => {
                    let Ok((stream, _)) = acc else { continue };
                    tokio::spawn(server::serve_connection(shared.clone(), stream));
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(100));
}

fn run_controllers(shared: &Arc<Shared>) {
    let faults = shared.faults();
    let runs = {
        let mut store = shared.store();
        let before = store.rv;
        let mut world = shared.world();
        let runs = controllers::tick(&mut store, &mut world, &faults);
        let changed = store.rv != before;
        drop(world);
        drop(store);
        if changed {
            shared.notify();
        }
        runs
    };
    let runner = shared
        .runner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for run in runs {
        let sh = shared.clone();
        let runner = runner.clone();
        tokio::task::spawn_blocking(move || {
            let out = match runner {
                Some(r) => r(&run),
                None => JobOutput::default(),
            };
            let mut world = sh.world();
            if out.lines.is_empty() {
                world.logs.insert(run.pod.clone(), out.plain_log());
            } else {
                world.log_lines.insert(run.pod.clone(), out.lines);
            }
            world.finished_jobs.insert(run.pod.clone(), out.code);
        });
    }
}
