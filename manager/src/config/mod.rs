//! The experiment configuration: the YAML schema, its defaults, loading and validation.
//!
//! Loading is strict: unknown and duplicate keys are errors, and every error names the key path
//! and the line (`sweep.rate: invalid type ... at line 12 column 9`). The schema is documented
//! field by field in [`schema`] and in `docs/config.md`; every default is written next to its
//! field. Loading converts the sweep once into typed dimensions ([`Config::dimensions`]) that
//! `validate`, `plan`, `run` and the backends share.
//!
//! The parts: [`schema`] (types and defaults), [`range`] (dimension values), [`stress`] (stressor
//! levels and their conversion), [`seed`] (the data seeded before the first case), [`cases`] (an
//! explicit case list), [`typed`] (the converted, bounded sweep), `validate` (checks), [`locate`]
//! (keys and lines in the text), [`extra`] (the user's free map), `load` (reading a file),
//! `duration` (durations).

pub mod cases;
mod duration;
pub mod extra;
pub mod kubernetes;
mod load;
pub mod locate;
pub mod range;
pub mod schema;
pub mod search;
pub mod seed;
pub mod stress;
pub mod typed;
mod validate;

use std::path::PathBuf;

pub use crate::events::known_events;
pub use duration::{format_duration, parse_duration, serde_dur};
pub use extra::{env_name, extra_env, ExtraError};
pub use locate::locate_key;
pub use range::{CustomValues, NumberRange};
pub use schema::*;
pub use search::{Figure, Precision, Rounds, SearchConfig, Slo};
pub use seed::{FollowMode, SeedConfig, SeedKind, DEFAULT_MEDIA_USERS};
pub use stress::{InterferenceLevelSpec, StressKind, StressLevel, StressSpec, StressSpecError};
pub use typed::{DimKind, DimValue, Dimension, TypedSweep, MAX_CASES};
pub use validate::{available_cores, safe_char};

/// Errors found while loading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the schema (the message names key path and line).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// serde_yaml's message: `key.path: problem at line L column C`.
        message: String,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
    },
    /// The YAML parsed but a value is not acceptable.
    #[error("{path}: {key}: {message}{}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key path of the bad value.
        key: String,
        /// What is wrong.
        message: String,
        /// 1-based line of the key, when found.
        line: Option<usize>,
    },
}

/// `12.0` -> `12`, `0.5` -> `0.5`: numbers as people write them, for names and CSV cells.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    const MINIMAL: &str = "name: t\nsweep:\n  rate: [10, 20]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, Path::new("c.yaml")).unwrap();
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.rates(), vec![10.0, 20.0]);
        assert_eq!(c.backend, Backend::Local);
        assert_eq!(c.app.cores, vec![0]);
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let text = "name: t\nsweep:\n  rate: [10]\n  rouds: 2\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sweep: unknown field `rouds`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn duplicate_key_is_named_at_its_own_line() {
        let text = "name: t\nsweep:\n  rate: [10]\n  rounds: 2\n  rate: [20]\n";
        let e = Config::parse(text, Path::new("c.yaml")).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { line: Some(5), .. }),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("c.yaml: sweep: duplicate key `rate`") && e.contains("line 5"),
            "{e}"
        );
        // In a map, which serde alone would reduce silently to the last entry.
        let text = "name: t\nsweep:\n  rate: [10]\n  custom:\n    a: [1]\n    a: [2]\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sweep.custom: duplicate key `a`") && e.contains("line 6"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_name_the_full_key_and_the_accepted_forms() {
        let text = "name: t\nsweep:\n  rate: lots\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml: sweep.rate: invalid type: string \"lots\", expected a list of numbers or {min, max, step} at line 3"), "{e}");
        let text = "name: t\nsweep:\n  rate: [1]\n  custom:\n    size: 3\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml: sweep.custom.size: invalid type: integer `3`, expected a list of numbers or strings, or {min, max, step} at line 5"), "{e}");
        let text = "name: t\nsweep:\n  rate: [1]\n  interference:\n    s: [nothing]\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml: sweep.interference.s[0]: invalid value: string \"nothing\", expected `none` or a mapping"), "{e}");
    }

    #[test]
    fn interference_levels_parse_and_label() {
        let text = "name: t\nsweep:\n  rate: [10]\n  interference:\n    stress:\n      - none\n      - {kind: cpu, load: 90}\n      - kind: membw\n";
        let c = Config::parse(text, Path::new("c.yaml")).unwrap();
        let levels = &c.sweep.interference["stress"];
        assert_eq!(levels[0], InterferenceLevelSpec::None);
        match (&levels[1], &levels[2]) {
            (InterferenceLevelSpec::Stress(a), InterferenceLevelSpec::Stress(b)) => {
                assert_eq!(a.label(), "cpu-90");
                assert_eq!(b.label(), "membw-max");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_level_field_names_path_and_line() {
        let text = "name: t\nsweep:\n  rate: [10]\n  interference:\n    stress:\n      - none\n      - {kind: cpu, lod: 90}\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sweep.interference.stress[1]"), "{e}");
        assert!(e.contains("line 7"), "{e}");
    }

    #[test]
    fn bad_level_value_fails_at_load_naming_path_and_line() {
        // Checked by the same conversion the backends run, not first when the stressor starts.
        let text = "name: t\nsweep:\n  rate: [10]\n  interference:\n    stress:\n      - none\n      - kind: memcap\n        size: 1XB\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sweep.interference.stress[1]"), "{e}");
        assert!(e.contains("`size`: invalid size \"1XB\""), "{e}");
        assert!(e.contains("line 7"), "{e}");
        let missing = text.replace("        size: 1XB\n", "");
        let e = Config::parse(&missing, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memcap needs `size`"), "{e}");
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let text = "name: t\nsweep:\n  rate: [10]\n  order: [rate, nope]\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sweep.order"), "{e}");
        assert!(e.contains("\"nope\""), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn hook_with_unknown_event_is_rejected() {
        let text = "name: t\nsweep:\n  rate: [10]\nhooks:\n  - on: start_experiment\n    run: 'true'\n  - on: stat_case\n    run: 'true'\n";
        let e = Config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hooks[1].on"), "{e}");
        assert!(e.contains("line 7"), "{e}");
    }
}
