//! Distributed load against the fake API server, with `aefm-load` running for real as each Job
//! pod's process: the start barrier through the pod proxy, report frames in logs full of noise,
//! headers through a Secret, unique Job names per run and case, Job pods found by uid, and a
//! failed pod that costs only its own report.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aefm::kubernetes::load::{GeneratorOutcome, LoadJobs, Owner};
use aefm::kubernetes::Cluster;
use aefm_tests::fake_kube::{FakeKube, JobOutput, JobRun};
use serde_json::json;

use super::experiment_config;

/// What the runner saw of each pod: its name, arguments and log.
#[derive(Clone, Debug)]
pub(super) struct Ran {
    pub pod: String,
    pub args: Vec<String>,
    pub log: String,
}

pub(super) type Seen = Arc<Mutex<Vec<Ran>>>;

/// Runs each Job pod as a local `aefm-load` process, as a kubelet with a container runtime
/// would: the `--control-port` container port is mapped to the local port the fake chose, and
/// the log is stdout then stderr. The pod of Job index `victim` is killed two seconds after it
/// reported ready (a pod failing mid-case; exit code 137, as after SIGKILL).
pub(super) fn load_runner(fake: &FakeKube, seen: Seen, victim: Option<usize>) {
    let bin = aefm_tests::bins::bin("aefm-load");
    fake.set_job_runner(Arc::new(move |run: &JobRun| {
        let args = aefm_tests::fake_kube::proxy::map_control_port(&run.args, &run.ports);
        let pod = run.pod.2.clone();
        let is_victim = victim.is_some_and(|v| job_index(&pod) == Some(v));
        let (code, stdout, stderr) = run_pod(&bin, &args, is_victim);
        let out = JobOutput::new(code, stdout, stderr);
        seen.lock().unwrap().push(Ran {
            pod,
            args: run.args.clone(),
            log: out.plain_log(),
        });
        out
    }));
}

/// The Job index of a Job pod's name (`<job>-<i>-<suffix>`).
fn job_index(pod: &str) -> Option<usize> {
    let job = pod.rsplit_once('-')?.0;
    job.rsplit_once('-')?.1.parse().ok()
}

fn run_pod(bin: &std::path::Path, args: &[String], kill: bool) -> (i32, String, String) {
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run aefm-load");
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("waiting for POST /start") {
                let _ = ready_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    if kill && ready_rx.recv_timeout(Duration::from_secs(60)).is_ok() {
        std::thread::sleep(Duration::from_secs(2));
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for aefm-load");
    let code = status.code().unwrap_or(137);
    (code, out.join().unwrap(), err.join().unwrap())
}

struct Setup {
    fake: FakeKube,
    app: aefm_tests::http_server::HttpServer,
    dir: tempfile::TempDir,
    seen: Seen,
    config: Arc<aefm::config::Config>,
}

fn setup(load: &str, victim: Option<usize>) -> Setup {
    let fake = FakeKube::start().with_standard_nodes();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    load_runner(&fake, seen.clone(), victim);
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let path = experiment_config(&fake, dir.path(), &app.url("/"), "2s", load);
    let config = Arc::new(aefm::config::Config::load(&path).unwrap());
    Setup {
        fake,
        app,
        dir,
        seen,
        config,
    }
}

fn spec(url: String, headers: Vec<(String, String)>) -> aefm::load::LoadSpec {
    aefm::load::LoadSpec {
        url,
        rate: 40.0,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        threads: 1,
        connections: 2,
        timeout: Duration::from_secs(2),
        headers,
        script: None,
        script_args: vec![],
        cores: None,
        traceparent: 0.0,
        distribution: Default::default(),
        seed: 0,
    }
}

fn context(s: &Setup, case: usize) -> aefm::context::Context {
    let cases = Arc::new(aefm::sweep::expand(&s.config));
    let mut ctx =
        aefm::context::Context::new(s.config.clone(), s.dir.path().to_path_buf(), cases.clone());
    ctx.case = Some(cases[case].clone());
    ctx
}

/// Runs the distributed load of `ctx`'s case with fresh components, as the workflow does.
fn run_load(
    config: &aefm::config::Config,
    ctx: &aefm::context::Context,
    spec: &aefm::load::LoadSpec,
) -> Result<aefm::load::LoadReport, aefm::components::ComponentError> {
    let mut comps = aefm::backend::build_components(config).unwrap();
    comps
        .workload
        .run(ctx, spec, &aefm::load::CancelToken::new())
}

fn reports(seen: &Seen) -> Vec<aefm_loadgen::Report> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|r| aefm_loadgen::frame::decode(&r.log).ok())
        .collect()
}

