//! The workload generator of the Kubernetes backend: load from this process when one generator
//! suffices, else distributed as Jobs ([`crate::kubernetes::load`]) whose reports are merged exactly;
//! a generator without a report is named in the case's load report (and its verdict).

use std::sync::Arc;

use super::{to_component, Shared};
use crate::components::{ComponentError, WorkloadGenerator};
use crate::config::kubernetes::KubernetesConfig;
use crate::context::Context;
use crate::kubernetes::load as dist;
use crate::load::{CancelToken, LoadReport, LoadSpec};

/// Load: in this process when one generator suffices, else as Jobs whose reports are merged.
pub struct KubeWorkload {
    pub(super) shared: Arc<Shared>,
}

/// The `aefm-load` arguments of one generator offering `rate` of `spec`, with `flags` (start
/// barrier, report frames, header file). Headers are never arguments: they travel in a Secret
/// named by `--header-file`. A script is named by its path inside the Job pod (where its
/// ConfigMap is mounted), its arguments follow `--`.
pub fn load_args(
    spec: &LoadSpec,
    rate: f64,
    job: usize,
    flags: &aefm_loadgen::cli::ControlFlags,
) -> Vec<String> {
    let threads = spec.threads.max(1);
    aefm_loadgen::cli::LoadArgs {
        threads,
        connections: spec.connections.max(threads),
        // aefm-load's `-d` counts the warm-up in.
        duration: spec.warmup + spec.duration,
        warmup: spec.warmup,
        timeout: spec.timeout,
        script: spec
            .script
            .as_deref()
            .map(|s| dist::script_pod_path(s).into()),
        script_args: spec.script_args.clone(),
        traceparent: spec.traceparent,
        distribution: spec.distribution,
        seed: job_seed(spec.seed, job),
        control: flags.clone(),
        ..aefm_loadgen::cli::LoadArgs::new(spec.url.clone(), rate)
    }
    .to_args()
}

/// The seed of load Job `job`: the experiment's seed for the first (so one Job sends what a local
/// run would), a stream of it for each other, so that Jobs with random gaps do not send in
/// lockstep.
pub fn job_seed(seed: u64, job: usize) -> u64 {
    /// Above the streams a run gives its own arrival processes.
    const JOB_STREAMS: u64 = 1 << 56;
    match job {
        0 => seed,
        j => aefm_loadgen::schedule::stream_seed(seed, JOB_STREAMS + j as u64),
    }
}

/// The flags every load Job runs with: the control port of the start barrier, report frames,
/// and the header file when there are headers.
pub fn job_flags(cfg: &KubernetesConfig, spec: &LoadSpec) -> aefm_loadgen::cli::ControlFlags {
    use dist::{HEADERS_DIR, HEADERS_KEY};
    aefm_loadgen::cli::ControlFlags {
        control_port: Some(dist::CONTROL_PORT),
        start_at: None,
        start_timeout: Some(dist::pod_start_timeout(cfg)),
        header_file: (!spec.headers.is_empty())
            .then(|| format!("{HEADERS_DIR}/{HEADERS_KEY}").into()),
        report_frame: true,
    }
}

