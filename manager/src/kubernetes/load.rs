//! Distributed load: when one generator cannot offer a case's rate, `aefm-load` runs as Kubernetes
//! Jobs on the load nodes, each with its share of the rate and `--json -`; their pod logs are the
//! reports the caller merges (exactly, HdrHistogram by HdrHistogram). A case's wrk Lua script is
//! shipped as a ConfigMap (labelled like the Jobs) mounted at [`SCRIPT_DIR`] in every Job pod.

use std::path::{Path, PathBuf};
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

/// Where the script ConfigMap is mounted in load Job pods.
pub const SCRIPT_DIR: &str = "/etc/aefm-load";

/// Volume name of the script ConfigMap in load Job pods.
const SCRIPT_VOLUME: &str = "script";

/// Largest script a ConfigMap holds (the API server refuses objects over 1 MiB; some room is
/// left for the metadata).
const MAX_SCRIPT_BYTES: usize = 1000 * 1024;

/// The ConfigMap key of a script, which is also its file name under [`SCRIPT_DIR`]: the file name
/// with characters a key cannot hold (anything but `[-._a-zA-Z0-9]`) replaced by `_`.
pub fn script_key(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() || key.chars().all(|c| c == '.') {
        "script.lua".into()
    } else {
        key
    }
}

/// The path of a script inside a load Job pod (what `aefm-load -s` is given).
pub fn script_pod_path(path: &Path) -> String {
    format!("{SCRIPT_DIR}/{}", script_key(path))
}

/// A wrk Lua script to ship to load Jobs: the local file and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadScript {
    /// The script on this machine.
    pub path: PathBuf,
    /// The file's content.
    pub content: String,
}

impl LoadScript {
    /// Reads the script; it must be UTF-8 text small enough for a ConfigMap.
    pub fn read(path: &Path) -> Result<LoadScript, KubeError> {
        let io = |source| KubeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        if bytes.len() > MAX_SCRIPT_BYTES {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} bytes is too large to ship to load Jobs in a ConfigMap (limit {MAX_SCRIPT_BYTES})",
                    bytes.len()
                ),
            )));
        }
        let content = String::from_utf8(bytes).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text; cannot ship it to load Jobs in a ConfigMap",
            ))
        })?;
        Ok(LoadScript {
            path: path.to_path_buf(),
            content,
        })
    }
}

fn load_namespace(cfg: &KubernetesConfig) -> String {
    cfg.load
        .namespace
        .clone()
        .unwrap_or_else(|| cfg.namespace.clone())
}

fn load_labels(experiment: &str, test_case: &str) -> Value {
    json!({
        labels::EXPERIMENT: labels::label_value(experiment),
        labels::TEST_CASE: labels::label_value(test_case),
        labels::COMPONENT: "load",
        labels::MANAGED_BY: labels::MANAGER,
    })
}

fn load_name_stem(experiment: &str, test_case: &str) -> String {
    format!(
        "aefm-load-{}-{}",
        labels::dns_fragment(experiment, 16),
        labels::dns_fragment(test_case, 24)
    )
}

/// The ConfigMap holding a case's script (key [`script_key`]), in the load namespace, labelled like
/// the load Jobs so that `aefm clean` and the end of the experiment remove it.
pub fn script_config_map(
    cfg: &KubernetesConfig,
    experiment: &str,
    test_case: &str,
    script: &LoadScript,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{}-script", load_name_stem(experiment, test_case)),
            "namespace": load_namespace(cfg),
            "labels": load_labels(experiment, test_case),
        },
        "data": {script_key(&script.path): script.content},
    })
}

