//! Waiting for exactly the objects we applied to become ready, with watches (no fixed sleeps),
//! and explaining a timeout pod by pod (image pull, crash loop, unschedulable, ...).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::runtime::wait::await_condition;
use kube::Client;

use super::client::ObjectRef;
use super::error::KubeError;

/// Kinds whose readiness we wait for; everything else is ready once applied.
pub fn is_waitable(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "Job")
}

/// Deployment rollout finished: the controller saw the latest spec and every replica is updated
/// and available, with no old replicas left.
pub fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else { return false };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) == want
        && st.available_replicas.unwrap_or(0) == want
        && st.replicas.unwrap_or(0) == want
}

/// StatefulSet: every replica ready and on the latest revision.
pub fn statefulset_ready(s: &StatefulSet) -> bool {
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &s.status else { return false };
    st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
        && st.ready_replicas.unwrap_or(0) == want
        && st.updated_replicas.unwrap_or(0) == want
}

/// DaemonSet: every scheduled pod updated and ready.
pub fn daemonset_ready(d: &DaemonSet) -> bool {
    let Some(st) = &d.status else { return false };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.number_ready == st.desired_number_scheduled
        && st.updated_number_scheduled.unwrap_or(0) == st.desired_number_scheduled
}

/// Job outcome: `Some(Ok)` complete, `Some(Err(reason))` failed, `None` still running.
pub fn job_outcome(j: &Job) -> Option<Result<(), String>> {
    let conds = j.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    for c in conds {
        if c.status == "True" && (c.type_ == "Complete" || c.type_ == "SuccessCriteriaMet") {
            return Some(Ok(()));
        }
        if c.status == "True" && (c.type_ == "Failed" || c.type_ == "FailureTarget") {
            let why = format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            );
            return Some(Err(why));
        }
    }
    None
}

/// Waits until every waitable object in `refs` is ready, or fails after `timeout` naming the
/// objects and each pod that is not ready and why. A failed Job fails at once.
pub async fn wait_ready(
    client: &Client,
    refs: &[ObjectRef],
    timeout: Duration,
) -> Result<(), KubeError> {
    let pending: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut futs = Vec::new();
    for r in refs.iter().filter(|r| is_waitable(&r.kind)) {
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.to_string());
        futs.push(wait_one(client.clone(), r.clone(), pending.clone()));
    }
    match tokio::time::timeout(timeout, try_join_all(futs)).await {
        Ok(res) => res.map(|_| ()),
        Err(_) => {
            let still: Vec<String> = pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            let mut pods = Vec::new();
            for r in refs.iter().filter(|r| still.contains(&r.to_string())) {
                pods.extend(explain(client, r).await);
            }
            Err(KubeError::NotReady {
                secs: timeout.as_secs(),
                objects: still.join(", "),
                pods,
            })
        }
    }
}

async fn wait_one(
    client: Client,
    r: ObjectRef,
    pending: Arc<Mutex<BTreeSet<String>>>,
) -> Result<(), KubeError> {
    let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
    let watch_err = |e: kube::runtime::wait::Error| KubeError::Transport {
        action: "watch".into(),
        object: r.to_string(),
        message: e.to_string(),
    };
    match r.kind.as_str() {
        "Deployment" => {
            let api: Api<Deployment> = Api::namespaced(client, &ns);
            await_condition(api, &r.name, |o: Option<&Deployment>| {
                o.is_some_and(deployment_ready)
            })
            .await
            .map_err(watch_err)?;
        }
        "StatefulSet" => {
            let api: Api<StatefulSet> = Api::namespaced(client, &ns);
            await_condition(api, &r.name, |o: Option<&StatefulSet>| {
                o.is_some_and(statefulset_ready)
            })
            .await
            .map_err(watch_err)?;
        }
        "DaemonSet" => {
            let api: Api<DaemonSet> = Api::namespaced(client, &ns);
            await_condition(api, &r.name, |o: Option<&DaemonSet>| {
                o.is_some_and(daemonset_ready)
            })
            .await
            .map_err(watch_err)?;
        }
        "Job" => {
            let api: Api<Job> = Api::namespaced(client, &ns);
            let job = await_condition(api, &r.name, |o: Option<&Job>| {
                o.is_some_and(|j| job_outcome(j).is_some())
            })
            .await
            .map_err(watch_err)?;
            if let Some(Err(why)) = job.as_ref().and_then(job_outcome) {
                return Err(KubeError::Failed {
                    object: r.to_string(),
                    message: why,
                });
            }
        }
        _ => {}
    }
    pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&r.to_string());
    Ok(())
}

