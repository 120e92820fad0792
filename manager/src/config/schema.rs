//! The config's schema: every section as a Rust type, with its defaults written next to its field.
//!
//! These types are what the YAML deserializes into, as written (`config.resolved.yaml` is their
//! serialization). Checking and converting them into the typed sweep is `validate.rs` and
//! `typed.rs`; stressor levels are in `stress.rs`, dimension values in `range.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::kubernetes;
use super::range::{CustomValues, NumberRange};
use super::search::{Rounds, SearchConfig};
use super::stress::InterferenceLevelSpec;
use super::typed::TypedSweep;

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
    /// Data the app needs before it is measured, sent after it is deployed and before the first
    /// case (DeathStarBench's social graph or media dataset). Default: none.
    #[serde(default)]
    pub seed: Option<super::seed::SeedConfig>,
    /// Kubernetes settings (required when `backend: kubernetes`).
    #[serde(default)]
    pub kubernetes: Option<kubernetes::KubernetesConfig>,
    /// Thresholds of the validity checks every case goes through (see `docs/results.md`).
    #[serde(default)]
    pub validity: crate::validity::ValidityConfig,
    /// What to do with an invalid case: `keep` (default), `rerun` (up to `validity.attempts`
    /// attempts, every attempt's files kept) or `abort`.
    #[serde(default)]
    pub on_invalid: crate::validity::OnInvalid,
    /// The user's own values (any YAML), not interpreted by AEFM: handlers read them with
    /// [`Config::extra`] / [`Config::extra_as`], hooks and app commands get `AEFM_EXTRA_<KEY>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_yaml::Value>,
    /// Directory of the config file; relative paths in the config resolve against it. Not a key.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The sweep converted once, when the config was parsed: dimensions with their values and
    /// stressor levels, in run order. Not a key; read it with [`Config::dimensions`].
    #[serde(skip)]
    pub(crate) typed: std::sync::OnceLock<TypedSweep>,
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
    /// Share of requests (0 to 1) that carry a W3C `traceparent` header (`aefm-load
    /// --traceparent`): the slowest of them are joined with their server-side traces in each
    /// case's `join.csv` when a trace source is configured. Default `0` (none).
    #[serde(default)]
    pub traceparent: f64,
    /// Gaps between sends (`aefm-load -D`): `fixed` (wrk2's even grid), `exp` (Poisson
    /// arrivals), `norm`, `zipf` (bursty, as DeathStarBench's fork). Default `fixed`.
    #[serde(default)]
    pub distribution: aefm_loadgen::schedule::Distribution,
    /// Seed of the random gaps (`aefm-load --seed`): the same seed, the same send times. On
    /// Kubernetes each load Job derives its own from it, so generators do not send in lockstep.
    /// Default `0`.
    #[serde(default)]
    pub seed: u64,
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
            traceparent: 0.0,
            distribution: Default::default(),
            seed: aefm_loadgen::schedule::DEFAULT_SEED,
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

/// The sweep: every test case is one combination of the dimensions' values.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Offered load in requests per second (total). Required unless `search` is given.
    #[serde(default)]
    pub rate: Option<NumberRange>,
    /// Capacity search instead of a rate list: per interference level (and custom value), the
    /// highest offered rate that meets an SLO. See [`SearchConfig`].
    #[serde(default)]
    pub search: Option<SearchConfig>,
    /// Repetitions (dimension `round`): a number (values 1..=rounds), or `{min, max, ci}` to
    /// repeat each point until its 95 % confidence interval is narrow enough. Default `1`.
    #[serde(default)]
    pub rounds: Rounds,
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
    /// An explicit case list instead of the cartesian product: each entry a map of dimension
    /// name to value (`{rate: 200, cpu: cpu-50}`), run in this order for every round. See
    /// [`crate::config::cases`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cases: Option<Vec<super::cases::CaseEntry>>,
}

