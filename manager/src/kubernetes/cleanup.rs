//! `aefm clean [EXPERIMENT]`: removing everything an experiment left on the cluster, found by our
//! labels (app objects, interference pods, load Jobs, their pods and script ConfigMaps), in every
//! namespace.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::Resource;
use serde::de::DeserializeOwned;

use super::error::{is_not_found, KubeError};
use super::labels;

/// What one clean removed, `Kind/namespace/name` each.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cleaned {
    /// Objects whose deletion was issued.
    pub deleted: Vec<String>,
}

/// Label selector for an experiment's objects, or for everything AEFM manages.
pub fn selector(experiment: Option<&str>) -> String {
    match experiment {
        Some(e) => format!("{}={}", labels::EXPERIMENT, labels::label_value(e)),
        None => format!("{}={}", labels::MANAGED_BY, labels::MANAGER),
    }
}

async fn delete_kind<K>(
    client: &kube::Client,
    sel: &str,
    out: &mut Cleaned,
) -> Result<(), KubeError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&()).to_string();
    let all: Api<K> = Api::all(client.clone());
    let list = match all.list(&ListParams::default().labels(sel)).await {
        Ok(l) => l,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(KubeError::from_kube("list", format!("{kind} ({sel})"), e)),
    };
    for o in list.items {
        let ns = o.meta().namespace.clone().unwrap_or_default();
        let name = o.meta().name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let obj = format!("{kind}/{ns}/{name}");
        // Background propagation: the garbage collector removes owned ReplicaSets and pods.
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => out.deleted.push(obj),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(KubeError::from_kube("delete", obj, e)),
        }
    }
    Ok(())
}

/// Deletes every labelled Job, Deployment, StatefulSet, DaemonSet, Service, ConfigMap and Pod of
/// the experiment (all AEFM objects with `None`). Namespaces are kept: other tenants may use them.
pub async fn clean(client: &kube::Client, experiment: Option<&str>) -> Result<Cleaned, KubeError> {
    let sel = selector(experiment);
    let mut out = Cleaned::default();
    delete_kind::<Job>(client, &sel, &mut out).await?;
    delete_kind::<Deployment>(client, &sel, &mut out).await?;
    delete_kind::<StatefulSet>(client, &sel, &mut out).await?;
    delete_kind::<DaemonSet>(client, &sel, &mut out).await?;
    delete_kind::<Service>(client, &sel, &mut out).await?;
    delete_kind::<ConfigMap>(client, &sel, &mut out).await?;
    delete_kind::<Pod>(client, &sel, &mut out).await?;
    Ok(out)
}
