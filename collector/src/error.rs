//! The collector's error type: every variant names the source, the query or file, and the window.

use std::path::PathBuf;

/// Everything that can go wrong while collecting one source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached (connection refused, DNS, timeout) after all retries.
    #[error("{origin}: cannot reach {url} ({what}, window {window}) after {attempts} attempt(s): {message}")]
    Unreachable {
        /// Which source: `prometheus`, `jaeger`, `scrape`.
        origin: &'static str,
        /// The URL requested.
        url: String,
        /// The query or request, for the reader.
        what: String,
        /// The window, as `start..end` in RFC 3339.
        window: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        message: String,
    },
    /// The server answered with a 4xx or 5xx status.
    #[error("{origin}: {url} answered HTTP {status} for {what} (window {window}): {body}")]
    Http {
        /// Which source.
        origin: &'static str,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The query or request.
        what: String,
        /// The window.
        window: String,
        /// The server's error message (Prometheus `errorType: error`, Jaeger `errors[].msg`) or body.
        body: String,
    },
    /// The answer was not the JSON (or text) the API documents.
    #[error("{origin}: malformed answer from {url} for {what} (window {window}): {message}")]
    Malformed {
        /// Which source.
        origin: &'static str,
        /// The URL or file read.
        url: String,
        /// The query or request.
        what: String,
        /// The window.
        window: String,
        /// The parser's message.
        message: String,
    },
    /// The query succeeded but returned nothing.
    #[error("{origin}: empty result for {what} (window {window})")]
    Empty {
        /// Which source.
        origin: &'static str,
        /// The query or request.
        what: String,
        /// The window.
        window: String,
    },
    /// A query template used a variable that has no value in this test case.
    #[error("query template `{name}`: variable `{variable}` is not set{hint}")]
    Template {
        /// The query's name.
        name: String,
        /// The variable missing or unknown.
        variable: String,
        /// Extra explanation (e.g. "unknown variable").
        hint: String,
    },
    /// The window or a setting is unusable.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid (`window`, `time`, `duration`, `step`...).
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// `reading` or `writing`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A text report (wrk, wrk2, loadgen JSON) could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file (or `<input>`).
        path: String,
        /// 1-based line (0 when not line-based).
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A process to sample does not exist or /proc is unreadable.
    #[error("host: {0}")]
    Host(String),
    /// A custom source (a handler's own collection) failed.
    #[error("custom collection {name}: {message}")]
    Custom {
        /// The source's name.
        name: String,
        /// Why it failed.
        message: String,
    },
    /// The OTLP receiver could not write a window's traces.
    #[error(transparent)]
    Otlp(Box<crate::otlp::OtlpError>),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
