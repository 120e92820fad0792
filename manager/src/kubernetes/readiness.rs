//! Waiting for exactly the objects we applied to become ready, with watches that survive
//! interruptions (no fixed sleeps), giving up early on pods that waiting will not fix, and
//! explaining a failure pod by pod (image pull, crash loop, unschedulable, ...): [`pod_problem`]
//! says what is wrong with a pod, [`pod_trouble`] whether it is the kind of wrong that does not
//! pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::client::ObjectRef;
use super::error::KubeError;
use super::watch::{bounded, failing_line, watch_until, FailFast, Grace, Limits};

mod pods;
pub use pods::{pod_problem, pod_trouble, Trouble};

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

/// How an applied kind tells that it is ready and which pods are its own.
trait Waitable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// `Ok(true)` ready, `Ok(false)` not yet, `Err(why)` failed for good (a failed Job).
    fn verdict(&self) -> Result<bool, String>;
    /// The labels selecting its pods (`matchLabels`), once known.
    fn pod_labels(&self) -> Option<BTreeMap<String, String>>;
}

impl Waitable for Deployment {
    fn verdict(&self) -> Result<bool, String> {
        Ok(deployment_ready(self))
    }
    fn pod_labels(&self) -> Option<BTreeMap<String, String>> {
        self.spec.as_ref()?.selector.match_labels.clone()
    }
}

impl Waitable for StatefulSet {
    fn verdict(&self) -> Result<bool, String> {
        Ok(statefulset_ready(self))
    }
    fn pod_labels(&self) -> Option<BTreeMap<String, String>> {
        self.spec.as_ref()?.selector.match_labels.clone()
    }
}

impl Waitable for DaemonSet {
    fn verdict(&self) -> Result<bool, String> {
        Ok(daemonset_ready(self))
    }
    fn pod_labels(&self) -> Option<BTreeMap<String, String>> {
        self.spec.as_ref()?.selector.match_labels.clone()
    }
}

impl Waitable for Job {
    fn verdict(&self) -> Result<bool, String> {
        match job_outcome(self) {
            Some(Ok(())) => Ok(true),
            Some(Err(why)) => Err(why),
            None => Ok(false),
        }
    }
    /// The server-set selector (the Job's uid), else the `job-name` label every Job pod carries.
    fn pod_labels(&self) -> Option<BTreeMap<String, String>> {
        let set = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_labels.clone());
        set.or_else(|| {
            let name = self.metadata.name.clone()?;
            Some(BTreeMap::from([("job-name".to_string(), name)]))
        })
    }
}

/// The objects a deploy wait still waits for (`kind/namespace/name`), with their namespace and,
/// once seen, the labels of their pods: which failing pod belongs to which object.
#[derive(Default)]
struct Pending {
    objects: BTreeMap<String, (String, Option<BTreeMap<String, String>>)>,
}

impl Pending {
    /// The waited-for object `p` belongs to, if any.
    fn owner_of(&self, p: &Pod) -> Option<&str> {
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let labels = p.metadata.labels.as_ref();
        self.objects.iter().find_map(|(id, (o_ns, sel))| {
            let sel = sel.as_ref().filter(|s| !s.is_empty())?;
            let matches = o_ns == ns
                && sel
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            matches.then_some(id.as_str())
        })
    }
}

type Shared = Arc<Mutex<Pending>>;

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until every waitable object in `refs` is ready, with watches that survive interruptions
/// ([`super::watch`]). Fails at once on a failed Job; early, with [`KubeError::Failing`], on a pod
/// of a waited object that waiting will not fix ([`FailFast`]); after `limits.timeout` with
/// [`KubeError::NotReady`] naming each object and pod not ready and why; and with
/// [`KubeError::Cancelled`] once `limits.cancel` is cancelled.
pub async fn wait_ready(
    client: &Client,
    refs: &[ObjectRef],
    limits: &Limits,
) -> Result<(), KubeError> {
    let pending: Shared = Arc::default();
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in refs.iter().filter(|r| is_waitable(&r.kind)) {
        let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
        lock(&pending)
            .objects
            .insert(r.to_string(), (ns.clone(), None));
        groups
            .entry((r.kind.clone(), ns))
            .or_default()
            .push(r.name.clone());
    }
    if groups.is_empty() {
        return Ok(());
    }
    let namespaces: BTreeSet<String> = groups.keys().map(|(_, ns)| ns.clone()).collect();
    let objects =
        try_join_all(groups.into_iter().map(|((kind, ns), names)| {
            watch_group(client.clone(), kind, ns, names, pending.clone())
        }));
    let started = Instant::now();
    let pods =
        try_join_all(namespaces.into_iter().map(|ns| {
            watch_failing_pods(client.clone(), ns, pending.clone(), limits.grace, started)
        }));
    let both = async {
        tokio::select! {
            r = objects => r.map(|_| ()),
            Err(e) = pods => Err(e),
        }
    };
    match bounded(limits, both).await? {
        Some(()) => Ok(()),
        None => Err(not_ready(client, refs, &pending, limits.timeout).await),
    }
}

