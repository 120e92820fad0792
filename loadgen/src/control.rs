//! The start barrier of a distributed run: several `aefm-load` processes (e.g. Kubernetes Job
//! pods) that must start sending at one wall-clock instant.
//!
//! With `--control-port PORT` the process listens on that port before it prepares its run and
//! answers `GET /ready` (503 while it prepares, 200 once it could start at once) and
//! `POST /start?at=<unix nanoseconds>` (200; the same instant again is 200, another one 409).
//! It then waits until that instant and starts; [`crate::RunControl::start_at`] makes the run's
//! clock (and the report's `start_time`) begin at the instant itself once the threads are
//! connected, so the processes' starts differ only by their clocks. Without a start signal within
//! `--start-timeout` the process gives up with an error naming the port. `--start-at` gives the
//! instant directly (unix nanoseconds or RFC 3339), for starting processes by hand.
//!
//! The server is a few lines of blocking HTTP/1.1 on a thread (one request per connection): a
//! controller polls it a handful of times per run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a run could not pass its start barrier.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control port could not be opened.
    #[error("control port {port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// No `POST /start` arrived in time.
    #[error("no start signal (POST /start?at=...) on control port {port} within {}s; is the controller gone?", timeout.as_secs())]
    Timeout {
        /// The port.
        port: u16,
        /// How long it waited.
        timeout: Duration,
    },
}

/// Parses a start instant: unix nanoseconds (`1767225600000000000`) or RFC 3339
/// (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00.5+01:00`).
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let ns: u64 = t
            .parse()
            .map_err(|_| format!("start time {t:?} is out of range"))?;
        return Ok(UNIX_EPOCH + Duration::from_nanos(ns));
    }
    parse_rfc3339(t).ok_or_else(|| {
        format!("invalid start time {t:?} (expected unix nanoseconds or RFC 3339, e.g. 2026-01-01T00:00:00Z)")
    })
}

/// The instant as unix nanoseconds (what `POST /start?at=` and `--start-at` take).
pub fn unix_nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(t: &str) -> Option<SystemTime> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut nanos: u64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<u64>().ok()? * 10u64.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (num_at(rest, 1..3)? * 3600 + num_at(rest, 4..6)? * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

fn num_at(t: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let s = t.get(r)?;
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Where a run is in its barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preparing,
    Ready,
    Started(SystemTime),
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The control endpoint of one process: listens from [`ControlServer::bind`] until the process
/// ends (a controller that retries its `POST /start` gets the same answer).
pub struct ControlServer {
    port: u16,
    state: Shared,
}

impl ControlServer {
    /// Listens on `0.0.0.0:port` (port 0: any free port) and answers on a background thread.
    pub fn bind(port: u16) -> Result<ControlServer, ControlError> {
        let listener = TcpListener::bind(("0.0.0.0", port))
            .map_err(|source| ControlError::Bind { port, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| ControlError::Bind { port, source })?
            .port();
        let state: Shared = Arc::new((Mutex::new(State::Preparing), Condvar::new()));
        let shared = state.clone();
        std::thread::Builder::new()
            .name("aefm-load-control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    serve(stream, &shared);
                }
            })
            .map_err(|source| ControlError::Bind { port, source })?;
        Ok(ControlServer { port, state })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The run is prepared: `/ready` answers 200 from now on.
    pub fn set_ready(&self) {
        let (lock, _) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if *s == State::Preparing {
            *s = State::Ready;
        }
    }

    /// Waits (at most `timeout`) for `POST /start` and returns its instant.
    pub fn wait_start(&self, timeout: Duration) -> Result<SystemTime, ControlError> {
        let (lock, cvar) = &*self.state;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |s| !matches!(s, State::Started(_)))
            .unwrap_or_else(|e| e.into_inner());
        match *guard {
            State::Started(at) => Ok(at),
            _ => Err(ControlError::Timeout {
                port: self.port,
                timeout,
            }),
        }
    }
}

/// Answers one request on `stream` (errors just drop the connection: the controller retries).
fn serve(mut stream: TcpStream, state: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let (method, target) = loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or_default().to_string(),
                    req.path.unwrap_or_default().to_string(),
                )
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
            _ => return,
        }
    };
    let (code, body) = answer(&method, &target, state);
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Service Unavailable",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The answer to `method target` in the current state: (status, body).
fn answer(method: &str, target: &str, state: &Shared) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (lock, cvar) = &**state;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    match (method, path) {
        ("GET", "/ready") => match *s {
            State::Preparing => (503, "preparing\n".into()),
            State::Ready => (200, "ready\n".into()),
            State::Started(at) => (200, format!("starting at {}\n", unix_nanos(at))),
        },
        ("POST", "/start") => {
            let at = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("at="))
                .map(parse_start_at);
            let at = match at {
                Some(Ok(at)) => at,
                Some(Err(e)) => return (400, e + "\n"),
                None => return (400, "missing ?at=<unix nanoseconds>\n".into()),
            };
            match *s {
                State::Started(prev) if prev != at => {
                    (409, format!("already starting at {}\n", unix_nanos(prev)))
                }
                _ => {
                    *s = State::Started(at);
                    cvar.notify_all();
                    (200, format!("starting at {}\n", unix_nanos(at)))
                }
            }
        }
        _ => (404, "not found (GET /ready, POST /start?at=NS)\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(port: u16, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "{line} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn start_times_parse_as_nanoseconds_or_rfc3339() {
        let ns = parse_start_at("1767225600000000001").unwrap();
        assert_eq!(unix_nanos(ns), 1_767_225_600_000_000_001);
        let z = parse_start_at("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(unix_nanos(z), 1_767_225_600_000_000_000);
        let off = parse_start_at("2026-01-01T01:00:00.25+01:00").unwrap();
        assert_eq!(unix_nanos(off), 1_767_225_600_250_000_000);
        for bad in [
            "",
            "soon",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "12a",
        ] {
            assert!(parse_start_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn barrier_answers_ready_then_start_once() {
        let server = ControlServer::bind(0).unwrap();
        let port = server.port();
        assert!(request(port, "GET /ready").starts_with("HTTP/1.1 503"));
        server.set_ready();
        assert!(request(port, "GET /ready").starts_with("HTTP/1.1 200"));
        assert!(request(port, "POST /start").starts_with("HTTP/1.1 400"));
        assert!(request(port, "GET /nope").starts_with("HTTP/1.1 404"));
        let at = "1767225600000000000";
        assert!(request(port, &format!("POST /start?at={at}")).starts_with("HTTP/1.1 200"));
        // A retry with the same instant is fine, another instant is refused.
        assert!(request(port, &format!("POST /start?at={at}")).starts_with("HTTP/1.1 200"));
        assert!(request(port, "POST /start?at=5").starts_with("HTTP/1.1 409"));
        let got = server.wait_start(Duration::from_secs(1)).unwrap();
        assert_eq!(unix_nanos(got).to_string(), at);
    }

    #[test]
    fn no_start_signal_times_out_naming_the_port() {
        let server = ControlServer::bind(0).unwrap();
        let e = server
            .wait_start(Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&server.port().to_string()) && e.contains("no start signal"),
            "{e}"
        );
    }
}
