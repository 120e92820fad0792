//! The experiment configuration: the YAML schema, its defaults, loading and validation.
//!
//! Loading is strict: unknown keys are errors, and every error names the key path and the line
//! (`sweep.rate: invalid type ... at line 12 column 9`). The schema is documented field by field
//! here and in `docs/config.md`; every default is written next to its field.

mod duration;
pub mod kubernetes;
pub mod stress;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use duration::{format_duration, parse_duration};
pub use stress::StressSpecError;

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

/// Which environment runs the experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Processes on this machine (the default).
    #[default]
    Local,
    /// A Kubernetes cluster (see the `kubernetes:` section).
    Kubernetes,
}

/// The whole configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Experiment name; the results directory is `<results_dir>/<name>-<UTC timestamp>`. Required.
    pub name: String,
    /// Parent directory of experiment directories. Default `results` (relative to the config file).
    #[serde(default = "default_results_dir")]
    pub results_dir: PathBuf,
    /// Where the app runs. Default `local`.
    #[serde(default)]
    pub backend: Backend,
    /// Load duration of one test case (measured window). Default `10s`.
    #[serde(default = "default_duration", with = "duration::serde_dur")]
    pub duration: Duration,
    /// Load sent before the measured window of each case, at the case's rate. Default `1s`.
    #[serde(default = "default_warmup", with = "duration::serde_dur")]
    pub warmup: Duration,
    /// Pause after each case (load stopped, interference kept) so queues drain. Default `0s`.
    #[serde(default, with = "duration::serde_dur")]
    pub cooldown: Duration,
    /// Pause after interference changed and is running, before load starts. Default `1s`.
    #[serde(default = "default_settle", with = "duration::serde_dur")]
    pub settle: Duration,
    /// When true, a failing handler or hook stops the experiment; otherwise only its case fails.
    #[serde(default)]
    pub abort_on_error: bool,
    /// The application under test (local backend). Default: the built-in demo service.
    #[serde(default)]
    pub app: AppConfig,
    /// Load generator settings shared by all cases.
    #[serde(default)]
    pub load: LoadConfig,
    /// The sweep: dimensions, their values, order and shuffling.
    pub sweep: SweepConfig,
    /// Data collection.
    #[serde(default)]
    pub collect: CollectConfig,
    /// Shell commands run at events.
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
    /// Kubernetes settings (required when `backend: kubernetes`).
    #[serde(default)]
    pub kubernetes: Option<kubernetes::KubernetesConfig>,
    /// Directory of the config file; relative paths in the config resolve against it. Not a key.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_results_dir() -> PathBuf {
    PathBuf::from("results")
}
fn default_duration() -> Duration {
    Duration::from_secs(10)
}
fn default_warmup() -> Duration {
    Duration::from_secs(1)
}
fn default_settle() -> Duration {
    Duration::from_secs(1)
}

/// The application under test on the local backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The built-in demo service (used when `commands` is empty). Default: a front end and two back ends.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Commands that make up the app, started in order. Empty = use the demo service.
    #[serde(default)]
    pub commands: Vec<AppCommand>,
    /// CPU cores the app (and the interference beside it) is pinned to. Default `[0]`.
    #[serde(default = "default_app_cores")]
    pub cores: Vec<usize>,
    /// How long to wait for each app process to become ready. Default `15s`.
    #[serde(default = "default_ready_timeout", with = "duration::serde_dur")]
    pub ready_timeout: Duration,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            demo: DemoConfig::default(),
            commands: Vec::new(),
            cores: default_app_cores(),
            ready_timeout: default_ready_timeout(),
        }
    }
}

fn default_app_cores() -> Vec<usize> {
    vec![0]
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(15)
}

