//! Loading a config: read the file, refuse duplicate keys, deserialize into the schema, validate
//! and convert the sweep once, and (for a file) check the paths it names.

use std::path::{Path, PathBuf};

use super::locate::{check_duplicate_keys, locate_key};
use super::schema::Config;
use super::ConfigError;

impl Config {
    /// Reads, parses and validates a config file, and checks the files and directories it names
    /// (script, working directories, `results_dir`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::parse(&text, path)?;
        cfg.base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        cfg.base_dir = std::fs::canonicalize(&cfg.base_dir).unwrap_or(cfg.base_dir.clone());
        cfg.validate_files(&text, path)?;
        Ok(cfg)
    }

    /// Parses and validates YAML text, converting the sweep; `path` is only used in messages.
    /// File checks are skipped.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |e: serde_yaml::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        };
        // First, so a repeated key is named at its own line (serde's derived code reports it
        // where the mapping starts, and a map silently keeps the last value).
        check_duplicate_keys(text).map_err(parse_error)?;
        let cfg: Config = serde_yaml::from_str(text).map_err(parse_error)?;
        let typed = cfg.validate(text, path)?;
        // A fresh config's cell is empty, so this cannot fail; the sweep is converted only here.
        let _ = cfg.typed.set(typed);
        Ok(cfg)
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// An [`ConfigError::Invalid`] for `key`, with the key's line when the text has it.
    pub(super) fn invalid(
        text: &str,
        path: &Path,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
            line: locate_key(text, key).or_else(|| {
                // A key inside a flow mapping (`- {rate: 1, cpu: x}`) is not on a line of its
                // own: its list item's line is.
                key.rsplit_once('.')
                    .filter(|(item, _)| item.ends_with(']'))
                    .and_then(|(item, _)| locate_key(text, item))
            }),
        }
    }
}
