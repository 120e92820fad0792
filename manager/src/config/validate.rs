//! Checking a parsed config: the values serde cannot check (ranges, URLs, cores, names, hook
//! events), the sweep's conversion ([`TypedSweep::build`], whose errors are the sweep's
//! validation), and, for a config loaded from a file, the files and directories it names.
//!
//! Every error names its key and, where the text has it, its line ([`super::locate_key`]).

use std::path::Path;

use super::schema::{Backend, Config};
use super::typed::TypedSweep;
use super::ConfigError;

/// Characters allowed in names that become file names.
pub fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// Number of CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Config {
    /// Checks every value and converts the sweep; the converted sweep is the result.
    pub(super) fn validate(&self, text: &str, path: &Path) -> Result<TypedSweep, ConfigError> {
        let bad = |key: &str, msg: String| Self::invalid(text, path, key, msg);
        if self.name.trim().is_empty() || !self.name.chars().all(safe_char) {
            return Err(bad(
                "name",
                format!(
                    "{:?} must be non-empty and use only letters, digits, '.', '_' and '-'",
                    self.name
                ),
            ));
        }
        if self.duration.is_zero() {
            return Err(bad("duration", "must be greater than 0".into()));
        }
        let typed =
            TypedSweep::build(&self.sweep, self.backend).map_err(|(key, m)| bad(&key, m))?;
        self.validate_load().map_err(|(key, m)| bad(key, m))?;
        self.validate_app().map_err(|(key, m)| bad(&key, m))?;
        self.validate_services().map_err(|(key, m)| bad(key, m))?;
        self.validity.validate().map_err(|(key, m)| bad(key, m))?;
        super::extra::check(&self.extra).map_err(|(key, m)| bad(&key, m))?;
        if let Some(s) = &self.seed {
            s.validate(self.load.url.as_deref())
                .map_err(|(key, m)| bad(&key, m))?;
        }
        self.validate_kubernetes(&typed)
            .map_err(|(key, m)| bad(&key, m))?;
        let names = typed.dimensions.iter().map(|d| d.name.as_str());
        let events = crate::events::event_names(names);
        for (i, h) in self.hooks.iter().enumerate() {
            if !events.contains(&h.on) && !h.on.starts_with("custom:") {
                return Err(bad(
                    &format!("hooks[{i}].on"),
                    format!(
                        "unknown event {:?}; events are: {} (custom events: `custom:<name>`)",
                        h.on,
                        events.join(", ")
                    ),
                ));
            }
        }
        Ok(typed)
    }

    fn validate_load(&self) -> Result<(), (&'static str, String)> {
        if self.load.threads == 0 || self.load.connections < self.load.threads {
            return Err((
                "load.connections",
                format!(
                    "threads ({}) must be >= 1 and connections ({}) >= threads",
                    self.load.threads, self.load.connections
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.load.traceparent) {
            return Err((
                "load.traceparent",
                format!(
                    "{} is not a share of requests: expected 0 to 1 (e.g. 0.1)",
                    self.load.traceparent
                ),
            ));
        }
        if let Some(u) = &self.load.url {
            url::Url::parse(u).map_err(|e| ("load.url", format!("{u:?}: {e}")))?;
        }
        if self.load.url.is_none()
            && !self.app.commands.is_empty()
            && self.backend == Backend::Local
        {
            return Err((
                "load.url",
                "required when the app is a list of commands (AEFM cannot guess where to send load)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn validate_app(&self) -> Result<(), (String, String)> {
        if self.app.cores.is_empty() {
            return Err(("app.cores".into(), "needs at least one core".into()));
        }
        let ncpu = available_cores();
        for (key, cores) in [
            ("app.cores", Some(&self.app.cores)),
            ("load.cores", self.load.cores.as_ref()),
        ] {
            if let Some(c) = cores.and_then(|cs| cs.iter().find(|c| **c >= ncpu)) {
                return Err((
                    key.into(),
                    format!("core {c} does not exist (this machine has {ncpu})"),
                ));
            }
        }
        if self.app.commands.is_empty() && self.app.demo.backends == 0 {
            return Err(("app.demo.backends".into(), "must be at least 1".into()));
        }
        for (i, c) in self.app.commands.iter().enumerate() {
            if let Some(u) = c.ready.as_ref().and_then(|r| r.http.as_ref()) {
                url::Url::parse(u).map_err(|e| {
                    (
                        format!("app.commands[{i}].ready.http"),
                        format!("{u:?}: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    fn validate_services(&self) -> Result<(), (&'static str, String)> {
        if let Some(p) = &self.collect.prometheus {
            url::Url::parse(&p.url)
                .map_err(|e| ("collect.prometheus.url", format!("{:?}: {e}", p.url)))?;
        }
        if let Some(j) = &self.collect.jaeger {
            url::Url::parse(&j.url)
                .map_err(|e| ("collect.jaeger.url", format!("{:?}: {e}", j.url)))?;
        }
        if let Some(o) = &self.collect.otlp {
            o.listen.parse::<std::net::SocketAddr>().map_err(|e| {
                (
                    "collect.otlp.listen",
                    format!(
                        "{:?}: {e} (expected IP:PORT, e.g. 127.0.0.1:4318)",
                        o.listen
                    ),
                )
            })?;
            if o.memory_mb == 0 || o.max_body_mb == 0 {
                return Err((
                    "collect.otlp",
                    "memory_mb and max_body_mb must be at least 1".into(),
                ));
            }
            if self.collect.jaeger.is_some() {
                return Err((
                    "collect.otlp",
                    "one trace source per experiment: remove collect.jaeger or collect.otlp".into(),
                ));
            }
        }
        if self.backend == Backend::Kubernetes && self.kubernetes.is_none() {
            return Err(("kubernetes", "required when `backend: kubernetes`".into()));
        }
        self.validate_noise()
    }

    /// A bound on the noise needs a way to measure it: on Kubernetes that is Prometheus with
    /// its `noise` queries (the local backend's host sampler always runs).
    fn validate_noise(&self) -> Result<(), (&'static str, String)> {
        if self.validity.max_other_cpu.is_none() || self.backend != Backend::Kubernetes {
            return Ok(());
        }
        match &self.collect.prometheus {
            None => Err((
                "validity.max_other_cpu",
                "on Kubernetes the noise is measured through Prometheus: set collect.prometheus \
                 (node exporter and cAdvisor scraped), or remove the bound"
                    .into(),
            )),
            Some(p) if p.noise.is_none() => Err((
                "validity.max_other_cpu",
                "collect.prometheus.noise is off, so the noise cannot be measured: remove the \
                 bound or the `noise: null`"
                    .into(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The `kubernetes:` section's own values, then every interference level against the pods
    /// it would run in (CPU workers within the CPU limit, memcap sizes within the memory); no
    /// cluster is contacted.
    fn validate_kubernetes(&self, typed: &TypedSweep) -> Result<(), (String, String)> {
        let Some(k) = self
            .kubernetes
            .as_ref()
            .filter(|_| self.backend == Backend::Kubernetes)
        else {
            return Ok(());
        };
        k.validate()?;
        let levels = typed.dimensions.iter().flat_map(|d| {
            d.values
                .iter()
                .enumerate()
                .filter_map(move |(i, v)| match v {
                    super::typed::DimValue::Interference(Some(l)) => {
                        Some((format!("sweep.interference.{}[{i}]", d.name), l))
                    }
                    _ => None,
                })
        });
        k.check_levels(levels)
    }

    /// Checks the files and directories the config names: the script and working directories
    /// exist, the seed's graph or dataset exists and parses, and `results_dir` exists as a writable directory or can be created.
    pub(super) fn validate_files(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| Self::invalid(text, path, key, msg);
        if let Some(s) = &self.load.script {
            let p = self.resolve(s);
            if !p.is_file() {
                return Err(bad(
                    "load.script",
                    format!("script {} does not exist", p.display()),
                ));
            }
        }
        for (i, c) in self.app.commands.iter().enumerate() {
            if let Some(d) = &c.cwd {
                let p = self.resolve(d);
                if !p.is_dir() {
                    return Err(bad(
                        &format!("app.commands[{i}].cwd"),
                        format!("directory {} does not exist", p.display()),
                    ));
                }
            }
        }
        if let Some(s) = &self.seed {
            s.validate_files(self).map_err(|(key, m)| bad(&key, m))?;
        }
        writable_dir(&self.resolve(&self.results_dir)).map_err(|m| bad("results_dir", m))
    }
}

/// Whether `dir` is a writable directory, or could be created as one: its nearest existing
/// ancestor is a directory this process may create entries in. Nothing is created, so `validate`
/// and `plan` leave no trace.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let what = if existing == dir {
        format!("{}", dir.display())
    } else {
        format!(
            "{} cannot be created: {}",
            dir.display(),
            existing.display()
        )
    };
    if !existing.is_dir() {
        return Err(format!("{what} is not a directory"));
    }
    if !may_write(existing) {
        return Err(format!("{what} is not writable"));
    }
    Ok(())
}

/// access(2) with W_OK|X_OK: creating an entry needs both. Root passes whatever the mode bits.
fn may_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_dir_must_be_a_directory_or_creatable() {
        let tmp = tempfile::tempdir().unwrap();
        writable_dir(tmp.path()).unwrap();
        writable_dir(&tmp.path().join("a/b/c")).unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = writable_dir(&file).unwrap_err();
        assert_eq!(e, format!("{} is not a directory", file.display()));
        let e = writable_dir(&file.join("sub")).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{} cannot be created: {} is not a directory",
                file.join("sub").display(),
                file.display()
            )
        );
        assert!(!tmp.path().join("a").exists(), "nothing is created");
    }

    #[test]
    fn an_unwritable_results_dir_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root may write anywhere: then access(2) is right to say yes, and so is this check.
        let root = unsafe { libc::geteuid() } == 0;
        let r = writable_dir(&ro.join("results"));
        if root {
            r.unwrap();
        } else {
            let e = r.unwrap_err();
            assert!(
                e.ends_with(&format!("{} is not writable", ro.display())),
                "{e}"
            );
        }
    }

    #[test]
    fn a_noise_bound_on_kubernetes_needs_prometheus_and_its_noise_queries() {
        let base = "name: t\nbackend: kubernetes\nsweep:\n  rate: [10]\nkubernetes:\n  namespace: a\n  yaml_repo: r\nvalidity: {max_other_cpu: 0.5}\n";
        let parse = |t: &str| crate::config::Config::parse(t, Path::new("c.yaml"));
        let e = parse(base).unwrap_err().to_string();
        assert!(
            e.contains("validity.max_other_cpu") && e.contains("collect.prometheus"),
            "{e}"
        );
        let with_prom = format!("{base}collect:\n  prometheus: {{url: \"http://p:9090\"}}\n");
        let cfg = parse(&with_prom).unwrap();
        let noise = cfg.collect.prometheus.unwrap().noise.unwrap();
        assert!(noise.host_cpu.contains("{{nodes}}") && noise.ours_cpu.contains("{{namespaces}}"));
        let off = with_prom.replace("9090\"}", "9090\", noise: null}");
        let e = parse(&off).unwrap_err().to_string();
        assert!(e.contains("noise: null"), "{e}");
        // The local backend measures the noise itself.
        parse(&base.replace("backend: kubernetes", "backend: local")).unwrap();
    }
}