#[test]
fn distributed_load_runs_jobs_and_merges_histograms_exactly() {
    let s = setup(
        "  load: {max_rate_per_generator: 15, generators: 4}\n",
        None,
    );
    let ctx = context(&s, 0);
    let report = run_load(&s.config, &ctx, &spec(s.app.url("/"), vec![])).unwrap();
    let parts = reports(&s.seen);
    assert_eq!(parts.len(), 4, "every generator's report is in its log");
    let total: u64 = parts.iter().map(|p| p.corrected().len()).sum();
    assert!(total > 0);
    assert_eq!(
        report.requests, total,
        "the merged histogram holds every sample of every job"
    );
    assert_eq!(
        report.histogram.max(),
        parts.iter().map(|p| p.corrected().max()).max().unwrap()
    );
    let raw = report.raw.as_ref().unwrap();
    let per_second: u64 = raw.per_second.iter().map(|x| x.completed).sum();
    let parts_per_second: u64 = parts
        .iter()
        .flat_map(|p| &p.per_second)
        .map(|x| x.completed)
        .sum();
    assert_eq!(per_second, parts_per_second, "seconds merged exactly");
    // The start barrier: every pod started at the same instant.
    let starts: Vec<f64> = parts.iter().map(|p| p.start_time).collect();
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    eprintln!("start spread of 4 load pods: {:.3} ms", spread * 1e3);
    assert_eq!(report.start_spread_s, Some(spread));
    assert!(spread < 1.0, "spread {spread} s");
    assert!(
        report.failed_generators.is_empty(),
        "{:?}",
        report.failed_generators
    );
    assert!(
        s.fake.objects("jobs").is_empty(),
        "load Jobs are deleted afterwards"
    );
}

