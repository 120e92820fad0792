//! Resuming safely. A resume goes on only when the experiment's process is gone and the config
//! is the one the experiment ran with: the resolved config (`config.resolved.yaml`, every default
//! filled in) against the config now, key by key, ignoring only keys that change no measurement
//! (`name`, `results_dir`) and counting the config's directory (relative paths resolve against
//! it). A changed config is refused with the keys that differ unless the user overrides
//! (`--resume-anyway`); then the earlier configs are kept and the change is recorded in
//! metadata.json, and finished cases that are not in the new sweep are set aside.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_yaml::Value;

use super::journal::{self, Entry, Status};
use super::metadata::{ConfigChange, Liveness, Metadata};
use super::{io, now_rfc3339, write_atomic, ResultsError};
use crate::config::Config;
use crate::schedule::Schedule;
use crate::sweep::TestCase;

/// The config file as given, copied into the experiment directory.
pub const ORIGINAL: &str = "config.yaml";
/// The config with every default filled in: what the experiment ran with.
pub const RESOLVED: &str = "config.resolved.yaml";
/// Top-level keys that change no measurement.
const IGNORED: &[&str] = &["name", "results_dir"];
/// Pseudo key of the config's directory in differences.
const CONFIG_DIR: &str = "(config directory)";
/// Differences named in a refusal; the rest are counted.
const SHOWN: usize = 4;

/// One key whose value differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Key path: `sweep.rate`, `load.headers[0]`.
    pub path: String,
    /// Value the experiment ran with (`(absent)` when the key was not there).
    pub old: String,
    /// Value now.
    pub new: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.path, self.old, self.new)
    }
}

/// The config as compared: its YAML value without the ignored keys.
pub fn comparable(cfg: &Config) -> Value {
    let mut v = serde_yaml::to_value(cfg).unwrap_or(Value::Null);
    strip_ignored(&mut v);
    v
}

fn strip_ignored(v: &mut Value) {
    if let Value::Mapping(m) = v {
        for k in IGNORED {
            m.remove(*k);
        }
    }
}

/// The keys whose values differ between `old` and `new`, in key order.
pub fn diff(old: &Value, new: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_at("", old, new, &mut out);
    out
}

fn diff_at(path: &str, old: &Value, new: &Value, out: &mut Vec<Difference>) {
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            let mut keys: Vec<&Value> = a.keys().collect();
            keys.extend(b.keys().filter(|k| !a.contains_key(*k)));
            for k in keys {
                let name = match k {
                    Value::String(s) => s.clone(),
                    other => show(other),
                };
                let p = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_at(&p, x, y, out),
                    (x, y) => out.push(difference(p, x, y)),
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_at(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Tagged(a), Value::Tagged(b)) if a.tag == b.tag => {
            diff_at(path, &a.value, &b.value, out)
        }
        (a, b) if a != b => out.push(difference(path.to_string(), Some(a), Some(b))),
        _ => {}
    }
}

fn difference(path: String, old: Option<&Value>, new: Option<&Value>) -> Difference {
    let or_absent = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), show);
    Difference {
        path: if path.is_empty() {
            "(root)".into()
        } else {
            path
        },
        old: or_absent(old),
        new: or_absent(new),
    }
}

/// A value on one line (JSON), shortened past 60 characters.
fn show(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| {
        serde_yaml::to_string(v)
            .unwrap_or_default()
            .trim()
            .replace('\n', " ")
    });
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// `a; b; c; d; and 3 more`.
pub fn describe(changes: &[Difference]) -> String {
    let mut s: Vec<String> = changes.iter().take(SHOWN).map(|d| d.to_string()).collect();
    if changes.len() > SHOWN {
        s.push(format!("and {} more", changes.len() - SHOWN));
    }
    s.join("; ")
}

