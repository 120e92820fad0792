//! End-to-end tests: the Kubernetes backend against the fake API server (real REST/JSON, real
//! kube client, an ordinary kubeconfig): deploy, idempotent re-apply, manifest rewrites,
//! readiness failures, interference placement, faults, cleanup and auto-config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aefm::config::kubernetes::KubernetesConfig;
use aefm::config::StressLevel;
use aefm::kubernetes::{Cluster, DeployAction, KubeError};
use aefm::load::CancelToken;
use aefm_tests::fake_kube::{FakeKube, PodFailure};
use serde_json::json;

#[path = "kubernetes/fake.rs"]
mod fake;
#[path = "kubernetes/load.rs"]
mod load;
#[path = "kubernetes/noise.rs"]
mod noise;
#[path = "kubernetes/ops.rs"]
mod ops;
#[path = "kubernetes/waits.rs"]
mod waits;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/repo")
}

fn section(fake: &FakeKube, extra: &str) -> KubernetesConfig {
    let timeout = if extra.contains("readiness_timeout_secs") {
        ""
    } else {
        "readiness_timeout_secs: 90\n"
    };
    let yaml = format!(
        "kubeconfig: {}\nnamespace: hotel\nyaml_repo: {}\napp_image: repo/hotel:1\nimage_pull_policy: Always\npod_resources: {{cpu: '0.5', memory: 256Mi}}\nreplicas: {{frontend: 3}}\nnodes:\n- {{name: w1, roles: [infra]}}\n- {{name: w2, roles: [testbed]}}\n- {{name: w3, roles: [testbed, loadgen]}}\n{timeout}{extra}",
        fake.kubeconfig().display(),
        repo().display()
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn cpu(workers: usize) -> StressLevel {
    serde_yaml::from_str(&format!("{{kind: cpu, workers: {workers}, load: 100}}")).unwrap()
}

fn pod_node(p: &serde_json::Value) -> String {
    p["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn deploy_creates_namespace_rewrites_and_waits() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    let refs = cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    assert!(refs.len() >= 8, "{refs:?}");
    assert!(
        fake.get("namespaces", "", "hotel").is_some(),
        "namespace created"
    );
    let d = fake.get("deployments", "hotel", "frontend").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "repo/hotel:1");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "0.5", "memory": "256Mi"})
    );
    assert_eq!(d["metadata"]["labels"]["aefm.io/experiment"], "exp1");
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "aefm");
    // Placement by role: under-test pods on testbed nodes, infra pods on infra nodes.
    let pods = fake.objects("pods");
    for p in &pods {
        let set = p["metadata"]["labels"]["aefm.io/set"]
            .as_str()
            .unwrap_or_default();
        let node = pod_node(p);
        match set {
            "under_test" => assert!(node == "w2" || node == "w3", "{node}"),
            "infra" => assert_eq!(node, "w1"),
            other => panic!("unlabelled pod {other}"),
        }
    }
    assert_eq!(fake.labelled("pods", "app", "frontend").len(), 3);
    // The StatefulSet (infra, not resized) keeps its own resources.
    let s = fake.get("statefulsets", "hotel", "mongodb").unwrap();
    assert!(s["spec"]["template"]["spec"]["containers"][0]
        .get("resources")
        .is_none());
    // Pod → service through owner references (Pod → ReplicaSet → Deployment).
    let map = cluster.pod_services().unwrap();
    let fe: Vec<_> = map.iter().filter(|(_, s)| *s == "frontend").collect();
    assert_eq!(fe.len(), 3, "{map:?}");
    assert!(map.iter().any(|(p, s)| p == "mongodb-0" && s == "mongodb"));
}

