//! The fake API server itself, driven with a real `kube::Client`: it must be as strict as a real
//! one where AEFM could go wrong (resourceVersion and 410 Gone, dropped watches, bookmarks,
//! immutable fields and label validation, PVC binding, scheduling against allocatable, taints and
//! host ports, stdout and stderr in pod logs, graceful deletion, RBAC per subresource and
//! SelfSubjectAccessReview), and the standalone `fake-kube` binary must serve a usable cluster.

use std::time::{Duration, Instant};

#[path = "fake_jobs.rs"]
mod jobs;

use aefm_tests::fake_kube::FakeKube;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::{json, Value};

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn client(fake: &FakeKube) -> Client {
    client_for(&fake.kubeconfig()).await
}

/// Applies a JSON object with server-side apply.
async fn apply<K>(api: &Api<K>, name: &str, obj: Value) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(obj),
    )
    .await
}

/// The API error a call failed with (panics on success or on a transport error).
fn api_error<T: std::fmt::Debug>(r: kube::Result<T>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod_json(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn container(cpu: &str) -> Value {
    json!({"name": "c", "image": "app:1", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expire_with_410_send_bookmarks_time_out_and_drop() {
    let fake = FakeKube::start();
    fake.set_watch_window(5);
    let cms: Api<ConfigMap> = Api::namespaced(client(&fake).await, "default");
    let cm = |n: String| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}});
    apply(&cms, "c0", cm("c0".into())).await.unwrap();
    let old_rv = current_rv(&cms).await;
    for i in 1..=10 {
        apply(&cms, &format!("c{i}"), cm(format!("c{i}")))
            .await
            .unwrap();
    }
    // A watch from before the retained window: one ERROR event, 410 Expired, then the end.
    let events: Vec<_> = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .collect()
        .await;
    match events.as_slice() {
        [Ok(WatchEvent::Error(s))] => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"), "{s:?}");
            assert!(s.message.starts_with("too old resource version"), "{s:?}");
        }
        other => panic!("expected one 410 event, got {other:?}"),
    }

    // From a fresh list: new events, a BOOKMARK with the current rv, and the end at timeoutSeconds.
    let rv = current_rv(&cms).await;
    let wp = WatchParams::default().timeout(3); // bookmarks are asked for by default
    let started = Instant::now();
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    apply(&cms, "fresh", cm("fresh".into())).await.unwrap();
    let (mut added, mut bookmark_rv) = (false, None);
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(c) => added |= c.metadata.name.as_deref() == Some("fresh"),
            WatchEvent::Bookmark(b) => bookmark_rv = Some(b.metadata.resource_version),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(added, "the new ConfigMap was seen");
    let bookmark: u64 = bookmark_rv.expect("a BOOKMARK event").parse().unwrap();
    assert!(bookmark > rv.parse::<u64>().unwrap());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended early: {:?}",
        started.elapsed()
    );

    // An injected 410 on the next watch; the one after is served.
    fake.faults(|f| f.gone_next_watches = 1);
    let rv = current_rv(&cms).await;
    let first: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(first.as_slice(), [Ok(WatchEvent::Error(s))] if s.code == 410),
        "{first:?}"
    );
    let second: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(second.iter().all(|e| e.is_ok()), "{second:?}");

    // Expiry mid-stream: an open watch gets 410 and ends; resuming from its rv is 410 too.
    let rv = current_rv(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.expire_watches();
    let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, Some(WatchEvent::Error(ref s)) if s.code == 410),
        "{ev:?}"
    );
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream ends after the 410"
    );

    // Dropped connections: the stream ends long before its timeout (kube reads the cut as an
    // end of stream), and on the wire without the chunked terminator: the connection was cut.
    fake.faults(|f| f.drop_watches_every = Some(Duration::from_millis(500)));
    let rv = current_rv(&cms).await;
    let started = Instant::now();
    let stream = cms
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), stream.collect::<Vec<_>>())
        .await
        .expect("the cut stream ended");
    assert!(started.elapsed() < Duration::from_secs(30));
    let addr = fake.url().trim_start_matches("http://").to_string();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let req = format!("GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=60 HTTP/1.1\r\nHost: fake\r\n\r\n");
        tcp.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "cut, not ended: {raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_recovers_from_drops_and_expiry() {
    use kube::runtime::watcher;
    let fake = FakeKube::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&fake).await, "default");
    fake.faults(|f| {
        f.drop_watches_every = Some(Duration::from_millis(400));
        f.gone_next_watches = 2;
    });
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..8 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("w{i}")}});
                apply(&cms, &format!("w{i}"), obj).await.unwrap();
            }
        })
    };
    let (mut errors, mut seen_last) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen_last && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)))) => {
                seen_last |= c.metadata.name.as_deref() == Some("w7");
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) | Err(_) => {}
        }
    }
    writer.await.unwrap();
    assert!(seen_last, "the watcher saw the last ConfigMap");
    assert!(errors >= 2, "the faults were felt: {errors} errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_and_invalid_labels_answer_422() {
    let fake = FakeKube::start().with_standard_nodes();
    let c = client(&fake).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let job = |args: &[&str]| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "load-1"},
               "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "load", "image": "aefm-load:dev", "args": args}]}}}})
    };
    apply(&jobs, "load-1", job(&["--rate", "10"]))
        .await
        .unwrap();
    apply(&jobs, "load-1", job(&["--rate", "10"]))
        .await
        .expect("the same template is fine");
    let s = api_error(apply(&jobs, "load-1", job(&["--rate", "20"])).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(
        s.message
            .starts_with("Job.batch \"load-1\" is invalid: spec.template: Invalid value:")
            && s.message.ends_with("field is immutable"),
        "{}",
        s.message
    );
    let mut with_selector = job(&["x"]);
    with_selector["metadata"]["name"] = json!("load-2");
    with_selector["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    let s = api_error(apply(&jobs, "load-2", with_selector).await);
    assert!(
        s.message.contains("`selector` not auto-generated"),
        "{}",
        s.message
    );

    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod = |image: &str, cpu: &str| {
        pod_json(
            "p",
            json!({"containers": [{"name": "c", "image": image, "resources": {"limits": {"cpu": cpu}}}]}),
        )
    };
    apply(&pods, "p", pod("app:1", "1")).await.unwrap();
    apply(&pods, "p", pod("app:2", "1"))
        .await
        .expect("the image may change");
    let s = api_error(apply(&pods, "p", pod("app:2", "2")).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message
            .contains("pod updates may not change fields other than"),
        "{}",
        s.message
    );

    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    for (key, value, expect) in [
        (
            "aefm.io/test-case",
            "rate=40 cpu=2",
            "a valid label must be an empty string",
        ),
        (
            "aefm.io/test-case",
            &*"x".repeat(64),
            "must be no more than 63 characters",
        ),
        (
            "-bad",
            "v",
            "name part must consist of alphanumeric characters",
        ),
        (
            "Bad_Prefix.io/k",
            "v",
            "prefix part a lowercase RFC 1123 subdomain",
        ),
    ] {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l", "labels": {key: value}}});
        let s = api_error(apply(&cms, "l", obj).await);
        assert_eq!(s.code, 422, "{key}={value}");
        assert!(
            s.message
                .starts_with("ConfigMap \"l\" is invalid: metadata.labels: Invalid value:")
                && s.message.contains(expect),
            "{}",
            s.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_and_pods_wait_for_them() {
    let fake = FakeKube::start().with_standard_nodes();
    let c = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c, "default");
    let spec = json!({"containers": [container("100m")], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]});
    apply(&pods, "db", pod_json("db", spec)).await.unwrap();
    let msg = eventually(10, "unschedulable pod", || async {
        let p = pods.get("db").await.unwrap();
        let c = p
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")?;
        (c.reason.as_deref() == Some("Unschedulable")).then(|| c.message.unwrap_or_default())
    })
    .await;
    assert!(
        msg.contains("persistentvolumeclaim \"data\" not found"),
        "{msg}"
    );
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let created = apply(&pvcs, "data", claim).await.unwrap();
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    eventually(10, "bound claim", || async {
        let c = pvcs.get("data").await.unwrap();
        (c.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    assert_eq!(fake.objects("persistentvolumes").len(), 1);
    eventually(10, "running pod", || async {
        let p = pods.get("db").await.unwrap();
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // A claim in use is only marked for deletion; it goes with its last pod, and so does its volume.
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = pvcs.get("data").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    pods.delete("db", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(10, "claim and volume gone", || async {
        (pvcs.get_opt("data").await.unwrap().is_none()
            && fake.objects("persistentvolumes").is_empty())
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_honours_requests_taints_ports_and_selectors() {
    let fake = FakeKube::start().with_standard_nodes();
    let pods: Api<Pod> = Api::namespaced(client(&fake).await, "default");
    for i in 0..4 {
        let name = format!("big{i}");
        apply(
            &pods,
            &name,
            pod_json(&name, json!({"containers": [container("6")]})),
        )
        .await
        .unwrap();
    }
    let phase_and_node = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await.unwrap();
            let cond = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let sched = cond.into_iter().find(|c| c.type_ == "PodScheduled")?;
            Some((
                sched.status,
                p.spec.and_then(|s| s.node_name),
                sched.message,
            ))
        }
    };
    let mut nodes = Vec::new();
    for name in ["big0", "big1", "big2"] {
        let (ok, node, _) = eventually(10, name, || phase_and_node(name)).await;
        assert_eq!(ok, "True");
        nodes.push(node.unwrap());
    }
    nodes.sort();
    assert_eq!(
        nodes,
        ["w1", "w2", "w3"],
        "6 CPUs fit once per 8-CPU worker"
    );
    let (ok, _, msg) = eventually(10, "big3", || phase_and_node("big3")).await;
    assert_eq!(ok, "False");
    assert_eq!(
        msg.as_deref(),
        Some("0/4 nodes are available: 3 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/master: }. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.")
    );
    // A toleration opens the master (4 CPUs).
    let tolerant = json!({"containers": [container("3")], "tolerations": [{"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"}]});
    apply(&pods, "tol", pod_json("tol", tolerant))
        .await
        .unwrap();
    let (_, node, _) = eventually(10, "tol", || phase_and_node("tol")).await;
    assert_eq!(node.as_deref(), Some("master"));
    // Host ports: the second pod asking for 8080 on w1 cannot go there.
    for name in ["hp1", "hp2"] {
        let spec = json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                          "nodeSelector": {"kubernetes.io/hostname": "w1"}});
        apply(&pods, name, pod_json(name, spec)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, node, _) = eventually(10, "hp1", || phase_and_node("hp1")).await;
    assert_eq!((ok.as_str(), node.as_deref()), ("True", Some("w1")));
    let (ok, _, msg) = eventually(10, "hp2", || phase_and_node("hp2")).await;
    assert_eq!(ok, "False");
    let msg = msg.unwrap();
    assert!(
        msg.contains("1 node(s) didn't have free ports for the requested pod ports")
            && msg.contains("2 node(s) didn't match Pod's node affinity/selector"),
        "{msg}"
    );
}

fn job_running(name: &str, script: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}}})
}

async fn job_pod(pods: &Api<Pod>, job: &str, phase: &str) -> String {
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    eventually(30, &format!("{job} pod {phase}"), || async {
        let list = pods.list(&lp).await.unwrap();
        let p = list.items.into_iter().next()?;
        (p.status.as_ref()?.phase.as_deref() == Some(phase)).then(|| p.metadata.name.unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_is_graceful_and_asynchronous() {
    let fake = FakeKube::start().with_standard_nodes();
    let pods: Api<Pod> = Api::namespaced(client(&fake).await, "default");
    apply(
        &pods,
        "p",
        pod_json("p", json!({"containers": [container("100m")]})),
    )
    .await
    .unwrap();
    eventually(10, "running pod", || async {
        (pods.get("p").await.unwrap().status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let rv = current_rv(&pods).await;
    let mut stream = pods
        .watch(
            &WatchParams::default().fields("metadata.name=p").timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let answer = pods.delete("p", &DeleteParams::default()).await.unwrap();
    let marked = answer.left().expect("the pod, marked for deletion");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let mut kinds = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Modified(p) if p.metadata.deletion_timestamp.is_some() => {
                kinds.push("MODIFIED")
            }
            WatchEvent::Deleted(_) => {
                kinds.push("DELETED");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(kinds.first(), Some(&"MODIFIED"));
    assert_eq!(kinds.last(), Some(&"DELETED"));
    // Grace 0 removes at once.
    apply(
        &pods,
        "q",
        pod_json("q", json!({"containers": [container("100m")]})),
    )
    .await
    .unwrap();
    let answer = pods
        .delete("q", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(answer.is_right(), "a Status: deleted now");
    assert!(pods.get_opt("q").await.unwrap().is_none());
}

/// The collection's current resourceVersion, from a fresh list.
async fn current_rv<K>(api: &Api<K>) -> String
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}