/// The timeout error: the objects still not ready and each of their pods' reasons.
async fn not_ready(
    client: &Client,
    refs: &[ObjectRef],
    pending: &Shared,
    timeout: std::time::Duration,
) -> KubeError {
    let still: Vec<String> = lock(pending).objects.keys().cloned().collect();
    let mut pods = Vec::new();
    for r in refs.iter().filter(|r| still.contains(&r.to_string())) {
        pods.extend(explain(client, r).await);
    }
    KubeError::NotReady {
        secs: timeout.as_secs(),
        objects: still.join(", "),
        pods,
    }
}

async fn watch_group(
    client: Client,
    kind: String,
    ns: String,
    names: Vec<String>,
    pending: Shared,
) -> Result<(), KubeError> {
    match kind.as_str() {
        "Deployment" => watch_kind::<Deployment>(client, &ns, names, pending).await,
        "StatefulSet" => watch_kind::<StatefulSet>(client, &ns, names, pending).await,
        "DaemonSet" => watch_kind::<DaemonSet>(client, &ns, names, pending).await,
        "Job" => watch_kind::<Job>(client, &ns, names, pending).await,
        _ => Ok(()),
    }
}

/// Watches the objects of one kind in one namespace (by name when there is one) until all
/// `names` have been ready; records their pod labels for [`watch_failing_pods`].
async fn watch_kind<K: Waitable>(
    client: Client,
    ns: &str,
    names: Vec<String>,
    pending: Shared,
) -> Result<(), KubeError> {
    let kind = K::kind(&()).to_string();
    let config = match names.as_slice() {
        [one] => watcher::Config::default().fields(&format!("metadata.name={one}")),
        _ => watcher::Config::default(),
    };
    let mut left: BTreeSet<String> = names.into_iter().collect();
    let api: Api<K> = Api::namespaced(client, ns);
    let what = format!("{kind}s in {ns}");
    watch_until(api, config, &what, |objects| {
        for (name, o) in objects.iter().filter(|(n, _)| left.contains(*n)) {
            let id = format!("{kind}/{ns}/{name}");
            let mut p = lock(&pending);
            if let Some(entry) = p.objects.get_mut(&id) {
                entry.1 = o.pod_labels();
            }
            match o.verdict() {
                Ok(true) => {
                    p.objects.remove(&id);
                }
                Ok(false) => {}
                Err(why) => {
                    return Some(Err(KubeError::Failed {
                        object: id,
                        message: why,
                    }))
                }
            }
        }
        let p = lock(&pending);
        left.retain(|n| p.objects.contains_key(&format!("{kind}/{ns}/{n}")));
        left.is_empty().then_some(Ok(()))
    })
    .await
}

/// Watches the pods of `ns` and ends with [`KubeError::Failing`] when one that belongs to a
/// still-pending object is past hope ([`FailFast`]); otherwise never ends.
async fn watch_failing_pods(
    client: Client,
    ns: String,
    pending: Shared,
    grace: Grace,
    started: Instant,
) -> Result<std::convert::Infallible, KubeError> {
    let mut judge = FailFast::new(grace);
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let what = format!("pods in {ns}");
    watch_until(api, watcher::Config::default(), &what, |pods| {
        let p = lock(&pending);
        let mine: Vec<(&Pod, &str)> = pods
            .values()
            .filter_map(|pod| p.owner_of(pod).map(|o| (pod, o)))
            .collect();
        let (pod, rule) = judge.judge(mine.iter().map(|(pod, _)| *pod), Instant::now())?;
        let owner = mine
            .iter()
            .find(|(x, _)| std::ptr::eq(*x, pod))
            .map(|(_, o)| o.to_string())
            .unwrap_or_default();
        Some(Err(KubeError::Failing {
            secs: started.elapsed().as_secs(),
            objects: owner,
            pods: vec![failing_line(pod, &rule)],
        }))
    })
    .await
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
    fn failing_pods_are_matched_to_the_object_selecting_them() {
        let mut p = Pending::default();
        let sel = |k: &str, v: &str| Some(BTreeMap::from([(k.to_string(), v.to_string())]));
        p.objects
            .insert("Deployment/a/web".into(), ("a".into(), sel("app", "web")));
        p.objects.insert("Job/a/load".into(), ("a".into(), None));
        let pod = |ns: &str, app: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "x", "namespace": ns, "labels": {"app": app}}}),
            )
            .unwrap()
        };
        assert_eq!(p.owner_of(&pod("a", "web")), Some("Deployment/a/web"));
        assert_eq!(p.owner_of(&pod("b", "web")), None, "other namespace");
        assert_eq!(p.owner_of(&pod("a", "db")), None);
        let j: Job = serde_json::from_value(json!({"metadata": {"name": "load"}})).unwrap();
        assert_eq!(j.pod_labels(), sel("job-name", "load"));
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
