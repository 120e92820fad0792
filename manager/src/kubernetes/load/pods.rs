//! The pods of a case's load Jobs, found by each Job's uid (never by name: a Job of an earlier
//! run may have had the same name), and their states as the barrier and the final wait see them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::super::error::KubeError;

/// One Job and what is known of its pod.
#[derive(Clone, Debug)]
pub struct Generator {
    /// Job name.
    pub job: String,
    /// Job uid (its pods' owner reference).
    pub uid: String,
    /// The pod, once seen.
    pub pod: Option<String>,
    /// Its state.
    pub state: GenState,
}

/// Where a generator is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenState {
    /// No pod yet, or not running yet.
    Waiting(String),
    /// The pod runs.
    Running,
    /// The pod finished successfully.
    Succeeded,
    /// The pod failed, was evicted or vanished, or never got its start: the reason.
    Failed(String),
}

impl Generator {
    /// A Job just created.
    pub fn new(job: String, uid: String) -> Generator {
        Generator {
            job,
            uid,
            pod: None,
            state: GenState::Waiting("no pod yet".into()),
        }
    }

    /// `pod <name>` or `Job <name>` for messages.
    pub fn describe(&self) -> String {
        match &self.pod {
            Some(p) => format!("load pod {p}"),
            None => format!("load Job {}", self.job),
        }
    }

    /// Marks it failed (once: the first reason is kept).
    pub fn fail(&mut self, reason: impl Into<String>) {
        if !matches!(self.state, GenState::Failed(_)) {
            self.state = GenState::Failed(reason.into());
        }
    }
}

/// Waiting reasons that never resolve on their own: the generator is failed at once.
const HOPELESS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
];

/// Lists the load pods (`selector`) in `ns` and updates every generator from its own pod (the
/// one whose owner reference is the Job's uid). A pod that was seen and is gone was evicted or
/// deleted.
pub async fn refresh(
    pods: &Api<Pod>,
    selector: &str,
    gens: &mut [Generator],
) -> Result<(), KubeError> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| KubeError::from_kube("list", format!("load pods ({selector})"), e))?;
    let mut by_owner: BTreeMap<String, &Pod> = BTreeMap::new();
    for p in &list.items {
        for o in p.metadata.owner_references.iter().flatten() {
            by_owner.insert(o.uid.clone(), p);
        }
    }
    for g in gens.iter_mut() {
        if matches!(g.state, GenState::Failed(_) | GenState::Succeeded) {
            continue;
        }
        let Some(p) = by_owner.get(&g.uid) else {
            if let Some(name) = &g.pod {
                g.fail(format!(
                    "pod {name} is gone (evicted or deleted) before it finished"
                ));
            }
            continue;
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        if g.pod.as_ref().is_some_and(|old| *old != name) {
            // The Job replaced the pod we started: that one is lost, the new one is unsynchronised.
            g.fail(format!(
                "pod {} was replaced by {name} (evicted or deleted)",
                g.pod.clone().unwrap_or_default()
            ));
            continue;
        }
        g.pod = Some(name);
        g.state = pod_state(p);
    }
    Ok(())
}

/// The generator state of one pod.
pub fn pod_state(p: &Pod) -> GenState {
    let status = p.status.clone().unwrap_or_default();
    match status.phase.as_deref() {
        Some("Succeeded") => GenState::Succeeded,
        Some("Failed") => {
            let mut why = vec![status.reason.clone().unwrap_or_else(|| "Failed".into())];
            if let Some(m) = &status.message {
                why.push(m.clone());
            }
            for cs in status.container_statuses.iter().flatten() {
                if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    why.push(format!(
                        "container {} exited with code {} ({})",
                        cs.name,
                        t.exit_code,
                        t.reason.clone().unwrap_or_default()
                    ));
                }
            }
            GenState::Failed(why.join(": "))
        }
        Some("Running") => GenState::Running,
        _ => {
            let problem =
                super::super::readiness::pod_problem(p).unwrap_or_else(|| "pending".into());
            if HOPELESS.iter().any(|h| problem.contains(h)) {
                GenState::Failed(problem)
            } else {
                GenState::Waiting(problem)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn states_from_pod_status() {
        assert_eq!(
            pod_state(&pod(serde_json::json!({"phase": "Running"}))),
            GenState::Running
        );
        let evicted = pod_state(&pod(
            serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}),
        ));
        assert_eq!(
            evicted,
            GenState::Failed("Evicted: The node was low on resource: memory.".into())
        );
        let pull = pod_state(&pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [
            {"name": "load", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        ));
        assert!(matches!(pull, GenState::Failed(m) if m.contains("ImagePullBackOff")));
        assert!(matches!(
            pod_state(&pod(serde_json::json!({"phase": "Pending"}))),
            GenState::Waiting(_)
        ));
    }
}
