//! Writing the converted config: a header naming where it came from, each section with the
//! comment naming its original keys, and the notes (keys not converted) at the end.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::{Note, Section};

/// The config as YAML text with comments.
pub(crate) fn render(source: &Path, sections: &[Section], notes: &[Note]) -> String {
    let mut out = format!(
        "# Converted by `aefm import-config` from {} (a config of the original, Python AEFM).\n\
         # Each section says which original keys it came from; docs/config.md explains every key.\n\
         # Relative paths resolve against this file's directory (the original's, against the\n\
         # directory it was run from).\n",
        source.display()
    );
    for s in sections {
        out.push('\n');
        for c in &s.comment {
            out.push_str(&format!("# {c}\n"));
        }
        let mut m = Mapping::new();
        m.insert(Value::String(s.key.into()), s.value.clone());
        // A mapping of strings, numbers, lists and maps always serializes.
        out.push_str(&serde_yaml::to_string(&Value::Mapping(m)).unwrap_or_default());
    }
    if !notes.is_empty() {
        out.push_str("\n# Not converted, or changed (also printed when importing):\n");
        for n in notes {
            out.push_str(&format!("# - {n}\n"));
        }
    }
    out
}
