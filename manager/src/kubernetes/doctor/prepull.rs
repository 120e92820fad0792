//! `aefm doctor --pre-pull`: one Job per node and image runs the image's binary with
//! `--version`, which makes the node pull it; the doctor waits for them with the run's own wait
//! (15 minutes at most; a pull that keeps failing fails it with the kubelet's reason) and removes
//! them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::kubernetes::KubernetesConfig;
use crate::kubernetes::error::KubeError;
use crate::kubernetes::labels;
use crate::kubernetes::readiness::wait_ready;
use crate::kubernetes::watch::Limits;
use crate::kubernetes::Kube;

/// A Job that pulls `image` on `node` by running its binary's `--version`.
pub fn prepull_job(cfg: &KubernetesConfig, experiment: &str, image: &str, node: &str) -> Value {
    let binary = if image.contains("aefm-load") {
        "aefm-load"
    } else {
        "aefm-stress"
    };
    let name = format!(
        "aefm-prepull-{}-{}",
        labels::dns_fragment(binary, 11),
        labels::dns_fragment(node, 40)
    );
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cfg.interference.namespace,
            "labels": {labels::EXPERIMENT: labels::label_value(experiment),
                       labels::COMPONENT: "prepull",
                       labels::MANAGED_BY: labels::MANAGER},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 900,
            "ttlSecondsAfterFinished": 60,
            "template": {"spec": {
                "restartPolicy": "Never",
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "pull",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [binary, "--version"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                  "limits": {"cpu": "100m", "memory": "64Mi"}},
                }],
            }},
        },
    })
}

/// Pulls every `(image, nodes)` with [`prepull_job`]s in the interference namespace; returns once
/// every Job finished, failing with the first Job that failed (its reason) or after 15 minutes.
pub async fn pull(
    client: &kube::Client,
    cfg: &KubernetesConfig,
    experiment: &str,
    wanted: &[(String, Vec<String>)],
) -> Result<(), KubeError> {
    crate::kubernetes::namespace::ensure(client, &cfg.interference.namespace, experiment).await?;
    let kube = Kube::new(client.clone(), &cfg.field_manager);
    let mut refs = Vec::new();
    let mut applied = Ok(());
    'apply: for (image, nodes) in wanted {
        for node in nodes {
            match kube.apply(&prepull_job(cfg, experiment, image, node)).await {
                Ok(r) => refs.push(r),
                Err(e) => {
                    applied = Err(e);
                    break 'apply;
                }
            }
        }
    }
    // The run's own wait: a failed Job (a node that cannot pull) fails it with the reason.
    let limits = Limits::cleanup(cfg, Duration::from_secs(900));
    let result = match applied {
        Ok(()) => wait_ready(client, &refs, &limits).await,
        Err(e) => Err(e),
    };
    for r in &refs {
        let _ = kube.delete(r).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepull_jobs_run_the_images_binary_on_one_node() {
        let cfg: KubernetesConfig = serde_yaml::from_str("namespace: a\nyaml_repo: r\n").unwrap();
        let j = prepull_job(&cfg, "e", "reg/aefm-load:1", "worker-1");
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["nodeName"], "worker-1");
        assert_eq!(
            pod["containers"][0]["command"],
            json!(["aefm-load", "--version"])
        );
        assert_eq!(j["metadata"]["name"], "aefm-prepull-aefm-load-worker-1");
        let s = prepull_job(&cfg, "e", "reg/aefm-stress:1", "worker-1");
        assert_eq!(
            s["spec"]["template"]["spec"]["containers"][0]["command"][0],
            "aefm-stress"
        );
    }
}
