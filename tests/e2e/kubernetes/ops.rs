//! Operations around a run: `aefm doctor` before any load, `aefm clean` over every labelled kind
//! and the namespaces AEFM created, the start-of-run removal of stale load objects, the second
//! Ctrl-C's cleanup, and the API server reached through `NO_PROXY` despite `HTTPS_PROXY`.

use std::process::Command;
use std::time::Duration;

use aefm::kubernetes::{Cluster, DeployAction};
use aefm::load::CancelToken;
use aefm_tests::fake_kube::FakeKube;
use serde_json::json;

use super::{cpu, experiment_config, section};

fn aefm(args: &[&str]) -> std::process::Output {
    Command::new(aefm_tests::bins::bin("aefm"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn doctor_finds_a_log_denial_a_missing_node_and_no_room_before_any_load() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| f.forbidden.push(("get".into(), "pods/log".into())));
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment_config(
        &fake,
        dir.path(),
        "http://127.0.0.1:9/",
        "1s",
        "  interference: {cpu: '64'}\n",
    );
    // w3 renamed: a node the config names that the cluster does not have.
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, yaml.replace("{name: w3,", "{name: ghost,")).unwrap();
    let o = aefm(&["doctor", cfg.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("may not get pods/log"), "{out}");
    assert!(out.contains("node ghost does not exist"), "{out}");
    assert!(
        out.contains("error [room]") && out.contains("node w2"),
        "{out}"
    );
    assert!(out.contains("kubernetes.nodes: node ghost"), "{out}");
    // Nothing was deployed or started: the doctor only reads and asks.
    assert!(fake.objects("pods").is_empty() && fake.objects("jobs").is_empty());
    assert!(fake.objects("deployments").is_empty());

    // Fixed permissions and config: no errors left (images may be warned about).
    fake.faults(|f| f.forbidden.clear());
    let cfg = experiment_config(&fake, dir.path(), "http://127.0.0.1:9/", "1s", "");
    let o = aefm(&["doctor", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ok: the cluster is ready"),
        "{}",
        text(&o)
    );
}

#[test]
fn clean_takes_every_labelled_kind_and_only_namespaces_aefm_created() {
    let fake = FakeKube::start().with_standard_nodes();
    // A namespace that existed before: AEFM uses it for interference but never marks it.
    fake.insert(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "theirs"}}),
    );
    let cfg = section(&fake, "interference: {namespace: theirs}\n");
    let cluster = Cluster::connect(&cfg, "exp1").unwrap();
    cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap();
    cluster
        .place_interference("case-1", &[cpu(1)], &CancelToken::new())
        .unwrap();
    let labels = json!({"aefm.io/experiment": "exp1", "app.kubernetes.io/managed-by": "aefm"});
    fake.insert(
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "hotel", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    fake.insert(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "token", "namespace": "hotel", "labels": labels}}),
    );
    let theirs = fake.get("namespaces", "", "theirs").unwrap();
    assert!(theirs["metadata"]["labels"].is_null(), "{theirs}");

    let o = aefm(&[
        "clean",
        "exp1",
        "--namespaces",
        "--kubeconfig",
        fake.kubeconfig().to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for gone in [
        "PersistentVolumeClaim/hotel/data",
        "Secret/hotel/token",
        "Namespace/hotel",
    ] {
        assert!(out.contains(&format!("deleted {gone}")), "{gone}: {out}");
    }
    assert!(!out.contains("Namespace/theirs"), "{out}");
    assert!(fake.wait_for(Duration::from_secs(10), |f| f
        .labelled("pods", "aefm.io/experiment", "exp1")
        .is_empty()));
    assert!(fake.get("namespaces", "", "theirs").is_some());
}

#[test]
fn a_new_run_removes_stale_load_objects_and_warns_about_foreign_stressors() {
    let fake = FakeKube::start().with_standard_nodes();
    let job = |name: &str, run: Option<&str>| {
        let mut labels = json!({"aefm.io/experiment": "exp1", "aefm.io/component": "load",
                                "app.kubernetes.io/managed-by": "aefm"});
        if let Some(r) = run {
            labels["aefm.io/run"] = json!(r);
        }
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": "hotel", "labels": labels},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                   "containers": [{"name": "load", "image": "x"}]}}}})
    };
    fake.insert(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hotel"}}),
    );
    fake.insert("jobs", job("old-run", Some("0badc0de")));
    fake.insert("jobs", job("older-aefm", None));
    fake.insert(
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stress-other", "namespace": "aefm-interference",
                     "labels": {"aefm.io/experiment": "exp2", "aefm.io/component": "interference"}},
        "spec": {"nodeName": "w2", "containers": [{"name": "s", "image": "x"}]},
        "status": {"phase": "Running"}}),
    );
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    fake.insert("jobs", job("this-run", Some(cluster.run_id())));
    let warnings = cluster.prepare_run().unwrap();
    assert!(fake.get("jobs", "hotel", "old-run").is_none());
    assert!(fake.get("jobs", "hotel", "older-aefm").is_none());
    assert!(fake.get("jobs", "hotel", "this-run").is_some());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("stress-other on w2"), "{warnings:?}");
}

#[test]
fn abort_cleanup_deletes_interference_at_once() {
    let fake = FakeKube::start().with_standard_nodes();
    let cluster = Cluster::connect(&section(&fake, ""), "exp1").unwrap();
    cluster
        .place_interference("case-1", &[cpu(1)], &CancelToken::new())
        .unwrap();
    assert_eq!(
        fake.labelled("pods", "aefm.io/component", "interference")
            .len(),
        2
    );
    cluster.abort_cleanup();
    // Deletion is issued (graceful: the pods may still be terminating), not waited for.
    let live = |f: &FakeKube| {
        f.labelled("pods", "aefm.io/component", "interference")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
    };
    assert_eq!(live(&fake), 0);
}

#[test]
fn no_proxy_covering_the_cluster_bypasses_https_proxy() {
    let fake = FakeKube::start().with_standard_nodes();
    let kc = fake.kubeconfig();
    let clean = |no_proxy: Option<&str>| {
        let mut c = Command::new(aefm_tests::bins::bin("aefm"));
        c.args(["clean", "nothing", "--kubeconfig", kc.to_str().unwrap()])
            // A proxy that refuses every connection.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        if let Some(n) = no_proxy {
            c.env("NO_PROXY", n);
        }
        c.output().unwrap()
    };
    let o = clean(None);
    assert!(!o.status.success(), "the proxy was not used: {}", text(&o));
    let o = clean(Some("localhost,127.0.0.0/8"));
    assert!(o.status.success(), "{}", text(&o));
}
