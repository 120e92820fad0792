//! RBAC as the fake enforces it: every request is authorised as (verb, resource[/subresource]) the
//! way the real authorizer sees it (`get pods/log`, `create pods/proxy`, `patch deployments`, ...)
//! and refused with the real 403 `Status` when [`Faults::forbidden`] lists the pair; and
//! `SelfSubjectAccessReview`, which answers the same question without doing anything.

use serde_json::{json, Value};

use super::controllers::Faults;
use super::store::status;

/// The user the fake says it authorised (a service account, as AEFM in a pod would be).
pub const USER: &str = "system:serviceaccount:aefm:runner";

/// One authorisation question.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    /// Verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (empty for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource (`log`, `proxy`, `status`, ...).
    pub subresource: Option<String>,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name, if the request names one.
    pub name: Option<String>,
}

impl Attributes {
    /// `pods` or `pods/log`.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// Whether the faults deny this request: an entry (verb, resource) where verb may be `*` and
/// resource is `plural` or `plural/subresource` (or `*`). As in RBAC, `pods` does not cover
/// `pods/log`.
pub fn denied(faults: &Faults, a: &Attributes) -> bool {
    let res = a.resource_path();
    faults
        .forbidden
        .iter()
        .any(|(v, r)| (v == "*" || *v == a.verb) && (r == "*" || *r == res))
}

/// The 403 body a real API server sends, e.g. `pods "x" is forbidden: User "..." cannot get
/// resource "pods/log" in API group "" in the namespace "ns"`.
pub fn forbidden_status(a: &Attributes) -> Value {
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = match &a.name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{USER}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        a.verb,
        a.resource_path(),
        a.group
    );
    let mut s = status(403, "Forbidden", &message);
    s["details"] =
        json!({"name": a.name.clone().unwrap_or_default(), "group": a.group, "kind": a.resource});
    s
}

/// Answers a `SelfSubjectAccessReview` (`POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`):
/// the review back with `status.allowed`. Non-resource requests are always allowed.
pub fn access_review(faults: &Faults, review: &Value) -> Result<Value, Value> {
    let spec = &review["spec"];
    let ra = &spec["resourceAttributes"];
    if !ra.is_object() && !spec["nonResourceAttributes"].is_object() {
        return Err(status(422, "Invalid", "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"));
    }
    let s = |k: &str| ra[k].as_str().filter(|v| !v.is_empty()).map(str::to_string);
    let allowed = !ra.is_object() || {
        let a = Attributes {
            verb: s("verb").unwrap_or_default(),
            group: s("group").unwrap_or_default(),
            resource: s("resource").unwrap_or_default(),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        };
        !denied(faults, &a)
    };
    let mut out = review.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectAccessReview");
    out["metadata"] = json!({"creationTimestamp": null});
    out["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by the fake API server"})
    } else {
        json!({"allowed": false})
    };
    Ok(out)
}

/// Discovery document of `authorization.k8s.io/v1`.
pub fn discovery() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1", "resources": [
        {"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview", "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}
    ]})
}

/// Whether a path is the SelfSubjectAccessReview collection.
pub fn is_review_path(path: &str) -> bool {
    path.trim_end_matches('/') == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        Faults {
            forbidden: vec![
                ("get".into(), "pods/log".into()),
                ("list".into(), "jobs".into()),
            ],
            ..Faults::default()
        }
    }

    #[test]
    fn subresources_are_separate_resources() {
        let mut a = Attributes {
            verb: "get".into(),
            resource: "pods".into(),
            subresource: Some("log".into()),
            namespace: Some("ns".into()),
            name: Some("x".into()),
            ..Attributes::default()
        };
        assert!(denied(&faults(), &a));
        assert_eq!(
            forbidden_status(&a)["message"],
            "pods \"x\" is forbidden: User \"system:serviceaccount:aefm:runner\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns\""
        );
        a.subresource = None;
        assert!(!denied(&faults(), &a), "pods does not cover pods/log");
        let jobs = Attributes {
            verb: "list".into(),
            group: "batch".into(),
            resource: "jobs".into(),
            ..Attributes::default()
        };
        assert!(denied(&faults(), &jobs));
        assert!(forbidden_status(&jobs)["message"]
            .as_str()
            .unwrap()
            .starts_with("jobs.batch is forbidden"));
        assert!(forbidden_status(&jobs)["message"]
            .as_str()
            .unwrap()
            .ends_with("at the cluster scope"));
    }

    #[test]
    fn access_review_answers_per_verb_and_subresource() {
        let review = |verb: &str, sub: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "subresource": sub, "namespace": "ns"}}})
        };
        let allowed = |v: &Value| access_review(&faults(), v).unwrap()["status"]["allowed"].clone();
        assert_eq!(allowed(&review("get", "log")), false);
        assert_eq!(allowed(&review("get", "")), true);
        assert_eq!(allowed(&review("list", "log")), true);
        assert!(access_review(&faults(), &json!({"spec": {}})).is_err());
    }
}
