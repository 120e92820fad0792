//! `extra:`: a free top-level map of the user's own values (any YAML) that AEFM does not
//! interpret, for handlers and hooks (the original AEFM accepted any top-level key and handlers
//! read it as `configs.<key>`).
//!
//! Rust handlers read it with [`Config::extra`] / [`Config::extra_as`]; shell hooks and local app
//! commands get every entry as `AEFM_EXTRA_<KEY>` ([`extra_env`]).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::schema::Config;

/// Why an `extra` value cannot be read as the type a handler asked for.
#[derive(Debug, thiserror::Error)]
#[error("extra.{key}: {source}")]
pub struct ExtraError {
    /// The key under `extra:`.
    pub key: String,
    /// serde's message (expected type, found value).
    #[source]
    pub source: serde_yaml::Error,
}

/// The environment variable name of `name` under `prefix`: uppercased, every character that is
/// not an ASCII letter or digit replaced by `_` (`AEFM_DIM_`, `AEFM_EXTRA_`).
pub fn env_name(prefix: &str, name: &str) -> String {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{key}")
}

/// A value as an environment variable's text: strings as they are, numbers and booleans as
/// written, null as the empty string, lists and maps as JSON.
pub fn env_text(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Tagged(t) => env_text(&t.value),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// `AEFM_EXTRA_<KEY>` = [`env_text`] of every entry.
pub fn extra_env(extra: &BTreeMap<String, serde_yaml::Value>) -> Vec<(String, String)> {
    extra
        .iter()
        .map(|(k, v)| (env_name("AEFM_EXTRA_", k), env_text(v)))
        .collect()
}

/// Two keys that would become the same variable (`a-b`, `a_b`), or a key with no letter or
/// digit: `(key path, problem)`.
pub(super) fn check(extra: &BTreeMap<String, serde_yaml::Value>) -> Result<(), (String, String)> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for k in extra.keys() {
        if !k.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Err((
                format!("extra.{k}"),
                "a key needs at least one letter or digit (it becomes AEFM_EXTRA_<KEY>)".into(),
            ));
        }
        let var = env_name("AEFM_EXTRA_", k);
        if let Some(other) = seen.insert(var.clone(), k) {
            return Err((
                format!("extra.{k}"),
                format!("{k:?} and {other:?} would both be the hook variable {var}: rename one"),
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The value of `extra.<key>`, as written.
    pub fn extra(&self, key: &str) -> Option<&serde_yaml::Value> {
        self.extra.get(key)
    }

    /// `extra.<key>` read as `T` (`ctx.config.extra_as::<u16>("port")`); `Ok(None)` when the key
    /// is absent, an error naming the key when the value is not a `T`.
    pub fn extra_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ExtraError> {
        self.extra
            .get(key)
            .map(|v| {
                serde_yaml::from_value(v.clone()).map_err(|source| ExtraError {
                    key: key.to_string(),
                    source,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            &format!("name: t\nsweep:\n  rate: [1]\nextra:\n{extra}"),
            Path::new("c.yaml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn any_values_are_kept_and_read_typed() {
        let c = parse("  port: 30628\n  app: social\n  graph: {nodes: 962, file: socfb-Reed98}\n  on: true\n  none: null\n").unwrap();
        assert_eq!(c.extra_as::<u16>("port").unwrap(), Some(30628));
        assert_eq!(
            c.extra_as::<String>("app").unwrap().as_deref(),
            Some("social")
        );
        assert_eq!(c.extra_as::<u16>("missing").unwrap(), None);
        let e = c.extra_as::<u16>("app").unwrap_err().to_string();
        assert!(
            e.starts_with("extra.app: invalid type: string \"social\""),
            "{e}"
        );
        assert_eq!(c.extra("graph").unwrap()["nodes"].as_u64(), Some(962));
        let env: BTreeMap<String, String> = extra_env(&c.extra).into_iter().collect();
        assert_eq!(env["AEFM_EXTRA_PORT"], "30628");
        assert_eq!(env["AEFM_EXTRA_APP"], "social");
        assert_eq!(env["AEFM_EXTRA_ON"], "true");
        assert_eq!(env["AEFM_EXTRA_NONE"], "");
        assert_eq!(
            env["AEFM_EXTRA_GRAPH"],
            r#"{"nodes":962,"file":"socfb-Reed98"}"#
        );
    }

    #[test]
    fn keys_are_uppercased_with_other_characters_as_underscores() {
        assert_eq!(
            env_name("AEFM_EXTRA_", "data-init.url"),
            "AEFM_EXTRA_DATA_INIT_URL"
        );
        let list = serde_yaml::from_str("[1, a]").unwrap();
        assert_eq!(env_text(&list), r#"[1,"a"]"#);
    }

    #[test]
    fn keys_that_would_share_a_variable_are_refused() {
        let e = parse("  a-b: 1\n  a_b: 2\n").unwrap_err();
        assert!(e.contains("extra.a_b"), "{e}");
        assert!(e.contains("AEFM_EXTRA_A_B"), "{e}");
        let e = parse("  '--': 1\n").unwrap_err();
        assert!(e.contains("at least one letter or digit"), "{e}");
    }
}