/// Reopens the experiment in `dir` to resume it with `cfg` (from `config_file`, whose text is
/// `config_text`): refuses, before anything is changed, when it still runs or its config changed
/// (unless `anyway`); removes temp files a killed writer left; claims it for this process.
/// Returns its metadata and the journal entries of the sweep's `cases` ([`remap`]).
pub fn reopen(
    dir: &Path,
    cfg: &Config,
    config_file: &Path,
    config_text: Option<&str>,
    cases: &[TestCase],
    schedule: &Schedule,
    anyway: bool,
) -> Result<(Metadata, BTreeMap<String, Entry>), ResultsError> {
    let mut meta = Metadata::read(dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no metadata; starting it again");
        let mut m = Metadata::start(cfg, config_file, cases.len());
        m.status = super::metadata::status::INTERRUPTED.into();
        m.config_dir = None;
        m
    });
    check_process(dir, &meta, anyway)?;
    let changes = config_differences(dir, &meta, cfg);
    if !changes.is_empty() && !anyway {
        return Err(refusal(dir, &changes));
    }
    let removed = aefm_collector::output::temp::remove_stale_tree(dir);
    if !removed.is_empty() {
        tracing::info!(
            files = removed.len(),
            "removed temp files a killed writer left"
        );
    }
    let (done, set_aside) = remap(journal::read(dir)?, schedule);
    if !changes.is_empty() {
        let n = meta.config_changes.len() + 1;
        let previous = replace_config(dir, cfg, config_text, n)?;
        tracing::warn!(changes = %describe(&changes), kept = %previous, "resuming with a changed config (--resume-anyway): finished cases of this sweep are not run again");
        if !set_aside.is_empty() {
            tracing::warn!(cases = set_aside.len(), "finished cases not in this sweep are set aside: kept in journal.jsonl and cases/, left out of summary.csv and the plots");
        }
        meta.config_changes.push(ConfigChange {
            at: now_rfc3339(),
            changes: changes.iter().map(|d| d.to_string()).collect(),
            previous,
            set_aside,
        });
        meta.config_dir = Some(cfg.base_dir.display().to_string());
    }
    meta.resumed.push(now_rfc3339());
    meta.claim();
    meta.cases = cases.len();
    meta.config_file = config_file.display().to_string();
    meta.write(dir)?;
    tracing::info!(
        dir = %dir.display(),
        finished = done.values().filter(|e| e.status == Status::Ok).count(),
        "resuming"
    );
    Ok((meta, done))
}

/// How `cfg` differs from the config the experiment in `dir` ran with.
pub fn config_differences(dir: &Path, meta: &Metadata, cfg: &Config) -> Vec<Difference> {
    let new = comparable(cfg);
    let p = dir.join(RESOLVED);
    let mut out = match std::fs::read_to_string(&p) {
        // Through the schema, so that defaults added by a newer aefm are not differences.
        Ok(text) => match Config::parse(&text, &p) {
            Ok(old) => diff(&comparable(&old), &new),
            Err(_) => match serde_yaml::from_str::<Value>(&text) {
                Ok(mut old) => {
                    strip_ignored(&mut old);
                    diff(&old, &new)
                }
                Err(e) => vec![unknown(format!("(unreadable: {e})"))],
            },
        },
        Err(_) => vec![unknown("(missing)".into())],
    };
    let now = cfg.base_dir.display().to_string();
    if let Some(old) = meta.config_dir.as_ref().filter(|d| **d != now) {
        out.push(Difference {
            path: CONFIG_DIR.into(),
            old: old.clone(),
            new: now,
        });
    }
    out
}

fn unknown(old: String) -> Difference {
    Difference {
        path: RESOLVED.into(),
        old,
        new: "(the config now)".into(),
    }
}

/// The refusal of a resume whose config changed.
pub fn refusal(dir: &Path, changes: &[Difference]) -> ResultsError {
    ResultsError::ResumeRefused {
        dir: dir.to_path_buf(),
        message: format!(
            "the config differs from the one it ran with ({}): {}. Resuming would mix cases \
             measured under different settings: run without --resume for a new experiment, or \
             add --resume-anyway to resume with this config (recorded in metadata.json)",
            dir.join(RESOLVED).display(),
            describe(changes)
        ),
    }
}

