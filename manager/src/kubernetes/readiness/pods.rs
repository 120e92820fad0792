//! What is wrong with a pod, read from its status alone: [`pod_problem`] words it for people,
//! [`pod_trouble`] says whether it is the kind of wrong that waiting does not fix.

use k8s_openapi::api::core::v1::Pod;

#[cfg(doc)]
use crate::kubernetes::watch::FailFast;

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

/// What about a pod makes waiting for it pointless, now or once it lasts; see
/// [`FailFast::judge`] for when a wait gives up on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Failed for good: a container exited non-zero under `restartPolicy: Never`, or a pod no
    /// controller replaces is `Failed`. A Job's pods are left to the Job (it may retry; its
    /// `Failed` condition ends the wait).
    Exited,
    /// A container is in `CrashLoopBackOff` after this many restarts.
    CrashLoop(i32),
    /// `ErrImagePull` or `ImagePullBackOff`: the pull fails and the kubelet retries.
    ImagePull,
    /// `InvalidImageName` or `ErrImageNeverPull`: no retry can succeed.
    BadImage,
    /// The scheduler found no node (`PodScheduled=False`, `Unschedulable`).
    Unschedulable,
}

impl Trouble {
    /// The trouble without its details: a grace runs while the class stays the same.
    pub fn class(self) -> &'static str {
        match self {
            Trouble::Exited => "exited",
            Trouble::CrashLoop(_) => "crash-loop",
            Trouble::ImagePull => "image-pull",
            Trouble::BadImage => "bad-image",
            Trouble::Unschedulable => "unschedulable",
        }
    }
}

/// The worst [`Trouble`] of a pod (`None`: nothing that waiting would not fix, or a pod being
/// deleted). Reads only the pod; [`pod_problem`] words the reason.
pub fn pod_trouble(p: &Pod) -> Option<Trouble> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    let owners = p.metadata.owner_references.iter().flatten();
    let controller = owners
        .filter(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
        .next();
    let never = p.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let containers: Vec<_> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect();
    let exited_non_zero = containers.iter().any(|cs| {
        cs.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    let failed = status.phase.as_deref() == Some("Failed");
    if controller != Some("Job") && ((never && exited_non_zero) || (failed && controller.is_none()))
    {
        return Some(Trouble::Exited);
    }
    let waiting = |reasons: &[&str]| {
        containers.iter().find(|cs| {
            cs.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .is_some_and(|r| reasons.contains(&r))
        })
    };
    if waiting(&["InvalidImageName", "ErrImageNeverPull"]).is_some() {
        return Some(Trouble::BadImage);
    }
    if let Some(cs) = waiting(&["CrashLoopBackOff"]) {
        return Some(Trouble::CrashLoop(cs.restart_count));
    }
    if waiting(&["ErrImagePull", "ImagePullBackOff"]).is_some() {
        return Some(Trouble::ImagePull);
    }
    let unschedulable = status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    unschedulable.then_some(Trouble::Unschedulable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn troubles_are_classified_from_the_status() {
        let pod = |spec: serde_json::Value, status: serde_json::Value, owner: Option<&str>| {
            let owners: Vec<_> = owner
                .map(|k| json!({"apiVersion": "v1", "kind": k, "name": "o", "uid": "u", "controller": true}))
                .into_iter()
                .collect();
            serde_json::from_value::<Pod>(json!({
                "metadata": {"name": "p", "ownerReferences": owners},
                "spec": spec, "status": status,
            }))
            .unwrap()
        };
        let c = |state: serde_json::Value, restarts: i32| {
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                   "ready": false, "restartCount": restarts, "state": state}]})
        };
        let never = json!({"containers": [], "restartPolicy": "Never"});
        let always = json!({"containers": [], "restartPolicy": "Always"});
        let exit1 = c(json!({"terminated": {"exitCode": 1}}), 0);
        assert_eq!(
            pod_trouble(&pod(never.clone(), exit1.clone(), None)),
            Some(Trouble::Exited)
        );
        // A Job decides about its own pods (it may retry).
        assert_eq!(
            pod_trouble(&pod(never.clone(), exit1.clone(), Some("Job"))),
            None
        );
        let exit0 = c(json!({"terminated": {"exitCode": 0}}), 0);
        assert_eq!(pod_trouble(&pod(never, exit0, None)), None);
        // An evicted pod of a ReplicaSet is replaced; a bare Failed pod is not.
        let evicted = json!({"phase": "Failed", "reason": "Evicted"});
        assert_eq!(
            pod_trouble(&pod(always.clone(), evicted.clone(), Some("ReplicaSet"))),
            None
        );
        assert_eq!(
            pod_trouble(&pod(always.clone(), evicted, None)),
            Some(Trouble::Exited)
        );
        let crash = c(json!({"waiting": {"reason": "CrashLoopBackOff"}}), 4);
        assert_eq!(
            pod_trouble(&pod(always.clone(), crash, Some("ReplicaSet"))),
            Some(Trouble::CrashLoop(4))
        );
        let pull = c(json!({"waiting": {"reason": "ImagePullBackOff"}}), 0);
        assert_eq!(
            pod_trouble(&pod(always.clone(), pull, None)),
            Some(Trouble::ImagePull)
        );
        let bad = c(json!({"waiting": {"reason": "InvalidImageName"}}), 0);
        assert_eq!(
            pod_trouble(&pod(always.clone(), bad, None)),
            Some(Trouble::BadImage)
        );
        let creating = c(json!({"waiting": {"reason": "ContainerCreating"}}), 0);
        assert_eq!(pod_trouble(&pod(always.clone(), creating, None)), None);
        let pending = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
        assert_eq!(
            pod_trouble(&pod(always, pending, None)),
            Some(Trouble::Unschedulable)
        );
    }
}
