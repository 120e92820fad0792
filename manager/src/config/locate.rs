//! Finding keys in the config's YAML text, for messages that name a line.
//!
//! serde_yaml reports a line only for errors raised while it reads a value. Two kinds of problem
//! need more: checks done after parsing ([`locate_key`] walks the text by indentation), and
//! duplicate keys ([`check_duplicate_keys`]), which serde's derived code reports at the line where
//! the mapping starts, and which a map (`sweep.custom`, `app.commands[].env`) silently keeps the
//! last of.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Finds the 1-based line of a dotted key path (`sweep.order`, `hooks[1].on`) in YAML text.
///
/// serde_yaml reports lines only for errors it finds itself; for semantic checks done after
/// parsing this walks the text by indentation. Block-style YAML only; returns `None` otherwise.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let mut segs: Vec<(String, Option<usize>)> = Vec::new();
    for part in key.split('.') {
        match part.find('[') {
            Some(i) => {
                let idx = part[i + 1..].trim_end_matches(']').parse().ok();
                segs.push((part[..i].to_string(), idx));
            }
            None => segs.push((part.to_string(), None)),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut min_indent = 0usize;
    let mut found = None;
    for (name, idx) in segs {
        let (n, ind) = find_key_line(&lines, from, min_indent, &name)?;
        found = Some(n + 1);
        from = n + 1;
        min_indent = ind + 1;
        if let Some(k) = idx {
            let m = find_item_line(&lines, from, ind, k)?;
            found = Some(m + 1);
            from = m;
            min_indent = ind;
        }
    }
    found
}

/// The 0-based line and indentation of `name:` at or after `from`, within the current block.
fn find_key_line(
    lines: &[&str],
    from: usize,
    min_indent: usize,
    name: &str,
) -> Option<(usize, usize)> {
    for (n, line) in lines.iter().enumerate().skip(from) {
        let t = line.trim_start();
        let ind = line.len() - t.len();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if n > from && ind < min_indent {
            return None;
        }
        let t2 = t.trim_start_matches("- ");
        if t2.starts_with(&format!("{name}:")) {
            return Some((n, ind + (t.len() - t2.len())));
        }
    }
    None
}

/// The 0-based line of list item `k` of the key at indentation `ind`, starting at `from`.
fn find_item_line(lines: &[&str], from: usize, ind: usize, k: usize) -> Option<usize> {
    let mut count = 0usize;
    for (m, line) in lines.iter().enumerate().skip(from) {
        let t = line.trim_start();
        let ind2 = line.len() - t.len();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if ind2 < ind || (ind2 == ind && !t.starts_with('-')) {
            return None;
        }
        if t.starts_with('-') && ind2 <= ind + 2 {
            if count == k {
                return Some(m);
            }
            count += 1;
        }
    }
    None
}

/// Fails on the first key that appears twice in one mapping, anywhere in the document.
///
/// The check runs inside serde_yaml while it reads each key, so the error carries the key path
/// of the mapping and the line of the second occurrence:
/// `sweep: duplicate key `rate` (a key may appear once per mapping) at line 5 column 3`.
pub fn check_duplicate_keys(text: &str) -> Result<(), serde_yaml::Error> {
    AnyValue.deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Walks any YAML value, checking the keys of every mapping in it.
struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(AnyVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(AnyValue)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while m.next_key_seed(Key(&mut seen))?.is_some() {
            m.next_value_seed(AnyValue)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): its content is checked like any other value.
        let (_, v) = a.variant::<de::IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(v, AnyValue)
    }
}

/// Reads one mapping key and fails if the mapping had it already. The error is raised while
/// serde_yaml reads the key itself, which is what makes it carry the key's own line.
struct Key<'a>(&'a mut HashSet<String>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Key<'_> {
    fn check<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.0.insert(key.clone()) {
            Ok(())
        } else {
            Err(E::custom(format!(
                "duplicate key `{key}` (a key may appear once per mapping)"
            )))
        }
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.check("~".into())
    }
    // Complex keys (`? [a, b]`) are not compared; their content is still walked.
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<(), A::Error> {
        AnyVisitor.visit_seq(s)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<(), A::Error> {
        AnyVisitor.visit_map(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_key_finds_nested_and_indexed() {
        let text = "a: 1\nb:\n  c: 2\n  d:\n    - x: 1\n    - x: 2\n      y: 3\n";
        assert_eq!(locate_key(text, "b.c"), Some(3));
        assert_eq!(locate_key(text, "b.d[1]"), Some(6));
        assert_eq!(locate_key(text, "b.d[1].y"), Some(7));
        assert_eq!(locate_key(text, "zz"), None);
    }

    fn dup(text: &str) -> (String, Option<usize>) {
        let e = check_duplicate_keys(text).unwrap_err();
        (e.to_string(), e.location().map(|l| l.line()))
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_duplicate() {
        let (m, line) = dup("name: t\nsweep:\n  rate: [1]\n  rounds: 2\n  rate: [2]\n");
        assert!(m.starts_with("sweep: duplicate key `rate`"), "{m}");
        assert_eq!(line, Some(5), "{m}");
        let (m, line) = dup("name: t\nname: u\n");
        assert!(m.starts_with("duplicate key `name`"), "{m}");
        assert_eq!(line, Some(2));
        // In a map, which serde would otherwise silently reduce to the last entry.
        let (m, line) = dup("sweep:\n  custom:\n    a: [1]\n    b: [2]\n    a: [3]\n");
        assert!(m.starts_with("sweep.custom: duplicate key `a`"), "{m}");
        assert_eq!(line, Some(5));
        // In a list item and in flow style.
        let (m, line) = dup("hooks:\n  - on: x\n    run: y\n  - on: x\n    on: z\n");
        assert!(m.starts_with("hooks[1]: duplicate key `on`"), "{m}");
        assert_eq!(line, Some(5));
        let (m, _) = dup("s: {a: 1, b: 2, a: 3}\n");
        assert!(
            m.contains("duplicate key `a`") && m.contains("column 17"),
            "{m}"
        );
    }

    #[test]
    fn same_key_in_different_mappings_is_fine() {
        let text = "a: {x: 1}\nb: {x: 1}\nc:\n  - {x: 1}\n  - {x: 2}\nd: &r {x: 1}\ne:\n  <<: *r\n  y: 2\n";
        check_duplicate_keys(text).unwrap();
    }
}