/// The built-in demo service: a front end that calls every back end once per request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// CPU work (busy loop) per request in the front end, in microseconds. Default `100`.
    #[serde(default = "default_front_work")]
    pub front_work_us: u64,
    /// CPU work per request in each back end, in microseconds. Default `200`.
    #[serde(default = "default_back_work")]
    pub back_work_us: u64,
    /// Number of back ends. Default `2`.
    #[serde(default = "default_backends")]
    pub backends: usize,
    /// Port of the front end on 127.0.0.1 (`0` = pick a free port). Default `0`.
    #[serde(default)]
    pub port: u16,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            front_work_us: default_front_work(),
            back_work_us: default_back_work(),
            backends: default_backends(),
            port: 0,
        }
    }
}

fn default_front_work() -> u64 {
    100
}
fn default_back_work() -> u64 {
    200
}
fn default_backends() -> usize {
    2
}

/// One process of the app.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCommand {
    /// Unit name (used in logs and in the collector's files). Required.
    pub name: String,
    /// Command line, run with `sh -c` in its own process group. Required.
    pub run: String,
    /// Working directory (relative to the config file). Default: the config file's directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// When the process counts as ready. Default: as soon as it runs.
    #[serde(default)]
    pub ready: Option<Readiness>,
}

/// How to tell that an app process is ready.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// A `host:port` that accepts TCP connections once ready.
    #[serde(default)]
    pub tcp: Option<String>,
    /// An `http://` URL that answers (any status below 500) once ready.
    #[serde(default)]
    pub http: Option<String>,
}

/// Load generator settings (the offered rate is a sweep dimension).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Target URL. Default: the app's endpoint (the demo front end's URL).
    #[serde(default)]
    pub url: Option<String>,
    /// Worker threads. Default `1`.
    #[serde(default = "one")]
    pub threads: usize,
    /// Connections (kept open, spread over threads). Default `16`.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Per-request timeout. Default `2s`.
    #[serde(default = "default_timeout", with = "duration::serde_dur")]
    pub timeout: Duration,
    /// Extra request headers `Name: value`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// A wrk Lua script (relative to the config file), as with `aefm-load -s`.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// Arguments passed to the script's `init(args)`.
    #[serde(default)]
    pub script_args: Vec<String>,
    /// CPU cores the load generator threads are pinned to. Default: all cores not used by the app.
    #[serde(default)]
    pub cores: Option<Vec<usize>>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            url: None,
            threads: 1,
            connections: default_connections(),
            timeout: default_timeout(),
            headers: Vec::new(),
            script: None,
            script_args: Vec::new(),
            cores: None,
        }
    }
}

fn one() -> usize {
    1
}
fn default_connections() -> usize {
    16
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

/// A list of numbers, written either as a YAML list or as `{min, max, step}` (max inclusive).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberRange {
    /// An explicit list.
    List(Vec<f64>),
    /// `min`, `min+step`, ... up to and including `max`.
    Range {
        /// First value.
        min: f64,
        /// Last value (inclusive, when reached by the step).
        max: f64,
        /// Increment, > 0.
        step: f64,
    },
}

impl NumberRange {
    /// The values, in order. `None` when a range has a step that is not positive.
    pub fn values(&self) -> Option<Vec<f64>> {
        match self {
            NumberRange::List(v) => Some(v.clone()),
            NumberRange::Range { min, max, step } => {
                if *step <= 0.0 || step.is_nan() || max < min {
                    return None;
                }
                let n = ((max - min) / step + 1e-9).floor() as usize;
                Some((0..=n).map(|i| min + step * i as f64).collect())
            }
        }
    }
}

/// The sweep: every test case is one combination of the dimensions' values.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Offered load in requests per second (total). Required.
    pub rate: NumberRange,
    /// Number of repetitions (dimension `round`, values 1..=rounds). Default `1`.
    #[serde(default = "one")]
    pub rounds: usize,
    /// Interference dimensions: name -> levels (`none` or a stressor). Default: none.
    #[serde(default)]
    pub interference: BTreeMap<String, Vec<InterferenceLevelSpec>>,
    /// Custom dimensions: name -> values (a list of scalars or `{min, max, step}`).
    #[serde(default)]
    pub custom: BTreeMap<String, CustomValues>,
    /// Dimension names from outermost (changes least often) to innermost (changes every case).
    /// Dimensions left out are appended in the default order: round, interference (by name),
    /// custom (by name), rate.
    #[serde(default)]
    pub order: Vec<String>,
    /// Shuffle the run order of the cases with this seed (the same seed gives the same order).
    #[serde(default)]
    pub shuffle: Option<Shuffle>,
}

