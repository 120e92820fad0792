//! The Kubernetes backend behind the manager's component traits: a deployer (YAML repository,
//! server-side apply, readiness), an interference generator (stress pods, iperf3 ring), a workload
//! generator (local, or distributed as Jobs with exact histogram merge) and a collector
//! (Prometheus scoped to the namespace and pods, Jaeger for the entrance service, pod → service
//! through owner references). One connection is shared by all four.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Cluster, DeployAction, KubeError, ObjectRef};
use crate::components::{
    AppUnit, CollectSummary, ComponentError, Components, DataCollector, Deployer,
    InterferenceGenerator, UnitRole, Window,
};
use crate::config::kubernetes::KubernetesConfig;
use crate::config::Config;
use crate::context::Context;
use crate::load::LoadReport;
use crate::sweep::InterferenceLevel;

mod workload;
pub use workload::{job_flags, load_args, merge_reports, KubeWorkload, Merged};

/// The connection, made on first use so building components never touches the network.
struct Shared {
    cfg: KubernetesConfig,
    experiment: String,
    cluster: Mutex<Option<Arc<Cluster>>>,
}

impl Shared {
    fn cluster(&self) -> Result<Arc<Cluster>, ComponentError> {
        let mut slot = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Cluster::connect(&self.cfg, &self.experiment).map_err(to_component)?);
        for w in c.prepare_run().map_err(to_component)? {
            tracing::warn!("{w}");
        }
        // A second Ctrl-C exits at once: it must still take our pods and Jobs off the cluster.
        let on_abort = c.clone();
        crate::signals::on_abort(move || on_abort.abort_cleanup());
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Maps our errors onto the manager's, keeping the full message (object and API answer).
fn to_component(e: KubeError) -> ComponentError {
    match e {
        KubeError::NotReady {
            secs,
            objects,
            pods,
        }
        | KubeError::Failing {
            secs,
            objects,
            pods,
        } => ComponentError::NotReady {
            what: objects,
            waited_s: secs as f64,
            reason: pods.join("; "),
        },
        KubeError::Cancelled => ComponentError::Cancelled,
        other => ComponentError::other(format!("kubernetes: {other}")),
    }
}

/// The four components of the Kubernetes backend for `config`.
pub fn build(config: &Config) -> Result<Components, String> {
    let section = config
        .kubernetes
        .as_ref()
        .ok_or("the `kubernetes:` section is missing")?;
    let mut cfg = super::resolved(section, &config.base_dir);
    cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
    super::interference::set_deadline(&mut cfg, config);
    let shared = Arc::new(Shared {
        cfg,
        experiment: config.name.clone(),
        cluster: Mutex::new(None),
    });
    Ok(Components {
        deployer: Box::new(KubeDeployer {
            shared: shared.clone(),
            applied: Vec::new(),
            endpoint: config.load.url.clone(),
            seen: BTreeMap::new(),
        }),
        interference: Box::new(KubeInterference {
            shared: shared.clone(),
            placed: Vec::new(),
            levels: Vec::new(),
        }),
        workload: Box::new(KubeWorkload {
            shared: shared.clone(),
        }),
        collector: Box::new(KubeCollector {
            shared,
            units: Vec::new(),
            otlp: None,
        }),
    })
}

/// Deploys the application from the YAML repository.
pub struct KubeDeployer {
    shared: Arc<Shared>,
    applied: Vec<ObjectRef>,
    endpoint: Option<String>,
    /// Restart counts of the app's pods at the last check (pod name -> restarts).
    seen: BTreeMap<String, i32>,
}

impl Deployer for KubeDeployer {
    fn deploy(&mut self, ctx: &Context) -> Result<(), ComponentError> {
        let cluster = self.shared.cluster()?;
        self.applied = cluster
            .deploy(DeployAction::from_config(cluster.config()), &ctx.cancel)
            .map_err(to_component)?;
        self.seen.clear();
        Ok(())
    }

    fn endpoint(&self) -> Option<String> {
        self.shared
            .cfg
            .entrypoint
            .clone()
            .or_else(|| self.endpoint.clone())
    }

    fn units(&self) -> Vec<AppUnit> {
        let Ok(cluster) = self.shared.cluster() else {
            return Vec::new();
        };
        cluster
            .pod_owners()
            .unwrap_or_default()
            .into_iter()
            .map(|p| AppUnit {
                name: p.pod,
                service: p.service,
                pid: None,
                node: p.node,
                role: UnitRole::App,
            })
            .collect()
    }

