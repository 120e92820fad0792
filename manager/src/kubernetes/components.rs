//! The Kubernetes backend behind the manager's component traits: a deployer (YAML repository,
//! server-side apply, readiness), an interference generator (stress pods, iperf3 ring), a workload
//! generator (local, or distributed as Jobs with exact histogram merge) and a collector
//! (Prometheus scoped to the namespace and pods, Jaeger for the entrance service, pod → service
//! through owner references). One connection is shared by all four.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Cluster, DeployAction, KubeError, ObjectRef};
use crate::components::{
    AppUnit, CollectSummary, ComponentError, Components, DataCollector, Deployer,
    InterferenceGenerator, UnitRole, Window, WorkloadGenerator,
};
use crate::config::kubernetes::KubernetesConfig;
use crate::config::Config;
use crate::context::Context;
use crate::load::{CancelToken, LoadReport, LoadSpec};
use crate::sweep::InterferenceLevel;

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
    let cfg = super::resolved(section, &config.base_dir);
    cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
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
    fn deploy(&mut self, _ctx: &Context) -> Result<(), ComponentError> {
        let cluster = self.shared.cluster()?;
        self.applied = cluster
            .deploy(DeployAction::from_config(cluster.config()))
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
        match cluster.place_interference(&case, &specs) {
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

/// Load: in this process when one generator suffices, else as Jobs whose reports are merged.
pub struct KubeWorkload {
    shared: Arc<Shared>,
}

/// The `aefm-load` arguments of one generator offering `rate` of `spec`. A script is named by its
/// path inside the Job pod (where its ConfigMap is mounted), its arguments follow `--`.
pub fn load_args(spec: &LoadSpec, rate: f64) -> Vec<String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut args = vec![
        "-t".to_string(),
        spec.threads.max(1).to_string(),
        "-c".into(),
        spec.connections.max(spec.threads.max(1)).to_string(),
        "-d".into(),
        ms(spec.warmup + spec.duration),
        "--warmup".into(),
        ms(spec.warmup),
        "-T".into(),
        ms(spec.timeout),
        "-R".into(),
        format!("{rate}"),
    ];
    for (k, v) in &spec.headers {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    if let Some(script) = &spec.script {
        args.push("-s".into());
        args.push(super::load::script_pod_path(script));
    }
    args.extend(["--json".into(), "-".into(), spec.url.clone()]);
    if spec.script.is_some() && !spec.script_args.is_empty() {
        args.push("--".into());
        args.extend(spec.script_args.iter().cloned());
    }
    args
}

impl WorkloadGenerator for KubeWorkload {
    fn run(
        &mut self,
        ctx: &Context,
        spec: &LoadSpec,
        cancel: &CancelToken,
    ) -> Result<LoadReport, ComponentError> {
        let cfg = &self.shared.cfg;
        if !super::load::is_distributed(cfg, spec.rate) {
            return crate::load::run_local(spec, cancel);
        }
        let cluster = self.shared.cluster()?;
        let n = super::load::generators_needed(cfg, spec.rate);
        let args: Vec<Vec<String>> = super::load::split_rate(spec.rate, n)
            .into_iter()
            .map(|r| load_args(spec, r))
            .collect();
        let case = ctx
            .case
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "case".into());
        let timeout = spec.warmup + spec.duration + Duration::from_secs(cfg.readiness_timeout_secs);
        let logs = cluster
            .run_load_jobs(&case, &args, spec.script.as_deref(), timeout, &|| {
                cancel.is_cancelled()
            })
            .map_err(to_component)?;
        let merged = merge_reports(&logs)?;
        Ok(crate::load::from_loadgen(&merged, spec))
    }
}

/// Parses each Job's `--json` report and merges them (HdrHistograms added exactly).
pub fn merge_reports(logs: &[String]) -> Result<aefm_loadgen::Report, ComponentError> {
    let mut merged: Option<aefm_loadgen::Report> = None;
    for (i, log) in logs.iter().enumerate() {
        // The report is the JSON object on stdout; anything before it (warnings) is skipped.
        let start = log.find('{').unwrap_or(0);
        let r = aefm_loadgen::Report::from_json(&log[start..]).map_err(|e| {
            ComponentError::other(format!("load job {i}: report is not aefm-load JSON: {e}"))
        })?;
        match merged.as_mut() {
            Some(m) => m.merge(&r),
            None => merged = Some(r),
        }
    }
    merged.ok_or_else(|| ComponentError::other("no load job reported"))
}

/// Prometheus and Jaeger per case, scoped to the experiment, plus `pods.csv`.
pub struct KubeCollector {
    shared: Arc<Shared>,
    units: Vec<AppUnit>,
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
        _report: Option<&LoadReport>,
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
        let path = case_dir.join("pods.csv");
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
        let collect = &ctx.config.collect;
        if collect.prometheus.is_none() && collect.jaeger.is_none() {
            return Ok(summary);
        }
        let mut sources = aefm_collector::CaseSources::default();
        if let Some(p) = &collect.prometheus {
            let mut s = aefm_collector::PrometheusSettings::new(p.url.clone());
            s.step = Some(p.step);
            s.grace = p.grace;
            if !p.queries.is_empty() {
                s.queries = p
                    .queries
                    .iter()
                    .map(|(n, q)| aefm_collector::QueryTemplate::range(n.clone(), q.clone()))
                    .collect();
            }
            sources.prometheus = Some(s);
        }
        if let Some(j) = &collect.jaeger {
            let mut s = aefm_collector::JaegerSettings::new(j.url.clone(), j.service.clone());
            s.grace = j.grace;
            sources.jaeger = Some(s);
        }
        let tctx = aefm_collector::TemplateContext {
            namespace: Some(self.shared.cfg.namespace.clone()),
            pod_regex: Some(pod_regex(&units)),
            node: None,
            case: ctx
                .case
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            extra: [("experiment".to_string(), self.shared.experiment.clone())]
                .into_iter()
                .collect(),
        };
        let cw = aefm_collector::Window {
            start: window.start,
            end: window.end,
        };
        let outcome = aefm_collector::collect_case(case_dir, &cw, &tctx, &sources);
        for s in &outcome.sources {
            match &s.result {
                Ok(w) => summary.files.extend(w.iter().map(|w| w.path.clone())),
                Err(e) => summary.errors.push(format!("{}: {e}", s.source)),
            }
        }
        Ok(summary)
    }
}

