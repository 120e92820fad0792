//! The Kubernetes backend: deploy an application from a YAML repository with server-side apply,
//! wait for exactly what was applied, place interference pods on chosen nodes, run distributed
//! load as Jobs, clean up by label, and propose a starter config from a live cluster.
//!
//! Data flows one way: config → [`manifests`] (load and rewrite) → [`client::Kube`] (apply) →
//! [`readiness`] (watch) → results. [`Cluster`] wraps it all behind blocking calls with its own
//! tokio runtime, for the manager's synchronous components and the CLI.
//!
//! ```no_run
//! # fn main() -> Result<(), aefm::kubernetes::KubeError> {
//! let cfg: aefm::config::kubernetes::KubernetesConfig =
//!     serde_yaml::from_str("namespace: social\nyaml_repo: examples/kubernetes/repo\n").unwrap();
//! let cluster = aefm::kubernetes::Cluster::connect(&cfg, "exp1")?;
//! let cancel = aefm::load::CancelToken::new(); // the run's token: Ctrl-C cancels it
//! let applied = cluster.deploy(aefm::kubernetes::DeployAction::Apply, &cancel)?;
//! println!("{} objects ready", applied.len());
//! cluster.clean(Some("exp1"))?;
//! # Ok(()) }
//! ```

pub mod autoconfig;
pub mod cleanup;
pub mod cli;
pub mod client;
pub mod components;
pub mod deploy;
pub mod doctor;
mod error;
pub mod interference;
pub mod labels;
pub mod load;
pub mod manifests;
pub mod namespace;
pub mod noise;
pub mod owners;
pub mod proxy;
pub mod quantity;
pub mod rbac;
pub mod readiness;
pub mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

pub use client::{Kube, ObjectRef};
pub use deploy::DeployAction;
pub use error::KubeError;

use crate::config::kubernetes::KubernetesConfig;
use crate::config::{Config, StressLevel};

/// The manifests `aefm plan` prints: the namespace, then infra, then the services under test,
/// rewritten exactly as they would be applied. No cluster is contacted.
pub fn plan_manifests(config: &Config) -> Result<String, KubeError> {
    let cfg = section_of(config)?;
    let (infra, under_test) = manifests::prepare(&cfg, &config.name)?;
    let mut out = String::from("---\n");
    out.push_str(
        &serde_yaml::to_string(&manifests::namespace_object(&cfg.namespace, &config.name))
            .unwrap_or_default(),
    );
    out.push_str(&manifests::render(&infra));
    out.push_str(&manifests::render(&under_test));
    Ok(out)
}

/// The config's `kubernetes:` section, resolved; an error naming the key when it is missing.
fn section_of(config: &Config) -> Result<KubernetesConfig, KubeError> {
    let section = config
        .kubernetes
        .as_ref()
        .ok_or_else(|| KubeError::Config {
            key: "kubernetes".into(),
            message: "missing (required by `backend: kubernetes` and `aefm doctor`)".into(),
        })?;
    Ok(resolved(section, &config.base_dir))
}

/// The section with relative paths (`yaml_repo`, `kubeconfig`) resolved against the config file's
/// directory.
pub fn resolved(cfg: &KubernetesConfig, base_dir: &std::path::Path) -> KubernetesConfig {
    let mut c = cfg.clone();
    if c.yaml_repo.is_relative() {
        c.yaml_repo = base_dir.join(&c.yaml_repo);
    }
    if let Some(k) = &c.kubeconfig {
        if k.is_relative() {
            c.kubeconfig = Some(base_dir.join(k));
        }
    }
    c
}

/// A connected cluster for one experiment, with blocking methods (each runs on an internal
/// runtime). Not to be called from inside another tokio runtime.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    kube: Kube,
    cfg: KubernetesConfig,
    experiment: String,
    run_id: String,
}

