//! The static request (wrk's default without a script) and the per-thread seeds from which each
//! worker builds its [`RequestSource`].

use std::sync::Arc;

use bytes::Bytes;

use crate::source::{Batch, GeneratorFn, RequestSource, SourceError, ThreadContext};
use crate::spec::Target;

/// What `wrk.format()` gives with no script: `GET <path> HTTP/1.1`, `Host` (replaced by a `-H
/// Host:` header if given, in its place), then the `-H` headers in order, then an empty line.
pub fn static_request(target: &Target, headers: &[(String, String)]) -> Batch {
    let mut text = format!("GET {} HTTP/1.1\r\n", target.path);
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str())
        .unwrap_or(&target.host_header);
    text.push_str(&format!("Host: {host}\r\n"));
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("host") {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text.push_str("\r\n");
    Batch {
        bytes: Bytes::from(text),
        depth: 1,
    }
}

/// A source that sends the same batch every time.
pub struct StaticSource {
    batch: Batch,
}

impl StaticSource {
    /// A source repeating `batch`.
    pub fn new(batch: Batch) -> Self {
        Self { batch }
    }
}

impl RequestSource for StaticSource {
    fn next_batch(&mut self) -> Result<Batch, SourceError> {
        Ok(self.batch.clone())
    }
}

/// What a worker thread receives to build its source on its own thread (`Send`).
pub(crate) enum Seed {
    /// The static request.
    Static(Batch),
    /// An embedding program's generator.
    Generator(Arc<GeneratorFn>),
    /// A Lua script's per-thread seed.
    Script(crate::script::ThreadSeed),
}

impl Seed {
    /// Builds the thread's source.
    pub(crate) fn build(self, ctx: &ThreadContext) -> Result<Box<dyn RequestSource>, SourceError> {
        match self {
            Seed::Static(batch) => Ok(Box::new(StaticSource::new(batch))),
            Seed::Generator(f) => f(ctx),
            Seed::Script(seed) => seed.build(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_request_like_wrk_format() {
        let t = Target::parse("http://127.0.0.1:8080/a?b=1").unwrap();
        let b = static_request(&t, &[("X-Y".into(), "z".into())]);
        assert_eq!(
            &b.bytes[..],
            b"GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Y: z\r\n\r\n"
        );
        let b = static_request(&t, &[("host".into(), "other".into())]);
        assert_eq!(&b.bytes[..], b"GET /a?b=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    }
}