/// Job names this run applied (from the requests the fake received).
fn applied_jobs(fake: &FakeKube) -> BTreeSet<String> {
    fake.requests()
        .iter()
        .filter_map(|r| r.strip_prefix("PATCH /apis/batch/v1/namespaces/hotel/jobs/"))
        .map(|r| r.split('?').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn jobs_of_cases_and_runs_never_collide_and_stale_pods_are_not_read() {
    let s = setup(
        "  load: {max_rate_per_generator: 15, generators: 2}\n",
        None,
    );
    let cfg = aefm::kubernetes::resolved(s.config.kubernetes.as_ref().unwrap(), &s.config.base_dir);
    let cluster = Cluster::connect(&cfg, "k8s-e2e").unwrap();
    let cases = aefm::sweep::expand(&s.config);
    let (a, b) = (cases[0].name.clone(), cases[1].name.clone());
    let run = |cluster: &Cluster, case: &str| -> Vec<GeneratorOutcome> {
        let sp = spec(s.app.url("/"), vec![]);
        let flags = aefm::kubernetes::components::job_flags(&cfg, &sp);
        let args: Vec<Vec<String>> = (0..2)
            .map(|job| aefm::kubernetes::components::load_args(&sp, 20.0, job, &flags))
            .collect();
        let jobs = LoadJobs {
            owner: Owner {
                experiment: "k8s-e2e",
                test_case: case,
                run: cluster.run_id(),
            },
            args_per_job: &args,
            script: None,
            headers: &[],
            run_time: Duration::from_secs(2),
        };
        cluster.run_load_jobs(&jobs, &|| false).unwrap()
    };
    let first = run(&cluster, &a);
    let second = run(&cluster, &b);
    let names = applied_jobs(&s.fake);
    assert_eq!(
        names.len(),
        4,
        "two cases, two Jobs each, no name shared: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.contains(cluster.run_id())),
        "{names:?}"
    );

    // A resumed run (a new run id) of case `a`, with the previous run's Job of that case still
    // there (Complete) and its pod, which carries our Job's name and run labels and a report
    // far too big: it must be neither in the way nor read.
    let resumed = Cluster::connect(&cfg, "k8s-e2e").unwrap();
    assert_ne!(resumed.run_id(), cluster.run_id());
    let old = Owner {
        experiment: "k8s-e2e",
        test_case: &a,
        run: cluster.run_id(),
    };
    let new = Owner {
        run: resumed.run_id(),
        ..old
    };
    let old_job = s.fake.insert(
        "jobs",
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": format!("{}-0", old.stem()), "namespace": "hotel", "labels": old.labels()},
               "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": old.labels()}, "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "load", "image": "aefm-load:dev"}]}}},
               "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}),
    );
    let stale_pod = format!("{}-0-stale", new.stem());
    let mut labels = new.labels();
    labels["job-name"] = json!(format!("{}-0", new.stem()));
    s.fake.insert(
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": stale_pod, "namespace": "hotel", "labels": labels,
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": old_job["metadata"]["name"],
                                                 "uid": old_job["metadata"]["uid"], "controller": true}]},
               "spec": {"nodeName": "w3", "restartPolicy": "Never", "containers": [{"name": "load", "image": "aefm-load:dev"}]},
               "status": {"phase": "Succeeded"}}),
    );
    let mut stale = reports(&s.seen).remove(0);
    stale.summary.requests = 999_999;
    for line in aefm_loadgen::frame::encode(&stale).lines() {
        s.fake
            .write_log("hotel", &stale_pod, std::time::SystemTime::now(), line);
    }
    let before = s.seen.lock().unwrap().len();
    let requests_before = s.fake.requests().len();
    let third = run(&resumed, &a);
    let fresh: Vec<u64> = s.seen.lock().unwrap()[before..]
        .iter()
        .map(|r| {
            aefm_loadgen::frame::decode(&r.log)
                .unwrap()
                .summary
                .requests
        })
        .collect();
    for outcomes in [&first, &second, &third] {
        assert_eq!(outcomes.len(), 2);
        for o in outcomes.iter() {
            let r = o
                .report
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", o.describe()));
            assert_ne!(r.summary.requests, 999_999, "stale report read");
        }
    }
    let got: Vec<u64> = third
        .iter()
        .map(|o| o.report.as_ref().unwrap().summary.requests)
        .collect();
    let mut want = fresh.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "this run's own pods' reports");
    let resumed_jobs: Vec<String> = s.fake.requests()[requests_before..]
        .iter()
        .filter(|r| r.starts_with("PATCH /apis/batch/v1/"))
        .cloned()
        .collect();
    assert_eq!(resumed_jobs.len(), 2, "{resumed_jobs:?}");
    assert!(
        resumed_jobs
            .iter()
            .all(|r| r.contains(&new.stem()) && !r.contains(&old.stem())),
        "the resumed run applies Jobs of its own, never the old one: {resumed_jobs:?}"
    );
}

#[test]
fn one_failed_load_pod_keeps_the_others_reports_and_invalidates_the_case() {
    let s = setup(
        "  load: {max_rate_per_generator: 15, generators: 3}\n",
        Some(1),
    );
    let mut ctx = context(&s, 0);
    let report = run_load(&s.config, &ctx, &spec(s.app.url("/"), vec![])).unwrap();
    let seen = s.seen.lock().unwrap().clone();
    let victim = seen.iter().find(|r| job_index(&r.pod) == Some(1)).unwrap();
    let kept: Vec<aefm_loadgen::Report> = seen
        .iter()
        .filter(|r| job_index(&r.pod) != Some(1))
        .map(|r| aefm_loadgen::frame::decode(&r.log).unwrap())
        .collect();
    assert_eq!(kept.len(), 2);
    let total: u64 = kept.iter().map(|p| p.corrected().len()).sum();
    assert!(total > 0);
    assert_eq!(
        report.requests, total,
        "the two other pods' reports are kept, merged"
    );
    assert_eq!(
        report.failed_generators.len(),
        1,
        "{:?}",
        report.failed_generators
    );
    assert!(
        report.failed_generators[0].contains(&victim.pod),
        "{:?}",
        report.failed_generators
    );
    ctx.report = Some(report);
    let verdict = aefm::validity::judge(&ctx);
    let reason = verdict
        .reasons
        .iter()
        .find(|r| r.code == "load_pod_failed")
        .unwrap_or_else(|| panic!("{verdict:?}"));
    assert!(reason.message.contains(&victim.pod), "{}", reason.message);
    assert!(
        reason.message.contains("137") || reason.message.contains("Failed"),
        "{}",
        reason.message
    );
}

