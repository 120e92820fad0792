//! Chooses the components for the configured backend (the one place backends are matched).

use crate::collect::LocalCollector;
use crate::components::Components;
use crate::config::{Backend, Config};
use crate::load::LocalWorkload;
use crate::local::{LocalDeployer, LocalInterference};

/// Errors choosing components.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be built from this config.
    #[error("backend {backend}: {message}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Why.
        message: String,
    },
}

/// The components of `cfg`'s backend.
pub fn build_components(cfg: &Config) -> Result<Components, BackendError> {
    match cfg.backend {
        Backend::Local => Ok(Components {
            deployer: Box::new(LocalDeployer::new()),
            interference: Box::new(LocalInterference::new()),
            workload: Box::new(LocalWorkload),
            collector: Box::new(LocalCollector::new()),
        }),
        Backend::Kubernetes => {
            crate::kubernetes::components::build(cfg).map_err(|message| BackendError::Unavailable {
                backend: "kubernetes".into(),
                message,
            })
        }
    }
}
