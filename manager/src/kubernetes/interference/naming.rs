//! Names of interference pods: experiment, kind, node and index, each part shortened without
//! collisions (a hash of the whole name when it had to be cut or cleaned), stable across runs so
//! identical pods are kept between cases and runs.

use crate::kubernetes::labels;

/// A name fragment of at most `max` characters (`max` ≥ 9) that differs for different inputs:
/// the name itself when it already is a DNS label fragment that short, else its sanitised prefix
/// and 8 hex digits of a hash of the whole name. Nodes with long common prefixes
/// (`ip-10-0-1-17.eu-west-1.compute.internal`) or names differing only in case or punctuation
/// would otherwise get one pod name.
pub fn name_fragment(raw: &str, max: usize) -> String {
    let clean = labels::dns_fragment(raw, usize::MAX);
    if clean == raw && clean.len() <= max {
        return clean;
    }
    let hash = format!("{:08x}", fnv1a(raw.as_bytes()) as u32);
    let prefix = labels::dns_fragment(&clean, max.saturating_sub(hash.len() + 1));
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// FNV-1a (64 bit): a hash that is the same on every machine and toolchain, so pod names stay
/// stable across runs and pods are kept.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The name of an interference pod: experiment, kind, node and index, each part collision-free
/// ([`name_fragment`]); within the 63 characters of a DNS label (5 + 20 + 1 + 6 + 1 + 20 + 1
/// characters and the index).
pub(super) fn pod_name(experiment: &str, kind: &str, node: &str, index: Option<u32>) -> String {
    let base = format!(
        "aefm-{}-{kind}-{}",
        name_fragment(experiment, 20),
        name_fragment(node, 20)
    );
    match index {
        Some(i) => format!("{base}-{i}"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_names_stay_as_they_are() {
        assert_eq!(name_fragment("w1", 20), "w1");
        assert_eq!(name_fragment("exp", 20), "exp");
        assert_eq!(pod_name("exp", "cpu", "w1", Some(1)), "aefm-exp-cpu-w1-1");
        assert_eq!(pod_name("exp", "net", "w1", None), "aefm-exp-net-w1");
    }

    #[test]
    fn long_similar_node_names_do_not_collide() {
        let a = "ip-10-0-1-17.eu-west-1.compute.internal";
        let b = "ip-10-0-1-17.eu-west-1.compute.internal2";
        let (fa, fb) = (name_fragment(a, 20), name_fragment(b, 20));
        assert_ne!(fa, fb);
        assert!(fa.len() <= 20 && fb.len() <= 20, "{fa} {fb}");
        assert!(fa.starts_with("ip-10-0-1-1"), "{fa}");
        // Stable: the same node always gets the same name (pods are kept across cases and runs).
        assert_eq!(fa, name_fragment(a, 20));
        let (pa, pb) = (
            pod_name("a-long-experiment-name-2024", "memcap", a, Some(12)),
            pod_name("a-long-experiment-name-2024", "memcap", b, Some(12)),
        );
        assert_ne!(pa, pb);
        assert!(pa.len() <= 63, "{pa}");
        assert!(
            pa.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{pa}"
        );
    }

    #[test]
    fn names_that_only_clean_alike_differ() {
        // Both clean to `node-1`: the lossy one gets a hash.
        assert_eq!(name_fragment("node-1", 20), "node-1");
        let other = name_fragment("Node_1", 20);
        assert_ne!(other, "node-1");
        assert!(other.starts_with("node-1-"), "{other}");
        // Nothing usable at all still gives a name.
        assert_eq!(name_fragment("___", 20).len(), 8);
    }
}