/// Shuffle settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shuffle {
    /// Seed of the permutation.
    pub seed: u64,
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
    /// An OTLP/HTTP trace receiver AEFM runs for the whole experiment: apps instrumented with
    /// OpenTelemetry (the demo among them) send their spans to it, and each case's window of them
    /// becomes the case's trace tables. Not together with `jaeger` (one trace source).
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
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
    /// Kubernetes: how each case's `other_cpu_cores` is measured (the CPU of the app's nodes
    /// not used by our pods). Default: node exporter and cAdvisor queries; `null` turns it off.
    #[serde(default = "default_noise")]
    pub noise: Option<NoiseQueries>,
}

/// The two PromQL templates whose difference is a Kubernetes case's `other_cpu_cores`, both
/// evaluated once at the window's end over the window (`{{window}}`); `{{nodes}}` is an
/// alternation of the nodes the app's pods ran on, `{{namespaces}}` one of our namespaces (app,
/// interference, load).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseQueries {
    /// Busy cores of the app's nodes over the window: one number, or one series per node
    /// labelled `nodename` or `node` (then every node must be there).
    #[serde(default = "default_noise_host")]
    pub host_cpu: String,
    /// Cores our pods used on those nodes over the window, as one number.
    #[serde(default = "default_noise_ours")]
    pub ours_cpu: String,
}

impl Default for NoiseQueries {
    fn default() -> Self {
        NoiseQueries {
            host_cpu: default_noise_host(),
            ours_cpu: default_noise_ours(),
        }
    }
}

fn default_noise() -> Option<NoiseQueries> {
    Some(NoiseQueries::default())
}
/// Node exporter's busy CPU, joined on `instance` with `node_uname_info` to select nodes by
/// name (its `nodename` is the host name, the node's name on most clusters); one series per
/// node, so a node without data is noticed rather than counted as idle.
fn default_noise_host() -> String {
    concat!(
        r#"sum by (nodename) (rate(node_cpu_seconds_total{mode!~"idle|iowait|steal"}[{{window}}])"#,
        r#" * on(instance) group_left(nodename) node_uname_info{nodename=~"{{nodes}}"})"#
    )
    .into()
}
/// cAdvisor's container CPU (kubelet's `node` label, as kube-prometheus-stack sets it),
/// without the pause containers and the per-pod totals (`container=""`).
fn default_noise_ours() -> String {
    concat!(
        r#"sum(rate(container_cpu_usage_seconds_total{container!="",container!="POD","#,
        r#"namespace=~"{{namespaces}}",node=~"{{nodes}}"}[{{window}}]))"#
    )
    .into()
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

/// OTLP receiver settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Address to listen on (`POST /v1/traces`). Default `127.0.0.1:4318` (OTLP/HTTP's port);
    /// `0.0.0.0:4318` for apps in a cluster.
    #[serde(default = "default_otlp_listen")]
    pub listen: String,
    /// Wait after a case for late spans (exporters batch, typically every 5 s). Default `6s`.
    #[serde(default = "default_otlp_grace", with = "duration::serde_dur")]
    pub grace: Duration,
    /// Span data kept in memory before it spills to a file in the experiment directory, MiB.
    /// Default `256`.
    #[serde(default = "default_otlp_memory")]
    pub memory_mb: u64,
    /// Largest request body accepted, MiB (larger ones are answered 413). Default `16`.
    #[serde(default = "default_otlp_body")]
    pub max_body_mb: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            listen: default_otlp_listen(),
            grace: default_otlp_grace(),
            memory_mb: default_otlp_memory(),
            max_body_mb: default_otlp_body(),
        }
    }
}

fn default_otlp_listen() -> String {
    "127.0.0.1:4318".into()
}
fn default_otlp_grace() -> Duration {
    Duration::from_secs(6)
}
fn default_otlp_memory() -> u64 {
    256
}
fn default_otlp_body() -> u64 {
    16
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
