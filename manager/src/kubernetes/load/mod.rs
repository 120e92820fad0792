//! Distributed load: when one generator cannot offer a case's rate, `aefm-load` runs as
//! Kubernetes Jobs on the load nodes, each with its share of the rate. Every object carries the
//! run id and a hash of the full case name ([`job`]), so cases and runs never collide; the Jobs'
//! pods are found by the Jobs' uids ([`pods`]); they start together at one instant ([`barrier`]);
//! each pod's report is read from its log as frames ([`report`]) and a failed pod costs only its
//! own report. A case's wrk Lua script travels in a ConfigMap, its headers in a Secret, both
//! labelled like the Jobs and deleted with them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;

use super::client::{Kube, ObjectRef};
use super::error::KubeError;
use crate::config::kubernetes::KubernetesConfig;

pub mod barrier;
pub mod job;
pub mod pods;
pub mod report;

pub use job::{load_namespace, Owner, CONTROL_PORT, HEADERS_DIR, HEADERS_KEY, SCRIPT_DIR};
pub use pods::{GenState, Generator};
pub use report::GeneratorOutcome;

/// How many generators a case's `rate` needs: `load.generators` when set, else
/// `ceil(rate / load.max_rate_per_generator)`, at least 1.
pub fn generators_needed(cfg: &KubernetesConfig, rate: f64) -> u32 {
    cfg.load
        .generators
        .unwrap_or_else(|| (rate / cfg.load.max_rate_per_generator).ceil().max(1.0) as u32)
        .max(1)
}

/// Whether a case's load should run as Jobs rather than in this process.
pub fn is_distributed(cfg: &KubernetesConfig, rate: f64) -> bool {
    cfg.load.always
        || cfg.load.generators.is_some_and(|g| g > 1)
        || rate > cfg.load.max_rate_per_generator
}

/// Splits `rate` into `n` shares that add up to exactly `rate` (integer requests/s where possible;
/// the remainder goes to the first shares).
pub fn split_rate(rate: f64, n: u32) -> Vec<f64> {
    let n = n.max(1) as usize;
    if rate.fract() == 0.0 && rate >= n as f64 {
        let total = rate as u64;
        let base = total / n as u64;
        let extra = (total % n as u64) as usize;
        return (0..n)
            .map(|i| (base + u64::from(i < extra)) as f64)
            .collect();
    }
    vec![rate / n as f64; n]
}

/// Largest script a ConfigMap holds (the API server refuses objects over 1 MiB; some room is
/// left for the metadata).
const MAX_SCRIPT_BYTES: usize = 1000 * 1024;

/// The ConfigMap key of a script, which is also its file name under [`SCRIPT_DIR`]: the file name
/// with characters a key cannot hold (anything but `[-._a-zA-Z0-9]`) replaced by `_`.
pub fn script_key(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() || key.chars().all(|c| c == '.') {
        "script.lua".into()
    } else {
        key
    }
}

/// The path of a script inside a load Job pod (what `aefm-load -s` is given).
pub fn script_pod_path(path: &Path) -> String {
    format!("{SCRIPT_DIR}/{}", script_key(path))
}

/// A wrk Lua script to ship to load Jobs: the local file and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadScript {
    /// The script on this machine.
    pub path: PathBuf,
    /// The file's content.
    pub content: String,
}

impl LoadScript {
    /// Reads the script; it must be UTF-8 text small enough for a ConfigMap.
    pub fn read(path: &Path) -> Result<LoadScript, KubeError> {
        let io = |source| KubeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        if bytes.len() > MAX_SCRIPT_BYTES {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} bytes is too large to ship to load Jobs in a ConfigMap (limit {MAX_SCRIPT_BYTES})",
                    bytes.len()
                ),
            )));
        }
        let content = String::from_utf8(bytes).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text; cannot ship it to load Jobs in a ConfigMap",
            ))
        })?;
        Ok(LoadScript {
            path: path.to_path_buf(),
            content,
        })
    }
}

/// How long the start barrier waits for every load pod to run and be ready.
pub fn barrier_timeout(cfg: &KubernetesConfig) -> Duration {
    Duration::from_secs(cfg.readiness_timeout_secs)
}

