//! Removing what AEFM left on a cluster, found by our labels.
//!
//! * `aefm clean [EXPERIMENT]` ([`clean`]) asks the API server which kinds exist (discovery) and
//!   deletes every labelled object of every kind that can be listed and deleted — app objects,
//!   interference pods, load Jobs, their pods, ConfigMaps and Secrets, and whatever else the
//!   application's repository held (PVCs, RBAC objects, ...). With [`CleanOptions::namespaces`],
//!   it also deletes the namespaces AEFM created (marked only at creation, see
//!   [`super::namespace`]); namespaces that existed before are never touched.
//! * At the start of a run ([`remove_stale_runs`]) load Jobs, pods, ConfigMaps and Secrets of the
//!   same experiment left by an earlier run are removed, so a resumed run can never read an old
//!   report; [`foreign_stressors`] lists other experiments' stress pods on our nodes (they would
//!   interfere with every case: the run warns about them).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{verbs, ApiResource, Discovery, Scope};

use super::error::{is_not_found, KubeError};
use super::labels;

/// What one clean removed, `Kind/namespace/name` each, and the kinds it could not look at.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cleaned {
    /// Objects whose deletion was issued.
    pub deleted: Vec<String>,
    /// Kinds that could not be listed (e.g. RBAC forbids it), with the API's answer.
    pub skipped: Vec<String>,
}

/// What [`clean`] removes besides the labelled objects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanOptions {
    /// Also delete the namespaces AEFM created for the experiment (all AEFM-created ones with no
    /// experiment).
    pub namespaces: bool,
}

/// Label selector for an experiment's objects, or for everything AEFM manages.
pub fn selector(experiment: Option<&str>) -> String {
    match experiment {
        Some(e) => format!("{}={}", labels::EXPERIMENT, labels::label_value(e)),
        None => format!("{}={}", labels::MANAGED_BY, labels::MANAGER),
    }
}

/// Kinds [`clean`] never deletes by label: namespaces (only with the option, by their creation
/// mark), events (they expire), and review objects that are not stored.
fn skipped_kind(ar: &ApiResource) -> bool {
    matches!(
        ar.kind.as_str(),
        "Namespace" | "Event" | "ComponentStatus" | "Binding"
    ) || ar.group == "authorization.k8s.io"
        || ar.group == "authentication.k8s.io"
}

/// Deletes every object matching the experiment's selector, of every listable and deletable
/// kind the server has (discovery), in every namespace; then, with `opts.namespaces`, the
/// namespaces AEFM created. Kinds the credentials may not list are reported in
/// [`Cleaned::skipped`], not fatal: the rest still goes.
pub async fn clean(
    client: &kube::Client,
    experiment: Option<&str>,
    opts: CleanOptions,
) -> Result<Cleaned, KubeError> {
    let sel = selector(experiment);
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| KubeError::from_kube("discover", "API resources", e))?;
    let mut out = Cleaned::default();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if skipped_kind(&ar)
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            delete_labelled(client, &ar, caps.scope == Scope::Namespaced, &sel, &mut out).await?;
        }
    }
    if opts.namespaces {
        delete_created_namespaces(client, experiment, &mut out).await?;
    }
    out.deleted.sort();
    Ok(out)
}

/// Deletes the objects of one kind matching `sel`; a forbidden list is recorded as skipped.
async fn delete_labelled(
    client: &kube::Client,
    ar: &ApiResource,
    namespaced: bool,
    sel: &str,
    out: &mut Cleaned,
) -> Result<(), KubeError> {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let list = match all.list(&ListParams::default().labels(sel)).await {
        Ok(l) => l,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 405 => {
            out.skipped.push(format!("{}: {}", ar.kind, s.message));
            return Ok(());
        }
        Err(e) => {
            return Err(KubeError::from_kube(
                "list",
                format!("{} ({sel})", ar.kind),
                e,
            ))
        }
    };
    for o in list.items {
        let name = o.metadata.name.clone().unwrap_or_default();
        let (api, obj) = match (namespaced, o.metadata.namespace.as_deref()) {
            (true, Some(ns)) => (
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar),
                format!("{}/{ns}/{name}", ar.kind),
            ),
            _ => (all.clone(), format!("{}/{name}", ar.kind)),
        };
        // Background propagation: the garbage collector removes owned ReplicaSets and pods.
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => out.deleted.push(obj),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(KubeError::from_kube("delete", obj, e)),
        }
    }
    Ok(())
}

