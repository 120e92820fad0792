//! Pod → service mapping through owner references (Pod → ReplicaSet → Deployment, or Pod →
//! StatefulSet/DaemonSet/Job), for collectors; never by cutting name suffixes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::error::KubeError;

/// A pod and the workload (service) that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwner {
    /// Pod name.
    pub pod: String,
    /// Owning workload's name.
    pub service: String,
    /// Node the pod runs on.
    pub node: Option<String>,
    /// Container restarts so far, summed over the pod's containers.
    pub restarts: i32,
    /// The pod's phase (`Running`, `Pending`, `Succeeded`, ...), empty when not reported.
    pub phase: String,
}

/// Like [`pod_services`], with each pod's node.
pub async fn pod_owners(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<Vec<PodOwner>, KubeError> {
    let map = pod_services(client, namespace, selector).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let list = pods
        .list(&lp)
        .await
        .map_err(|e| KubeError::from_kube("list", format!("pods in {namespace}"), e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let name = p.metadata.name?;
            let service = map.get(&name)?.clone();
            let status = p.status.unwrap_or_default();
            Some(PodOwner {
                pod: name,
                service,
                node: p.spec.and_then(|s| s.node_name),
                restarts: status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|c| c.restart_count)
                    .sum(),
                phase: status.phase.unwrap_or_default(),
            })
        })
        .collect())
}

/// Maps each pod of `namespace` (matching `selector`, if any) to the name of the workload that
/// owns it: the Deployment for ReplicaSet-owned pods, else the direct controller's name; pods
/// without an owner map to themselves.
pub async fn pod_services(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<BTreeMap<String, String>, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let pods = pods
        .list(&lp)
        .await
        .map_err(|e| KubeError::from_kube("list", format!("pods in {namespace}"), e))?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let rss = rs_api
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::from_kube("list", format!("replicasets in {namespace}"), e))?;
    let rs_owner: BTreeMap<String, String> = rss
        .items
        .iter()
        .filter_map(|rs| {
            let owner = controller_of(rs.metadata.owner_references.as_deref()?)?;
            Some((rs.metadata.name.clone()?, owner.1))
        })
        .collect();
    let mut out = BTreeMap::new();
    for p in pods.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let service = match p
            .metadata
            .owner_references
            .as_deref()
            .and_then(controller_of)
        {
            Some((kind, owner)) if kind == "ReplicaSet" => {
                rs_owner.get(&owner).cloned().unwrap_or(owner)
            }
            Some((_, owner)) => owner,
            None => name.clone(),
        };
        out.insert(name, service);
    }
    Ok(out)
}

fn controller_of(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Option<(String, String)> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| (r.kind.clone(), r.name.clone()))
}