    /// Every app pod seen at the last check is still there, running, and has not restarted
    /// since: a pod that restarted or vanished during a case makes that case invalid.
    fn check(&mut self) -> Result<(), ComponentError> {
        let cluster = self.shared.cluster()?;
        let pods = cluster.pod_owners().map_err(to_component)?;
        let now: BTreeMap<String, i32> = pods
            .iter()
            .filter(|p| p.phase != "Succeeded")
            .map(|p| (p.pod.clone(), p.restarts))
            .collect();
        let mut problems: Vec<String> = pods
            .iter()
            .filter(|p| p.phase != "Running" && p.phase != "Succeeded")
            .map(|p| format!("pod {} is {}", p.pod, or_unknown(&p.phase)))
            .collect();
        for (pod, before) in &self.seen {
            match now.get(pod) {
                None => problems.push(format!("pod {pod} is gone")),
                Some(after) if after > before => problems.push(format!(
                    "pod {pod} restarted ({before} -> {after} restarts)"
                )),
                Some(_) => {}
            }
        }
        self.seen = now;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ComponentError::Died {
                what: format!("app in namespace {}", cluster.config().namespace),
                reason: problems.join("; "),
            })
        }
    }

    fn teardown(&mut self) -> Result<(), ComponentError> {
        // The application stays deployed unless asked (it is expensive to bring up and the next
        // experiment usually reuses it); `aefm clean` removes it too.
        if self.shared.cfg.actions.teardown && !self.applied.is_empty() {
            let cluster = self.shared.cluster()?;
            cluster.teardown(&self.applied).map_err(to_component)?;
            self.applied.clear();
        }
        Ok(())
    }
}

fn or_unknown(phase: &str) -> &str {
    if phase.is_empty() {
        "in no phase yet"
    } else {
        phase
    }
}

/// Interference pods for the levels of each case.
pub struct KubeInterference {
    shared: Arc<Shared>,
    placed: Vec<ObjectRef>,
    /// The levels placed, for their checks.
    levels: Vec<super::interference::verify::Placed>,
}

impl InterferenceGenerator for KubeInterference {
    fn apply(&mut self, ctx: &Context, wanted: &[InterferenceLevel]) -> Result<(), ComponentError> {
        let cluster = self.shared.cluster()?;
        if wanted.is_empty() {
            return self.clear();
        }
        let case = ctx
            .case
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "case".into());
        let specs: Vec<_> = wanted.iter().map(|l| l.spec.clone()).collect();
        match cluster.place_interference(&case, &specs, &ctx.cancel) {
            Ok(refs) => {
                self.placed = refs;
                self.levels = wanted
                    .iter()
                    .map(|l| super::interference::verify::Placed {
                        label: l.label.clone(),
                        kind: l.spec.kind().to_string(),
                        stressor: l.spec.in_pod().stressor,
                    })
                    .collect();
                Ok(())
            }
            Err(e) => {
                self.placed.clear();
                self.levels.clear();
                Err(to_component(e))
            }
        }
    }

    fn clear(&mut self) -> Result<(), ComponentError> {
        let cluster = self.shared.cluster()?;
        cluster.clear_interference().map_err(to_component)?;
        self.placed.clear();
        self.levels.clear();
        Ok(())
    }

    /// Each placed pod judged from its log (read with timestamps) and its state.
    fn verify(
        &mut self,
        window: &Window,
        tol: &aefm_interference::verify::Tolerances,
    ) -> Vec<crate::validity::Reason> {
        if self.levels.is_empty() {
            return Vec::new();
        }
        let found = self
            .shared
            .cluster()
            .map_err(|e| e.to_string())
            .and_then(|c| {
                c.verify_interference(&self.levels, (window.start, window.end), tol)
                    .map_err(|e| e.to_string())
            });
        match found {
            Ok(findings) => findings
                .into_iter()
                .map(|f| crate::validity::Reason::new(f.code, f.message))
                .collect(),
            // Unread evidence is no evidence: the case cannot be trusted.
            Err(e) => vec![crate::validity::Reason::new(
                "stressor_unverified",
                format!("cannot read the interference pods' logs: {e}"),
            )],
        }
    }

    fn units(&self) -> Vec<AppUnit> {
        self.placed
            .iter()
            .map(|r| AppUnit {
                name: r.name.clone(),
                service: "interference".into(),
                pid: None,
                node: None,
                role: UnitRole::Interference,
            })
            .collect()
    }
}

impl Drop for KubeInterference {
    /// The last line of defence: interference never outlives the experiment, even when the
    /// manager unwinds without calling `clear`.
    fn drop(&mut self) {
        if !self.placed.is_empty() {
            if let Ok(cluster) = self.shared.cluster() {
                let _ = cluster.clear_interference();
            }
        }
    }
}