/// One load Job: `aefm-load <args>` on `node` (if given), never retried (a retried run would
/// double-count the load), labelled for cleanup. `script_config_map` (a ConfigMap name) is mounted
/// read-only at [`SCRIPT_DIR`].
pub fn load_job(
    cfg: &KubernetesConfig,
    experiment: &str,
    test_case: &str,
    index: usize,
    node: Option<&str>,
    args: &[String],
    script_config_map: Option<&str>,
) -> Value {
    let ns = load_namespace(cfg);
    let name = format!("{}-{index}", load_name_stem(experiment, test_case));
    let lbl = load_labels(experiment, test_case);
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
    if let Some(cm) = script_config_map {
        pod_spec["volumes"] = json!([{"name": SCRIPT_VOLUME, "configMap": {"name": cm}}]);
        pod_spec["containers"][0]["volumeMounts"] =
            json!([{"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": true}]);
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
/// complete, and returns each Job's pod log (its `--json -` report), in order. With a `script`,
/// its ConfigMap is applied first and mounted in every Job (the arguments must then name
/// [`script_pod_path`]). The Jobs, then the ConfigMap, are deleted afterwards whatever happened.
/// `cancelled` is polled to stop early on Ctrl-C.
#[allow(clippy::too_many_arguments)]
pub async fn run_jobs(
    kube: &Kube,
    cfg: &KubernetesConfig,
    experiment: &str,
    test_case: &str,
    args_per_job: &[Vec<String>],
    script: Option<&Path>,
    timeout: Duration,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<String>, KubeError> {
    let nodes = cfg.load_nodes();
    let ns = load_namespace(cfg);
    let script = script.map(LoadScript::read).transpose()?;
    let config_map = script
        .as_ref()
        .map(|s| script_config_map(cfg, experiment, test_case, s));
    let cm_name = config_map.as_ref().map(|c| {
        c["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    kube.apply(&super::manifests::namespace_object(&ns, experiment))
        .await?;
    let jobs: Vec<Value> = args_per_job
        .iter()
        .enumerate()
        .map(|(i, args)| {
            let node = (!nodes.is_empty()).then(|| nodes[i % nodes.len()].as_str());
            load_job(
                cfg,
                experiment,
                test_case,
                i,
                node,
                args,
                cm_name.as_deref(),
            )
        })
        .collect();
    let mut refs = Vec::new();
    let mut cm_ref = None;
    let result = async {
        if let (Some(cm), Some(script)) = (&config_map, &script) {
            let note = format!(" (holding load script {})", script.path.display());
            cm_ref = Some(ObjectRef::of(cm));
            kube.apply(cm).await.map_err(|e| name_script(e, &note))?;
        }
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
    if let Some(r) = &cm_ref {
        let _ = kube.delete(r).await;
    }
    result
}

/// Adds `note` (which names the script) to the object an API error is about.
fn name_script(err: KubeError, note: &str) -> KubeError {
    match err {
        KubeError::Api {
            action,
            object,
            code,
            reason,
            message,
        } => KubeError::Api {
            action,
            object: object + note,
            code,
            reason,
            message,
        },
        KubeError::Transport {
            action,
            object,
            message,
        } => KubeError::Transport {
            action,
            object: object + note,
            message,
        },
        other => other,
    }
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
            None,
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
        assert!(j["spec"]["template"]["spec"]["volumes"].is_null());
    }

    #[test]
    fn script_ships_in_a_labelled_config_map_mounted_in_the_job() {
        let script = LoadScript {
            path: "/home/u/wrk2/scripts/compose post.lua".into(),
            content: "request = function() return wrk.format('POST', '/p') end\n".into(),
        };
        assert_eq!(script_key(&script.path), "compose_post.lua");
        assert_eq!(
            script_pod_path(&script.path),
            "/etc/aefm-load/compose_post.lua"
        );
        let cm = script_config_map(&cfg(), "exp", "case 1", &script);
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(cm["metadata"]["name"], "aefm-load-exp-case-1-script");
        assert_eq!(cm["metadata"]["namespace"], "app");
        assert_eq!(cm["metadata"]["labels"][labels::EXPERIMENT], "exp");
        assert_eq!(cm["metadata"]["labels"][labels::COMPONENT], "load");
        assert_eq!(cm["data"]["compose_post.lua"], json!(script.content));
        let j = load_job(
            &cfg(),
            "exp",
            "case 1",
            1,
            None,
            &[],
            Some("aefm-load-exp-case-1-script"),
        );
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"],
            json!([{"name": "script", "configMap": {"name": "aefm-load-exp-case-1-script"}}])
        );
        assert_eq!(
            spec["containers"][0]["volumeMounts"],
            json!([{"name": "script", "mountPath": "/etc/aefm-load", "readOnly": true}])
        );
    }

    #[test]
    fn unreadable_or_binary_scripts_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.lua");
        let e = LoadScript::read(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.lua"), "{e}");
        let bin = dir.path().join("bin.lua");
        std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
        let e = LoadScript::read(&bin).unwrap_err().to_string();
        assert!(e.contains("bin.lua") && e.contains("UTF-8"), "{e}");
    }
}
