//! Waits that survive: against the fake API server with its faults on, a deploy wait completes
//! while every watch is cut each second and a 410 Gone arrives in the middle, and so does a whole
//! experiment; Ctrl-C ends a deploy wait at once; pods that waiting will not fix (unschedulable
//! past the grace, crash-looping) fail the wait early, named with their reason.

use std::time::{Duration, Instant};

use aefm::kubernetes::{Cluster, DeployAction, KubeError};
use aefm::load::CancelToken;
use aefm_tests::fake_kube::{FakeKube, PodFailure};

use super::{cpu, section};

/// Far below the readiness timeouts used here: a wait that gave up early did not time out.
const EARLY: Duration = Duration::from_secs(60);

fn watch_requests(fake: &FakeKube) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.contains("watch=true"))
        .count()
}

#[test]
fn deploy_completes_while_watches_drop_and_expire() {
    let fake = FakeKube::start().with_standard_nodes();
    // Pods take 3 s to become ready, so each wait outlives several cut watches.
    fake.faults(|f| {
        f.ready_delay = Duration::from_secs(3);
        f.drop_watches_every = Some(Duration::from_secs(1));
    });
    let cluster =
        Cluster::connect(&section(&fake, "readiness_timeout_secs: 120\n"), "exp1").unwrap();
    let injected = std::thread::scope(|s| {
        let injector = s.spawn(|| {
            // Mid-wait: the pods exist but are not ready yet.
            let started = fake.wait_for(Duration::from_secs(60), |f| {
                !f.labelled("pods", "aefm.io/set", "infra").is_empty()
            });
            std::thread::sleep(Duration::from_millis(1500));
            fake.faults(|f| f.gone_next_watches = 1);
            started
        });
        let refs = cluster
            .deploy(DeployAction::Apply, &CancelToken::new())
            .unwrap();
        assert!(refs.len() >= 8, "{refs:?}");
        injector.join().unwrap()
    });
    assert!(injected, "the deploy never created pods");
    assert_eq!(
        fake.shared().faults().gone_next_watches,
        0,
        "the 410 was served to a watch of the wait"
    );
    // Five watches (two kinds and the pods of infra, then the Deployments and the pods of the
    // services under test) without faults; each was cut at least twice.
    let watches = watch_requests(&fake);
    assert!(
        watches >= 10,
        "watches were not cut and reopened: {watches}"
    );
    let pods = fake.labelled("pods", "app", "frontend");
    assert_eq!(pods.len(), 3);
    let ready = |p: &serde_json::Value| {
        p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    assert!(pods.iter().all(ready), "{pods:?}");
}

#[test]
fn cancelling_a_deploy_wait_returns_at_once() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| f.ready_delay = Duration::from_secs(600));
    let cluster =
        Cluster::connect(&section(&fake, "readiness_timeout_secs: 300\n"), "exp1").unwrap();
    let cancel = CancelToken::new();
    let (result, cancelled_at) = std::thread::scope(|s| {
        let ctrl_c = s.spawn(|| {
            let waiting = fake.wait_for(Duration::from_secs(60), |f| {
                !f.labelled("pods", "aefm.io/set", "infra").is_empty()
            });
            assert!(waiting, "the deploy never created pods");
            std::thread::sleep(Duration::from_millis(500));
            cancel.cancel();
            Instant::now()
        });
        let result = cluster.deploy(DeployAction::Apply, &cancel);
        (result, ctrl_c.join().unwrap())
    });
    let took = cancelled_at.elapsed();
    assert!(matches!(result, Err(KubeError::Cancelled)), "{result:?}");
    assert!(
        took < Duration::from_secs(10),
        "ignored Ctrl-C for {took:?}"
    );
}

#[test]
fn an_unschedulable_interference_pod_fails_fast_with_the_schedulers_message() {
    let fake = FakeKube::start().with_standard_nodes();
    // 64 CPUs requested on 8-CPU nodes: the scheduler says Insufficient cpu.
    let cfg = section(
        &fake,
        "interference: {cpu: '64'}\nunschedulable_grace_secs: 2\nreadiness_timeout_secs: 300\n",
    );
    let cluster = Cluster::connect(&cfg, "exp1").unwrap();
    let t0 = Instant::now();
    let err = cluster
        .place_interference("c", &[cpu(1)], &CancelToken::new())
        .unwrap_err();
    let took = t0.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, KubeError::Failing { .. }), "{msg}");
    assert!(took < EARLY, "waited {took:?} for an unschedulable pod");
    assert!(
        msg.contains("pod aefm-interference/")
            && msg.contains("Unschedulable")
            && msg.contains("Insufficient cpu")
            && msg.contains("unschedulable for"),
        "{msg}"
    );
    assert!(
        fake.wait_for(Duration::from_secs(30), |f| f
            .labelled("pods", "aefm.io/component", "interference")
            .is_empty()),
        "the failed placement was not removed"
    );
}

#[test]
fn a_crash_looping_pod_fails_the_deploy_fast_naming_pod_and_reason() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| f.images.push(("mongo".into(), PodFailure::CrashLoop)));
    let cluster =
        Cluster::connect(&section(&fake, "readiness_timeout_secs: 300\n"), "exp1").unwrap();
    let t0 = Instant::now();
    let err = cluster
        .deploy(DeployAction::Apply, &CancelToken::new())
        .unwrap_err();
    let took = t0.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, KubeError::Failing { .. }), "{msg}");
    assert!(took < EARLY, "waited {took:?} for a crash loop");
    assert!(
        msg.starts_with("StatefulSet/hotel/mongodb cannot become ready")
            && msg.contains("pod hotel/mongodb-0")
            && msg.contains("CrashLoopBackOff")
            && msg.contains("crash-looping"),
        "{msg}"
    );
}

/// A whole experiment — deploy, interference placed and cleared case by case, load, cleanup —
/// completes while every watch is cut a second after it opened, open watches meet a 410 every
/// two seconds and the first watches are refused with 410: every case runs, none fails.
#[test]
fn an_experiment_completes_while_watches_drop_and_expire() {
    let fake = FakeKube::start().with_standard_nodes();
    fake.faults(|f| {
        f.ready_delay = Duration::from_millis(1500);
        f.drop_watches_every = Some(Duration::from_secs(1));
        f.gone_every = Some(Duration::from_secs(2));
        f.gone_next_watches = 3;
    });
    let (out, dir, _app) = super::run_experiment(&fake);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 3, not 0: the fake runs no stressor container, so the interference case is invalid
    // (stressor_no_reports); what matters here is that no case failed.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let exp = aefm_tests::experiment::experiment_dir(&dir.path().join("results"));
    let rows = aefm_tests::experiment::read_csv(&exp.join("summary.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    let log = std::fs::read_to_string(exp.join("aefm.log")).unwrap();
    assert!(
        log.contains("410 Gone"),
        "no wait met a 410: the faults did not bite"
    );
    assert!(
        watch_requests(&fake) > 6,
        "watches were not cut and resumed"
    );
    assert!(fake
        .labelled("pods", "aefm.io/component", "interference")
        .iter()
        .all(|p| !p["metadata"]["deletionTimestamp"].is_null()));
}