/// The file mapping each app pod to its service and node, in every case directory.
pub const POD_MAP: &str = "pod_map.csv";

/// Prometheus and Jaeger per case, scoped to the experiment, plus [`POD_MAP`].
pub struct KubeCollector {
    shared: Arc<Shared>,
    units: Vec<AppUnit>,
    /// The OTLP receiver (`collect.otlp`), started by the preflight.
    otlp: Option<aefm_collector::case::OtlpSource>,
}

impl DataCollector for KubeCollector {
    fn begin(&mut self, _ctx: &Context, units: &[AppUnit]) -> Result<(), ComponentError> {
        self.units = units
            .iter()
            .filter(|u| u.role == UnitRole::App)
            .cloned()
            .collect();
        Ok(())
    }

    fn collect(
        &mut self,
        ctx: &Context,
        case_dir: &Path,
        window: &Window,
        report: Option<&LoadReport>,
    ) -> Result<CollectSummary, ComponentError> {
        let mut summary = CollectSummary::default();
        std::fs::create_dir_all(case_dir)
            .map_err(|e| ComponentError::other(format!("{}: {e}", case_dir.display())))?;
        // Pods as they are now, mapped to services through owner references.
        let units = match self
            .shared
            .cluster()
            .and_then(|c| c.pod_owners().map_err(to_component))
        {
            Ok(p) => p
                .into_iter()
                .map(|p| AppUnit {
                    name: p.pod,
                    service: p.service,
                    pid: None,
                    node: p.node,
                    role: UnitRole::App,
                })
                .collect(),
            Err(e) => {
                summary.errors.push(format!("listing pods: {e}"));
                self.units.clone()
            }
        };
        // Not `pods.csv`: that name is the trace statistics table (microservice, pod).
        let path = case_dir.join(POD_MAP);
        let mut text = String::from("pod,service,node\n");
        for u in &units {
            text.push_str(&format!(
                "{},{},{}\n",
                u.name,
                u.service,
                u.node.clone().unwrap_or_default()
            ));
        }
        match std::fs::write(&path, text) {
            Ok(()) => summary.files.push(path),
            Err(e) => summary.errors.push(format!("{}: {e}", path.display())),
        }
        let mut tctx = crate::collect::template_context(ctx);
        tctx.namespace = Some(self.shared.cfg.namespace.clone());
        tctx.pod_regex = Some(pod_regex(&units));
        tctx.extra
            .insert("experiment".into(), self.shared.experiment.clone());
        let nodes: Vec<&str> = units.iter().filter_map(|u| u.node.as_deref()).collect();
        tctx.extra.insert(
            "nodes".into(),
            super::noise::names_regex(nodes.iter().copied()),
        );
        tctx.extra
            .insert("namespaces".into(), our_namespaces(&self.shared.cfg));
        let otlp = self.otlp.as_ref();
        crate::collect::collect_external(ctx, case_dir, window, report, &tctx, otlp, &mut summary);
        // After the external sources: their grace has let the last scrapes land.
        let prom = ctx.config.collect.prometheus.as_ref();
        if let Some((p, q)) = prom.and_then(|p| p.noise.as_ref().map(|q| (p, q))) {
            let w = aefm_collector::Window {
                start: window.start,
                end: window.end,
            };
            match super::noise::measure(p, q, &tctx, &w, &nodes) {
                Ok(cores) => summary.other_cpu_cores = Some(cores),
                Err(e) => summary.noise_error = Some(e),
            }
        }
        Ok(summary)
    }

    fn preflight(&mut self, ctx: &Context) -> Result<(), ComponentError> {
        self.otlp = crate::collect::preflight_sources(ctx)?;
        Ok(())
    }
}

/// The namespaces our pods run in (the app's, the stressors', the load Jobs'), as a regex
/// alternation for query templates (`{{namespaces}}`).
fn our_namespaces(cfg: &KubernetesConfig) -> String {
    let load = super::load::job::load_namespace(cfg);
    super::noise::names_regex([
        cfg.namespace.as_str(),
        cfg.interference.namespace.as_str(),
        load.as_str(),
    ])
}

/// An anchored alternation of the exact pod names (regex metacharacters escaped).
pub fn pod_regex(units: &[AppUnit]) -> String {
    super::noise::names_regex(units.iter().map(|u| u.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_of_pods() {
        let u = |n: &str| AppUnit {
            name: n.into(),
            service: "s".into(),
            pid: None,
            node: None,
            role: UnitRole::App,
        };
        assert_eq!(pod_regex(&[u("a-1"), u("b-2")]), "a-1|b-2");
        assert_eq!(pod_regex(&[]), ".+");
    }
}
