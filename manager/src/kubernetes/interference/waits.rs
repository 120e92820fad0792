//! Waiting for interference pods: until they run ([`wait_running`]) and until they are gone
//! ([`clear`]), with the backend's resilient watches ([`crate::kubernetes::watch`]).

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::watcher;

use super::selector;
use crate::kubernetes::client::{Kube, ObjectRef};
use crate::kubernetes::error::{is_not_found, KubeError};
use crate::kubernetes::readiness::pod_problem;
use crate::kubernetes::watch::{bounded, failing_line, watch_until, FailFast, Limits};

/// Waits (one watch on the pods matching `selector` in `ns`) until every pod of `refs` runs with
/// all containers ready. A pod that waiting will not fix (unschedulable past its grace, crash
/// loop, image not pullable, ended) fails at once with [`KubeError::Failing`]; a timeout is
/// reported with each pod's reason; `limits.cancel` ends the wait with [`KubeError::Cancelled`].
pub async fn wait_running(
    kube: &Kube,
    ns: &str,
    selector: &str,
    refs: &[ObjectRef],
    limits: &Limits,
) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), ns);
    let names: BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    let mut judge = FailFast::new(limits.grace);
    let started = Instant::now();
    let config = watcher::Config::default().labels(selector);
    let what = format!("interference pods in {ns}");
    let wait = watch_until(api.clone(), config, &what, |pods| {
        let mine: Vec<&Pod> = names.iter().filter_map(|n| pods.get(*n)).collect();
        if let Some((p, rule)) = judge.judge(mine.iter().copied(), Instant::now()) {
            return Some(Err(KubeError::Failing {
                secs: started.elapsed().as_secs(),
                objects: format!("Pod/{ns}/{}", p.metadata.name.clone().unwrap_or_default()),
                pods: vec![failing_line(p, &rule)],
            }));
        }
        let all_run = mine.len() == names.len() && mine.iter().all(|p| pod_problem(p).is_none());
        all_run.then_some(Ok(()))
    });
    if bounded(limits, wait).await?.is_some() {
        return Ok(());
    }
    let mut lines = Vec::new();
    let mut late = Vec::new();
    for r in refs {
        match api.get_opt(&r.name).await {
            Ok(Some(p)) => {
                if let Some(why) = pod_problem(&p) {
                    lines.push(format!("pod {ns}/{}: {why}", r.name));
                    late.push(r.to_string());
                }
            }
            Ok(None) => {
                lines.push(format!("pod {ns}/{}: not found", r.name));
                late.push(r.to_string());
            }
            Err(e) => lines.push(format!(
                "{r}: {}",
                KubeError::from_kube("get", r.to_string(), e)
            )),
        }
    }
    Err(KubeError::NotReady {
        secs: limits.timeout.as_secs(),
        objects: late.join(", "),
        pods: lines,
    })
}

/// Deletes every interference pod of the experiment and waits until they are gone; returns how
/// many there were. Give it [`Limits::cleanup`]: removing interference must not be cut short by
/// the Ctrl-C that asked for it.
pub async fn clear(
    kube: &Kube,
    namespace: &str,
    experiment: &str,
    limits: &Limits,
) -> Result<usize, KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), namespace);
    let list = match api
        .list(&ListParams::default().labels(&selector(experiment)))
        .await
    {
        Ok(l) => l,
        Err(e) if is_not_found(&e) => return Ok(0),
        Err(e) => {
            return Err(KubeError::from_kube(
                "list",
                format!("pods in {namespace}"),
                e,
            ))
        }
    };
    let mut refs = Vec::new();
    for p in list.items {
        let name = p.metadata.name.unwrap_or_default();
        let r = ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(namespace.into()),
            name,
        };
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(KubeError::from_kube("delete", r.to_string(), e)),
        }
        refs.push(r);
    }
    kube.wait_deleted(&refs, limits).await?;
    Ok(refs.len())
}
