//! Incremental HTTP/1.1 response parsing: status line and headers with `httparse`, then a
//! Content-Length, chunked or read-until-close body. Bytes are consumed from the connection's
//! buffer as they are parsed, so large bodies are never held unless a script asked for them.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};

/// Why a response could not be parsed (counted as a read error, like wrk's parser errors).
#[derive(Debug, thiserror::Error)]
#[error("invalid HTTP response: {0}")]
pub struct ParseError(pub String);

/// A complete response.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Status code.
    pub status: u16,
    /// False when the server will close the connection after this response.
    pub keep_alive: bool,
    /// Headers, when collection was asked for.
    pub headers: Vec<(String, String)>,
    /// De-chunked body, when collection was asked for.
    pub body: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Head,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilClose,
}

/// Parser state for one connection; reset after each complete response.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    current: Parsed,
    collect: bool,
}

const MAX_HEADERS: usize = 100;

impl ResponseParser {
    /// A parser; `collect` keeps headers and body for the request source.
    pub fn new(collect: bool) -> Self {
        Self {
            state: State::Head,
            current: Parsed::default(),
            collect,
        }
    }

    /// True when the parser is between responses (nothing of the next one seen).
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// Consumes what it can from `buf`; returns a response once one is complete.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, ParseError> {
        loop {
            match self.state {
                State::Head => {
                    // Uninitialised header slots: zeroing 100 of them (3.2 KB) on every call
                    // was a visible share of the per-response cost.
                    let mut headers =
                        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut []);
                    let n = match httparse::ParserConfig::default()
                        .parse_response_with_uninit_headers(&mut resp, buf, &mut headers)
                    {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(e) => return Err(ParseError(e.to_string())),
                    };
                    let status = resp.code.unwrap_or(0);
                    let http10 = resp.version == Some(0);
                    let mut length: Option<u64> = None;
                    let mut chunked = false;
                    let mut keep_alive = !http10;
                    let mut collected = Vec::new();
                    for h in resp.headers.iter() {
                        let name = h.name;
                        if name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .ok_or_else(|| ParseError("bad Content-Length".into()))?;
                            length = Some(v);
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h
                                .value
                                .split(|b| *b == b',')
                                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                        } else if name.eq_ignore_ascii_case("connection") {
                            for t in h.value.split(|b| *b == b',') {
                                let t = t.trim_ascii();
                                if t.eq_ignore_ascii_case(b"close") {
                                    keep_alive = false;
                                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                                    keep_alive = true;
                                }
                            }
                        }
                        if self.collect {
                            collected.push((
                                name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            ));
                        }
                    }
                    buf.advance(n);
                    self.current = Parsed {
                        status,
                        keep_alive,
                        headers: collected,
                        body: Vec::new(),
                    };
                    let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
                    self.state = if bodyless {
                        return Ok(Some(self.finish()));
                    } else if chunked {
                        State::ChunkSize
                    } else if let Some(len) = length {
                        State::Length(len)
                    } else {
                        self.current.keep_alive = false;
                        State::UntilClose
                    };
                }
                State::Length(remaining) => {
                    let take = (buf.len() as u64).min(remaining) as usize;
                    self.take_body(buf, take);
                    let left = remaining - take as u64;
                    if left == 0 {
                        return Ok(Some(self.finish()));
                    }
                    self.state = State::Length(left);
                    return Ok(None);
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        buf.advance(n);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(ParseError("bad chunk size".into())),
                },
                State::ChunkData(remaining) => {
                    let take = (buf.len() as u64).min(remaining) as usize;
                    self.take_body(buf, take);
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::ChunkData(left);
                        return Ok(None);
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ParseError("chunk not followed by CRLF".into()));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    // Trailer lines until an empty line.
                    let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return Ok(None);
                    };
                    buf.advance(pos + 2);
                    if pos == 0 {
                        return Ok(Some(self.finish()));
                    }
                }
                State::UntilClose => {
                    let n = buf.len();
                    self.take_body(buf, n);
                    return Ok(None);
                }
            }
        }
    }

    /// Called at EOF: a read-until-close body is complete; anything else was cut short.
    pub fn eof(&mut self) -> Option<Parsed> {
        if matches!(self.state, State::UntilClose) {
            Some(self.finish())
        } else {
            None
        }
    }

    fn take_body(&mut self, buf: &mut BytesMut, n: usize) {
        if self.collect {
            self.current.body.extend_from_slice(&buf[..n]);
        }
        buf.advance(n);
    }

    fn finish(&mut self) -> Parsed {
        self.state = State::Head;
        std::mem::take(&mut self.current)
    }
}

/// At most `max` bytes of `bytes` as a quoted, escaped string (`"\x16\x03..."`), with `...`
/// when cut: safe to print whatever a server sent.
pub fn escape_bytes(bytes: &[u8], max: usize) -> String {
    let end = bytes.len().min(max);
    let mut s = format!("\"{}\"", bytes[..end].escape_ascii());
    if bytes.len() > end {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut ResponseParser, data: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        // one byte at a time: the worst case for an incremental parser
        for b in data {
            buf.extend_from_slice(&[*b]);
            while let Some(r) = p.parse(&mut buf).unwrap() {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn escape_bytes_quotes_escapes_and_cuts() {
        assert_eq!(escape_bytes(b"ab\r\n\x00", 64), "\"ab\\r\\n\\x00\"");
        assert_eq!(
            escape_bytes(&[b'x'; 100], 64),
            format!("\"{}\"...", "x".repeat(64))
        );
    }

    #[test]
    fn content_length_chunked_and_pipelined() {
        let mut p = ResponseParser::new(true);
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let r = feed(&mut p, data);
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].status, r[0].body.as_slice(), r[0].keep_alive),
            (200, &b"hello"[..], true)
        );
        assert_eq!(
            (r[1].status, r[1].body.as_slice(), r[1].keep_alive),
            (404, &b"abcde"[..], false)
        );
        assert_eq!(r[2].status, 204);
        assert!(p.idle());
    }

    #[test]
    fn http10_and_until_close() {
        let mut p = ResponseParser::new(true);
        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\nabc"[..]);
        assert!(p.parse(&mut buf).unwrap().is_none());
        let r = p.eof().unwrap();
        assert_eq!(r.body, b"abc");
        assert!(!r.keep_alive);
        let mut buf = BytesMut::from(&b"garbage\r\n\r\n"[..]);
        assert!(ResponseParser::new(false).parse(&mut buf).is_err());
    }
}
