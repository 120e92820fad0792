//! Tiny blocking HTTP probes for readiness and preflight checks (one GET, status line only).
//!
//! Hand-written over `std::net` instead of a client crate: a probe needs nothing but the status
//! code, must not start a runtime inside a handler, and must time out quickly.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// GETs `url` (http only) and returns the status code.
pub fn http_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let u = url::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("only http:// can be probed, not {}://", u.scheme()));
    }
    let host = u.host_str().ok_or("URL has no host")?;
    let port = u.port_or_known_default().ok_or("URL has no port")?;
    let sa = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {sa}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))
}

/// Connects to the host and port of `url` (http or https) and closes again: is anything
/// listening there? The error names the address and why.
pub fn tcp_reachable(url: &str, timeout: Duration) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    let host = u.host_str().ok_or("URL has no host")?;
    let port = u.port_or_known_default().ok_or("URL has no port")?;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    for sa in addrs {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connect {sa}: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_port_is_an_error_naming_the_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = http_status(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        let e = tcp_reachable(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn a_listening_port_is_reachable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/x", l.local_addr().unwrap());
        tcp_reachable(&url, Duration::from_secs(2)).unwrap();
    }
}
