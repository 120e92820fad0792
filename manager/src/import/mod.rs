//! `aefm import-config`: converts a config of the original (Python) AEFM into one of ours.
//!
//! The original's config had no schema: a handful of known keys (`test_cases`, `nodes`,
//! `pod_spec`, `file_paths`, service URLs) and anything else as a free attribute. This module
//! reads it leniently ([`original`]), converts the test-case generation ([`sweep`]: `orders`
//! innermost-first becomes our outermost-first `sweep.order`, the workload's per-process rate is
//! folded into total rates, interference ranges become pod counts), the deployment and
//! collection keys ([`sections`]), and writes commented YAML ([`emit`]). Every key it cannot
//! convert, or whose value changes, becomes a [`Note`] naming the key, why, and what to use
//! instead; the caller prints them.

mod emit;
mod original;
mod sections;
mod sweep;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// Why an original config cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path}: not YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// serde_yaml's message (with the line).
        #[source]
        source: serde_yaml::Error,
    },
    /// A value the conversion depends on has a form the original did not accept either.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key in the original config.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A key that was not converted, or whose meaning or value changed: shown on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Dotted key in the original config.
    pub key: String,
    /// Why, and what to use instead.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The notes of one conversion, in the order they were found.
#[derive(Debug, Default)]
pub(crate) struct Notes(pub(crate) Vec<Note>);

impl Notes {
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Note {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// Our config, as commented YAML.
    pub yaml: String,
    /// Keys not converted or changed, in file order.
    pub notes: Vec<Note>,
    /// Our validation's answer on `yaml` (`None`: it parses and validates; file checks such as
    /// the script's existence are left to `aefm validate`).
    pub invalid: Option<String>,
}

/// A top-level section of our config with the comment lines written above it.
pub(crate) struct Section {
    pub(crate) comment: Vec<String>,
    pub(crate) key: &'static str,
    pub(crate) value: Value,
}

/// Reads and converts the original config at `source`; relative paths in it (the load script)
/// are checked against `out_dir`, where the new config will live.
pub fn import_file(source: &Path, out_dir: &Path) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(source).map_err(|e| ImportError::Read {
        path: source.to_path_buf(),
        source: e,
    })?;
    import_text(&text, source, out_dir)
}

/// Converts the text of an original config; `source` names it in messages and the header.
pub fn import_text(text: &str, source: &Path, out_dir: &Path) -> Result<Imported, ImportError> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| ImportError::Yaml {
        path: source.to_path_buf(),
        source: e,
    })?;
    let Value::Mapping(root) = root else {
        return Err(ImportError::Invalid {
            path: source.to_path_buf(),
            key: "(top level)".into(),
            message: "the original's config is a mapping of keys (test_cases, nodes, ...)".into(),
        });
    };
    let invalid = |(key, message): (String, String)| ImportError::Invalid {
        path: source.to_path_buf(),
        key,
        message,
    };
    let mut notes = Notes::default();
    let ctx = sections::Context {
        root: &root,
        source,
        out_dir,
    };
    let converted = sweep::convert(&root, &ctx, &mut notes).map_err(invalid)?;
    let sections = sections::build(&ctx, converted, &mut notes).map_err(invalid)?;
    let yaml = emit::render(source, &sections, &notes.0);
    let invalid = crate::config::Config::parse(&yaml, Path::new("converted.yaml"))
        .err()
        .map(|e| e.to_string());
    Ok(Imported {
        yaml,
        notes: notes.0,
        invalid,
    })
}

/// `key` of a mapping.
pub(crate) fn get<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.into()))
}

/// A mapping from `(key, value)` pairs, in order.
pub(crate) fn map(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::String(k.into()), v))
            .collect(),
    )
}
