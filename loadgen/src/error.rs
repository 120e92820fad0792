//! The one error type of a run ([`Error`]): everything that can stop [`crate::Run::prepare`],
//! [`crate::Run::execute`] or the checks of [`crate::check`] before or during the load. Its own
//! module so that the run, the workers and the checks share it without depending on each other.

use crate::metrics::MetricsError;
use crate::source::SourceError;
use crate::spec::SpecError;

/// Why a run could not start or was stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The host name does not resolve.
    #[error("unable to resolve {host}:{port} {reason}")]
    Resolve {
        /// Host from the URL.
        host: String,
        /// Port.
        port: u16,
        /// Resolver message.
        reason: String,
    },
    /// No address of the host accepts connections.
    #[error("unable to connect to {host}:{port} {reason}")]
    Connect {
        /// Host from the URL.
        host: String,
        /// Port.
        port: u16,
        /// The last connect error.
        reason: String,
    },
    /// A request source (script or generator) failed: at load, or during the run. The message
    /// is the source's one line (not repeated as a cause).
    #[error("{0}")]
    Source(SourceError),
    /// A worker thread could not be set up.
    #[error("worker thread {0}: {1}")]
    Thread(usize, String),
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The test TLS handshake with the target failed or timed out (an https URL on a
    /// plain-HTTP port, or a server that never answers the handshake). The message names the
    /// address.
    #[error("{0}")]
    TlsHandshake(String),
    /// The open-file limit is too low for the connections.
    #[error(transparent)]
    OpenFiles(#[from] crate::system::OpenFilesError),
    /// The metrics endpoint could not be opened (see [`crate::metrics`]); the message names the
    /// address.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// [`crate::Run::execute`] was called twice.
    #[error("this run has already been executed")]
    AlreadyExecuted,
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::Source(e)
    }
}