/// Label selector string from a LabelSelector's `matchLabels` (what our workloads use).
pub fn selector_string(sel: &LabelSelector) -> String {
    sel.match_labels
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// One line per pod of `r` that is not ready, or a line about the object when it has no pods.
pub async fn explain(client: &Client, r: &ObjectRef) -> Vec<String> {
    let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
    let selector = match r.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt(&r.name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec.map(|s| selector_string(&s.selector))),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get_opt(&r.name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec.map(|s| selector_string(&s.selector))),
        "DaemonSet" => Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .get_opt(&r.name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec.map(|s| selector_string(&s.selector))),
        "Job" => Some(format!("job-name={}", r.name)),
        _ => None,
    };
    let Some(selector) = selector else {
        return vec![format!("{r}: not found")];
    };
    explain_pods(client, &ns, &selector, &r.to_string()).await
}

/// Explains every not-ready pod matching `selector` in `ns`; `owner` names who they belong to.
pub async fn explain_pods(client: &Client, ns: &str, selector: &str, owner: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&ListParams::default().labels(selector)).await {
        Ok(list) if list.items.is_empty() => vec![format!("{owner}: no pods created")],
        Ok(list) => list
            .items
            .iter()
            .filter_map(|p| {
                pod_problem(p).map(|why| {
                    format!(
                        "pod {ns}/{}: {why}",
                        p.metadata.name.clone().unwrap_or_default()
                    )
                })
            })
            .collect(),
        Err(e) => vec![format!(
            "{owner}: cannot list pods: {}",
            KubeError::from_kube("list", format!("pods in {ns}"), e)
        )],
    }
}

/// Why a pod is not ready (`None` when it is): a waiting or terminated container's reason and
/// message (ErrImagePull, ImagePullBackOff, CrashLoopBackOff with restarts), an unschedulable
/// pod's scheduler message, or its phase.
pub fn pod_problem(p: &Pod) -> Option<String> {
    let Some(status) = p.status.as_ref() else {
        return Some("no status yet (not scheduled)".into());
    };
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    if phase == "Succeeded" {
        return None;
    }
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready && phase == "Running" {
        return None;
    }
    let mut reasons = Vec::new();
    for cs in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let st = cs.state.as_ref();
        if let Some(w) = st.and_then(|s| s.waiting.as_ref()) {
            let mut line = format!(
                "container {} waiting: {}",
                cs.name,
                w.reason.clone().unwrap_or_else(|| "unknown reason".into())
            );
            if let Some(m) = &w.message {
                line.push_str(&format!(" ({m})"));
            }
            if cs.restart_count > 0 {
                line.push_str(&format!(", {} restarts", cs.restart_count));
            }
            reasons.push(line);
        } else if let Some(t) = st.and_then(|s| s.terminated.as_ref()) {
            reasons.push(format!(
                "container {} terminated: {} (exit code {})",
                cs.name,
                t.reason.clone().unwrap_or_default(),
                t.exit_code
            ));
        } else if !cs.ready {
            reasons.push(format!("container {} not ready", cs.name));
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            reasons.push(format!(
                "pending: {} ({})",
                c.reason.clone().unwrap_or_else(|| "not scheduled".into()),
                c.message.clone().unwrap_or_default()
            ));
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("phase {phase}"));
        if let Some(m) = &status.message {
            reasons.push(m.clone());
        }
    }
    Some(reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_needs_observed_generation_and_all_replicas() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "a", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }))
        .unwrap();
        assert!(!deployment_ready(&d));
        d.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(deployment_ready(&d));
        d.status.as_mut().unwrap().replicas = Some(3); // an old pod still terminating
        assert!(!deployment_ready(&d));
    }

    #[test]
    fn pod_problems_name_the_reason() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}
            }]}
        }))
        .unwrap();
        let why = pod_problem(&p).unwrap();
        assert!(
            why.contains("ImagePullBackOff") && why.contains("pulling image"),
            "{why}"
        );
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}
        }))
        .unwrap();
        assert!(pod_problem(&p).unwrap().contains("Unschedulable"));
        let ok: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})).unwrap();
        assert_eq!(pod_problem(&ok), None);
    }

    #[test]
    fn job_outcomes() {
        let j: Job = serde_json::from_value(json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}})).unwrap();
        assert!(job_outcome(&j)
            .unwrap()
            .unwrap_err()
            .contains("BackoffLimitExceeded"));
        let j: Job = serde_json::from_value(json!({"status": {}})).unwrap();
        assert!(job_outcome(&j).is_none());
    }
}
