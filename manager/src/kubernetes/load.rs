//! Distributed load: when one generator cannot offer a case's rate, `aefm-load` runs as Kubernetes
//! Jobs on the load nodes, each with its share of the rate and `--json -`; their pod logs are the
//! reports the caller merges (exactly, HdrHistogram by HdrHistogram).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde_json::{json, Value};

use super::client::{Kube, ObjectRef};
use super::error::KubeError;
use super::labels;
use super::manifests::node_affinity;
use super::readiness::wait_ready;
use crate::config::kubernetes::KubernetesConfig;

/// How many generators a case's `rate` needs: `load.generators` when set, else
/// `ceil(rate / load.max_rate_per_generator)`, at least 1.
pub fn generators_needed(cfg: &KubernetesConfig, rate: f64) -> u32 {
    cfg.load
        .generators
        .unwrap_or_else(|| (rate / cfg.load.max_rate_per_generator).ceil().max(1.0) as u32)
        .max(1)
}

/// Whether a case's load should run as Jobs rather than in this process.
pub fn is_distributed(cfg: &KubernetesConfig, rate: f64) -> bool {
    cfg.load.always
        || cfg.load.generators.is_some_and(|g| g > 1)
        || rate > cfg.load.max_rate_per_generator
}

/// Splits `rate` into `n` shares that add up to exactly `rate` (integer requests/s where possible;
/// the remainder goes to the first shares).
pub fn split_rate(rate: f64, n: u32) -> Vec<f64> {
    let n = n.max(1) as usize;
    if rate.fract() == 0.0 && rate >= n as f64 {
        let total = rate as u64;
        let base = total / n as u64;
        let extra = (total % n as u64) as usize;
        return (0..n)
            .map(|i| (base + u64::from(i < extra)) as f64)
            .collect();
    }
    vec![rate / n as f64; n]
}

/// One load Job: `aefm-load <args>` on `node` (if given), never retried (a retried run would
/// double-count the load), labelled for cleanup.
pub fn load_job(
    cfg: &KubernetesConfig,
    experiment: &str,
    test_case: &str,
    index: usize,
    node: Option<&str>,
    args: &[String],
) -> Value {
    let ns = cfg
        .load
        .namespace
        .clone()
        .unwrap_or_else(|| cfg.namespace.clone());
    let name = format!(
        "aefm-load-{}-{}-{index}",
        labels::dns_fragment(experiment, 16),
        labels::dns_fragment(test_case, 24)
    );
    let lbl = json!({
        labels::EXPERIMENT: labels::label_value(experiment),
        labels::TEST_CASE: labels::label_value(test_case),
        labels::COMPONENT: "load",
        labels::MANAGED_BY: labels::MANAGER,
    });
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "load",
            "image": cfg.load.image,
            "imagePullPolicy": cfg.image_pull_policy,
            "command": ["aefm-load"],
            "args": args,
        }],
    });
    if let Some(node) = node {
        pod_spec["affinity"] = json!({"nodeAffinity": node_affinity(&[node.to_string()])});
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": lbl},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": lbl}, "spec": pod_spec},
        },
    })
}

/// Runs one Job per entry of `args_per_job` (round-robin over the load nodes), waits for all to
/// complete, and returns each Job's pod log (its `--json -` report), in order. The Jobs are
/// deleted afterwards whatever happened. `cancelled` is polled to stop early on Ctrl-C.
pub async fn run_jobs(
    kube: &Kube,
    cfg: &KubernetesConfig,
    experiment: &str,
    test_case: &str,
    args_per_job: &[Vec<String>],
    timeout: Duration,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<String>, KubeError> {
    let nodes = cfg.load_nodes();
    let ns = cfg
        .load
        .namespace
        .clone()
        .unwrap_or_else(|| cfg.namespace.clone());
    kube.apply(&super::manifests::namespace_object(&ns, experiment))
        .await?;
    let jobs: Vec<Value> = args_per_job
        .iter()
        .enumerate()
        .map(|(i, args)| {
            let node = (!nodes.is_empty()).then(|| nodes[i % nodes.len()].as_str());
            load_job(cfg, experiment, test_case, i, node, args)
        })
        .collect();
    let mut refs = Vec::new();
    let result = async {
        for j in &jobs {
            refs.push(kube.apply(j).await?);
        }
        let wait = wait_ready(kube.client(), &refs, timeout);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                r = &mut wait => { r?; break; }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if cancelled() { return Err(KubeError::Cancelled); }
                }
            }
        }
        let mut logs = Vec::new();
        for r in &refs {
            logs.push(job_log(kube, r).await?);
        }
        Ok(logs)
    }
    .await;
    for r in &refs {
        // Best effort: a failed delete must not hide the load result or its error.
        let _ = kube.delete(r).await;
    }
    result
}

/// The log of a completed Job's pod.
async fn job_log(kube: &Kube, job: &ObjectRef) -> Result<String, KubeError> {
    let ns = job.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(kube.client().clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={}", job.name)))
        .await
        .map_err(|e| KubeError::from_kube("list", format!("pods of {job}"), e))?;
    let pod = list
        .items
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .ok_or_else(|| KubeError::Load {
            job: job.to_string(),
            message: "no succeeded pod".into(),
        })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    pods.logs(
        &name,
        &LogParams {
            container: Some("load".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| KubeError::from_kube("read log of", format!("Pod/{ns}/{name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KubernetesConfig {
        serde_yaml::from_str("namespace: app\nyaml_repo: r\nload: {max_rate_per_generator: 1000}\n")
            .unwrap()
    }

    #[test]
    fn generators_from_rate_or_config() {
        let mut c = cfg();
        assert_eq!(generators_needed(&c, 2500.0), 3);
        assert_eq!(generators_needed(&c, 10.0), 1);
        assert!(is_distributed(&c, 2500.0) && !is_distributed(&c, 900.0));
        c.load.generators = Some(4);
        assert_eq!(generators_needed(&c, 10.0), 4);
    }

    #[test]
    fn shares_add_up_exactly() {
        assert_eq!(split_rate(1000.0, 3), vec![334.0, 333.0, 333.0]);
        assert_eq!(split_rate(2.0, 4).iter().sum::<f64>(), 2.0);
    }

    #[test]
    fn job_runs_once_on_its_node() {
        let j = load_job(
            &cfg(),
            "exp",
            "case 1",
            0,
            Some("w4"),
            &["--rate".into(), "10".into()],
        );
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(j["metadata"]["labels"][labels::COMPONENT], "load");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["--rate", "10"])
        );
        assert!(j["spec"]["template"]["spec"]["affinity"]
            .to_string()
            .contains("w4"));
    }
}