impl Cluster {
    /// Connects with the section's kubeconfig and context.
    pub fn connect(cfg: &KubernetesConfig, experiment: &str) -> Result<Cluster, KubeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| KubeError::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        let client = rt.block_on(client::connect(cfg))?;
        Ok(Cluster {
            rt,
            kube: Kube::new(client, &cfg.field_manager),
            cfg: cfg.clone(),
            experiment: experiment.to_string(),
            run_id: new_run_id(),
        })
    }

    /// The section this cluster was connected with.
    pub fn config(&self) -> &KubernetesConfig {
        &self.cfg
    }

    /// The experiment name.
    pub fn experiment(&self) -> &str {
        &self.experiment
    }

    /// This connection's run id (label [`labels::RUN`]), fresh for every `aefm run`.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.readiness_timeout_secs)
    }

    /// Deploys the application (see [`DeployAction`]) and waits until it is ready; `cancel`
    /// (the run's token) ends the waits with [`KubeError::Cancelled`].
    pub fn deploy(
        &self,
        action: DeployAction,
        cancel: &crate::load::CancelToken,
    ) -> Result<Vec<ObjectRef>, KubeError> {
        self.rt.block_on(deploy::deploy(
            &self.kube,
            &self.cfg,
            &self.experiment,
            action,
            cancel,
        ))
    }

    /// Deletes the given application objects. Cleanup: not cancellable, but bounded by
    /// `readiness_timeout_secs`.
    pub fn teardown(&self, refs: &[ObjectRef]) -> Result<(), KubeError> {
        let limits = watch::Limits::cleanup(&self.cfg, self.timeout());
        let done = self
            .rt
            .block_on(watch::bounded(&limits, deploy::teardown(&self.kube, refs)))?;
        done.ok_or_else(|| KubeError::Failed {
            object: format!("application of {}", self.experiment),
            message: format!("teardown unfinished after {}s", limits.timeout.as_secs()),
        })
    }

    /// Makes the interference pods match `wanted` for `test_case` and waits until they run.
    /// On failure every interference pod of the experiment is removed before returning.
    /// `cancel` (the run's token) ends the wait with [`KubeError::Cancelled`] (and the cleanup).
    pub fn place_interference(
        &self,
        test_case: &str,
        wanted: &[StressLevel],
        cancel: &crate::load::CancelToken,
    ) -> Result<Vec<ObjectRef>, KubeError> {
        let owner = interference::Owner {
            experiment: &self.experiment,
            test_case,
            run: &self.run_id,
        };
        let res = self.rt.block_on(async {
            let pods = interference::desired_pods(&self.kube, &self.cfg, &owner, wanted).await?;
            interference::place(
                &self.kube,
                &self.cfg,
                &self.experiment,
                &pods,
                &watch::Limits::new(&self.cfg, self.timeout(), cancel),
            )
            .await
        });
        if res.is_err() {
            let _ = self.clear_interference();
        }
        res
    }

    /// Checks the experiment's interference pods over `window` from their logs and states; see
    /// [`interference::verify::verify`].
    pub fn verify_interference(
        &self,
        levels: &[interference::verify::Placed],
        window: (std::time::SystemTime, std::time::SystemTime),
        tol: &aefm_interference::verify::Tolerances,
    ) -> Result<Vec<aefm_interference::verify::Finding>, KubeError> {
        self.rt.block_on(interference::verify::verify(
            &self.kube,
            &self.cfg.interference.namespace,
            &self.experiment,
            levels,
            window,
            tol,
        ))
    }

    /// Removes every interference pod of the experiment and waits until they are gone. Cleanup:
    /// not cancellable (the Ctrl-C that stops a run asks for it), but bounded by
    /// `readiness_timeout_secs`.
    pub fn clear_interference(&self) -> Result<usize, KubeError> {
        self.rt.block_on(interference::clear(
            &self.kube,
            &self.cfg.interference.namespace,
            &self.experiment,
            &watch::Limits::cleanup(&self.cfg, self.timeout()),
        ))
    }

    /// Runs a case's `aefm-load` Jobs (one per argument list) with a start barrier, shipping the
    /// script in a ConfigMap and the headers in a Secret, and returns each Job's outcome; see
    /// [`load::run_jobs`]. `load.owner.run` should be [`Cluster::run_id`].
    pub fn run_load_jobs(
        &self,
        load: &load::LoadJobs<'_>,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<load::GeneratorOutcome>, KubeError> {
        self.rt
            .block_on(load::run_jobs(&self.kube, &self.cfg, load, cancelled))
    }

    /// Pod name → owning workload (service) name in the application namespace.
    pub fn pod_services(&self) -> Result<BTreeMap<String, String>, KubeError> {
        self.rt.block_on(owners::pod_services(
            self.kube.client(),
            &self.cfg.namespace,
            None,
        ))
    }

    /// The application's pods with their owning service and node.
    pub fn pod_owners(&self) -> Result<Vec<owners::PodOwner>, KubeError> {
        self.rt.block_on(owners::pod_owners(
            self.kube.client(),
            &self.cfg.namespace,
            None,
        ))
    }

    /// Deletes everything labelled with `experiment` (or everything AEFM manages with `None`).
    pub fn clean(&self, experiment: Option<&str>) -> Result<cleanup::Cleaned, KubeError> {
        self.rt.block_on(cleanup::clean(
            self.kube.client(),
            experiment,
            cleanup::CleanOptions::default(),
        ))
    }

    /// What a second Ctrl-C does before the process exits: issues the deletion of this
    /// experiment's interference pods and load Jobs (with their pods, ConfigMaps and Secrets),
    /// waiting at most 10 s for the API server. Nothing is waited for beyond the requests.
    pub fn abort_cleanup(&self) {
        let client = self.kube.client();
        let work = async {
            let mut out = cleanup::Cleaned::default();
            for component in ["interference", "load"] {
                let sel = format!(
                    "{},{}={component}",
                    cleanup::selector(Some(&self.experiment)),
                    labels::COMPONENT
                );
                if let Err(e) = cleanup::delete_components(client, &sel, &mut out).await {
                    eprintln!("aefm: deleting {component} objects: {e}");
                }
            }
            out
        };
        match self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), work).await })
        {
            Ok(out) => eprintln!("aefm: deleted {} interference/load object(s)", out.deleted.len()),
            Err(_) => eprintln!(
                "aefm: the API server did not answer within 10 s; `aefm clean {}` removes what is left",
                self.experiment
            ),
        }
    }

    /// Prepares the cluster for this run: removes the load objects earlier runs of the experiment
    /// left behind and returns warnings about other experiments' stress pods on the testbed
    /// nodes (they would interfere with every case).
    pub fn prepare_run(&self) -> Result<Vec<String>, KubeError> {
        self.rt.block_on(async {
            let client = self.kube.client();
            let stale = cleanup::remove_stale_runs(client, &self.experiment, &self.run_id).await?;
            for o in &stale.deleted {
                tracing::info!("removed {o}, left by an earlier run of this experiment");
            }
            let foreign =
                cleanup::foreign_stressors(client, &self.experiment, &self.cfg.interference_nodes())
                    .await?;
            Ok(foreign
                .into_iter()
                .map(|p| format!("stress pod {p} is not this experiment's: it interferes with every case (`aefm clean` removes AEFM's)"))
                .collect())
        })
    }
}

