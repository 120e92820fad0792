//! The components an experiment drives, as traits, so backends (local processes, Kubernetes) and
//! users can swap them.
//!
//! Final signatures (stable; the Kubernetes backend implements these):
//!
//! ```text
//! pub trait Deployer: Send {
//!     fn deploy(&mut self, ctx: &Context) -> Result<(), ComponentError>;   // bring the app up, wait until ready
//!     fn endpoint(&self) -> Option<String>;                                  // URL load goes to, if known
//!     fn units(&self) -> Vec<AppUnit>;                                       // processes/pods of the app
//!     fn teardown(&mut self) -> Result<(), ComponentError>;                 // what we started, gone
//! }
//! pub trait InterferenceGenerator: Send {
//!     fn apply(&mut self, ctx: &Context, wanted: &[InterferenceLevel]) -> Result<(), ComponentError>;
//!     fn clear(&mut self) -> Result<(), ComponentError>;
//!     fn units(&self) -> Vec<AppUnit>;
//!     fn verify(&mut self, window: &Window, tol: &Tolerances) -> Vec<Reason>; // stressors' own evidence
//! }
//! pub trait WorkloadGenerator: Send {
//!     fn run(&mut self, ctx: &Context, spec: &LoadSpec, cancel: &CancelToken) -> Result<LoadReport, ComponentError>;
//! }
//! pub trait DataCollector: Send {
//!     fn collect(&mut self, ctx: &Context, case_dir: &Path, window: &Window, report: Option<&LoadReport>)
//!         -> Result<CollectSummary, ComponentError>;
//! }
//! pub struct Components { pub deployer: Box<dyn Deployer>, pub interference: Box<dyn InterferenceGenerator>,
//!                         pub workload: Box<dyn WorkloadGenerator>, pub collector: Box<dyn DataCollector> }
//! ```
//!
//! `LoadSpec`, `CancelToken` and `LoadReport` live in [`crate::load`] (the adapter over
//! `aefm-loadgen`; `LoadReport::raw` holds the loadgen `Report` when it ran). `InterferenceLevel`
//! is [`crate::sweep::InterferenceLevel`] (dimension, label, [`crate::config::StressSpec`]).
//! `Window` is below. Components choose themselves per backend in [`crate::backend::build_components`].

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

pub use crate::context::Context;
pub use crate::load::{CancelToken, LoadReport, LoadSpec};
pub use crate::sweep::InterferenceLevel;

/// An error from a component: names what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Something could not be started (a process, a pod, a connection).
    #[error("{what}: failed to start: {reason}")]
    Start {
        /// What (`app unit front`, `aefm-stress cpu`).
        what: String,
        /// Why.
        reason: String,
    },
    /// Something started but did not become ready in time.
    #[error("{what}: not ready after {waited_s:.1}s: {reason}")]
    NotReady {
        /// What.
        what: String,
        /// How long AEFM waited.
        waited_s: f64,
        /// Last observation.
        reason: String,
    },
    /// A process or resource stopped unexpectedly.
    #[error("{what}: exited unexpectedly: {reason}")]
    Died {
        /// What.
        what: String,
        /// Exit status or reason.
        reason: String,
    },
    /// An external service (Prometheus, Jaeger, the API server) is unreachable or refused.
    #[error("{what} at {url}: {reason}")]
    Unreachable {
        /// What service.
        what: String,
        /// Where AEFM tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// Interrupted (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl ComponentError {
    /// A free-form error.
    pub fn other(msg: impl Into<String>) -> Self {
        ComponentError::Other(msg.into())
    }
}

/// Role of a process or pod AEFM knows about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitRole {
    /// Part of the app under test.
    App,
    /// An interference stressor.
    Interference,
    /// A load generator.
    Load,
}

/// A process or pod: what the collector samples and cleanup removes.
#[derive(Clone, Debug, Serialize)]
pub struct AppUnit {
    /// Unit name (`front`, `back-1`, a pod name).
    pub name: String,
    /// The service it belongs to.
    pub service: String,
    /// Process id, for local units.
    pub pid: Option<u32>,
    /// Node name, for Kubernetes units.
    pub node: Option<String>,
    /// What it is.
    pub role: UnitRole,
}

/// The measured window of a test case (wall clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// When the measured load started (after warm-up).
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