#[test]
fn noisy_script_output_and_secret_headers_stay_out_of_the_way() {
    let s = setup(
        "  load: {max_rate_per_generator: 15, generators: 2}\n",
        None,
    );
    let script = s.dir.path().join("noisy.lua");
    std::fs::write(
        &script,
        "io.write('unfinished { line')\nio.stderr:write('{\"warning\": \"}{\"}\\n')\nfunction init(args) print('{ \"init\": ' .. #args .. ' }') end\nfunction request() return wrk.format('GET', '/noisy') end\nfunction done(summary, latency, requests) print('}{ done {') end\n",
    )
    .unwrap();
    let secret = "Bearer top-s3cret-value";
    let ctx = context(&s, 0);
    let mut sp = spec(
        s.app.url("/"),
        vec![("Authorization".into(), secret.into())],
    );
    sp.script = Some(script);
    let report = run_load(&s.config, &ctx, &sp).unwrap();
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert!(
            !r.args.iter().any(|a| a.contains("s3cret")),
            "a header value in the Job's args: {:?}",
            r.args
        );
        assert!(
            r.log.contains("{ \"init\""),
            "the script printed: {}",
            r.log
        );
    }
    let total: u64 = seen
        .iter()
        .map(|r| {
            aefm_loadgen::frame::decode(&r.log)
                .unwrap()
                .corrected()
                .len()
        })
        .sum();
    assert!(total > 0);
    assert_eq!(
        report.requests, total,
        "reports read despite the braces around them"
    );
    let got = s.app.requests();
    assert!(!got.is_empty());
    for r in &got {
        assert_eq!(r.target, "/noisy");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == secret),
            "the header reached the service from the Secret: {r:?}"
        );
    }
    assert!(
        s.fake
            .requests()
            .iter()
            .any(|r| r.starts_with("PATCH /api/v1/namespaces/hotel/secrets/aefm-load-")),
        "the headers went into a Secret"
    );
    assert!(
        s.fake
            .labelled("secrets", "aefm.io/component", "load")
            .is_empty(),
        "the Secret is deleted with the Jobs"
    );
}

fn scripted_spec(url: String, script: PathBuf) -> aefm::load::LoadSpec {
    aefm::load::LoadSpec {
        script: Some(script),
        script_args: vec!["k8s".into()],
        ..spec(url, vec![])
    }
}

