//! A fake Kubernetes API server for end-to-end tests: a hyper server on 127.0.0.1 speaking the real
//! REST and JSON protocol for what AEFM uses (discovery, namespaces, nodes, pods and their logs
//! with `timestamps` and `sinceTime`/`sinceSeconds`,
//! services, configmaps, deployments, replicasets, statefulsets, daemonsets, jobs; create, get,
//! list with label and field selectors, server-side apply, delete with garbage collection, watch),
//! with simulated controllers (readiness after a delay; image pull errors, crash loops,
//! unschedulable pods, RBAC refusals, pod quotas and an unavailable server on command). Load Jobs
//! can run for real through a job runner (e.g. the `aefm-load` binary), whose stdout becomes the
//! pod log; as a kubelet would, the fake first materialises the pod's configMap volumes in a local
//! temp dir and rewrites arguments under their mount paths to it
//! ([`controllers::mount_config_maps`]). Product code reaches it through an ordinary kubeconfig file ([`FakeKube::kubeconfig`]).

pub mod controllers;
pub mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

pub use controllers::{Faults, JobRun, PodFailure};
use store::Store;

/// Runs a Job's container: returns (exit code, stdout that becomes the pod log).
pub type JobRunner = Arc<dyn Fn(&JobRun) -> (i32, String) + Send + Sync>;

/// State shared by the HTTP handlers, the controllers and the test.
pub struct Shared {
    store: Mutex<Store>,
    world: Mutex<controllers::World>,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<String>>,
    changes: tokio::sync::watch::Sender<u64>,
    runner: Mutex<Option<JobRunner>>,
}

impl Shared {
    /// The store, locked.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Current faults (a copy).
    pub fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn log_request(&self, method: &http::Method, uri: &http::Uri) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{method} {uri}"));
    }
    fn forbidden(&self, verb: &str, plural: &str) -> bool {
        self.faults()
            .forbidden
            .iter()
            .any(|(v, p)| (v == verb || v == "*") && p == plural)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
    fn notify(&self) {
        let rv = self.store().rv;
        self.changes.send_replace(rv);
    }
    fn after_create(&self, _plural: &str, _obj: &Value) {
        self.notify();
    }
    /// A pod's log as the API server returns it: the whole text, then the timed lines; with
    /// `timestamps`, each line prefixed by its RFC 3339 time (nanoseconds) and a space, as a
    /// kubelet does; with `since`, only timed lines written at or after it.
    fn log_of(
        &self,
        ns: &str,
        name: &str,
        timestamps: bool,
        since: Option<std::time::SystemTime>,
    ) -> Option<String> {
        let key = ("pods".to_string(), ns.to_string(), name.to_string());
        self.store().get("pods", ns, name)?;
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = |t: std::time::SystemTime| {
            k8s_openapi::jiff::Timestamp::try_from(t)
                .map(|ts| format!("{ts:.9} "))
                .unwrap_or_default()
        };
        let plain = world.logs.get(&key).cloned().unwrap_or_default();
        if !world.log_lines.contains_key(&key) && since.is_none() && !timestamps {
            // Exactly what was stored (a job's output keeps its own line ends).
            return Some(plain);
        }
        let mut text = String::new();
        if since.is_none() {
            for l in plain.lines() {
                if timestamps {
                    text.push_str(&stamp(std::time::SystemTime::now()));
                }
                text.push_str(l);
                text.push('\n');
            }
        }
        for (at, l) in world.log_lines.get(&key).into_iter().flatten() {
            if since.is_some_and(|s| *at < s) {
                continue;
            }
            if timestamps {
                text.push_str(&stamp(*at));
            }
            text.push_str(l);
            text.push('\n');
        }
        Some(text)
    }
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
        let (changes, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            world: Mutex::new(controllers::World::default()),
            faults: Mutex::new(Faults {
                ready_delay: Duration::from_millis(150),
                ..Faults::default()
            }),
            requests: Mutex::new(Vec::new()),
            changes,
            runner: Mutex::new(None),
        });
        for ns in ["default", "kube-system"] {
            shared.store().create(
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake API server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let ctl = sh.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        run_controllers(&ctl);
                    }
                });
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        acc = listener.accept() => {
                            let Ok((stream, _)) = acc else { continue };
                            let sh = sh.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| server::handle(sh.clone(), req));
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            });
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube {
            addr,
            shared,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        std::fs::write(fake.kubeconfig(), fake.kubeconfig_text()).expect("write kubeconfig");
        fake
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
    /// `control_plane` adds the control-plane label, `legacy_master` the old master label.
    pub fn add_node(&self, name: &str, cpu: &str, memory: &str, ip: &str, labels: Value) {
        let mut lbl = json!({"kubernetes.io/hostname": name});
        if let Value::Object(m) = labels {
            for (k, v) in m {
                lbl[k] = v;
            }
        }
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": lbl},
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

    /// A cluster of one master (legacy `master` label) and three identical workers w1..w3.
    pub fn with_standard_nodes(self) -> FakeKube {
        self.add_node(
            "master",
            "4",
            "8Gi",
            "10.0.0.10",
            json!({"node-role.kubernetes.io/master": ""}),
        );
        self.add_node("w1", "8", "32863984Ki", "10.0.0.11", json!({}));
        self.add_node("w2", "8", "32Gi", "10.0.0.12", json!({}));
        self.add_node("w3", "8000m", "34359738368", "10.0.0.13", json!({}));
        self
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
        f(&mut self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Appends a line to a pod's log as if its container printed it at `at` (served with
    /// `timestamps` and filtered by `sinceTime` as a real API server does).
    pub fn write_log(&self, namespace: &str, pod: &str, at: std::time::SystemTime, line: &str) {
        let key = ("pods".to_string(), namespace.to_string(), pod.to_string());
        self.shared
            .world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log_lines
            .entry(key)
            .or_default()
            .push((at, line.to_string()));
    }

    /// Installs the runner for Job pods.
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

fn run_controllers(shared: &Arc<Shared>) {
    let faults = shared.faults();
    let runs = {
        let mut store = shared.store();
        let before = store.rv;
        let mut world = shared.world.lock().unwrap_or_else(|e| e.into_inner());
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
            let (code, log) = match runner {
                Some(r) => r(&run),
                None => (0, String::new()),
            };
            let mut world = sh.world.lock().unwrap_or_else(|e| e.into_inner());
            world.logs.insert(run.pod.clone(), log);
            world.finished_jobs.insert(run.pod.clone(), code);
        });
    }
}