/// How long an `aefm-load` pod waits for its start signal (`--start-timeout`): longer than the
/// barrier, so a pod never gives up while the manager still waits for the others.
pub fn pod_start_timeout(cfg: &KubernetesConfig) -> Duration {
    barrier_timeout(cfg) + Duration::from_secs(60)
}

/// What a case's distributed load needs besides the cluster.
pub struct LoadJobs<'a> {
    /// Whose objects these are.
    pub owner: Owner<'a>,
    /// One argument list per Job (each names [`CONTROL_PORT`], and [`HEADERS_DIR`] when there are
    /// headers).
    pub args_per_job: &'a [Vec<String>],
    /// A wrk Lua script to ship in a ConfigMap (the arguments name [`script_pod_path`]).
    pub script: Option<&'a Path>,
    /// Headers to ship in a Secret.
    pub headers: &'a [(String, String)],
    /// Warm-up plus duration of the load.
    pub run_time: Duration,
}

/// Runs the Jobs, starts them together and returns each one's outcome (its report, or why there
/// is none), in Job order. The Jobs, the ConfigMap and the Secret are deleted afterwards whatever
/// happened. Fails only when nothing could be measured at all (objects refused, cancelled).
pub async fn run_jobs(
    kube: &Kube,
    cfg: &KubernetesConfig,
    load: &LoadJobs<'_>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<GeneratorOutcome>, KubeError> {
    let ns = load_namespace(cfg);
    let script = load.script.map(LoadScript::read).transpose()?;
    super::namespace::ensure(kube.client(), &ns, load.owner.experiment).await?;
    let mut created: Vec<ObjectRef> = Vec::new();
    let result = run_inner(kube, cfg, load, script.as_ref(), &mut created, cancelled).await;
    // Jobs first (their pods go with them), then what they mounted. Best effort: a failed
    // delete must not hide the load result or its error; `aefm clean` removes leftovers.
    created.sort_by_key(|r| r.kind != "Job");
    for r in &created {
        let _ = kube.delete(r).await;
    }
    result
}