#[test]
fn distributed_load_ships_the_lua_script_in_a_config_map() {
    let fake = FakeKube::start().with_standard_nodes();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    load_runner(&fake, seen.clone(), None);
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    // A space in the name: the ConfigMap key (and file in the pod) becomes `post_script.lua`.
    let script = dir.path().join("post script.lua");
    std::fs::write(
        &script,
        "local tag = 'none'\nfunction init(args) tag = args[1] end\nfunction request()\n  return wrk.format('POST', '/script/' .. tag, {['Content-Type'] = 'text/plain'}, 'body-from-script')\nend\n",
    )
    .unwrap();
    let path = experiment_config(
        &fake,
        dir.path(),
        &app.url("/"),
        "2s",
        "  load: {max_rate_per_generator: 15}\n",
    );
    let config = std::sync::Arc::new(aefm::config::Config::load(&path).unwrap());
    let cases = std::sync::Arc::new(aefm::sweep::expand(&config));
    let ctx = aefm::context::Context::new(config.clone(), dir.path().to_path_buf(), cases.clone());
    let spec = scripted_spec(app.url("/"), script.clone());
    let report = run_load(&config, &ctx, &spec).unwrap();
    // The script was applied as a ConfigMap and every Job named it at its mount path.
    let reqs = fake.requests();
    assert!(
        reqs.iter().any(
            |r| r.starts_with("PATCH /api/v1/namespaces/hotel/configmaps/aefm-load-")
                && r.contains("-script?")
        ),
        "{reqs:?}"
    );
    let parts = reports(&seen);
    assert_eq!(parts.len(), 3, "ceil(40 / 15) generators");
    // Every request that reached the service came from the script.
    let got = app.requests();
    assert!(!got.is_empty());
    for r in &got {
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.body.as_slice()),
            ("POST", "/script/k8s", &b"body-from-script"[..]),
            "{r:?}"
        );
    }
    let total: u64 = parts.iter().map(|p| p.corrected().len()).sum();
    assert!(total > 0);
    assert_eq!(report.requests, total, "merged = sum of the Jobs' reports");
    assert!(fake.objects("jobs").is_empty(), "load Jobs are deleted");
    assert!(
        fake.objects("configmaps")
            .iter()
            .all(|c| c["metadata"]["labels"]["aefm.io/component"] != "load"),
        "the script ConfigMap is deleted with the Jobs"
    );

    // A script that cannot be read fails before anything is created, naming the file.
    let missing = dir.path().join("missing.lua");
    let before = fake.requests().len();
    let err = run_load(&config, &ctx, &scripted_spec(app.url("/"), missing))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.lua"), "{err}");
    assert!(!fake.requests()[before..]
        .iter()
        .any(|r| r.starts_with("PATCH")));
}

/// A load pod evicted mid-case (the kubelet's memory pressure): the case keeps the other pods'
/// reports, merged, and is invalid with `load_pod_failed` naming the pod and the eviction.
#[test]
fn an_evicted_load_pod_keeps_the_others_reports_and_invalidates_the_case() {
    let s = setup(
        "  load: {max_rate_per_generator: 15, generators: 3}\n",
        None,
    );
    let mut ctx = context(&s, 0);
    let (report, victim) = std::thread::scope(|scope| {
        let evictor = scope.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                if let Some((ns, name)) = running_load_pod(&s.fake, 2) {
                    // Mid-case: a second into its 2 s of load.
                    std::thread::sleep(Duration::from_millis(1000));
                    assert!(s.fake.evict_pod(&ns, &name));
                    return Some(name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        });
        let report = run_load(&s.config, &ctx, &spec(s.app.url("/"), vec![])).unwrap();
        (report, evictor.join().unwrap())
    });
    let victim = victim.expect("no load pod was evicted");
    assert_eq!(
        report.failed_generators.len(),
        1,
        "{:?}",
        report.failed_generators
    );
    let why = &report.failed_generators[0];
    assert!(why.contains(&victim) && why.contains("Evicted"), "{why}");
    let kept: u64 = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.pod != victim)
        .map(|r| {
            aefm_loadgen::frame::decode(&r.log)
                .unwrap()
                .corrected()
                .len()
        })
        .sum();
    assert!(kept > 0);
    assert_eq!(
        report.requests, kept,
        "exactly the other two pods' requests"
    );
    ctx.report = Some(report);
    let verdict = aefm::validity::judge(&ctx);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.code == "load_pod_failed" && r.message.contains(&victim)),
        "{verdict:?}"
    );
}

/// A Running pod of load Job `index`, as (namespace, name).
fn running_load_pod(fake: &FakeKube, index: usize) -> Option<(String, String)> {
    fake.labelled("pods", "aefm.io/component", "load")
        .into_iter()
        .find_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_string();
            let ns = p["metadata"]["namespace"].as_str()?.to_string();
            (p["status"]["phase"] == "Running" && job_index(&name) == Some(index))
                .then_some((ns, name))
        })
}
