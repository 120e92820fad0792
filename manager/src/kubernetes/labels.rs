//! Labels and annotations AEFM puts on everything it creates, so that readiness, collection and
//! `aefm clean` find exactly our objects.

/// Experiment name.
pub const EXPERIMENT: &str = "aefm.io/experiment";
/// Test case name (interference pods and load Jobs).
pub const TEST_CASE: &str = "aefm.io/test-case";
/// What the object is for: `app`, `interference`, `load`.
pub const COMPONENT: &str = "aefm.io/component";
/// Stressor kind of an interference pod (`cpu`, `memcap`, `membw`, `cache`; `net` for the iperf3
/// ring).
pub const INTERFERENCE: &str = "aefm.io/interference";
/// One invocation of `aefm run` (a short random id): tells this run's Jobs and pods from those a
/// previous or concurrent run of the same experiment left behind.
pub const RUN: &str = "aefm.io/run";
/// Which repository set an app object came from (`infra`, `under_test`).
pub const SET: &str = "aefm.io/set";
/// Standard managed-by label.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY`].
pub const MANAGER: &str = "aefm";
/// Annotation: hash of an interference pod's spec, to keep identical pods across test cases.
pub const SPEC_HASH: &str = "aefm.io/spec-hash";
/// Annotation on namespaces AEFM created: the experiment that created them.
pub const CREATED_BY: &str = "aefm.io/created-by-experiment";

/// Label values must be at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric; anything else is replaced so any experiment or case name can be a label.
pub fn label_value(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    let s = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    s
}

/// A DNS-1123 name fragment (lowercase alphanumerics and `-`) for object names.
pub fn dns_fragment(raw: &str, max: usize) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(max);
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sanitised() {
        assert_eq!(label_value("round=1|cpu=2"), "round_1_cpu_2");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
        assert_eq!(dns_fragment("Node_1.example", 40), "node-1-example");
    }
}