#[test]
fn reapply_is_idempotent_and_reload_changes_replicas() {
    let fake = FakeKube::start().with_standard_nodes();
    let cfg = section(&fake, "");
    let cluster = Cluster::connect(&cfg, "exp1").unwrap();
    cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    let before = fake.get("deployments", "hotel", "frontend").unwrap();
    // The original crashed here with 409 AlreadyExists.
    cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    let after = fake.get("deployments", "hotel", "frontend").unwrap();
    assert_eq!(
        before["metadata"]["generation"],
        after["metadata"]["generation"]
    );
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    let mut cfg2 = cfg.clone();
    cfg2.replicas.insert("frontend".into(), 1);
    let c2 = Cluster::connect(&cfg2, "exp1").unwrap();
    c2.deploy(DeployAction::Reload, &CancelToken::new())
        .unwrap();
    let d = fake.get("deployments", "hotel", "frontend").unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    assert!(fake.wait_for(Duration::from_secs(5), |f| f
        .labelled("pods", "app", "frontend")
        .len()
        == 1));
    // Restart recreates the stateful backend (a new uid).
    let old_uid = fake.get("statefulsets", "hotel", "mongodb").unwrap()["metadata"]["uid"].clone();
    c2.deploy(DeployAction::Restart, &CancelToken::new())
        .unwrap();
    let new_uid = fake.get("statefulsets", "hotel", "mongodb").unwrap()["metadata"]["uid"].clone();
    assert_ne!(old_uid, new_uid);
}

#[test]
fn plan_prints_rewritten_manifests_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: planexp\nbackend: kubernetes\nsweep: {{rate: [10]}}\nkubernetes:\n  namespace: hotel\n  yaml_repo: {}\n  app_image: repo/hotel:2\n  nodes: [{{name: w2, roles: [testbed]}}]\n",
        repo().display()
    );
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = aefm::config::Config::load(&path).unwrap();
    let text = aefm::kubernetes::plan_manifests(&config).unwrap();
    assert!(text.contains("kind: Namespace"));
    assert!(
        text.contains("image: repo/hotel:2") && !text.contains("APP_IMG"),
        "{text}"
    );
    assert!(text.contains("- w2"));
    assert!(text.contains("Deployment/hotel/frontend"));
}

#[test]
fn readiness_failures_name_pods_and_reasons() {
    for (failure, expect) in [
        (PodFailure::ImagePull, "ImagePullBackOff"),
        (PodFailure::CrashLoop, "CrashLoopBackOff"),
        (PodFailure::Unschedulable, "Unschedulable"),
    ] {
        let fake = FakeKube::start().with_standard_nodes();
        fake.faults(|f| f.images.push(("mongo".into(), failure)));
        let cluster =
            Cluster::connect(&section(&fake, "readiness_timeout_secs: 2\n"), "exp1").unwrap();
        let err = cluster
            .deploy(DeployAction::Apply, &CancelToken::new())
            .unwrap_err();
        let msg = err.to_string();
        // A crash loop is given up on before the timeout (see waits.rs).
        assert!(
            matches!(err, KubeError::NotReady { .. } | KubeError::Failing { .. }),
            "{msg}"
        );
        assert!(msg.contains("StatefulSet/hotel/mongodb"), "{msg}");
        assert!(
            msg.contains("pod hotel/mongodb-0") && msg.contains(expect),
            "{msg}"
        );
        assert!(
            !msg.contains("Deployment/hotel/jaeger"),
            "only unready objects are named: {msg}"
        );
    }
}

