//! Validation the real API server does on create, update and apply, with its 422 `Invalid`
//! messages: object names (DNS subdomain, or DNS label for namespaces and services), label keys
//! and values (63 characters, `[A-Za-z0-9._-]`, alphanumeric ends, DNS-subdomain prefixes) on the
//! object, its pod template and its selector, and immutable fields: a Job's template and selector,
//! a workload's selector, a StatefulSet's spec apart from the updatable fields, and a Pod's spec
//! apart from images, `activeDeadlineSeconds` (set or lowered) and added tolerations.

use serde_json::{json, Value};

use super::store::ResourceType;

/// One field error: (field path, message after "field: ").
pub type FieldError = (String, String);

/// `Job.batch`, `Pod`: how messages name a kind.
pub fn qualified_kind(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.kind.to_string()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    }
}

/// The 422 `Invalid` Status for field errors, as a real server words it.
pub fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> Value {
    let parts: Vec<String> = errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let joined = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let message = format!("{} \"{name}\" is invalid: {joined}", qualified_kind(rt));
    let causes: Vec<Value> = errors
        .iter()
        .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
        .collect();
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": "Invalid", "details": {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}, "code": 422})
}

const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_RULE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Errors of one label key (messages without the field path).
pub fn label_key_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push(format!(
                "Invalid value: {key:?}: prefix part must be non-empty"
            ));
        } else if !is_subdomain(p) {
            out.push(format!(
                "Invalid value: {key:?}: prefix part {SUBDOMAIN_RULE}"
            ));
        }
    }
    if name.is_empty() {
        out.push(format!(
            "Invalid value: {key:?}: name part must be non-empty"
        ));
    } else if name.len() > 63 {
        out.push(format!(
            "Invalid value: {key:?}: name part must be no more than 63 characters"
        ));
    } else if !is_qualified_part(name) {
        out.push(format!("Invalid value: {key:?}: {NAME_PART_RULE}"));
    }
    out
}

/// Errors of one label value.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push(format!(
            "Invalid value: {value:?}: must be no more than 63 characters"
        ));
    }
    if !value.is_empty() && !is_qualified_part(value) {
        out.push(format!("Invalid value: {value:?}: {LABEL_VALUE_RULE}"));
    }
    out
}

fn labels_at(labels: &Value, field: &str, out: &mut Vec<FieldError>) {
    let Some(map) = labels.as_object() else {
        return;
    };
    for (k, v) in map {
        for m in label_key_errors(k) {
            out.push((field.to_string(), m));
        }
        match v.as_str() {
            Some(s) => {
                for m in label_value_errors(s) {
                    out.push((field.to_string(), m));
                }
            }
            None => out.push((
                field.to_string(),
                format!("Invalid value: {v}: label values must be strings"),
            )),
        }
    }
}

fn name_errors(rt: &ResourceType, name: &str) -> Vec<FieldError> {
    let field = "metadata.name".to_string();
    let bad = |rule: &str| vec![(field.clone(), format!("Invalid value: {name:?}: {rule}"))];
    match rt.kind {
        "Namespace" if !is_dns_label(name) => bad(DNS_LABEL_RULE),
        "Service" if !(is_dns_label(name) && name.as_bytes()[0].is_ascii_lowercase()) => {
            bad(DNS1035_RULE)
        }
        _ if !is_subdomain(name) => bad(SUBDOMAIN_RULE),
        _ => Vec::new(),
    }
}

/// Everything checked on any write: the name, the labels (object, pod template, selector), and
/// for Jobs the `job-name` label the server will put on its pods (so a name over 63 characters is
/// refused, as on a real server).
pub fn validate(rt: &ResourceType, name: &str, obj: &Value) -> Vec<FieldError> {
    let mut out = name_errors(rt, name);
    labels_at(&obj["metadata"]["labels"], "metadata.labels", &mut out);
    labels_at(
        &obj["spec"]["template"]["metadata"]["labels"],
        "spec.template.metadata.labels",
        &mut out,
    );
    labels_at(
        &obj["spec"]["selector"]["matchLabels"],
        "spec.selector.matchLabels",
        &mut out,
    );
    if rt.kind == "Job" {
        for m in label_value_errors(name) {
            out.push(("spec.template.labels".into(), m));
        }
    }
    out
}

fn immutable(field: &str, value: &Value) -> FieldError {
    (
        field.to_string(),
        format!("Invalid value: {}: field is immutable", short(value)),
    )
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..200])
    } else {
        s
    }
}

const POD_UPDATE_RULE: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
const STS_UPDATE_RULE: &str = "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// A pod spec without the fields an update may change.
fn pod_fixed_part(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s[list].as_array_mut() {
            for c in cs {
                c["image"] = Value::Null;
            }
        }
    }
    s["activeDeadlineSeconds"] = Value::Null;
    s["tolerations"] = Value::Null;
    s
}

fn pod_update_errors(old: &Value, new: &Value) -> Vec<FieldError> {
    let forbidden = || vec![("spec".to_string(), POD_UPDATE_RULE.to_string())];
    if pod_fixed_part(old) != pod_fixed_part(new) {
        return forbidden();
    }
    let old_t = old["tolerations"].as_array().cloned().unwrap_or_default();
    let new_t = new["tolerations"].as_array().cloned().unwrap_or_default();
    if !old_t.iter().all(|t| new_t.contains(t)) {
        return forbidden();
    }
    if let Some(before) = old["activeDeadlineSeconds"].as_i64() {
        match new["activeDeadlineSeconds"].as_i64() {
            Some(after) if after <= before => {}
            Some(after) => {
                return vec![(
                    "spec.activeDeadlineSeconds".into(),
                    format!("Invalid value: {after}: must be less than or equal to previous value"),
                )]
            }
            None => {
                return vec![(
                    "spec.activeDeadlineSeconds".into(),
                    "Invalid value: \"null\": must not update from a positive integer to nil value"
                        .into(),
                )]
            }
        }
    }
    Vec::new()
}

