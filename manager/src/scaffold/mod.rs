//! `aefm init`: a small Cargo project that depends on this crate, whose handlers customise the
//! experiment (the Rust counterpart of the original's `main.py` + `handlers.py`), with a config
//! for the demo service or, with `--app`, for a benchmark application in the user's checkout
//! ([`apps`]).

use std::path::{Path, PathBuf};

pub mod apps;

/// Errors scaffolding a project.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A file exists and `--force` was not given.
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// The upstream checkout lacks files the application's config needs.
    #[error(transparent)]
    Upstream(#[from] apps::UpstreamError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where a scaffolded project takes the `aefm` crate from (`aefm init --aefm-path/--aefm-git`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AefmSource {
    /// The repository URL of this build's package metadata when it is a real URL, else this
    /// build's source directory when it exists, else the published version.
    #[default]
    Default,
    /// A local checkout of the AEFM workspace (or of the `manager` crate).
    Path(PathBuf),
    /// A git repository, at a revision (commit, tag or branch) when given.
    Git {
        /// Repository URL.
        url: String,
        /// `rev` of the dependency.
        rev: Option<String>,
    },
}

/// Whether `url` can be fetched by anyone: http(s) with a host that is not a documentation or
/// local placeholder (`example.invalid`, `example.com`, `localhost`).
pub fn is_public_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    let placeholder = [".invalid", ".example", ".test", ".localhost", ".local"]
        .iter()
        .any(|s| host.ends_with(s))
        || ["example.com", "example.org", "example.net", "localhost", ""].contains(&host.as_str())
        || host.ends_with(".example.com");
    matches!(u.scheme(), "https" | "http" | "ssh" | "git") && !placeholder
}

/// The `aefm` dependency of a scaffolded project, with a comment saying where it points and
/// how to change it.
pub fn dependency_line(source: &AefmSource) -> String {
    let repo = env!("CARGO_PKG_REPOSITORY");
    match source {
        AefmSource::Path(p) => format!("aefm = {{ path = {:?} }}", p.display().to_string()),
        AefmSource::Git { url, rev: Some(r) } => {
            format!("aefm = {{ git = {url:?}, rev = {r:?} }}")
        }
        AefmSource::Git { url, rev: None } => format!("aefm = {{ git = {url:?} }}"),
        AefmSource::Default if is_public_url(repo) => format!(
            "# The AEFM repository (this aefm's package metadata); pin a version with `rev = \"...\"`,\n\
             # or use a local checkout: aefm = {{ path = \"/path/to/aefm/manager\" }}.\n\
             aefm = {{ git = {repo:?} }}"
        ),
        AefmSource::Default => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            if dir.join("Cargo.toml").is_file() {
                format!(
                    "# The sources this aefm was built from: this path exists on this machine only. To build\n\
                     # elsewhere, point at a copy: aefm = {{ path = \"...\" }}, or a repository:\n\
                     # aefm = {{ git = \"URL\", rev = \"...\" }} (`aefm init --aefm-path/--aefm-git` write these).\n\
                     aefm = {{ path = {:?} }}",
                    dir.display().to_string()
                )
            } else {
                format!(
                    "# The published version; `aefm init --aefm-path/--aefm-git` point at a checkout instead.\n\
                     aefm = \"{}\"",
                    env!("CARGO_PKG_VERSION")
                )
            }
        }
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
pub fn init(
    dir: &Path,
    force: bool,
    source: &AefmSource,
    app: Option<(apps::App, &Path)>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    let name = package_name(dir);
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
                 [dependencies]\n{}\n\n\
                 # A workspace of its own, so the project builds even inside another workspace's tree.\n[workspace]\n\n\
                 # Optimised dependencies in debug builds: the load generator needs them.\n\
                 [profile.dev.package.\"*\"]\nopt-level = 1\n",
                dependency_line(source)
            ),
        ),
        (dir.join("src/main.rs"), MAIN_RS.to_string()),
        (dir.join("src/handlers.rs"), HANDLERS_RS.to_string()),
    ];
    // The checkout first: a wrong --upstream leaves nothing behind.
    match app {
        Some((app, upstream)) => files.extend(apps::files(app, upstream, dir)?),
        None => files.push((dir.join("config.yaml"), CONFIG_YAML.to_string())),
    }
    if !force {
        if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
            return Err(ScaffoldError::Exists(p.clone()));
        }
    }
    let mut out = Vec::new();
    for (p, text) in files {
        std::fs::create_dir_all(p.parent().unwrap_or(dir)).map_err(io(&p))?;
        std::fs::write(&p, text).map_err(io(&p))?;
        out.push(p);
    }
    if let Some((app, upstream)) = app {
        out.extend(apps::link_repo(app, upstream, dir, force)?);
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
//! - fire your own events from a handler with `ctx.fire("name")`,
//! - run your own list of cases instead of the sweep's product: `exp.set_cases(entries)` (each
//!   entry as in `sweep.cases`: `{rate: 200, cpu: cpu-50}`),
//! - collect your own data per case: `exp.add_collection("name", |dir, window, ctx| ...)`
//!   writes files into the case directory and returns their paths (recorded in the case's
//!   `collection.json`; a failure makes the case invalid).

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
        init(&p, false, &AefmSource::Default, None).unwrap();
        let e = init(&p, false, &AefmSource::Default, None).unwrap_err();
        assert!(matches!(e, ScaffoldError::Exists(_)));
        init(&p, true, &AefmSource::Default, None).unwrap();
        let cargo = std::fs::read_to_string(p.join("Cargo.toml")).unwrap();
        // The workspace's repository is a placeholder: the build's sources, with how to switch.
        assert!(cargo.contains("aefm = { path = "), "{cargo}");
        assert!(cargo.contains("exists on this machine only"), "{cargo}");
        let cfg = crate::config::Config::parse(CONFIG_YAML, Path::new("config.yaml")).unwrap();
        assert_eq!(crate::sweep::expand(&cfg).len(), 4);
    }

    #[test]
    fn the_aefm_dependency_is_chosen_at_init_time() {
        let git = AefmSource::Git {
            url: "https://github.com/o/aefm".into(),
            rev: Some("v0.1.0".into()),
        };
        assert_eq!(
            dependency_line(&git),
            r#"aefm = { git = "https://github.com/o/aefm", rev = "v0.1.0" }"#
        );
        let path = AefmSource::Path("/src/aefm/manager".into());
        assert_eq!(
            dependency_line(&path),
            r#"aefm = { path = "/src/aefm/manager" }"#
        );
        let d = tempfile::tempdir().unwrap();
        init(&d.path().join("p"), false, &git, None).unwrap();
        let cargo = std::fs::read_to_string(d.path().join("p/Cargo.toml")).unwrap();
        assert!(cargo.contains(r#"rev = "v0.1.0""#), "{cargo}");
    }

    #[test]
    fn placeholder_repository_urls_are_not_used() {
        assert!(!is_public_url("https://example.invalid/aefm"));
        assert!(!is_public_url("https://example.com/aefm"));
        assert!(!is_public_url("not a url"));
        assert!(is_public_url("https://github.com/o/aefm"));
    }
}