#[test]
fn interference_pods_on_the_right_nodes_then_cleared() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(
        &section(
            &fake,
            "interference: {pods_per_node: 2, cpu: '2', memory: 1Gi}\n",
        ),
        "exp1",
    )
    .unwrap();
    let refs = cluster
        .place_interference("case-1", &[cpu(2)], &CancelToken::new())
        .unwrap();
    assert_eq!(refs.len(), 4);
    let pods = fake.labelled("pods", "aefm.io/component", "interference");
    assert_eq!(pods.len(), 4);
    for p in &pods {
        assert!(
            ["w2", "w3"].contains(&pod_node(p).as_str()),
            "testbed only: {p}"
        );
        assert_eq!(p["metadata"]["namespace"], "aefm-interference");
        assert_eq!(p["metadata"]["labels"]["aefm.io/test-case"], "case-1");
        assert_eq!(
            p["spec"]["containers"][0]["args"],
            json!(["cpu", "--workers", "2", "--load", "100"])
        );
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"], r["limits"]);
        assert_eq!(p["status"]["phase"], "Running");
    }
    // Same level in the next case: the same pods are kept, relabelled.
    let uids: Vec<_> = pods.iter().map(|p| p["metadata"]["uid"].clone()).collect();
    cluster
        .place_interference("case-2", &[cpu(2)], &CancelToken::new())
        .unwrap();
    let again = fake.labelled("pods", "aefm.io/component", "interference");
    assert!(again.iter().all(|p| uids.contains(&p["metadata"]["uid"])
        && p["metadata"]["labels"]["aefm.io/test-case"] == "case-2"));
    // A new level replaces them (one that fits the 2-CPU pods: 4 workers would be refused).
    cluster
        .place_interference("case-3", &[cpu(1)], &CancelToken::new())
        .unwrap();
    let third = fake.labelled("pods", "aefm.io/component", "interference");
    assert_eq!(third.len(), 4);
    assert!(third.iter().all(|p| !uids.contains(&p["metadata"]["uid"])));
    assert_eq!(cluster.clear_interference().unwrap(), 4);
    // Deletion is graceful, as on a real cluster: the pods go after their grace period.
    assert!(fake.wait_for(Duration::from_secs(15), |f| f
        .labelled("pods", "aefm.io/component", "interference")
        .is_empty()));
}

#[test]
fn network_interference_is_an_iperf_ring() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    let net = StressLevel::for_cluster(
        serde_yaml::from_str("{kind: net, bandwidth: 500M, streams: 2}").unwrap(),
    )
    .unwrap();
    cluster
        .place_interference("c", &[net], &CancelToken::new())
        .unwrap();
    let pods = fake.labelled("pods", "aefm.io/interference", "net");
    assert_eq!(pods.len(), 2);
    let on = |n: &str| {
        pods.iter().find(|p| pod_node(p) == n).unwrap()["spec"]["containers"][1]["command"][2]
            .as_str()
            .unwrap()
            .to_string()
    };
    // IPs come from the Node objects (InternalIP), w2 → w3 → w2.
    assert!(
        on("w2").contains("-c 10.0.0.13") && on("w2").contains("-b 500000000 -P 2"),
        "{}",
        on("w2")
    );
    assert!(on("w3").contains("-c 10.0.0.12"));
    cluster.clear_interference().unwrap();
}

#[test]
fn faults_name_object_and_answer_and_leave_nothing_running() {
    // Quota: the third pod is refused; the ones created are removed.
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| f.pod_quota = Some(2));
    let cluster = Cluster::connect(
        &section(&fake, "interference: {pods_per_node: 2}\n"),
        "exp1",
    )
    .unwrap();
    let msg = cluster
        .place_interference("c", &[cpu(1)], &CancelToken::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("403")
            && msg.contains("exceeded quota")
            && msg.contains("Pod/aefm-interference/"),
        "{msg}"
    );
    assert!(fake
        .labelled("pods", "aefm.io/component", "interference")
        .is_empty());

    // RBAC refusal on deployments.
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| f.forbidden.push(("patch".into(), "deployments".into())));
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    let msg = cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("apply Deployment/hotel/")
            && msg.contains("403 Forbidden")
            && msg.contains("cannot patch"),
        "{msg}"
    );

    // API server answering errors.
    fake.faults(|f| f.error_status = Some(500));
    let msg = cluster.clear_interference().unwrap_err().to_string();
    assert!(
        msg.contains("list pods in aefm-interference") && msg.contains("500 InternalError"),
        "{msg}"
    );

    // API server unreachable (the kubeconfig outlives the server).
    let mut cfg = section(&fake, "");
    let kept = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(fake.kubeconfig(), kept.path()).unwrap();
    cfg.kubeconfig = Some(kept.path().to_path_buf());
    drop(fake);
    let err = Cluster::connect(&cfg, "exp1")
        .and_then(|c| c.deploy(DeployAction::Apply, &CancelToken::new()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Connection refused") && msg.contains("Namespace/hotel"),
        "{msg}"
    );
}