/// What a collector wrote for a case.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Mean CPU use of the app over the window, in percent of one core (summed over app units).
    pub app_cpu_percent: Option<f64>,
    /// Mean CPU, in cores, used over the window by processes that are not the app, the
    /// stressors or AEFM: the host's busy CPU minus every sampled target (clamped at 0). It says
    /// how much else the host was doing while the case was measured (`validity.max_other_cpu`).
    /// On Kubernetes it comes from Prometheus (node exporter minus cAdvisor of our pods on the
    /// app's nodes). `None` where not measured (`noise_error` says why).
    pub other_cpu_cores: Option<f64>,
    /// Why `other_cpu_cores` could not be measured, where it was tried and failed (with
    /// `validity.max_other_cpu` set, such a case is invalid: `noise_unmeasured`).
    pub noise_error: Option<String>,
    /// Sources that failed (`source: error`); a failed Prometheus or Jaeger source makes the
    /// case invalid (`collection_failed`).
    pub errors: Vec<String>,
    /// Completeness of the sources where it is known (`prometheus:<query>` points, `jaeger`
    /// traces against requests sent).
    pub completeness: Vec<(String, aefm_collector::case::Completeness)>,
}

/// Deploys the app and tears it down.
pub trait Deployer: Send {
    /// Brings the app up (init_environment) and waits until it is ready.
    fn deploy(&mut self, ctx: &Context) -> Result<(), ComponentError>;
    /// URL load goes to, if the deployer knows it.
    fn endpoint(&self) -> Option<String>;
    /// Processes or pods of the app.
    fn units(&self) -> Vec<AppUnit>;
    /// Stops everything the deployer started. Safe to call twice.
    fn teardown(&mut self) -> Result<(), ComponentError>;
    /// Checks the app is still up (between cases). Default: yes.
    fn check(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// Runs interference beside the app.
pub trait InterferenceGenerator: Send {
    /// Makes the running stressors equal `wanted` (stops the others) and waits until they run.
    fn apply(&mut self, ctx: &Context, wanted: &[InterferenceLevel]) -> Result<(), ComponentError>;
    /// Stops every stressor. Safe to call twice.
    fn clear(&mut self) -> Result<(), ComponentError>;
    /// Stressors currently running.
    fn units(&self) -> Vec<AppUnit>;
    /// Checks, from each running stressor's own reports, that it ran for the whole measured
    /// `window`, reported no error and reached its target (see
    /// [`aefm_interference::verify::check`]); returns one reason per failed check (codes
    /// `stressor_exited`, `stressor_no_reports`, `stressor_error`, `stressor_below_target`).
    /// Default, for generators that cannot read their stressors' reports: when stressors run, one
    /// `stressor_unverified` reason (their intensity is unknown); none when no stressor runs.
    fn verify(
        &mut self,
        window: &Window,
        tol: &aefm_interference::verify::Tolerances,
    ) -> Vec<crate::validity::Reason> {
        let _ = (window, tol);
        let units = self.units();
        if units.is_empty() {
            return Vec::new();
        }
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        vec![crate::validity::Reason::new(
            "stressor_unverified",
            format!(
                "this interference generator cannot check its stressors ({}): what they \
                 achieved over the window is unknown",
                names.join(", ")
            ),
        )]
    }
}

/// Sends the load of a case.
pub trait WorkloadGenerator: Send {
    /// Runs load as specified (blocking) until done or cancelled; a cancelled run returns the
    /// partial report.
    fn run(
        &mut self,
        ctx: &Context,
        spec: &LoadSpec,
        cancel: &CancelToken,
    ) -> Result<LoadReport, ComponentError>;
}

/// Collects the data of a case into its directory.
pub trait DataCollector: Send {
    /// Called when the measured window starts, so samplers can watch the case. Default: nothing.
    fn begin(&mut self, _ctx: &Context, _units: &[AppUnit]) -> Result<(), ComponentError> {
        Ok(())
    }
    /// Writes the case's data files (after the grace period the collector needs).
    fn collect(
        &mut self,
        ctx: &Context,
        case_dir: &Path,
        window: &Window,
        report: Option<&LoadReport>,
    ) -> Result<CollectSummary, ComponentError>;
    /// Checks external sources (Prometheus, Jaeger) answer, before any load. Default: nothing.
    fn preflight(&mut self, _ctx: &Context) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// The four components of an experiment. Fields are public so handlers can replace them.
pub struct Components {
    /// The app.
    pub deployer: Box<dyn Deployer>,
    /// Interference.
    pub interference: Box<dyn InterferenceGenerator>,
    /// Load.
    pub workload: Box<dyn WorkloadGenerator>,
    /// Data.
    pub collector: Box<dyn DataCollector>,
}
