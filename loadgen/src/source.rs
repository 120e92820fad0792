//! Where requests come from.
//!
//! A run sends *batches*: one or more complete HTTP/1.1 requests written back to back (more than
//! one only when a wrk script pipelines). Each worker thread owns one [`RequestSource`], built on
//! that thread, so a source never needs to be `Send` (a Lua state is not) and no lock is shared
//! between threads on the hot path.
//!
//! Three kinds of source exist:
//! - the static request built from the URL and `-H` headers (wrk's default, no script);
//! - a wrk Lua script (`crate::script`), which also takes part in the run's `setup` and `done`
//!   phases through [`SourceFactory`];
//! - a Rust generator supplied by an embedding program ([`Workload::Generator`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

/// One write on a connection: one or more complete HTTP requests, back to back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The exact bytes to write on the wire.
    pub bytes: Bytes,
    /// How many requests `bytes` holds (the pipeline depth); at least 1.
    pub depth: usize,
}

/// A response as handed to [`RequestSource::on_response`].
#[derive(Debug)]
pub struct Response<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// Header names as received, with their values (a repeated header appears twice).
    pub headers: &'a [(String, String)],
    /// The body, de-chunked.
    pub body: &'a [u8],
}

/// What a worker thread knows about itself when it builds its source.
#[derive(Clone, Debug)]
pub struct ThreadContext {
    /// Index of the thread, from 0.
    pub index: usize,
    /// Number of threads in the run.
    pub threads: usize,
    /// The address this thread connects to.
    pub addr: SocketAddr,
}

/// The per-thread producer of requests. Lives and dies on one worker thread.
pub trait RequestSource {
    /// The next batch to send. Called for every batch when the source is dynamic.
    fn next_batch(&mut self) -> Result<Batch, SourceError>;

    /// Whether responses (headers and body) must be collected and passed to
    /// [`RequestSource::on_response`]. Collecting costs time, so the default is no.
    fn wants_responses(&self) -> bool {
        false
    }

    /// Called for each complete response when [`RequestSource::wants_responses`] is true.
    fn on_response(&mut self, _response: &Response<'_>) -> Result<(), SourceError> {
        Ok(())
    }

    /// True once the source asked its thread to stop (wrk's `thread:stop()`).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// A closure that builds a thread's [`RequestSource`] on that thread.
pub type GeneratorFn =
    dyn Fn(&ThreadContext) -> Result<Box<dyn RequestSource>, SourceError> + Send + Sync;

/// What the run sends: the spec's choice of request source.
#[derive(Clone, Default)]
pub enum Workload {
    /// The static request built from the URL and the headers (`GET` unless changed).
    #[default]
    Static,
    /// A wrk Lua script and the words after `--` (`args[1..]` in `init(args)`).
    Script {
        /// Path of the script file.
        path: PathBuf,
        /// Script arguments.
        args: Vec<String>,
    },
    /// A Rust generator, called once per worker thread on that thread.
    Generator(Arc<GeneratorFn>),
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Static => f.write_str("Static"),
            Workload::Script { path, args } => f
                .debug_struct("Script")
                .field("path", path)
                .field("args", args)
                .finish(),
            Workload::Generator(_) => f.write_str("Generator(..)"),
        }
    }
}

/// An error raised by a request source: a script error, or a request that is not valid HTTP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// One line, naming the file and line where there is one (`script.lua:12: ...`).
    pub message: String,
}

impl SourceError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