#[test]
fn a_node_that_disappears_fails_readiness_with_the_reason() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(&section(&fake, "readiness_timeout_secs: 2\n"), "exp1").unwrap();
    cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    fake.remove_node("w1");
    // The node controller evicts w1's pods; their replacements cannot be scheduled.
    assert!(fake.wait_for(Duration::from_secs(5), |f| f
        .objects("pods")
        .iter()
        .any(|p| p["status"]["conditions"][0]["reason"] == "Unschedulable")));
    let msg = cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Unschedulable") && msg.contains("didn't match"),
        "{msg}"
    );
}

#[test]
fn clean_removes_everything_of_one_experiment() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    cluster
        .place_interference("c", &[cpu(1)], &CancelToken::new())
        .unwrap();
    // Another experiment's object must survive.
    fake.insert("configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "hotel", "labels": {"aefm.io/experiment": "exp2"}}}));
    let kc = fake.kubeconfig();
    let cleaned =
        aefm::kubernetes::clean(Some(&kc), None, Some("exp1"), Default::default()).unwrap();
    assert!(
        cleaned
            .deleted
            .iter()
            .any(|o| o == "Deployment/hotel/frontend"),
        "{:?}",
        cleaned.deleted
    );
    assert!(
        fake.wait_for(Duration::from_secs(5), |f| f.objects("pods").is_empty()),
        "{:?}",
        fake.objects("pods").len()
    );
    assert!(fake.objects("deployments").is_empty() && fake.objects("statefulsets").is_empty());
    assert!(fake.get("configmaps", "hotel", "other").is_some());
}

#[test]
fn auto_config_proposes_roles_and_levels_for_one_master_three_workers() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.insert("services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "monitor-kube-prometheus-st-prometheus", "namespace": "monitor", "labels": {"app": "kube-prometheus-stack-prometheus"}},
        "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090, "nodePort": 30090}]}}));
    fake.insert("services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "jaeger", "namespace": "hotel"},
        "spec": {"type": "NodePort", "ports": [{"port": 16686, "nodePort": 30095}]}}));
    let kc = fake.kubeconfig();
    let answers = aefm::kubernetes::autoconfig::Answers {
        name: Some("exp".into()),
        ..Default::default()
    };
    let (info, p) = aefm::kubernetes::auto_config(Some(&kc), None, answers, None).unwrap();
    assert_eq!(
        info.workers().len(),
        3,
        "the legacy master label excludes the master"
    );
    assert_eq!(p.roles["infra"], vec!["w1"]);
    assert_eq!(p.roles["testbed"], vec!["w2", "w3"]);
    assert!(p.homogeneous);
    assert_eq!(p.cpu_levels, vec![3, 4, 5, 6]);
    assert_eq!(p.memcap_levels, vec![4, 11, 17, 24]);
    assert_eq!(p.prometheus.as_deref(), Some("http://10.0.0.11:30090"));
    assert_eq!(p.jaeger.as_deref(), Some("http://10.0.0.11:30095"));
    // The starter config loads as an aefm config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exp.yaml");
    std::fs::write(&path, aefm::kubernetes::autoconfig::render_config(&p)).unwrap();
    let cfg = aefm::config::Config::load(&path)
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&path).unwrap()));
    assert_eq!(cfg.kubernetes.unwrap().nodes.len(), 3);
}