async fn run_inner(
    kube: &Kube,
    cfg: &KubernetesConfig,
    load: &LoadJobs<'_>,
    script: Option<&LoadScript>,
    created: &mut Vec<ObjectRef>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<GeneratorOutcome>, KubeError> {
    let ns = load_namespace(cfg);
    let owner = &load.owner;
    let mut parts = job::JobParts {
        deadline_secs: (pod_start_timeout(cfg) + load.run_time + barrier_timeout(cfg)).as_secs()
            + 120,
        ..Default::default()
    };
    let cm = script.map(|s| job::script_config_map(cfg, owner, s));
    if let (Some(cm), Some(s)) = (&cm, script) {
        let note = format!(" (holding load script {})", s.path.display());
        created.push(ObjectRef::of(cm));
        kube.apply(cm).await.map_err(|e| name_script(e, &note))?;
    }
    let cm_name = cm.as_ref().map(name_of);
    parts.script_config_map = cm_name.as_deref();
    let secret = (!load.headers.is_empty()).then(|| job::headers_secret(cfg, owner, load.headers));
    if let Some(s) = &secret {
        created.push(ObjectRef::of(s));
        kube.apply(s).await?;
    }
    let secret_name = secret.as_ref().map(name_of);
    parts.headers_secret = secret_name.as_deref();
    let jobs_api: Api<Job> = Api::namespaced(kube.client().clone(), &ns);
    let mut gens = Vec::new();
    for (i, args) in load.args_per_job.iter().enumerate() {
        let j = job::load_job(cfg, owner, i, &job::Placement::of(cfg, i), args, &parts);
        let r = ObjectRef::of(&j);
        created.push(r.clone());
        kube.apply(&j).await?;
        // The name is this run's own, so what we read back is the Job we just made.
        let uid = jobs_api
            .get(&r.name)
            .await
            .map_err(|e| KubeError::from_kube("get", r.to_string(), e))?
            .metadata
            .uid
            .unwrap_or_default();
        gens.push(Generator::new(r.name.clone(), uid));
    }
    let selector = owner.selector();
    let barrier_deadline = Instant::now() + barrier_timeout(cfg);
    let started = barrier::start_all(
        kube.client(),
        &ns,
        &selector,
        &mut gens,
        barrier_deadline,
        cancelled,
    )
    .await?;
    if let Some(s) = &started {
        tracing::info!(
            generators = gens.len(),
            slowest_round_trip_ms = s.slowest_round_trip.as_millis() as u64,
            "load pods told to start together"
        );
        let lead = s.at.duration_since(SystemTime::now()).unwrap_or_default();
        let end = Instant::now() + lead + load.run_time + barrier_timeout(cfg);
        wait_finished(kube, &ns, &selector, &mut gens, end, cancelled).await?;
    }
    let pods: Api<Pod> = Api::namespaced(kube.client().clone(), &ns);
    let mut out = Vec::new();
    for g in &gens {
        out.push(report::outcome(&pods, g).await);
    }
    Ok(out)
}

/// Polls the load pods until every generator succeeded or failed, or `end` passes (the rest
/// are failed: they ran far past their duration).
async fn wait_finished(
    kube: &Kube,
    ns: &str,
    selector: &str,
    gens: &mut [Generator],
    end: Instant,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), KubeError> {
    let pods: Api<Pod> = Api::namespaced(kube.client().clone(), ns);
    loop {
        if cancelled() {
            return Err(KubeError::Cancelled);
        }
        // Each round is a fresh list: a dropped connection or an API-server restart costs one
        // round, not the case.
        let listed = pods::refresh(&pods, selector, gens).await;
        let running = |g: &Generator| !matches!(g.state, GenState::Succeeded | GenState::Failed(_));
        if !gens.iter().any(running) {
            return Ok(());
        }
        if Instant::now() >= end {
            listed?;
            for g in gens.iter_mut().filter(|g| running(g)) {
                g.fail("still running long after the load's end");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn name_of(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Adds `note` (which names the script) to the object an API error is about.
fn name_script(err: KubeError, note: &str) -> KubeError {
    match err {
        KubeError::Api {
            action,
            object,
            code,
            reason,
            message,
        } => KubeError::Api {
            action,
            object: object + note,
            code,
            reason,
            message,
        },
        KubeError::Transport {
            action,
            object,
            message,
        } => KubeError::Transport {
            action,
            object: object + note,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KubernetesConfig {
        serde_yaml::from_str("namespace: app\nyaml_repo: r\nload: {max_rate_per_generator: 1000}\n")
            .unwrap()
    }

    #[test]
    fn generators_from_rate_or_config() {
        let mut c = cfg();
        assert_eq!(generators_needed(&c, 2500.0), 3);
        assert_eq!(generators_needed(&c, 10.0), 1);
        assert!(is_distributed(&c, 2500.0) && !is_distributed(&c, 900.0));
        c.load.generators = Some(4);
        assert_eq!(generators_needed(&c, 10.0), 4);
    }

    #[test]
    fn shares_add_up_exactly() {
        assert_eq!(split_rate(1000.0, 3), vec![334.0, 333.0, 333.0]);
        assert_eq!(split_rate(2.0, 4).iter().sum::<f64>(), 2.0);
    }

    #[test]
    fn script_key_and_pod_path() {
        let p = Path::new("/home/u/wrk2/scripts/compose post.lua");
        assert_eq!(script_key(p), "compose_post.lua");
        assert_eq!(script_pod_path(p), "/etc/aefm-load/compose_post.lua");
        let o = Owner {
            experiment: "exp",
            test_case: "case 1",
            run: "r1",
        };
        let script = LoadScript {
            path: p.into(),
            content: "x = 1\n".into(),
        };
        let cm = job::script_config_map(&cfg(), &o, &script);
        assert_eq!(cm["metadata"]["name"], format!("{}-script", o.stem()));
        assert_eq!(cm["metadata"]["namespace"], "app");
        assert_eq!(cm["data"]["compose_post.lua"], "x = 1\n");
    }

    #[test]
    fn unreadable_or_binary_scripts_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.lua");
        let e = LoadScript::read(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.lua"), "{e}");
        let bin = dir.path().join("bin.lua");
        std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
        let e = LoadScript::read(&bin).unwrap_err().to_string();
        assert!(e.contains("bin.lua") && e.contains("UTF-8"), "{e}");
    }
}