/// Deletes the namespaces carrying AEFM's creation mark for `experiment`.
async fn delete_created_namespaces(
    client: &kube::Client,
    experiment: Option<&str>,
    out: &mut Cleaned,
) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let sel = selector(None);
    let list = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| KubeError::from_kube("list", format!("Namespace ({sel})"), e))?;
    for ns in list
        .items
        .iter()
        .filter(|n| super::namespace::created_by_aefm(n, experiment))
    {
        let name = ns.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => out.deleted.push(format!("Namespace/{name}")),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(KubeError::from_kube(
                    "delete",
                    format!("Namespace/{name}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Deletes the Jobs, pods, ConfigMaps and Secrets matching `sel` (what interference and load
/// leave: the objects of a run that outlive it).
pub async fn delete_components(
    client: &kube::Client,
    sel: &str,
    out: &mut Cleaned,
) -> Result<(), KubeError> {
    for ar in [
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Secret>(&()),
    ] {
        let skipped = out.skipped.len();
        delete_labelled(client, &ar, true, sel, out).await?;
        // Here a kind we cannot list is an error: these are the objects a run must remove.
        if let Some(why) = out.skipped.get(skipped) {
            return Err(KubeError::Failed {
                object: format!("{} ({sel})", ar.kind),
                message: format!("may not list: {why}"),
            });
        }
    }
    Ok(())
}

/// Selectors of the load objects of `experiment` that are not from run `run_id`: labelled with
/// another run, or with none (an AEFM before run labels).
pub fn stale_load_selectors(experiment: &str, run_id: &str) -> [String; 2] {
    let base = format!(
        "{}={},{}=load",
        labels::EXPERIMENT,
        labels::label_value(experiment),
        labels::COMPONENT
    );
    [
        format!("{base},{}!={run_id}", labels::RUN),
        format!("{base},!{}", labels::RUN),
    ]
}

/// Removes the load Jobs, pods, ConfigMaps and Secrets an earlier run of `experiment` left (Jobs
/// are kept an hour after finishing): a case rerun now must never meet them.
pub async fn remove_stale_runs(
    client: &kube::Client,
    experiment: &str,
    run_id: &str,
) -> Result<Cleaned, KubeError> {
    let mut out = Cleaned::default();
    for sel in stale_load_selectors(experiment, run_id) {
        delete_components(client, &sel, &mut out).await?;
    }
    Ok(out)
}

/// Other experiments' interference pods (and any AEFM stress pod without an experiment) that are
/// running or pending on `nodes` (every node when empty), as `namespace/name on node`.
pub async fn foreign_stressors(
    client: &kube::Client,
    experiment: &str,
    nodes: &[String],
) -> Result<Vec<String>, KubeError> {
    let sel = format!(
        "{}=interference,{}!={}",
        labels::COMPONENT,
        labels::EXPERIMENT,
        labels::label_value(experiment)
    );
    let api: Api<Pod> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| KubeError::from_kube("list", format!("Pod ({sel})"), e))?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone().unwrap_or_default();
            let phase = p.status.as_ref()?.phase.clone().unwrap_or_default();
            let live = matches!(phase.as_str(), "Running" | "Pending");
            let ours = nodes.is_empty() || nodes.contains(&node);
            (live && ours && p.metadata.deletion_timestamp.is_none()).then(|| {
                format!(
                    "{}/{} on {}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                    if node.is_empty() {
                        "no node yet"
                    } else {
                        &node
                    }
                )
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_selectors_exclude_this_run_and_catch_unlabelled_objects() {
        let [other, unlabelled] = stale_load_selectors("social net", "ab12cd34");
        assert_eq!(
            other,
            "aefm.io/experiment=social_net,aefm.io/component=load,aefm.io/run!=ab12cd34"
        );
        assert_eq!(
            unlabelled,
            "aefm.io/experiment=social_net,aefm.io/component=load,!aefm.io/run"
        );
    }

    #[test]
    fn namespaces_events_and_reviews_are_never_deleted_by_label() {
        let ar = |g: &str, k: &str| ApiResource {
            group: g.into(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: k.into(),
            plural: format!("{}s", k.to_lowercase()),
        };
        assert!(skipped_kind(&ar("", "Namespace")));
        assert!(skipped_kind(&ar("", "Event")));
        assert!(skipped_kind(&ar(
            "authorization.k8s.io",
            "SelfSubjectAccessReview"
        )));
        assert!(!skipped_kind(&ar("", "PersistentVolumeClaim")));
        assert!(!skipped_kind(&ar("rbac.authorization.k8s.io", "Role")));
    }
}