/// An anchored alternation of the exact pod names (regex metacharacters escaped).
pub fn pod_regex(units: &[AppUnit]) -> String {
    if units.is_empty() {
        return ".+".into();
    }
    units
        .iter()
        .map(|u| {
            u.name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c.to_string()
                    } else {
                        format!("\\\\{c}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_args_are_aefm_load_cli() {
        let spec = LoadSpec {
            url: "http://x:1/".into(),
            rate: 100.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_millis(1500),
            threads: 2,
            connections: 8,
            timeout: Duration::from_secs(2),
            headers: vec![("X-A".into(), "b".into())],
            script: None,
            script_args: vec![],
            cores: None,
        };
        let a = load_args(&spec, 33.0);
        assert_eq!(
            a,
            [
                "-t",
                "2",
                "-c",
                "8",
                "-d",
                "11500ms",
                "--warmup",
                "1500ms",
                "-T",
                "2000ms",
                "-R",
                "33",
                "-H",
                "X-A: b",
                "--json",
                "-",
                "http://x:1/"
            ]
        );
        let scripted = LoadSpec {
            script: Some("/tmp/s/post.lua".into()),
            script_args: vec!["a b".into(), "c".into()],
            headers: vec![],
            ..spec
        };
        let a = load_args(&scripted, 33.0);
        assert_eq!(
            a[12..],
            [
                "-s",
                "/etc/aefm-load/post.lua",
                "--json",
                "-",
                "http://x:1/",
                "--",
                "a b",
                "c"
            ]
        );
    }

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
