//! Exactly what AEFM does on a cluster, as RBAC rules: the one list both the shipped ClusterRole
//! (`deploy/rbac.yaml`, rendered by [`cluster_role_yaml`] and checked against it by a test) and
//! `aefm doctor`'s permission checks come from, so they cannot drift.
//!
//! The application's own repository may hold kinds beyond these (ingresses, roles, CRDs): their
//! rules must be added to the role for `apply` and `aefm clean`; `aefm doctor` checks the kinds of
//! the repository too.

use serde_json::{json, Value};

/// One RBAC rule: API group, resources (with `/subresource`), verbs, and why AEFM needs it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resources, e.g. `pods`, `pods/log`.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Whether the resources are namespaced (checked in each namespace AEFM uses).
    pub namespaced: bool,
    /// What needs it, for a denial's message.
    pub why: &'static str,
}

/// The verbs of server-side apply, readiness watches and cleanup.
const MANAGE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Every rule AEFM needs.
pub const RULES: &[Rule] = &[
    Rule {
        group: "",
        resources: &["namespaces"],
        verbs: &["get", "list", "create", "delete"],
        namespaced: false,
        why: "creating the experiment's namespaces when missing; `aefm clean --namespaces`",
    },
    Rule {
        group: "",
        resources: &["nodes"],
        verbs: &["get", "list"],
        namespaced: false,
        why: "placing interference and load, node IPs for the iperf3 ring, `aefm auto-config` and `aefm doctor`",
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: MANAGE,
        namespaced: true,
        why: "stress pods, readiness of the app's pods, load pods",
    },
    Rule {
        group: "",
        resources: &["pods/log"],
        verbs: &["get"],
        namespaced: true,
        why: "verifying stressors from their reports and reading load reports",
    },
    Rule {
        group: "",
        resources: &["pods/proxy"],
        verbs: &["get", "create"],
        namespaced: true,
        why: "the distributed-load start barrier (ready check and start signal)",
    },
    Rule {
        group: "",
        resources: &[
            "services",
            "configmaps",
            "secrets",
            "persistentvolumeclaims",
            "serviceaccounts",
        ],
        verbs: MANAGE,
        namespaced: true,
        why: "the app's objects, load scripts (ConfigMaps) and load headers (Secrets)",
    },
    Rule {
        group: "apps",
        resources: &["deployments", "statefulsets", "daemonsets"],
        verbs: MANAGE,
        namespaced: true,
        why: "deploying the app and waiting for it",
    },
    Rule {
        group: "apps",
        resources: &["replicasets"],
        verbs: &["get", "list"],
        namespaced: true,
        why: "mapping pods to services through owner references",
    },
    Rule {
        group: "batch",
        resources: &["jobs"],
        verbs: MANAGE,
        namespaced: true,
        why: "distributed load Jobs",
    },
    Rule {
        group: "authorization.k8s.io",
        resources: &["selfsubjectaccessreviews"],
        verbs: &["create"],
        namespaced: false,
        why: "`aefm doctor`'s permission checks",
    },
];

/// Every (group, resource, verb, namespaced, why) AEFM needs, one per check.
pub fn checks(
) -> impl Iterator<Item = (&'static str, &'static str, &'static str, bool, &'static str)> {
    RULES.iter().flat_map(|r| {
        r.resources.iter().flat_map(move |res| {
            r.verbs
                .iter()
                .map(move |v| (r.group, *res, *v, r.namespaced, r.why))
        })
    })
}

/// The ClusterRole `aefm` with [`RULES`], a ServiceAccount `aefm` in `namespace` and the binding
/// between them, as Kubernetes objects.
pub fn cluster_role_objects(namespace: &str) -> Vec<Value> {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| json!({"apiGroups": [r.group], "resources": r.resources, "verbs": r.verbs}))
        .collect();
    let meta = |name: &str| json!({"name": name, "labels": {super::labels::MANAGED_BY: super::labels::MANAGER}});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "aefm", "namespace": namespace}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": meta("aefm"), "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": meta("aefm"),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "aefm"},
               "subjects": [{"kind": "ServiceAccount", "name": "aefm", "namespace": namespace}]}),
    ]
}

/// [`cluster_role_objects`] as the multi-document YAML shipped in `deploy/rbac.yaml`.
pub fn cluster_role_yaml(namespace: &str) -> String {
    let mut out = String::from(
        "# AEFM's permissions: exactly the verbs it uses (manager/src/kubernetes/rbac.rs renders\n\
         # this file; `aefm doctor` checks the same list). Add rules for kinds your app's YAML\n\
         # repository holds beyond these. Apply: kubectl apply -f deploy/rbac.yaml\n",
    );
    for o in cluster_role_objects(namespace) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&o).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_role_is_the_rendered_one() {
        let shipped = include_str!("../../../deploy/rbac.yaml");
        assert_eq!(
            shipped,
            cluster_role_yaml("default"),
            "deploy/rbac.yaml is stale: regenerate it with `aefm doctor --print-rbac > deploy/rbac.yaml`"
        );
    }

    #[test]
    fn every_check_names_a_reason_and_the_log_subresource_is_there() {
        assert!(checks().all(|c| !c.4.is_empty()));
        assert!(checks().any(|(g, r, v, _, _)| g.is_empty() && r == "pods/log" && v == "get"));
        assert!(!checks().any(|(_, _, v, _, _)| v == "*"));
    }
}