/// A fresh run id: 8 lowercase hex digits, valid in DNS names and label values.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A current-thread runtime for the one-shot CLI entry points (`clean`, `auto-config`).
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, KubeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KubeError::Io {
            path: "tokio runtime".into(),
            source: e,
        })
}

/// `aefm clean`: connects with `kubeconfig`/`context` and deletes what `experiment` left behind.
pub fn clean(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
    experiment: Option<&str>,
    opts: cleanup::CleanOptions,
) -> Result<cleanup::Cleaned, KubeError> {
    let rt = current_thread_runtime()?;
    rt.block_on(async {
        let c = client::connect_with(kubeconfig, context).await?;
        cleanup::clean(&c, experiment, opts).await
    })
}

/// `aefm doctor`: connects with the config's `kubernetes:` section and runs every check of
/// [`doctor`] (pulling the images first with `pre_pull`).
pub fn doctor(config: &Config, pre_pull: bool) -> Result<Vec<doctor::Finding>, KubeError> {
    let cfg = section_of(config)?;
    let rt = current_thread_runtime()?;
    rt.block_on(async {
        let c = client::connect(&cfg).await?;
        doctor::diagnose(&c, config, &cfg, pre_pull).await
    })
}

/// `aefm auto-config`: inspects the cluster and returns the proposal (asking on `input`/`output`
/// for missing answers when `interactive`).
pub fn auto_config(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
    answers: autoconfig::Answers,
    interactive: Option<(&mut dyn std::io::BufRead, &mut dyn std::io::Write)>,
) -> Result<(autoconfig::ClusterInfo, autoconfig::Proposal), KubeError> {
    let rt = current_thread_runtime()?;
    let info = rt.block_on(async {
        let c = client::connect_with(kubeconfig, context).await?;
        autoconfig::inspect(&c).await
    })?;
    let proposal = match interactive {
        Some((input, output)) => autoconfig::ask(&info, answers, input, output)?,
        None => autoconfig::propose(&info, &answers)?,
    };
    Ok((info, proposal))
}
