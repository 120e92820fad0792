//! Each load pod's report, read from its log: `aefm-load --report-frame` writes it as marked
//! frame lines (base64 of gzip, see `aefm_loadgen::frame`), so warnings on stderr and a script's
//! `print` output in the same log cannot be mistaken for it, and it stays small next to the
//! kubelet's log size limit.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::pods::{GenState, Generator};

/// What one generator contributed.
#[derive(Debug)]
pub struct GeneratorOutcome {
    /// Job name.
    pub job: String,
    /// Its pod, when one was seen.
    pub pod: Option<String>,
    /// The pod's report, or why there is none (failed, evicted, never started, unreadable log).
    pub report: Result<aefm_loadgen::Report, String>,
}

impl GeneratorOutcome {
    /// `load pod <name>` (or the Job) for messages.
    pub fn describe(&self) -> String {
        match &self.pod {
            Some(p) => format!("load pod {p}"),
            None => format!("load Job {}", self.job),
        }
    }
}

/// The outcome of one generator: its report when its pod succeeded and its log holds one.
pub async fn outcome(pods: &Api<Pod>, g: &Generator) -> GeneratorOutcome {
    let report = match (&g.state, &g.pod) {
        (GenState::Succeeded, Some(pod)) => read(pods, pod).await,
        (GenState::Failed(why), _) => Err(why.clone()),
        (other, _) => Err(format!("did not finish ({other:?})")),
    };
    GeneratorOutcome {
        job: g.job.clone(),
        pod: g.pod.clone(),
        report,
    }
}

async fn read(pods: &Api<Pod>, pod: &str) -> Result<aefm_loadgen::Report, String> {
    let params = LogParams {
        container: Some("load".into()),
        ..Default::default()
    };
    let log = pods
        .logs(pod, &params)
        .await
        .map_err(|e| format!("its log cannot be read: {e}"))?;
    aefm_loadgen::frame::decode(&log).map_err(|e| e.to_string())
}
