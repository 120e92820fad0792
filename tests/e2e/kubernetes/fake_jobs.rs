//! Jobs on the fake API server: pod logs with both streams, RBAC per subresource with
//! SelfSubjectAccessReview, and the standalone `fake-kube` binary running Jobs as local processes.

use std::time::{Duration, Instant};

use aefm_tests::fake_kube::{runner, FakeKube};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;

use super::{api_error, apply, client, client_for, job_pod, job_running};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_hold_stdout_and_stderr_and_rbac_guards_subresources() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.set_job_runner(runner::local_process_runner());
    let c = client(&fake).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    apply(
        &jobs,
        "talk",
        job_running(
            "talk",
            "echo first; sleep 0.3; echo 'warn {x}' >&2; sleep 0.3; echo last",
        ),
    )
    .await
    .unwrap();
    let name = job_pod(&pods, "talk", "Succeeded").await;
    let log = pods.logs(&name, &LogParams::default()).await.unwrap();
    assert_eq!(
        log, "first\nwarn {x}\nlast\n",
        "both streams, in the order written"
    );
    let tail = pods
        .logs(
            &name,
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "last\n");
    let s = api_error(
        pods.logs(
            &name,
            &LogParams {
                container: Some("other".into()),
                ..LogParams::default()
            },
        )
        .await,
    );
    assert_eq!(s.code, 400, "{s:?}");
    apply(
        &jobs,
        "fails",
        job_running("fails", "echo out; echo boom >&2; exit 3"),
    )
    .await
    .unwrap();
    job_pod(&pods, "fails", "Failed").await;

    // RBAC per verb and subresource, and the matching access reviews.
    fake.faults(|f| {
        f.forbidden = vec![
            ("get".into(), "pods/log".into()),
            ("list".into(), "jobs".into()),
            ("create".into(), "pods/proxy".into()),
        ];
    });
    let s = api_error(pods.logs(&name, &LogParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        format!("pods \"{name}\" is forbidden: User \"system:serviceaccount:aefm:runner\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"default\"")
    );
    pods.get(&name).await.expect("get pods is still allowed");
    let s = api_error(jobs.list(&ListParams::default()).await);
    assert!(
        s.message.starts_with("jobs.batch is forbidden")
            && s.message
                .contains("cannot list resource \"jobs\" in API group \"batch\""),
        "{}",
        s.message
    );
    let reviews: Api<SelfSubjectAccessReview> = Api::all(c);
    for (verb, resource, sub, allowed) in [
        ("get", "pods", "log", false),
        ("get", "pods", "", true),
        ("create", "pods", "proxy", false),
        ("list", "jobs", "", false),
        ("watch", "jobs", "", true),
    ] {
        let group = if resource == "jobs" { "batch" } else { "" };
        let review: SelfSubjectAccessReview = serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "group": group, "resource": resource, "subresource": sub}}
        }))
        .unwrap();
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        assert_eq!(
            answer.status.unwrap().allowed,
            allowed,
            "{verb} {resource}/{sub}"
        );
    }
}

