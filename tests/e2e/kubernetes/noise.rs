//! Noise measured on Kubernetes: a real Prometheus scrapes node-exporter and cAdvisor series of
//! known rates (one scrape target per node, as each node's exporter is), and each case's
//! `other_cpu_cores` must be the busy CPU of the app's nodes minus our pods' CPU there, with the
//! default queries; a bound turns it into `host_disturbed`, and a figure that cannot be had into
//! `noise_unmeasured`.

use std::collections::BTreeSet;

use aefm_tests::fake_kube::FakeKube;
use aefm_tests::prometheus::{Prometheus, TestEndpoint};

use super::{aefm_run, experiment_config};

/// Busy cores of each node (only `user` counts; `idle` does not).
const BUSY: [(&str, f64); 3] = [("w1", 0.25), ("w2", 1.5), ("w3", 0.8)];

/// Our containers' cores on the app's nodes: the app's namespace on w2 and w3, a stressor on w2.
const OURS: f64 = 0.5 + 0.3 + 0.2;

/// One node's exporter: its `node_uname_info` and CPU counters.
fn node(e: &TestEndpoint, name: &str, busy: f64) {
    e.set_gauge(
        &format!(r#"node_uname_info{{nodename="{name}",sysname="Linux"}}"#),
        1.0,
    );
    e.set_rate(r#"node_cpu_seconds_total{cpu="0",mode="user"}"#, busy);
    e.set_rate(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#, 4.0 - busy);
    e.set_rate(r#"node_cpu_seconds_total{cpu="0",mode="iowait"}"#, 0.5);
}

/// cAdvisor's series through the kubelet (with its `node` label): ours, a tenant's, the per-pod
/// totals and pause containers the query must skip, and a pod on a node the app is not on.
fn cadvisor(e: &TestEndpoint) {
    let c = |ns: &str, pod: &str, container: &str, node: &str, rate: f64| {
        e.set_rate(
            &format!(
                r#"container_cpu_usage_seconds_total{{namespace="{ns}",pod="{pod}",container="{container}",node="{node}"}}"#
            ),
            rate,
        )
    };
    c("hotel", "frontend-1", "app", "w2", 0.5);
    c("hotel", "db-1", "app", "w3", 0.3);
    c("aefm-interference", "stress-w2", "stress", "w2", 0.2);
    c("hotel", "frontend-1", "", "w2", 9.0);
    c("hotel", "frontend-1", "POD", "w2", 9.0);
    c("tenant", "batch-1", "worker", "w2", 0.4);
    c("hotel", "elsewhere", "app", "w9", 5.0);
}

/// `aefm run` of the fake-cluster experiment with 4 s cases (four scrapes each, so a late scrape
/// on a busy machine still leaves `rate()` two points), Prometheus at `url`, and `extra`
/// appended to the config; the summary rows and the nodes the app's pods ran on.
fn run(
    fake: &FakeKube,
    url: &str,
    extra: &str,
) -> (
    Vec<std::collections::HashMap<String, String>>,
    BTreeSet<String>,
) {
    let app = aefm_tests::http_server::HttpServer::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment_config(fake, dir.path(), &app.url("/"), "4s", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "collect:\n  prometheus: {{url: \"{url}\", step: 1s, grace: 2s{extra}}}\nvalidity: {{max_other_cpu: 1.0, max_send_lag_p99: 100ms, max_generator_busy: 1.0}}\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let out = aefm_run(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "aefm run: {stderr}");
    let exp = aefm_tests::experiment::experiment_dir(&dir.path().join("results"));
    let rows = aefm_tests::experiment::read_csv(&exp.join("summary.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let mut nodes = BTreeSet::new();
    for r in &rows {
        let map = std::fs::read_to_string(exp.join("cases").join(&r["case"]).join("pod_map.csv"))
            .unwrap();
        nodes.extend(
            map.lines()
                .skip(1)
                .filter_map(|l| l.rsplit(',').next().filter(|n| !n.is_empty()))
                .map(String::from),
        );
    }
    (rows, nodes)
}

#[test]
fn other_cpu_on_kubernetes_is_the_app_nodes_busy_cpu_minus_our_pods() {
    let Some(prom) = Prometheus::start_with(2).unwrap() else {
        return;
    };
    for (e, (name, busy)) in std::iter::once(&prom.endpoint).chain(&prom.more).zip(BUSY) {
        node(e, name, busy);
    }
    cadvisor(&prom.endpoint);
    let fake = FakeKube::start().with_standard_nodes();
    let (rows, nodes) = run(&fake, &prom.url, "");
    assert!(
        nodes.contains("w2") && nodes.contains("w3"),
        "the app runs on both testbed nodes: {nodes:?}"
    );
    let busy: f64 = BUSY
        .iter()
        .filter(|(n, _)| nodes.contains(*n))
        .map(|(_, b)| b)
        .sum();
    let expected = busy - OURS;
    for r in &rows {
        let other: f64 = r["other_cpu_cores"]
            .parse()
            .unwrap_or_else(|_| panic!("measured: {r:?}"));
        // Counters grow exactly linearly; only scrape timing jitters `rate()`.
        assert!(
            (other - expected).abs() < 0.1,
            "other_cpu_cores {other}, expected {expected:.2} on {nodes:?}: {r:?}"
        );
        assert!(r["invalid_reasons"].contains("host_disturbed"), "{r:?}");
        assert!(r["invalid_detail"].contains("above 1"), "{r:?}");
    }

    // A query with no data: the figure is empty and the bound makes that a reason, with why.
    let missing = ", noise: {host_cpu: 'sum(rate(no_such_metric[{{window}}]))'}";
    let (rows, _) = run(&fake, &prom.url, missing);
    for r in &rows {
        assert_eq!(r["other_cpu_cores"], "", "{r:?}");
        assert!(r["invalid_reasons"].contains("noise_unmeasured"), "{r:?}");
        assert!(
            r["invalid_detail"].contains("noise.host_cpu")
                && r["invalid_detail"].contains("empty result"),
            "{r:?}"
        );
    }
}
