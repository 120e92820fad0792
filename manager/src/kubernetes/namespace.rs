//! Namespaces AEFM needs (application, interference, load): created when missing, and marked as
//! AEFM's only then. A namespace that already existed belongs to someone else: AEFM never writes
//! its labels or annotations there, and `aefm clean --namespaces` never deletes it.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use super::error::KubeError;
use super::labels;
use super::manifests::namespace_object;

/// Makes sure namespace `name` exists; creates it (labelled managed-by AEFM, annotated with
/// `experiment`) when missing. Returns whether this call created it. A concurrent creation by
/// someone else (409) counts as existing.
pub async fn ensure(
    client: &kube::Client,
    name: &str,
    experiment: &str,
) -> Result<bool, KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let what = format!("Namespace/{name}");
    match api.get_opt(name).await {
        Ok(Some(_)) => return Ok(false),
        Ok(None) => {}
        Err(e) => return Err(KubeError::from_kube("get", what, e)),
    }
    let ns: Namespace = serde_json::from_value(namespace_object(name, experiment))
        .expect("the namespace object is a valid Namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(KubeError::from_kube("create", what, e)),
    }
}

/// Whether a namespace was created by AEFM (for `experiment`, or for any experiment with `None`):
/// the mark [`ensure`] puts only on namespaces it created.
pub fn created_by_aefm(ns: &Namespace, experiment: Option<&str>) -> bool {
    let meta = &ns.metadata;
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER);
    let creator = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::CREATED_BY));
    managed
        && match (creator, experiment) {
            (Some(_), None) => true,
            (Some(c), Some(e)) => c == e,
            (None, _) => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_namespaces_are_ours() {
        let ours: Namespace = serde_json::from_value(namespace_object("a", "exp1")).unwrap();
        assert!(created_by_aefm(&ours, None));
        assert!(created_by_aefm(&ours, Some("exp1")));
        assert!(!created_by_aefm(&ours, Some("exp2")));
        let theirs: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "b"}})).unwrap();
        assert!(!created_by_aefm(&theirs, None));
    }
}
