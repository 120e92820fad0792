//! Deploying the application: the namespace, then infra, then the services under test, each set
//! server-side applied and awaited; the original's `restart` (delete and redeploy) and `reload`
//! (re-apply the services under test) as explicit actions; teardown.

use std::time::Duration;

use super::client::{Kube, ObjectRef};
use super::error::KubeError;
use super::manifests::{self, Manifest};
use super::readiness::wait_ready;
use super::watch::Limits;
use crate::config::kubernetes::KubernetesConfig;
use crate::load::CancelToken;

/// What to do with the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployAction {
    /// Apply both sets idempotently (what changed is updated, the rest left alone).
    Apply,
    /// Delete every object of both sets, wait until gone, then apply both (fresh databases).
    Restart,
    /// Re-apply only the services under test (new replicas, resources, image).
    Reload,
}

impl DeployAction {
    /// The action the config's `actions` ask for (restart wins over reload).
    pub fn from_config(cfg: &KubernetesConfig) -> DeployAction {
        if cfg.actions.restart {
            DeployAction::Restart
        } else if cfg.actions.reload {
            DeployAction::Reload
        } else {
            DeployAction::Apply
        }
    }
}

fn objects(ms: &[Manifest]) -> Vec<serde_json::Value> {
    ms.iter().map(|m| m.object.clone()).collect()
}

/// Runs `action` and returns every object of the application (for teardown and collection).
/// Each wait ([`wait_ready`], deletions on restart) lasts at most `readiness_timeout_secs`, gives
/// up early on pods that will not become ready, and ends with [`KubeError::Cancelled`] once
/// `cancel` (the run's token) is cancelled.
pub async fn deploy(
    kube: &Kube,
    cfg: &KubernetesConfig,
    experiment: &str,
    action: DeployAction,
    cancel: &CancelToken,
) -> Result<Vec<ObjectRef>, KubeError> {
    let (infra, under_test) = manifests::prepare(cfg, experiment)?;
    let limits = Limits::new(cfg, Duration::from_secs(cfg.readiness_timeout_secs), cancel);
    super::namespace::ensure(kube.client(), &cfg.namespace, experiment).await?;
    let all: Vec<ObjectRef> = infra
        .iter()
        .chain(&under_test)
        .map(|m| ObjectRef::of(&m.object))
        .collect();
    if action == DeployAction::Restart {
        for r in all.iter().rev() {
            kube.delete(r).await?;
        }
        kube.wait_deleted(&all, &limits).await?;
    }
    if action != DeployAction::Reload {
        let refs = kube.apply_all(&objects(&infra)).await?;
        wait_ready(kube.client(), &refs, &limits).await?;
    }
    let refs = kube.apply_all(&objects(&under_test)).await?;
    wait_ready(kube.client(), &refs, &limits).await?;
    Ok(all)
}

/// Deletes the application's objects (services under test first).
pub async fn teardown(kube: &Kube, refs: &[ObjectRef]) -> Result<(), KubeError> {
    for r in refs.iter().rev() {
        kube.delete(r).await?;
    }
    Ok(())
}
