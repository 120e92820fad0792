//! Request framing for the stall server: finds where one HTTP/1.x request ends in a buffer
//! (head, then a body by Content-Length or chunked coding) and whether the connection stays
//! open, without allocating, so a pipelined backlog is framed at memory speed.

/// One complete request at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framed {
    /// Bytes the request takes (head and body).
    pub len: usize,
    /// The connection closes after the response (`Connection: close`, or HTTP/1.0 without
    /// `Connection: keep-alive`).
    pub close: bool,
    /// HTTP/1.0 with `Connection: keep-alive`: the response must say keep-alive too.
    pub keep_alive_10: bool,
}

/// Malformed input: the connection is closed without an answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A Content-Length or chunk size that is not a number.
    #[error("bad length in request")]
    BadLength,
    /// A request line without an HTTP version.
    #[error("bad request line")]
    BadRequestLine,
}

/// Frames the request at the front of `buf`: `Ok(None)` until it is complete.
pub fn frame(buf: &[u8]) -> Result<Option<Framed>, FrameError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buf[..head_end];
    let mut lines = head.split(|&b| b == b'\n');
    let first = trim(lines.next().unwrap_or_default());
    let http10 = match first.rsplit(|&b| b == b' ').next() {
        Some(b"HTTP/1.1") => false,
        Some(b"HTTP/1.0") => true,
        _ => return Err(FrameError::BadRequestLine),
    };
    let (mut length, mut chunked, mut conn_close, mut conn_keep) = (0usize, false, false, false);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = number(value, 10)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn_close = value.eq_ignore_ascii_case(b"close");
            conn_keep = value.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    let body_start = head_end + 4;
    let end = if chunked {
        match chunked_end(buf, body_start)? {
            Some(end) => end,
            None => return Ok(None),
        }
    } else if buf.len() >= body_start + length {
        body_start + length
    } else {
        return Ok(None);
    };
    Ok(Some(Framed {
        len: end,
        close: conn_close || (http10 && !conn_keep),
        keep_alive_10: http10 && conn_keep,
    }))
}

/// End offset of a chunked body starting at `pos` (trailers included), `None` while incomplete.
fn chunked_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, FrameError> {
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size_field = &buf[pos..pos + eol];
        let size_hex = size_field.split(|&b| b == b';').next().unwrap_or_default();
        let size = number(trim(size_hex), 16)?;
        pos += eol + 2;
        if size == 0 {
            // Trailer lines until an empty one; with no trailers that is the very next CRLF.
            return Ok(find(&buf[pos - 2..], b"\r\n\r\n").map(|i| pos - 2 + i + 4));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// Parses an unsigned number in `radix`.
fn number(digits: &[u8], radix: u32) -> Result<usize, FrameError> {
    if digits.is_empty() {
        return Err(FrameError::BadLength);
    }
    digits.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(radix).ok_or(FrameError::BadLength)?;
        acc.checked_mul(radix as usize)
            .and_then(|a| a.checked_add(d as usize))
            .ok_or(FrameError::BadLength)
    })
}

/// Trims ASCII whitespace (and the `\r` left by splitting on `\n`) from both ends.
fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: usize, close: bool) -> Option<Framed> {
        Some(Framed {
            len,
            close,
            keep_alive_10: false,
        })
    }

    #[test]
    fn frames_a_bare_get_and_waits_for_its_end() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(frame(req), Ok(framed(req.len(), false)));
        assert_eq!(frame(&req[..req.len() - 1]), Ok(None));
    }

    #[test]
    fn content_length_body_is_part_of_the_request() {
        let req = b"POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello";
        assert_eq!(frame(req), Ok(framed(req.len(), false)));
        assert_eq!(frame(&req[..req.len() - 2]), Ok(None));
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let body = b"4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        let mut req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        assert_eq!(frame(&req), Ok(framed(req.len(), false)));
        for cut in 1..body.len() {
            assert_eq!(frame(&req[..req.len() - cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn pipelined_requests_frame_one_at_a_time() {
        let one = b"GET /a HTTP/1.1\r\n\r\n";
        let two = [&one[..], b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"].concat();
        assert_eq!(frame(&two), Ok(framed(one.len(), false)));
        assert_eq!(
            frame(&two[one.len()..]),
            Ok(framed(two.len() - one.len(), true))
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert_eq!(frame(b"GET / HTTP/1.0\r\n\r\n"), Ok(framed(18, true)));
        let keep = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let f = frame(keep).unwrap().unwrap();
        assert!(!f.close && f.keep_alive_10);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(frame(b"HELLO\r\n\r\n"), Err(FrameError::BadRequestLine));
        let bad = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(frame(bad), Err(FrameError::BadLength));
    }
}
