//! `aefm doctor --pre-pull`: one Job per node and image runs the image's binary with
//! `--version`, which makes the node pull it; the doctor waits for them (15 minutes at most) and
//! removes them. A node that cannot pull reports the kubelet's reason.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::config::kubernetes::KubernetesConfig;
use crate::kubernetes::error::KubeError;
use crate::kubernetes::labels;
use crate::kubernetes::readiness::job_outcome;

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
    let ns = &cfg.interference.namespace;
    crate::kubernetes::namespace::ensure(client, ns, experiment).await?;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut names = Vec::new();
    for (image, nodes) in wanted {
        for node in nodes {
            let job = prepull_job(cfg, experiment, image, node);
            let name = job["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            api.patch(
                &name,
                &PatchParams::apply(&cfg.field_manager).force(),
                &Patch::Apply(&job),
            )
            .await
            .map_err(|e| KubeError::from_kube("apply", format!("Job/{ns}/{name}"), e))?;
            names.push(name);
        }
    }
    let result = wait_all(&api, ns, &names).await;
    for n in &names {
        let _ = api.delete(n, &DeleteParams::background()).await;
    }
    result
}

async fn wait_all(api: &Api<Job>, ns: &str, names: &[String]) -> Result<(), KubeError> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for n in pending {
            let job = api
                .get(n)
                .await
                .map_err(|e| KubeError::from_kube("get", format!("Job/{ns}/{n}"), e))?;
            match job_outcome(&job) {
                Some(Ok(())) => {}
                Some(Err(why)) => {
                    return Err(KubeError::Failed {
                        object: format!("Job/{ns}/{n}"),
                        message: format!("pulling the image failed: {why}"),
                    })
                }
                None => still.push(n),
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() > deadline {
                return Err(KubeError::Failed {
                    object: format!("Job/{ns}/{}", pending[0]),
                    message: "image pull not finished after 15 minutes".into(),
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
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