/// Values of a custom dimension.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CustomValues {
    /// Explicit scalars (numbers or strings).
    List(Vec<serde_yaml::Value>),
    /// `{min, max, step}`.
    Range {
        /// First value.
        min: f64,
        /// Last value (inclusive).
        max: f64,
        /// Increment.
        step: f64,
    },
}

/// Shuffle settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shuffle {
    /// Seed of the permutation.
    pub seed: u64,
}

/// Kind of stressor, as in `aefm-stress <kind>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StressKind {
    /// CPU duty cycle.
    Cpu,
    /// Memory capacity held.
    Memcap,
    /// Memory bandwidth.
    Membw,
    /// Cache thrashing.
    Cache,
    /// Network traffic (iperf3) to a target.
    Net,
}

impl fmt::Display for StressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StressKind::Cpu => "cpu",
            StressKind::Memcap => "memcap",
            StressKind::Membw => "membw",
            StressKind::Cache => "cache",
            StressKind::Net => "net",
        })
    }
}

/// One level of an interference dimension: `none`, or a stressor with its intensity.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InterferenceLevelSpec {
    /// No interference.
    None,
    /// A stressor.
    Stress(Box<StressSpec>),
}

/// A stressor and its intensity, in the stressor's own units; [`StressSpec::to_interference`]
/// turns it into what `aefm-stress` runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StressSpec {
    /// Which stressor. Required.
    pub kind: StressKind,
    /// Name in case names and plots. Default: derived (`cpu-90`, `membw-max`).
    #[serde(default)]
    pub label: Option<String>,
    /// Worker threads (cpu, membw). Default `1` per app core (Kubernetes: one per CPU of the pod's
    /// limit).
    #[serde(default)]
    pub workers: Option<usize>,
    /// cpu: load per worker in percent (1-100). Default `100`.
    #[serde(default)]
    pub load: Option<f64>,
    /// membw: `max` or a rate such as `2GB/s`. Default `max`.
    #[serde(default)]
    pub rate: Option<String>,
    /// memcap: size such as `1GiB` or `50%`. Required for memcap.
    #[serde(default)]
    pub size: Option<String>,
    /// cache: `l1d`, `l2` or `llc`. Default `llc`.
    #[serde(default)]
    pub level: Option<String>,
    /// cache: fraction of the cache to thrash. Default `1.0`.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// net: `host[:port]` of an iperf3 server. Required for net.
    #[serde(default)]
    pub target: Option<String>,
    /// net: bandwidth such as `1G`. Default `1G`.
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// net: parallel streams. Default `1`.
    #[serde(default)]
    pub streams: Option<u32>,
}

impl StressSpec {
    /// The label used in case names, summaries and plot legends.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let detail = match self.kind {
            StressKind::Cpu => fmt_num(self.load.unwrap_or(stress::DEFAULT_LOAD)),
            StressKind::Membw => self.rate.as_deref().unwrap_or(stress::DEFAULT_RATE).into(),
            StressKind::Memcap => self.size.clone().unwrap_or_default(),
            StressKind::Cache => self
                .level
                .as_deref()
                .unwrap_or(stress::DEFAULT_LEVEL)
                .into(),
            StressKind::Net => self
                .bandwidth
                .as_deref()
                .unwrap_or(stress::DEFAULT_BANDWIDTH)
                .into(),
        };
        format!("{}-{}", self.kind, detail)
    }
}