fn experiment_config(
    fake: &FakeKube,
    dir: &Path,
    url: &str,
    duration: &str,
    extra_kube: &str,
) -> PathBuf {
    let yaml = format!(
        r#"name: k8s-e2e
backend: kubernetes
results_dir: {results}
duration: {duration}
warmup: 0s
settle: 0s
load: {{url: "{url}", threads: 1, connections: 2}}
sweep:
  rate: [40]
  interference:
    cpu: [none, {{kind: cpu, label: cpu-1w, workers: 1, load: 50}}]
kubernetes:
  kubeconfig: {kc}
  namespace: hotel
  yaml_repo: {repo}
  app_image: repo/hotel:1
  nodes:
    - {{name: w1, roles: [infra]}}
    - {{name: w2, roles: [testbed]}}
    - {{name: w3, roles: [testbed, loadgen]}}
  readiness_timeout_secs: 90
{extra_kube}"#,
        results = dir.join("results").display(),
        kc = fake.kubeconfig().display(),
        repo = repo().display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `aefm run` of [`experiment_config`] with 1 s cases against `fake`, load on a local test app;
/// the output, the directory holding `results/`, and the app.
fn run_experiment(
    fake: &FakeKube,
) -> (
    std::process::Output,
    tempfile::TempDir,
    aefm_tests::http_server::HttpServer,
) {
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment_config(fake, dir.path(), &app.url("/"), "1s", "");
    (aefm_run(&cfg), dir, app)
}

/// `aefm run --no-progress CONFIG`, to the end.
fn aefm_run(cfg: &Path) -> std::process::Output {
    std::process::Command::new(aefm_tests::bins::bin("aefm"))
        .args(["run", "--no-progress"])
        .arg(cfg)
        .output()
        .unwrap()
}

#[test]
fn experiment_end_to_end_with_the_fake_cluster() {
    let fake = FakeKube::start().with_standard_nodes();
    let (out, dir, app) = run_experiment(&fake);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit 3: the fake places the stressor pods but, unlike a kubelet, runs no container in
    // them, so they never report; a stressor that cannot show it ran makes its case invalid.
    assert_eq!(
        out.status.code(),
        Some(3),
        "aefm run: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let exp = aefm_tests::experiment::experiment_dir(&dir.path().join("results"));
    let rows = aefm_tests::experiment::read_csv(&exp.join("summary.csv"));
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    let cpu = rows.iter().find(|r| r["cpu"] != "none").unwrap();
    assert_eq!(cpu["validity"], "invalid", "{cpu:?}");
    assert!(
        cpu["invalid_reasons"].contains("stressor_no_reports"),
        "{cpu:?}"
    );
    assert!(
        cpu["invalid_detail"].contains("-w2-"),
        "names the pod: {cpu:?}"
    );
    // The app was deployed, interference was placed on the testbed nodes, then removed.
    assert!(fake.get("deployments", "hotel", "frontend").is_some());
    let placed: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH /api/v1/namespaces/aefm-interference/pods/"))
        .collect();
    assert_eq!(placed.len(), 2, "one cpu pod per testbed node: {placed:?}");
    assert!(placed.iter().any(|r| r.contains("-w2-")) && placed.iter().any(|r| r.contains("-w3-")));
    assert!(
        fake.labelled("pods", "aefm.io/component", "interference")
            .is_empty(),
        "interference cleared"
    );
    // The load reached the local test service; each case has its pod map.
    assert!(!app.requests().is_empty());
    let pods_csv: Vec<_> = walk(&dir.path().join("results"))
        .into_iter()
        .filter(|p| p.ends_with("pod_map.csv"))
        .collect();
    assert_eq!(pods_csv.len(), 2, "{pods_csv:?}");
    let text = std::fs::read_to_string(&pods_csv[0]).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("frontend-") && l.contains(",frontend,w")),
        "{text}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sigint_during_an_experiment_removes_interference() {
    let fake = FakeKube::start().with_standard_nodes();
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(experiment_config(
        &fake,
        dir.path(),
        &app.url("/"),
        "30s",
        "",
    ))
    .unwrap();
    // Interference first, so it is running while the long load runs.
    let yaml = yaml.replace(
        "cpu: [none, {kind: cpu, label: cpu-1w, workers: 1, load: 50}]",
        "cpu: [{kind: cpu, label: cpu-1w, workers: 1, load: 50}]",
    );
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let mut child = std::process::Command::new(aefm_tests::bins::bin("aefm"))
        .args(["run", "--no-progress"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let placed = fake.wait_for(Duration::from_secs(60), |f| {
        let pods = f.labelled("pods", "aefm.io/component", "interference");
        pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running")
    });
    assert!(placed, "interference never ran");
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "aefm did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!code.success());
    assert!(
        fake.labelled("pods", "aefm.io/component", "interference")
            .is_empty(),
        "interference left running after Ctrl-C"
    );
}

#[test]
fn auto_config_and_clean_commands() {
    let fake = FakeKube::start().with_standard_nodes();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp.yaml");
    let aefm = aefm_tests::bins::bin("aefm");
    let kc = fake.kubeconfig();
    let run = |args: &[&str]| {
        std::process::Command::new(&aefm)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "auto-config",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--name",
        "exp",
        "--testbed",
        "w2,w3",
        "--yaml-repo",
        repo().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["validate", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Bad answer: one clear line, non-zero exit.
    let o = run(&[
        "auto-config",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--testbed",
        "nosuch",
        "-o",
        "-",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("nosuch is not a worker node"),
        "{err}"
    );
    // Interactive: answers from stdin, the rest defaults.
    let mut child = std::process::Command::new(&aefm)
        .args([
            "auto-config",
            "-i",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "-o",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"asked\n\n\n\n\nw3\n\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("name: asked"),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // clean removes an experiment's objects.
    let cluster = Cluster::connect(&section(&fake, ""), "exp9").unwrap();
    cluster
        .place_interference("c", &[cpu(1)], &CancelToken::new())
        .unwrap();
    let o = run(&["clean", "--kubeconfig", kc.to_str().unwrap(), "exp9"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("2 object(s) of experiment exp9 deleted"),
        "{stdout}"
    );
    // Deletion is graceful, as on a real cluster: the pods go after their grace period.
    assert!(fake.wait_for(Duration::from_secs(15), |f| f
        .labelled("pods", "aefm.io/component", "interference")
        .is_empty()));
}

/// Interference pods judged from their own logs, which the fake serves with the kubelet's
/// timestamps and filters by `sinceTime` as a real API server does: reports that cover the window
/// at the target pass; a pod that falls silent and reports an error is named with both; an
/// iperf3 ring client whose server refuses is an error and below its target.
#[test]
fn interference_is_verified_from_the_pods_logs() {
    use std::time::SystemTime;

    use aefm::kubernetes::interference::verify::Placed;
    use aefm_interference::verify::Tolerances;

    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(
        &section(&fake, "interference: {pods_per_node: 1}\n"),
        "exp1",
    )
    .unwrap();
    let level = cpu(1);
    cluster
        .place_interference("c", std::slice::from_ref(&level), &CancelToken::new())
        .unwrap();
    let mut names: Vec<String> = fake
        .labelled("pods", "aefm.io/interference", "cpu")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2);
    let ns = "aefm-interference";
    // The window starts after the containers did (the fake records their start as a kubelet
    // does); the reports are written with the times they claim.
    let start = SystemTime::now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(10);
    let at = |s: u64| start - Duration::from_secs(5) + Duration::from_secs(s);
    let report = |achieved: f64, error: Option<&str>| {
        let mut v = json!({"kind": "cpu", "elapsed_s": 1.0, "target": 100.0, "achieved": achieved, "unit": "%"});
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        v.to_string()
    };
    // The first pod reports every second from before the window to after it, at its target.
    for s in 0..=25 {
        fake.write_log(ns, &names[0], at(s), &report(99.5, None));
    }
    // The second one stops 4 s into the window, its last line an error.
    for s in 0..=9 {
        let e = (s == 9).then_some("worker cpu-0 (CPU 1) ended before the stop");
        fake.write_log(ns, &names[1], at(s), &report(99.0, e));
    }
    let placed = [Placed {
        label: level.label().to_string(),
        kind: "cpu".into(),
        stressor: level.in_pod().stressor,
    }];
    let findings = cluster
        .verify_interference(&placed, (start, end), &Tolerances::default())
        .unwrap();
    let codes: Vec<(&str, bool)> = findings
        .iter()
        .map(|f| (f.code.as_str(), f.message.contains(&names[1])))
        .collect();
    assert_eq!(
        codes,
        [("stressor_no_reports", true), ("stressor_error", true)],
        "{findings:?}"
    );
    assert!(
        findings[0]
            .message
            .contains("last report 6.0 s before the window end"),
        "{findings:?}"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.contains("/log?") && r.contains("timestamps=true") && r.contains("sinceTime=")));
    cluster.clear_interference().unwrap();

    // The iperf3 ring: one client refused every second, the other at its 1 Gbit/s.
    let net = StressLevel::for_cluster(
        serde_yaml::from_str("{kind: net, bandwidth: 500M, streams: 2}").unwrap(),
    )
    .unwrap();
    cluster
        .place_interference("c2", std::slice::from_ref(&net), &CancelToken::new())
        .unwrap();
    let mut ring: Vec<String> = fake
        .labelled("pods", "aefm.io/interference", "net")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    ring.sort();
    for s in 0..=25 {
        fake.write_log(
            ns,
            &ring[0],
            at(s),
            "iperf3: error - unable to connect to server: Connection refused",
        );
        fake.write_log(
            ns,
            &ring[1],
            at(s),
            "[SUM]   0.00-1.00   sec   119 MBytes  1.00 Gbits/sec    0",
        );
    }
    let placed = [Placed {
        label: net.label().to_string(),
        kind: "net".into(),
        stressor: net.in_pod().stressor,
    }];
    let findings = cluster
        .verify_interference(&placed, (start, end), &Tolerances::default())
        .unwrap();
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings.iter().all(|f| f.message.contains(&ring[0])));
    assert_eq!(findings[0].code, "stressor_error");
    assert!(findings[0].message.contains("Connection refused"));
    assert_eq!(findings[1].code, "stressor_below_target");
    cluster.clear_interference().unwrap();
}

/// A capacity search on the Kubernetes backend: the same schedule as locally, its probes real
/// cases against the fake cluster, load on a local test service that always answers at once,
/// so every probe passes and the search ends at the top of its range.
#[test]
fn a_capacity_search_runs_on_the_kubernetes_backend() {
    let fake = FakeKube::start().with_standard_nodes();
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment_config(&fake, dir.path(), &app.url("/"), "1s", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let sweep = "sweep:\n  rate: [40]\n  interference:\n    cpu: [none, {kind: cpu, label: cpu-1w, workers: 1, load: 50}]\n";
    assert!(text.contains(sweep), "{text}");
    let searched = text.replace(
        sweep,
        // 1 s windows at 20-80 req/s: the one request normally in flight at the end is up to
        // 5 % of them; `error_share` must not count it (default bound, 1 %). A busy machine
        // delays the generator by ms: not what this test is about, so its bound is loose.
        "validity: {max_send_lag_p99: 100ms, max_generator_busy: 1.0}\nsweep:\n  search: {slo: p99 <= 500ms, min: 20, max: 80, precision: 5}\n",
    );
    std::fs::write(&cfg, searched).unwrap();
    let out = aefm_run(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "aefm run: {stderr}"
    );
    let exp = aefm_tests::experiment::experiment_dir(&dir.path().join("results"));
    let rows = aefm_tests::experiment::read_csv(&exp.join("summary.csv"));
    // A round a busy machine voids (a late generator) runs again at the same rate.
    let mut rates: Vec<&str> = rows.iter().map(|r| r["offered_rps"].as_str()).collect();
    rates.dedup();
    assert_eq!(rates, ["20", "40", "80"], "{rows:?}");
    let cap = aefm_tests::experiment::read_csv(&exp.join("capacity.csv"));
    assert_eq!(cap.len(), 1);
    assert_eq!(cap[0]["status"], "at_max", "{cap:?}");
    assert_eq!(cap[0]["capacity_rps"], "80");
    assert_eq!(cap[0]["probes"], "3");
    assert!(!app.requests().is_empty());
}
