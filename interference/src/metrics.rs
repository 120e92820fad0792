//! An optional Prometheus text-exposition endpoint (`--metrics-addr`) so a cluster's Prometheus can
//! scrape the real intensity of a stressor pod.
//!
//! Hand-written on `std::net::TcpListener`: one thread, one tiny response per scrape, no async
//! runtime or HTTP crate needed in a binary that must stay small and have no effect on the load
//! it generates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::report::ReportLine;

/// The latest report, shared between the reporting loop and the endpoint.
pub type Latest = Arc<Mutex<Option<ReportLine>>>;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders a report line in the Prometheus text format (version 0.0.4).
pub fn render(line: Option<&ReportLine>) -> String {
    let mut s = String::new();
    s.push_str("# HELP aefm_stress_up 1 while the stressor runs.\n# TYPE aefm_stress_up gauge\naefm_stress_up 1\n");
    if let Some(l) = line {
        let labels = format!("kind=\"{}\",unit=\"{}\"", escape(&l.kind), escape(&l.unit));
        for (name, help, value) in [
            (
                "aefm_stress_target",
                "Requested intensity in the unit label.",
                l.target,
            ),
            (
                "aefm_stress_achieved",
                "Intensity achieved over the last report interval.",
                l.achieved,
            ),
            (
                "aefm_stress_elapsed_seconds",
                "Seconds since the stressor started.",
                l.elapsed_s,
            ),
        ] {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
            ));
        }
    }
    s
}

/// Binds `addr` and serves `GET /metrics` (any path) from a background thread until the process
/// exits. Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, latest: Latest) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|source| Error::Io {
        context: format!("binding the metrics endpoint {addr}"),
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        context: "metrics endpoint address".into(),
        source,
    })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                // Read the request head (we answer the same document for any path).
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() > 16384 {
                        break;
                    }
                }
                let body = render(latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes());
            }
        })
        .map_err(|source| Error::Io { context: "starting the metrics thread".into(), source })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_latest_line() {
        let latest: Latest = Arc::new(Mutex::new(None));
        let addr = serve("127.0.0.1:0".parse().unwrap(), latest.clone()).unwrap();
        *latest.lock().unwrap() = Some(ReportLine {
            kind: "cpu".into(),
            elapsed_s: 2.0,
            target: 50.0,
            achieved: 49.5,
            unit: "%".into(),
            r#final: false,
            details: Default::default(),
        });
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"));
        assert!(
            text.contains("aefm_stress_achieved{kind=\"cpu\",unit=\"%\"} 49.5"),
            "{text}"
        );
        assert!(text.contains("aefm_stress_target{kind=\"cpu\",unit=\"%\"} 50"));
    }
}