/// Refuses to resume an experiment whose process still runs (or may, on another host, unless
/// `anyway`); logs a crashed one.
pub fn check_process(dir: &Path, meta: &Metadata, anyway: bool) -> Result<(), ResultsError> {
    if meta.status != super::metadata::status::RUNNING {
        return Ok(());
    }
    let pid = meta.pid.unwrap_or(0);
    let since = meta.resumed.last().unwrap_or(&meta.started);
    match meta.liveness() {
        Liveness::Alive => Err(ResultsError::ResumeRefused {
            dir: dir.to_path_buf(),
            message: format!(
                "it is still running (aefm pid {pid}, since {since}): stop it first (Ctrl-C)"
            ),
        }),
        Liveness::Elsewhere(host) if !anyway => Err(ResultsError::ResumeRefused {
            dir: dir.to_path_buf(),
            message: format!(
                "it is running on host {host} (aefm pid {pid}, since {since}) or crashed there; \
                 this host cannot tell. If it no longer runs, add --resume-anyway"
            ),
        }),
        Liveness::Elsewhere(host) => {
            tracing::warn!(dir = %dir.display(), host = %host, pid, "resuming an experiment marked running on another host (--resume-anyway)");
            Ok(())
        }
        Liveness::Gone => {
            tracing::warn!(dir = %dir.display(), pid, host = %meta.host, since = %since, "experiment crashed (its aefm process is gone); resuming");
            Ok(())
        }
        Liveness::Unknown => {
            tracing::warn!(dir = %dir.display(), "experiment marked running by an aefm that recorded no pid; assuming it crashed");
            Ok(())
        }
    }
}

/// Writes the config files of a run: the file as given (when there is one) and the resolved one.
pub fn save_config(dir: &Path, cfg: &Config, text: Option<&str>) -> Result<(), ResultsError> {
    if let Some(t) = text {
        write_atomic(&dir.join(ORIGINAL), t.as_bytes())?;
    }
    let resolved = serde_yaml::to_string(cfg).unwrap_or_default();
    write_atomic(&dir.join(RESOLVED), resolved.as_bytes())
}

/// Keeps the configs the experiment ran with as `config.<n>.yaml` and `config.resolved.<n>.yaml`
/// and saves the new one; returns the name the resolved one was kept under.
pub fn replace_config(
    dir: &Path,
    cfg: &Config,
    text: Option<&str>,
    n: usize,
) -> Result<String, ResultsError> {
    let kept = format!("config.resolved.{n}.yaml");
    for (from, to) in [
        (RESOLVED, kept.clone()),
        (ORIGINAL, format!("config.{n}.yaml")),
    ] {
        let from = dir.join(from);
        if from.exists() {
            std::fs::rename(&from, dir.join(&to)).map_err(io(&from))?;
        }
    }
    save_config(dir, cfg, text)?;
    Ok(kept)
}

/// The journal entries of the cases of the sweep, indexed as in this sweep (so indices never
/// repeat in summary.csv), and the names of finished cases that are not in it (set aside).
/// A dynamic sweep (adaptive rounds, a search) names its cases as it runs: an entry is its own
/// when it belongs to one of its points or groups, and keeps its index.
pub fn remap(
    entries: BTreeMap<String, Entry>,
    schedule: &Schedule,
) -> (BTreeMap<String, Entry>, Vec<String>) {
    let index: BTreeMap<&str, usize> = schedule
        .templates()
        .iter()
        .map(|c| (c.name.as_str(), c.index))
        .collect();
    let mut kept = BTreeMap::new();
    let mut aside = Vec::new();
    for (name, mut e) in entries {
        if schedule.is_dynamic() && schedule.owns(&e.values) {
            kept.insert(name, e);
            continue;
        }
        match index.get(name.as_str()) {
            Some(i) if !schedule.is_dynamic() => {
                e.index = *i;
                kept.insert(name, e);
            }
            _ => aside.push(name),
        }
    }
    (kept, aside)
}

#[cfg(test)]
mod tests;