impl WorkloadGenerator for KubeWorkload {
    fn run(
        &mut self,
        ctx: &Context,
        spec: &LoadSpec,
        cancel: &CancelToken,
    ) -> Result<LoadReport, ComponentError> {
        let cfg = &self.shared.cfg;
        if !dist::is_distributed(cfg, spec.rate) {
            return crate::load::run_local(spec, cancel);
        }
        let cluster = self.shared.cluster()?;
        let n = dist::generators_needed(cfg, spec.rate);
        let flags = job_flags(cfg, spec);
        let args: Vec<Vec<String>> = dist::split_rate(spec.rate, n)
            .into_iter()
            .enumerate()
            .map(|(job, r)| load_args(spec, r, job, &flags))
            .collect();
        let case = ctx
            .case
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "case".into());
        let jobs = dist::LoadJobs {
            owner: dist::Owner {
                experiment: &self.shared.experiment,
                test_case: &case,
                run: cluster.run_id(),
            },
            args_per_job: &args,
            script: spec.script.as_deref(),
            headers: &spec.headers,
            run_time: spec.warmup + spec.duration,
        };
        let outcomes = cluster
            .run_load_jobs(&jobs, &|| cancel.is_cancelled())
            .map_err(to_component)?;
        let merged = merge_reports(&outcomes)?;
        if let Some(s) = merged.start_spread_s {
            tracing::info!(
                generators = n,
                start_spread_ms = format!("{:.1}", s * 1e3),
                "distributed load merged"
            );
        }
        let mut report = crate::load::from_loadgen(&merged.report, spec);
        report.start_spread_s = merged.start_spread_s;
        report.failed_generators = merged.failed;
        Ok(report)
    }
}

/// The generators' reports merged, with what the verdict needs to know about the merge.
#[derive(Debug)]
pub struct Merged {
    /// Every report that arrived, merged exactly (HdrHistograms added, seconds by wall clock).
    pub report: aefm_loadgen::Report,
    /// Latest start minus earliest among the reports, seconds (`None` with one report).
    pub start_spread_s: Option<f64>,
    /// The generators without a report: `who: why`.
    pub failed: Vec<String>,
}