/// Kills the child if the test fails before stopping it.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads the first line the child prints (the URL) with a deadline.
fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("fake-kube printed its URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_kube_binary_serves_a_strict_cluster_and_runs_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-kube"))
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--nodes",
            "2",
            "--node-cpu",
            "2",
            "--control-plane",
        ])
        .args([
            "--deny",
            "list:secrets",
            "--run-jobs",
            "--ready-delay",
            "100ms",
            "--drop-watches-every",
            "5s",
            "--node-images",
            "aefm/aefm-load:dev,aefm/aefm-stress:dev",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let url = first_line(&mut child.0);
    assert!(url.trim().starts_with("http://127.0.0.1:"), "{url}");
    let c = client_for(&kc).await;
    let nodes: Api<Node> = Api::all(c.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, ["control-plane", "w1", "w2"]);
    let cp = &list.items[0];
    let w1_images: Vec<String> = list.items[1]
        .status
        .as_ref()
        .unwrap()
        .images
        .clone()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|i| i.names.unwrap_or_default())
        .collect();
    assert_eq!(w1_images, ["aefm/aefm-load:dev", "aefm/aefm-stress:dev"]);
    assert_eq!(
        cp.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].effect,
        "NoSchedule"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), "default");
    assert_eq!(
        api_error(secrets.list(&ListParams::default()).await).code,
        403
    );
    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c, "default");
    apply(
        &jobs,
        "hello",
        job_running("hello", "echo hello; sleep 0.3; echo oops >&2; exit 3"),
    )
    .await
    .unwrap();
    let name = job_pod(&pods, "hello", "Failed").await;
    assert_eq!(
        pods.logs(&name, &LogParams::default()).await.unwrap(),
        "hello\noops\n"
    );
    // The node that ran it now reports the image, as after a pull.
    let node = pods
        .get(&name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    let images = nodes
        .get(&node)
        .await
        .unwrap()
        .status
        .unwrap()
        .images
        .unwrap_or_default();
    assert!(
        images.iter().any(|i| i
            .names
            .as_ref()
            .is_some_and(|n| n.iter().any(|x| x == "busybox"))),
        "{images:?}"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "fake-kube did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(code.success(), "{code:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_job_pod_fails_its_job() {
    use aefm_tests::fake_kube::JobOutput;
    let fake = FakeKube::start().with_standard_nodes();
    fake.set_job_runner(std::sync::Arc::new(|_: &aefm_tests::fake_kube::JobRun| {
        std::thread::sleep(Duration::from_secs(3));
        JobOutput::new(0, "done\n", "")
    }));
    let c = client(&fake).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c, "default");
    apply(&jobs, "victim", job_running("victim", "sleep 3"))
        .await
        .unwrap();
    let name = job_pod(&pods, "victim", "Running").await;
    assert!(fake.evict_pod("default", &name));
    let p = pods.get(&name).await.unwrap();
    let st = p.status.unwrap();
    assert_eq!(
        (st.phase.as_deref(), st.reason.as_deref()),
        (Some("Failed"), Some("Evicted"))
    );
    super::eventually(10, "failed job", || async {
        let j = jobs.get("victim").await.unwrap();
        let conds = j.status?.conditions?;
        conds
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
            .then_some(())
    })
    .await;
    // The runner finishing later does not resurrect the pod.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let phase = pods.get(&name).await.unwrap().status.unwrap().phase;
    assert_eq!(phase.as_deref(), Some("Failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_fail_pods_and_jobs() {
    use aefm_tests::fake_kube::JobOutput;
    let fake = FakeKube::start().with_standard_nodes();
    fake.set_job_runner(std::sync::Arc::new(|_: &aefm_tests::fake_kube::JobRun| {
        std::thread::sleep(Duration::from_secs(4));
        JobOutput::new(0, "late\n", "")
    }));
    let c = client(&fake).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c, "default");
    let mut job = job_running("slow", "sleep 4");
    job["spec"]["activeDeadlineSeconds"] = json!(1);
    apply(&jobs, "slow", job).await.unwrap();
    let reason = super::eventually(20, "job past its deadline", || async {
        let conds = jobs.get("slow").await.unwrap().status?.conditions?;
        let failed = conds.into_iter().find(|c| c.type_ == "Failed")?;
        failed.reason
    })
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    super::eventually(20, "its pod removed", || async {
        let lp = ListParams::default().labels("job-name=slow");
        pods.list(&lp).await.unwrap().items.is_empty().then_some(())
    })
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bounded"},
                     "spec": {"activeDeadlineSeconds": 1, "containers": [{"name": "c", "image": "x"}]}});
    apply(&pods, "bounded", pod).await.unwrap();
    let reason = super::eventually(20, "pod past its deadline", || async {
        let st = pods.get("bounded").await.unwrap().status?;
        (st.phase.as_deref() == Some("Failed")).then_some(st.reason)
    })
    .await;
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
}
