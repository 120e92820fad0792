//! `aefm init`: a small Cargo project that depends on this crate, whose handlers customise the
//! experiment (the Rust counterpart of the original's `main.py` + `handlers.py`).

use std::path::{Path, PathBuf};

/// Errors scaffolding a project.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A file exists and `--force` was not given.
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The `aefm` dependency line: the path of this crate's sources when they exist on this machine
/// (a source checkout), else the published version.
pub fn dependency_line() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("Cargo.toml").is_file() {
        format!("aefm = {{ path = {:?} }}", dir.display().to_string())
    } else {
        format!("aefm = \"{}\"", env!("CARGO_PKG_VERSION"))
    }
}

/// Package name from the directory name (Cargo's rules: letters, digits, `-`, `_`).
fn package_name(dir: &Path) -> String {
    let raw = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "aefm-experiment".into());
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "exp-");
    }
    s
}

/// Writes the project into `dir`; returns the files created.
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("src")).map_err(io(dir))?;
    let name = package_name(dir);
    let files: Vec<(PathBuf, String)> = vec![
        (
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
                 [dependencies]\n{}\n\n\
                 # A workspace of its own, so the project builds even inside another workspace's tree.\n[workspace]\n\n\
                 # Optimised dependencies in debug builds: the load generator needs them.\n\
                 [profile.dev.package.\"*\"]\nopt-level = 1\n",
                dependency_line()
            ),
        ),
        (dir.join("src/main.rs"), MAIN_RS.to_string()),
        (dir.join("src/handlers.rs"), HANDLERS_RS.to_string()),
        (dir.join("config.yaml"), CONFIG_YAML.to_string()),
    ];
    if !force {
        if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
            return Err(ScaffoldError::Exists(p.clone()));
        }
    }
    let mut out = Vec::new();
    for (p, text) in files {
        std::fs::write(&p, text).map_err(io(&p))?;
        out.push(p);
    }
    Ok(out)
}

const MAIN_RS: &str = r#"//! An AEFM experiment with custom handlers: the full `aefm` command line (run, plan, validate,
//! demo, ...) plus the handlers registered in `handlers.rs`.
//!
//! Run it with `cargo run -- run config.yaml`.

mod handlers;

fn main() -> std::process::ExitCode {
    aefm::cli::main_with(handlers::register)
}
"#;

const HANDLERS_RS: &str = r#"//! Custom handlers. Each event has an ordered list of handlers; the defaults carry out the
//! standard workflow (see `aefm::workflow`). Here you can:
//! - `exp.handlers.append(event, name, f)`: run `f` after the existing handlers,
//! - `exp.handlers.insert(event, name, f)`: run `f` first,
//! - `exp.handlers.replace(event, name, f)`: run only `f`,
//! - replace a component: `exp.components = Some(Components { .. })`,
//! - fire your own events from a handler with `ctx.fire("name")`.

use std::io::Write;

use aefm::components::Components;
use aefm::context::Context;
use aefm::events::{Event, HandlerError};
use aefm::experiment::Experiment;

/// Registers the handlers of this experiment.
pub fn register(exp: &mut Experiment) {
    exp.handlers.append(Event::EndSingleTestCase, "custom:record_p99", record_p99);
    exp.handlers.append(Event::Custom("case_recorded".into()), "custom:count", count);
}

/// After each case: append `case,p99_ms` to `<experiment dir>/custom_p99.csv`, then fire the
/// custom event `case_recorded`.
fn record_p99(ctx: &mut Context, _components: &mut Components) -> Result<(), HandlerError> {
    let (Some(case), Some(report)) = (&ctx.case, &ctx.report) else {
        return Ok(());
    };
    let path = ctx.experiment_dir.join("custom_p99.csv");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{},{:.3}", case.name, report.latency.p99_us / 1000.0)?;
    ctx.fire("case_recorded");
    Ok(())
}

/// Counts recorded cases in the shared data (`ctx.data`), kept across cases.
fn count(ctx: &mut Context, _components: &mut Components) -> Result<(), HandlerError> {
    let n = ctx.data.get("recorded").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
    ctx.data.insert("recorded".into(), n.into());
    aefm::tracing::info!(recorded = n, "custom handler ran");
    Ok(())
}
"#;

const CONFIG_YAML: &str = r#"# AEFM experiment (schema and defaults: docs/config.md in the AEFM repository).
name: my-experiment
duration: 5s        # measured load per test case
warmup: 1s
app:
  demo:             # the built-in demo service: a front end calling two back ends
    front_work_us: 100
    back_work_us: 300
  cores: [0]        # app and interference share these cores
sweep:
  rate: [100, 200]  # offered requests per second
  rounds: 1
  interference:
    stress:
      - none
      - {kind: cpu, load: 90}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_without_force() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exp");
        init(&p, false).unwrap();
        let e = init(&p, false).unwrap_err();
        assert!(matches!(e, ScaffoldError::Exists(_)));
        init(&p, true).unwrap();
        let cargo = std::fs::read_to_string(p.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("aefm = { path = "), "{cargo}");
        let cfg = crate::config::Config::parse(CONFIG_YAML, Path::new("config.yaml")).unwrap();
        assert_eq!(crate::sweep::expand(&cfg).len(), 4);
    }
}