/// Merges the reports of the generators that delivered one; the others are listed in
/// [`Merged::failed`]. An error only when none did (nothing was measured).
pub fn merge_reports(outcomes: &[dist::GeneratorOutcome]) -> Result<Merged, ComponentError> {
    let mut merged: Option<aefm_loadgen::Report> = None;
    let mut failed = Vec::new();
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut count = 0;
    for o in outcomes {
        match &o.report {
            Ok(r) => {
                count += 1;
                first = first.min(r.start_time);
                last = last.max(r.start_time);
                match merged.as_mut() {
                    Some(m) => m.merge(r),
                    None => merged = Some(r.clone()),
                }
            }
            Err(why) => failed.push(format!("{}: {why}", o.describe())),
        }
    }
    match merged {
        Some(report) => Ok(Merged {
            report,
            start_spread_s: (count > 1).then_some(last - first),
            failed,
        }),
        None => Err(ComponentError::other(format!(
            "no load generator reported: {}",
            if failed.is_empty() {
                "no load Job ran".to_string()
            } else {
                failed.join("; ")
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn load_args_are_aefm_load_cli_and_carry_no_header_values() {
        let cfg: KubernetesConfig = serde_yaml::from_str("namespace: a\nyaml_repo: r\n").unwrap();
        let spec = LoadSpec {
            url: "http://x:1/".into(),
            rate: 100.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_millis(1500),
            threads: 2,
            connections: 8,
            timeout: Duration::from_secs(2),
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            script: Some("/tmp/s/post.lua".into()),
            script_args: vec!["a b".into(), "c".into()],
            cores: None,
            traceparent: 0.25,
            distribution: aefm_loadgen::schedule::Distribution::Exp,
            seed: 7,
        };
        let flags = job_flags(&cfg, &spec);
        let a = load_args(&spec, 33.0, 2, &flags);
        let tp = a
            .iter()
            .position(|x| x == "--traceparent")
            .expect("--traceparent");
        assert_eq!(a[tp + 1], "0.25");
        let d = a.iter().position(|x| x == "-D").expect("-D");
        assert_eq!(a[d + 1], "exp");
        // Job 2 sends on its own stream of the seed; job 0 on the seed itself.
        let s = a.iter().position(|x| x == "--seed").expect("--seed");
        assert_eq!(a[s + 1], job_seed(7, 2).to_string());
        assert_ne!(job_seed(7, 2), 7);
        assert_eq!(job_seed(7, 0), 7);
        assert!(!a.iter().any(|x| x.contains("s3cret")), "{a:?}");
        // What the manager writes is what aefm-load reads (the header file comes from the pod).
        let dir = tempfile::tempdir().unwrap();
        let hf = dir.path().join("headers");
        std::fs::write(&hf, "Authorization: Bearer s3cret\n").unwrap();
        let mut local = vec!["aefm-load".to_string()];
        local.extend(a.iter().map(|x| {
            if x.starts_with(dist::HEADERS_DIR) {
                hf.display().to_string()
            } else {
                x.clone()
            }
        }));
        let script = dir.path().join("post.lua");
        std::fs::write(&script, "request = function() return wrk.format() end\n").unwrap();
        let local: Vec<String> = local
            .into_iter()
            .map(|x| {
                if x == "/etc/aefm-load/post.lua" {
                    script.display().to_string()
                } else {
                    x
                }
            })
            .collect();
        match aefm_loadgen::cli::parse(&local).unwrap() {
            aefm_loadgen::cli::Command::Run {
                spec: s, control, ..
            } => {
                assert_eq!(s.rate, 33.0);
                assert_eq!((s.threads, s.connections), (2, 8));
                assert_eq!(s.duration, Duration::from_millis(11_500));
                assert_eq!(s.warmup, Duration::from_millis(1500));
                assert_eq!(s.headers, spec.headers);
                assert_eq!(control.control_port, Some(dist::CONTROL_PORT));
                assert!(control.report_frame);
                assert_eq!(control.start_timeout, flags.start_timeout);
                match s.workload {
                    aefm_loadgen::source::Workload::Script { args, .. } => {
                        assert_eq!(args, ["a b", "c"])
                    }
                    _ => panic!("script expected"),
                }
            }
            other => panic!("{other:?}"),
        }
        let plain = LoadSpec {
            headers: vec![],
            script: None,
            ..spec
        };
        let a = load_args(&plain, 10.0, 0, &job_flags(&cfg, &plain));
        assert!(!a.iter().any(|x| x == "--header-file"), "{a:?}");
        assert_eq!(a.last().unwrap(), "http://x:1/");
    }

    #[test]
    fn one_failed_generator_keeps_the_others_reports() {
        use dist::GeneratorOutcome;
        let report = |start: f64| aefm_loadgen::Report {
            tool: "t".into(),
            url: "http://x/".into(),
            threads: 1,
            connections: 1,
            model: aefm_loadgen::Model::Wrk2,
            warmup_us: 0,
            start_time: start,
            summary: aefm_loadgen::Summary {
                requests: 7,
                duration_us: 1_000_000,
                ..Default::default()
            },
            corrected: Default::default(),
            uncorrected: Default::default(),
            send_lag: Default::default(),
            requests_per_thread: Default::default(),
            calibration: vec![],
            per_second: vec![],
            traced: None,
        };
        let outcomes = vec![
            GeneratorOutcome {
                job: "j0".into(),
                pod: Some("p0".into()),
                report: Ok(report(100.0)),
            },
            GeneratorOutcome {
                job: "j1".into(),
                pod: Some("p1".into()),
                report: Err("Evicted".into()),
            },
            GeneratorOutcome {
                job: "j2".into(),
                pod: Some("p2".into()),
                report: Ok(report(100.02)),
            },
        ];
        let m = merge_reports(&outcomes).unwrap();
        assert_eq!(m.failed, ["load pod p1: Evicted"]);
        assert!((m.start_spread_s.unwrap() - 0.02).abs() < 1e-6);
        assert_eq!(m.report.summary.requests, 2 * report(0.0).summary.requests);
        let none = vec![GeneratorOutcome {
            job: "j".into(),
            pod: None,
            report: Err("Unschedulable".into()),
        }];
        let e = merge_reports(&none).unwrap_err().to_string();
        assert!(e.contains("load Job j: Unschedulable"), "{e}");
    }
}
