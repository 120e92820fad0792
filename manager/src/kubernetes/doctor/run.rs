//! The doctor's walk over a live cluster: gather nodes and pods once, run every check, and with
//! `--pre-pull` pull the images on the nodes that need them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::{
    check_images, check_nodes, check_permissions, check_room, error, used_by_node, Finding,
};
use crate::config::kubernetes::KubernetesConfig;
use crate::config::Config;
use crate::kubernetes::error::KubeError;
use crate::kubernetes::{interference, manifests};

/// Every check for `config` against the cluster behind `client`; `pre_pull` first pulls the
/// images onto the nodes (one Job per node and image) so the image check can pass.
pub async fn diagnose(
    client: &kube::Client,
    config: &Config,
    cfg: &KubernetesConfig,
    pre_pull: bool,
) -> Result<Vec<Finding>, KubeError> {
    let mut out = Vec::new();
    let (repo_kinds, unknown) = repository_resources(client, cfg, &config.name).await?;
    out.extend(unknown);
    out.extend(check_permissions(client, cfg, &repo_kinds).await?);
    let nodes = list_nodes(client).await?;
    out.extend(check_nodes(cfg, &nodes));
    let cases = interference_cases(config, cfg)?;
    out.extend(check_room(&cases, &nodes, &used_by_node(client).await?));
    let wanted = wanted_images(config, cfg);
    if pre_pull {
        super::prepull::pull(client, cfg, &config.name, &wanted).await?;
    }
    let nodes = if pre_pull {
        list_nodes(client).await?
    } else {
        nodes
    };
    out.extend(check_images(&wanted, &nodes, &cfg.image_pull_policy));
    out.sort_by_key(|f| f.severity);
    Ok(out)
}

async fn list_nodes(client: &kube::Client) -> Result<Vec<Node>, KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::from_kube("list", "nodes", e))?
        .items)
}

/// (group, plural) of every kind in the app's repository, through discovery; kinds the cluster
/// does not serve (a CRD not installed) are findings.
async fn repository_resources(
    client: &kube::Client,
    cfg: &KubernetesConfig,
    experiment: &str,
) -> Result<(Vec<(String, String)>, Vec<Finding>), KubeError> {
    let (infra, under_test) = manifests::prepare(cfg, experiment)?;
    let mut kinds = BTreeSet::new();
    for m in infra.iter().chain(&under_test) {
        kinds.insert((m.api_version().to_string(), m.kind().to_string()));
    }
    let mut resources = Vec::new();
    let mut findings = Vec::new();
    for (api_version, kind) in kinds {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((ar, _)) => resources.push((group, ar.plural)),
            Err(e) => findings.push(error(
                "permission",
                format!("the app's repository holds {kind} ({api_version}), which the cluster does not serve: {e}"),
            )),
        }
    }
    Ok((resources, findings))
}

/// The interference pods of every distinct combination of levels in the sweep, rendered as they
/// would be applied (node IPs are placeholders: they do not change requests).
fn interference_cases(
    config: &Config,
    cfg: &KubernetesConfig,
) -> Result<Vec<(String, Vec<Value>)>, KubeError> {
    let nodes: Vec<(String, String)> = cfg
        .interference_nodes()
        .into_iter()
        .map(|n| (n, "192.0.2.1".to_string()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for case in crate::sweep::expand(config) {
        let levels = case.interference();
        let key: Vec<String> = levels.iter().map(|l| l.label.clone()).collect();
        if levels.is_empty() || !seen.insert(key) {
            continue;
        }
        let owner = interference::Owner {
            experiment: &config.name,
            test_case: &case.name,
            run: "",
        };
        let specs: Vec<_> = levels.iter().map(|l| l.spec.clone()).collect();
        out.push((
            case.name.clone(),
            interference::render_pods(cfg, &owner, &specs, &nodes)?,
        ));
    }
    Ok(out)
}

/// (image, nodes that run it): the stress image on the interference nodes (when the sweep has
/// interference), the load image on the load nodes (when load runs as Jobs).
fn wanted_images(config: &Config, cfg: &KubernetesConfig) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let has_interference = crate::sweep::expand(config)
        .iter()
        .any(|c| !c.interference().is_empty());
    if has_interference {
        out.push((cfg.interference.image.clone(), cfg.interference_nodes()));
    }
    let load_nodes = cfg.load_nodes();
    if !load_nodes.is_empty() {
        out.push((cfg.load.image.clone(), load_nodes));
    }
    out
}
