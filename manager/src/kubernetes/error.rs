//! The errors of the Kubernetes backend. Each names the object (kind/namespace/name) or file it is
//! about and, for API failures, the server's answer (HTTP status, reason, message).

use std::path::PathBuf;

/// Everything that can go wrong talking to a cluster or preparing what we send it.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// File (or `default`) we tried.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A file or folder of the YAML repository could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A manifest could not be parsed or rewritten.
    #[error("{}: document {document}: {message}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// 1-based document index in the file.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// A config value does not fit the cluster or the manifests.
    #[error("config {key}: {message}")]
    Config {
        /// Key path, e.g. `kubernetes.replicas.frontend`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The API server answered with an error status.
    #[error("{action} {object}: API server answered {code} {reason}: {message}")]
    Api {
        /// What we tried (`apply`, `delete`, `list`, ...).
        action: String,
        /// `kind/namespace/name` (or a collection).
        object: String,
        /// HTTP status code.
        code: u16,
        /// Machine-readable reason (`Forbidden`, `NotFound`, ...).
        reason: String,
        /// Server message.
        message: String,
    },
    /// The API server could not be reached or its answer not understood.
    #[error("{action} {object}: {message}")]
    Transport {
        /// What we tried.
        action: String,
        /// The object.
        object: String,
        /// Transport error text (connection refused, TLS, decoding).
        message: String,
    },
    /// Objects did not become ready in time; `pods` explains each pod that is not ready.
    #[error("timed out after {secs}s waiting for {objects} to become ready; {}", pods.join("; "))]
    NotReady {
        /// Timeout in seconds.
        secs: u64,
        /// The objects still not ready, `kind/namespace/name`.
        objects: String,
        /// One line per pod that is not ready, with why (image pull, crash loop, pending, ...).
        pods: Vec<String>,
    },
    /// A wait gave up before its timeout because a pod of the objects fails in a way waiting does
    /// not fix (crash loop, image not pullable, unschedulable past the grace, non-zero exit);
    /// `pods` names each such pod with the kubelet's or scheduler's reason.
    #[error("{objects} cannot become ready (gave up after {secs}s): {}", pods.join("; "))]
    Failing {
        /// Seconds waited before giving up.
        secs: u64,
        /// The objects the failing pods belong to, `kind/namespace/name`.
        objects: String,
        /// One line per failing pod: its problem and the rule that made the wait give up.
        pods: Vec<String>,
    },
    /// An object reached a state it cannot recover from (a failed Job, a deleted node).
    #[error("{object} failed: {message}")]
    Failed {
        /// The object.
        object: String,
        /// Why.
        message: String,
    },
    /// The output of a load Job could not be used.
    #[error("load job {job}: {message}")]
    Load {
        /// The Job.
        job: String,
        /// What went wrong.
        message: String,
    },
    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
}

impl KubeError {
    /// Turns a kube client error into [`KubeError::Api`] or [`KubeError::Transport`].
    pub fn from_kube(action: &str, object: impl Into<String>, err: kube::Error) -> KubeError {
        let object = object.into();
        match err {
            kube::Error::Api(status) => KubeError::Api {
                action: action.to_string(),
                object,
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => KubeError::Transport {
                action: action.to_string(),
                object,
                message: error_chain(&other),
            },
        }
    }

    /// HTTP status of an API answer, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The error and all its sources on one line: kube's top-level messages ("ServiceError") alone do
/// not say that the connection was refused.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

/// Whether a kube error is a 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}