impl<'de> Deserialize<'de> for InterferenceLevelSpec {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Hand-written so that `none` is a plain word and a stressor a mapping, while errors
        // inside the mapping keep serde_yaml's key path and line (an untagged enum loses both).
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InterferenceLevelSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`none` or a mapping such as `{kind: cpu, load: 90}`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s == "none" {
                    Ok(InterferenceLevelSpec::None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(InterferenceLevelSpec::None)
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                StressSpec::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|s| InterferenceLevelSpec::Stress(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Data collection settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Host sampling interval (CPU and memory of the app, interference and load processes). Default `1s`.
    #[serde(default = "default_interval", with = "duration::serde_dur")]
    pub interval: Duration,
    /// Extra wait after a case for late data (Prometheus scrape, Jaeger flush). Default `0s`
    /// (the Prometheus/Jaeger sections add their own grace).
    #[serde(default, with = "duration::serde_dur")]
    pub grace: Duration,
    /// Prometheus server to query per case.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    /// Jaeger query service to fetch traces from per case.
    #[serde(default)]
    pub jaeger: Option<JaegerConfig>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// Prometheus settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://localhost:9090`. Required.
    pub url: String,
    /// Extra PromQL range queries, name -> query template. Default: the collector's default set.
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
    /// Query step. Default `5s`.
    #[serde(default = "default_prom_step", with = "duration::serde_dur")]
    pub step: Duration,
    /// Wait after a case before querying (one scrape interval or more). Default `15s`.
    #[serde(default = "default_prom_grace", with = "duration::serde_dur")]
    pub grace: Duration,
}

fn default_prom_step() -> Duration {
    Duration::from_secs(5)
}
fn default_prom_grace() -> Duration {
    Duration::from_secs(15)
}

/// Jaeger settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JaegerConfig {
    /// Query service base URL, e.g. `http://localhost:16686`. Required.
    pub url: String,
    /// Entry service name as reported by the tracer. Required.
    pub service: String,
    /// Wait after a case before fetching traces. Default `5s`.
    #[serde(default = "default_jaeger_grace", with = "duration::serde_dur")]
    pub grace: Duration,
}

fn default_jaeger_grace() -> Duration {
    Duration::from_secs(5)
}

/// A shell command run at an event.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Event name: `start_experiment`, `init_environment`, `start_<dimension>`,
    /// `start_single_test_case`, `start_data_collection`, `end_single_test_case`, `error`,
    /// `cleanup`, `end_experiment`, or a custom event. Required.
    pub on: String,
    /// Command, run with `sh -c`, with AEFM_* variables in its environment. Required.
    pub run: String,
    /// Kill the command after this long (counts as a failure). Default `60s`.
    #[serde(default = "default_hook_timeout", with = "duration::serde_dur")]
    pub timeout: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `12.0` -> `12`, `0.5` -> `0.5`: numbers as people write them, for names and CSV cells.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Config {
    /// Reads, parses and validates a config file.
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

    /// Parses and validates YAML text; `path` is only used in messages. File checks are skipped.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        cfg.validate(text, path)?;
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

    fn invalid(text: &str, path: &Path, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
            line: locate_key(text, key),
        }
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
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
        let rates = self
            .sweep
            .rate
            .values()
            .ok_or_else(|| bad("sweep.rate", "step must be > 0 and max >= min".into()))?;
        if rates.is_empty() || rates.iter().any(|r| *r <= 0.0 || !r.is_finite()) {
            return Err(bad(
                "sweep.rate",
                "needs at least one rate, all > 0 requests per second".into(),
            ));
        }
        if self.sweep.rounds == 0 {
            return Err(bad("sweep.rounds", "must be at least 1".into()));
        }
        if self.load.threads == 0 || self.load.connections < self.load.threads {
            return Err(bad(
                "load.connections",
                format!(
                    "threads ({}) must be >= 1 and connections ({}) >= threads",
                    self.load.threads, self.load.connections
                ),
            ));
        }
        let mut names: Vec<String> = vec!["rate".into(), "round".into()];
        for (name, levels) in &self.sweep.interference {
            let key = format!("sweep.interference.{name}");
            if levels.is_empty() {
                return Err(bad(
                    &key,
                    "needs at least one level (`none` is a level)".into(),
                ));
            }
            for (i, l) in levels.iter().enumerate() {
                if let InterferenceLevelSpec::Stress(s) = l {
                    check_stress(s).map_err(|m| bad(&format!("{key}[{i}]"), m))?;
                }
            }
            names.push(name.clone());
        }
        for (name, values) in &self.sweep.custom {
            let key = format!("sweep.custom.{name}");
            let n = match values {
                CustomValues::List(v) => v.len(),
                CustomValues::Range { min, max, step } => NumberRange::Range {
                    min: *min,
                    max: *max,
                    step: *step,
                }
                .values()
                .map(|v| v.len())
                .unwrap_or(0),
            };
            if n == 0 {
                return Err(bad(
                    &key,
                    "needs at least one value (a list or {min, max, step} with step > 0)".into(),
                ));
            }
            names.push(name.clone());
        }
        for name in names.iter().skip(2) {
            if !name.chars().all(safe_char) {
                return Err(bad(
                    &format!("sweep.{name}"),
                    "dimension names use only letters, digits, '.', '_' and '-'".into(),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, n) in names.iter().enumerate() {
            if !seen.insert(n) {
                return Err(bad(
                    &format!("sweep.{n}"),
                    format!("dimension name {n:?} is used twice (dimension #{i})"),
                ));
            }
        }
        for (i, o) in self.sweep.order.iter().enumerate() {
            if !names.contains(o) {
                return Err(bad(
                    "sweep.order",
                    format!(
                        "entry {i} {o:?} is not a dimension; dimensions are: {}",
                        names.join(", ")
                    ),
                ));
            }
            if self.sweep.order[..i].contains(o) {
                return Err(bad("sweep.order", format!("{o:?} is listed twice")));
            }
        }
        if self.app.cores.is_empty() {
            return Err(bad("app.cores", "needs at least one core".into()));
        }
        let ncpu = available_cores();
        for (key, cores) in [
            ("app.cores", Some(&self.app.cores)),
            ("load.cores", self.load.cores.as_ref()),
        ] {
            if let Some(c) = cores.and_then(|cs| cs.iter().find(|c| **c >= ncpu)) {
                return Err(bad(
                    key,
                    format!("core {c} does not exist (this machine has {ncpu})"),
                ));
            }
        }
        if self.app.commands.is_empty() && self.app.demo.backends == 0 {
            return Err(bad("app.demo.backends", "must be at least 1".into()));
        }
        for (i, c) in self.app.commands.iter().enumerate() {
            if let Some(r) = &c.ready {
                if let Some(u) = &r.http {
                    url::Url::parse(u).map_err(|e| {
                        bad(
                            &format!("app.commands[{i}].ready.http"),
                            format!("{u:?}: {e}"),
                        )
                    })?;
                }
            }
        }
        if let Some(u) = &self.load.url {
            url::Url::parse(u).map_err(|e| bad("load.url", format!("{u:?}: {e}")))?;
        }
        if self.load.url.is_none()
            && !self.app.commands.is_empty()
            && self.backend == Backend::Local
        {
            return Err(bad(
                "load.url",
                "required when the app is a list of commands (AEFM cannot guess where to send load)".into(),
            ));
        }
        if let Some(p) = &self.collect.prometheus {
            url::Url::parse(&p.url)
                .map_err(|e| bad("collect.prometheus.url", format!("{:?}: {e}", p.url)))?;
        }
        if let Some(j) = &self.collect.jaeger {
            url::Url::parse(&j.url)
                .map_err(|e| bad("collect.jaeger.url", format!("{:?}: {e}", j.url)))?;
        }
        if self.backend == Backend::Kubernetes && self.kubernetes.is_none() {
            return Err(bad(
                "kubernetes",
                "required when `backend: kubernetes`".into(),
            ));
        }
        let events = known_events(self);
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
        Ok(())
    }

    /// Checks the files the config names (script, working directories) exist.
    fn validate_files(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        if let Some(s) = &self.load.script {
            let p = self.resolve(s);
            if !p.is_file() {
                return Err(Self::invalid(
                    text,
                    path,
                    "load.script",
                    format!("script {} does not exist", p.display()),
                ));
            }
        }
        for (i, c) in self.app.commands.iter().enumerate() {
            if let Some(d) = &c.cwd {
                let p = self.resolve(d);
                if !p.is_dir() {
                    return Err(Self::invalid(
                        text,
                        path,
                        &format!("app.commands[{i}].cwd"),
                        format!("directory {} does not exist", p.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rates of the sweep, in configured order.
    pub fn rates(&self) -> Vec<f64> {
        self.sweep.rate.values().unwrap_or_default()
    }
}

/// The names of the built-in events for this config (hooks may name these).
pub fn known_events(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = [
        "start_experiment",
        "init_environment",
        "start_single_test_case",
        "start_data_collection",
        "end_single_test_case",
        "error",
        "cleanup",
        "end_experiment",
        "start_rate",
        "start_round",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in cfg.sweep.interference.keys().chain(cfg.sweep.custom.keys()) {
        v.push(format!("start_{n}"));
    }
    v
}

fn check_stress(s: &StressSpec) -> Result<(), String> {
    if let Some(l) = &s.label {
        if l.is_empty() || !l.chars().all(safe_char) {
            return Err(format!(
                "label {l:?} must use only letters, digits, '.', '_' and '-'"
            ));
        }
    }
    if let Some(load) = s.load {
        if !(load > 0.0 && load <= 100.0) {
            return Err(format!("load {load} must be in (0, 100] percent"));
        }
    }
    if s.workers == Some(0) {
        return Err("workers must be at least 1".into());
    }
    // Required keys and unit strings: checked by the conversion both backends use, so a bad value
    // fails here, naming its key and line, instead of when the stressor starts.
    s.to_interference(None, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

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
        let mut hit = None;
        for (n, line) in lines.iter().enumerate().skip(from) {
            let t = line.trim_start();
            let ind = line.len() - t.len();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if n > from && ind < min_indent {
                break;
            }
            let t2 = t.trim_start_matches("- ");
            if t2.starts_with(&format!("{name}:")) {
                hit = Some((n, ind + (t.len() - t2.len())));
                break;
            }
        }
        let (n, ind) = hit?;
        found = Some(n + 1);
        from = n + 1;
        min_indent = ind + 1;
        if let Some(k) = idx {
            let mut count = 0usize;
            let mut item = None;
            for (m, line) in lines.iter().enumerate().skip(from) {
                let t = line.trim_start();
                let ind2 = line.len() - t.len();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if ind2 < ind || (ind2 == ind && !t.starts_with('-')) {
                    break;
                }
                if t.starts_with('-') && ind2 <= ind + 2 {
                    if count == k {
                        item = Some(m);
                        break;
                    }
                    count += 1;
                }
            }
            let m = item?;
            found = Some(m + 1);
            from = m;
            min_indent = ind;
        }
    }
    found
}

#[cfg(test)]
mod tests {
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
    fn range_expands_inclusive() {
        let r = NumberRange::Range {
            min: 100.0,
            max: 300.0,
            step: 100.0,
        };
        assert_eq!(r.values().unwrap(), vec![100.0, 200.0, 300.0]);
        let bad = NumberRange::Range {
            min: 1.0,
            max: 3.0,
            step: 0.0,
        };
        assert!(bad.values().is_none());
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

    #[test]
    fn locate_key_finds_nested_and_indexed() {
        let text = "a: 1\nb:\n  c: 2\n  d:\n    - x: 1\n    - x: 2\n      y: 3\n";
        assert_eq!(locate_key(text, "b.c"), Some(3));
        assert_eq!(locate_key(text, "b.d[1]"), Some(6));
        assert_eq!(locate_key(text, "b.d[1].y"), Some(7));
        assert_eq!(locate_key(text, "zz"), None);
    }
}
