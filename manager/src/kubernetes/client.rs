//! Connecting to a cluster from a kubeconfig, and the generic operations on arbitrary manifests:
//! discovery of each kind, server-side apply under our field manager, delete.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;

use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::watcher;
use kube::Client;
use serde_json::Value;

use super::error::{is_not_found, KubeError};
use super::watch::{bounded, watch_until, Limits};
use crate::config::kubernetes::KubernetesConfig;

/// Builds a client from the config's kubeconfig path and context (or the default kubeconfig:
/// `$KUBECONFIG`, then `~/.kube/config`).
pub async fn connect(cfg: &KubernetesConfig) -> Result<Client, KubeError> {
    connect_with(cfg.kubeconfig.as_deref(), cfg.context.as_deref()).await
}

/// Builds a client from an explicit kubeconfig file and context.
pub async fn connect_with(
    path: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<Client, KubeError> {
    let shown = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(default)".into());
    let err = |message: String| KubeError::Kubeconfig {
        path: shown.clone(),
        message,
    };
    let kubeconfig = match path {
        Some(p) => Kubeconfig::read_from(p).map_err(|e| err(e.to_string()))?,
        None => Kubeconfig::read().map_err(|e| err(e.to_string()))?,
    };
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let explicit_proxies: Vec<String> = kubeconfig
        .clusters
        .iter()
        .filter_map(|c| c.cluster.as_ref()?.proxy_url.clone())
        .collect();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| err(e.to_string()))?;
    // A proxy from the environment is skipped for a cluster NO_PROXY covers (kube itself
    // matches NO_PROXY against the proxy's address, see super::proxy); a kubeconfig's own
    // `proxy-url` is always used.
    if let (Some(p), Some(no_proxy)) = (&config.proxy_url, super::proxy::no_proxy_env()) {
        let from_env = !explicit_proxies
            .iter()
            .any(|e| e.parse::<http::Uri>().is_ok_and(|e| e == *p));
        if from_env && super::proxy::bypasses(&no_proxy, &config.cluster_url) {
            config.proxy_url = None;
        }
    }
    Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// A client plus what every write needs: the field manager and a discovery cache.
pub struct Kube {
    client: Client,
    field_manager: String,
    discovered: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
}

/// What we applied: enough to wait for it and to delete it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    /// Reads the reference out of an object.
    pub fn of(object: &Value) -> ObjectRef {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ObjectRef {
            api_version: s(&object["apiVersion"]),
            kind: s(&object["kind"]),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            name: s(&object["metadata"]["name"]),
        }
    }
}

impl Kube {
    /// Wraps a client; writes use `field_manager`.
    pub fn new(client: Client, field_manager: &str) -> Kube {
        Kube {
            client,
            field_manager: field_manager.to_string(),
            discovered: Mutex::new(HashMap::new()),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves `apiVersion` + `kind` to the REST resource through discovery (cached).
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
        object: &str,
    ) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| {
                KubeError::from_kube(
                    "discover",
                    format!("{api_version} {kind} (for {object})"),
                    e,
                )
            })?;
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    /// A dynamic Api for the object's kind and namespace.
    async fn api_for(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, KubeError> {
        let (ar, caps) = self
            .resource(&r.api_version, &r.kind, &r.to_string())
            .await?;
        Ok(match (caps.scope, &r.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side applies one object (created if missing, updated otherwise), forcing ownership
    /// of the fields we set so re-running an experiment is idempotent.
    pub async fn apply(&self, object: &Value) -> Result<ObjectRef, KubeError> {
        let r = ObjectRef::of(object);
        let api = self.api_for(&r).await?;
        let params = PatchParams::apply(&self.field_manager).force();
        api.patch(&r.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| KubeError::from_kube("apply", r.to_string(), e))?;
        Ok(r)
    }

    /// Applies objects in dependency order (namespaces, config, storage, services, workloads).
    pub async fn apply_all(&self, objects: &[Value]) -> Result<Vec<ObjectRef>, KubeError> {
        let mut ordered: Vec<&Value> = objects.iter().collect();
        ordered.sort_by_key(|o| apply_rank(o["kind"].as_str().unwrap_or_default()));
        let mut out = Vec::new();
        for o in ordered {
            out.push(self.apply(o).await?);
        }
        Ok(out)
    }

    /// Deletes one object in the background; a missing object is not an error.
    pub async fn delete(&self, r: &ObjectRef) -> Result<(), KubeError> {
        let api = self.api_for(r).await?;
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(KubeError::from_kube("delete", r.to_string(), e)),
        }
    }

    /// Whether the object exists.
    pub async fn exists(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        let api = self.api_for(r).await?;
        match api.get_opt(&r.name).await {
            Ok(o) => Ok(o.is_some()),
            Err(e) => Err(KubeError::from_kube("get", r.to_string(), e)),
        }
    }

    /// Waits until every object is gone: one watch per kind and namespace (by name when there
    /// is one object), surviving interruptions ([`super::watch`]). After `limits.timeout` the
    /// error names an object still present; `limits.cancel` ends it with
    /// [`KubeError::Cancelled`].
    pub async fn wait_deleted(&self, refs: &[ObjectRef], limits: &Limits) -> Result<(), KubeError> {
        let present: Arc<Mutex<BTreeSet<String>>> =
            Arc::new(Mutex::new(refs.iter().map(|r| r.to_string()).collect()));
        let mut groups: BTreeMap<(String, String, Option<String>), Vec<ObjectRef>> =
            BTreeMap::new();
        for r in refs {
            groups
                .entry((r.api_version.clone(), r.kind.clone(), r.namespace.clone()))
                .or_default()
                .push(r.clone());
        }
        let wait = async {
            let mut waits = Vec::new();
            for group in groups.into_values() {
                let api = self.api_for(&group[0]).await?;
                waits.push(gone(api, group, present.clone()));
            }
            try_join_all(waits).await.map(|_| ())
        };
        match bounded(limits, wait).await? {
            Some(()) => Ok(()),
            None => {
                let still = present.lock().unwrap_or_else(|e| e.into_inner());
                Err(KubeError::Failed {
                    object: still.iter().next().cloned().unwrap_or_default(),
                    message: format!("still present {}s after delete", limits.timeout.as_secs()),
                })
            }
        }
    }
}

/// Watches one kind in one namespace until none of `group` is left, crossing each off `present`.
async fn gone(
    api: Api<DynamicObject>,
    group: Vec<ObjectRef>,
    present: Arc<Mutex<BTreeSet<String>>>,
) -> Result<(), KubeError> {
    let config = match group.as_slice() {
        [one] => watcher::Config::default().fields(&format!("metadata.name={}", one.name)),
        _ => watcher::Config::default(),
    };
    let what = match &group[0].namespace {
        Some(ns) => format!("{} objects in {ns}", group[0].kind),
        None => format!("{} objects", group[0].kind),
    };
    watch_until(api, config, &what, |objects| {
        let mut p = present.lock().unwrap_or_else(|e| e.into_inner());
        let mut left = false;
        for r in &group {
            if objects.contains_key(&r.name) {
                left = true;
            } else {
                p.remove(&r.to_string());
            }
        }
        (!left).then_some(Ok(()))
    })
    .await
}

/// Order in which kinds are applied: what others depend on first.
fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" | "StorageClass" | "PriorityClass" => 1,
        "ServiceAccount" | "ClusterRole" | "Role" | "ClusterRoleBinding" | "RoleBinding" => 2,
        "ConfigMap" | "Secret" => 3,
        "PersistentVolume" => 4,
        "PersistentVolumeClaim" => 5,
        "Service" => 6,
        _ => 7,
    }
}
