//! The per-thread [`RequestSource`] backed by a script's own Lua state, and the check that what
//! `request()` returns is one or more well-formed HTTP requests.

use std::mem::MaybeUninit;
use std::sync::Arc;

use bytes::Bytes;
use mlua::{Function, Lua, Value};

use super::error::{lua_error, script_error};
use super::thread::ThreadShared;
use crate::source::{Batch, RequestSource, Response, SourceError};

/// Most headers one scripted request may carry (httparse needs a fixed slot count).
const MAX_HEADERS: usize = 128;

/// Counts the complete HTTP/1.x requests in `bytes` (the pipeline depth), or says why they are
/// not valid: a parse error, an unsupported version, a bad length, or trailing bytes.
pub(crate) fn count_requests(bytes: &[u8]) -> Result<usize, String> {
    if bytes.is_empty() {
        return Err("request() returned an empty string, not an HTTP request".into());
    }
    let mut offset = 0;
    let mut depth = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        // Uninitialised slots: zeroing 128 headers (4 KB) per call cost more than the parse.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            rest,
            &mut headers,
        );
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "incomplete HTTP request at byte {offset} (the head must end with an empty line): {}",
                    snippet(rest)
                ))
            }
            Err(e) => {
                return Err(format!(
                    "invalid HTTP request at byte {offset} ({e}): {}",
                    snippet(rest)
                ))
            }
        };
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).unwrap_or("").trim();
                let n = text.parse::<usize>().map_err(|_| {
                    format!("invalid Content-Length {text:?} in request at byte {offset}")
                })?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(format!(
                        "conflicting Content-Length headers in request at byte {offset}"
                    ));
                }
                content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = std::str::from_utf8(h.value)
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .contains("chunked");
            }
        }
        let body_len = if chunked {
            chunked_len(&rest[head_len..]).ok_or_else(|| {
                format!("invalid or incomplete chunked body in request at byte {offset}")
            })?
        } else {
            content_length.unwrap_or(0)
        };
        let end = head_len + body_len;
        if end > rest.len() {
            return Err(format!(
                "request at byte {offset} declares a {body_len}-byte body but only {} bytes follow its head",
                rest.len() - head_len
            ));
        }
        offset += end;
        depth += 1;
    }
    Ok(depth)
}

/// Length of a complete chunked body at the start of `body`, trailers included.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&body[pos..]).ok()? {
            httparse::Status::Complete(v) => v,
            httparse::Status::Partial => return None,
        };
        pos += used;
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            loop {
                let line_end = body[pos..].windows(2).position(|w| w == b"\r\n")?;
                pos += line_end + 2;
                if line_end == 0 {
                    return Some(pos);
                }
            }
        }
        let size = usize::try_from(size).ok()?;
        pos = pos.checked_add(size)?.checked_add(2)?;
        if pos > body.len() || &body[pos - 2..pos] != b"\r\n" {
            return None;
        }
    }
}

/// The first bytes of `bytes`, escaped, to show in an error.
fn snippet(bytes: &[u8]) -> String {
    let end = bytes.len().min(60);
    let mut s = format!("\"{}\"", bytes[..end].escape_ascii());
    if bytes.len() > end {
        s.push_str("...");
    }
    s
}

/// A thread's request source: the script's state on this thread, with its hooks looked up once.
pub(crate) struct ScriptedSource {
    /// The thread's Lua state; never leaves this thread.
    pub lua: Lua,
    /// Script path, for error messages.
    pub path: Arc<str>,
    /// The global `request` function at start-up, when there was one (dynamic script).
    pub request: Option<Function>,
    /// Line where `request` is defined, for errors about what it returns.
    pub request_line: Option<usize>,
    /// The request sent when the script is not dynamic (from `wrk.request()`).
    pub fixed: Option<Batch>,
    /// The request made by the start-up validation call, sent first so no draw is wasted.
    pub first: Option<Batch>,
    /// The global `response` function at start-up, when there was one.
    pub response: Option<Function>,
    /// State shared with the main script's `thread` object.
    pub shared: Arc<ThreadShared>,
    /// Whether to copy the globals back for `thread:get` in `done` when the thread ends.
    pub capture_on_drop: bool,
}

impl ScriptedSource {
    /// Calls `request()` once and checks the result, naming the script and line on failure.
    pub fn call_request(&self, request: &Function) -> Result<Batch, SourceError> {
        let value: Value = request
            .call(())
            .map_err(|e| lua_error(&self.path, "in request()", &e))?;
        let bytes = match value {
            Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
            other => {
                return Err(script_error(
                    &self.path,
                    self.request_line,
                    &format!(
                        "request() returned a {}, expected a string holding an HTTP request",
                        super::error::type_name(&other)
                    ),
                ))
            }
        };
        let depth = count_requests(&bytes)
            .map_err(|m| script_error(&self.path, self.request_line, &format!("request(): {m}")))?;
        Ok(Batch { bytes, depth })
    }
}

impl RequestSource for ScriptedSource {
    fn next_batch(&mut self) -> Result<Batch, SourceError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        match &self.request {
            Some(request) => self.call_request(request),
            None => Ok(self
                .fixed
                .clone()
                .expect("a script without request() always has a fixed request")),
        }
    }

    fn wants_responses(&self) -> bool {
        self.response.is_some()
    }

    fn on_response(&mut self, response: &Response<'_>) -> Result<(), SourceError> {
        let Some(hook) = &self.response else {
            return Ok(());
        };
        let call = || -> mlua::Result<()> {
            let headers = self
                .lua
                .create_table_with_capacity(0, response.headers.len())?;
            for (name, value) in response.headers {
                headers.raw_set(name.as_str(), value.as_str())?;
            }
            let body = self.lua.create_string(response.body)?;
            hook.call::<()>((response.status, headers, body))
        };
        call().map_err(|e| lua_error(&self.path, "in response()", &e))
    }

    fn stop_requested(&self) -> bool {
        self.shared.stop_requested()
    }
}

impl Drop for ScriptedSource {
    fn drop(&mut self) {
        if self.capture_on_drop {
            self.shared.capture_finals(&self.lua);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pipelined_requests() {
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(count_requests(one), Ok(1));
        let post = b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let mut three = Vec::new();
        three.extend_from_slice(one);
        three.extend_from_slice(post);
        three.extend_from_slice(one);
        assert_eq!(count_requests(&three), Ok(3));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(count_requests(chunked), Ok(2));
    }

    #[test]
    fn rejects_invalid_requests() {
        assert!(count_requests(b"").is_err());
        assert!(count_requests(b"hello").unwrap_err().contains("incomplete"));
        assert!(count_requests(b"GET / HTTP/1.1\r\n")
            .unwrap_err()
            .contains("incomplete"));
        assert!(count_requests(b"GET\t/ HTP/1.1\r\n\r\n")
            .unwrap_err()
            .contains("invalid"));
        let short = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc";
        assert!(count_requests(short).unwrap_err().contains("10-byte body"));
        let bad_len = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert!(count_requests(bad_len)
            .unwrap_err()
            .contains("Content-Length"));
    }
}