/// Errors of an update from `old` to `new` (both whole objects, `new` after the apply merge).
pub fn update_errors(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let (os, ns) = (&old["spec"], &new["spec"]);
    let mut out = Vec::new();
    match rt.kind {
        "Pod" => out.extend(pod_update_errors(os, ns)),
        "Job" => {
            if os["selector"] != ns["selector"] {
                out.push(immutable("spec.selector", &ns["selector"]));
            }
            if os["template"] != ns["template"] {
                out.push(immutable("spec.template", &ns["template"]));
            }
            if os["completionMode"] != ns["completionMode"] {
                out.push(immutable("spec.completionMode", &ns["completionMode"]));
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" if os["selector"] != ns["selector"] => {
            out.push(immutable("spec.selector", &ns["selector"]));
        }
        "StatefulSet" => {
            let fixed = |s: &Value| {
                let mut s = s.clone();
                for k in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    s[k] = Value::Null;
                }
                s
            };
            if fixed(os) != fixed(ns) {
                out.push(("spec".into(), STS_UPDATE_RULE.into()));
            }
        }
        "PersistentVolumeClaim" => {
            let fixed = |s: &Value| {
                let mut s = s.clone();
                s["resources"]["requests"] = Value::Null;
                s["volumeName"] = Value::Null;
                s
            };
            if fixed(os) != fixed(ns) {
                out.push(("spec".into(), "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into()));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::store::resource;
    use super::*;

    #[test]
    fn label_keys_and_values_follow_the_real_rules() {
        for ok in ["a", "A.b_c-9", ""] {
            assert!(label_value_errors(ok).is_empty(), "{ok}");
        }
        assert!(label_key_errors("aefm.io/test-case").is_empty());
        assert!(!label_key_errors("Bad_Prefix/x").is_empty());
        assert!(!label_key_errors("-x").is_empty());
        assert!(!label_key_errors(&"k".repeat(64)).is_empty());
        assert!(!label_value_errors("case 1").is_empty());
        assert!(!label_value_errors("x-").is_empty());
        assert!(label_value_errors(&"v".repeat(64))[0].contains("no more than 63"));
        let pods = resource("", "pods").unwrap();
        let errs = validate(
            pods,
            "p",
            &json!({"metadata": {"labels": {"aefm.io/test-case": "rate=40 cpu"}}}),
        );
        let body = invalid(pods, "p", &errs);
        assert_eq!(body["code"], 422);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Pod \"p\" is invalid: metadata.labels: Invalid value: \"rate=40 cpu\": a valid label"),
            "{body}"
        );
    }

    #[test]
    fn names_are_dns_names() {
        let jobs = resource("batch", "jobs").unwrap();
        assert!(validate(jobs, "aefm-load-x-1", &json!({})).is_empty());
        assert!(!validate(jobs, "Upper", &json!({})).is_empty());
        let long = "j".repeat(64);
        assert!(
            !validate(jobs, &long, &json!({})).is_empty(),
            "job-name label"
        );
        let svc = resource("", "services").unwrap();
        assert!(!validate(svc, "1abc", &json!({})).is_empty());
        assert!(!validate(resource("", "namespaces").unwrap(), "a.b", &json!({})).is_empty());
    }

    #[test]
    fn job_template_and_pod_spec_are_immutable() {
        let jobs = resource("batch", "jobs").unwrap();
        let job = |args: Value| json!({"spec": {"template": {"spec": {"containers": [{"name": "load", "args": args}]}}}});
        let errs = update_errors(
            jobs,
            &job(json!(["--rate", "10"])),
            &job(json!(["--rate", "20"])),
        );
        assert_eq!(errs.len(), 1);
        let msg = invalid(jobs, "j", &errs)["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.starts_with("Job.batch \"j\" is invalid: spec.template: Invalid value:")
                && msg.ends_with("field is immutable"),
            "{msg}"
        );
        assert!(update_errors(jobs, &job(json!(["a"])), &job(json!(["a"]))).is_empty());

        let pods = resource("", "pods").unwrap();
        let pod = |image: &str, tol: Value, deadline: Value, cpu: &str| {
            json!({"spec": {"containers": [{"name": "c", "image": image, "resources": {"limits": {"cpu": cpu}}}],
                            "tolerations": tol, "activeDeadlineSeconds": deadline}})
        };
        let base = pod(
            "a:1",
            json!([{"key": "k", "operator": "Exists"}]),
            json!(100),
            "1",
        );
        let ok = pod(
            "a:2",
            json!([{"key": "k", "operator": "Exists"}, {"key": "z", "operator": "Exists"}]),
            json!(50),
            "1",
        );
        assert!(update_errors(pods, &base, &ok).is_empty());
        let cpu = pod(
            "a:1",
            json!([{"key": "k", "operator": "Exists"}]),
            json!(100),
            "2",
        );
        assert!(update_errors(pods, &base, &cpu)[0]
            .1
            .starts_with("Forbidden: pod updates may not change fields"));
        let removed = pod("a:1", json!([]), json!(100), "1");
        assert!(!update_errors(pods, &base, &removed).is_empty());
        let longer = pod(
            "a:1",
            json!([{"key": "k", "operator": "Exists"}]),
            json!(200),
            "1",
        );
        assert!(!update_errors(pods, &base, &longer).is_empty());
    }
}
