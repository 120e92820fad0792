//! The API server's pod proxy: `/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH?QUERY` is
//! forwarded to the local process that runs that Job pod, on the local port the fake gave the
//! container port ([`super::JobRun::ports`]). As on a real server: 404 for a pod that does not
//! exist, 503 ServiceUnavailable when nothing answers on the port; otherwise the pod's status and
//! body come back unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::store::status;
use super::Shared;

type Body = BoxBody<Bytes, Infallible>;

fn answer(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY))
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn error(code: u16, reason: &str, message: &str) -> Response<Body> {
    answer(
        code,
        "application/json",
        status(code, reason, message).to_string(),
    )
}

/// (namespace, pod, port, path after `proxy`) of a pod-proxy path.
fn parse(path: &str) -> Option<(String, String, String, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, rest) = rest.split_once("/pods/")?;
    let (target, rest) = rest.split_once("/proxy")?;
    let (pod, port) = target.split_once(':').unwrap_or((target, ""));
    let sub = if rest.is_empty() { "/" } else { rest };
    Some((ns.into(), pod.into(), port.into(), sub.into()))
}

/// Answers a pod-proxy request, or `None` when `uri` is not one.
pub async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    body: &Bytes,
) -> Option<Response<Body>> {
    let (ns, pod, port, sub) = parse(uri.path())?;
    if shared.store().get("pods", &ns, &pod).is_none() {
        return Some(error(404, "NotFound", &format!("pods \"{pod}\" not found")));
    }
    let key = ("pods".to_string(), ns.clone(), pod.clone());
    let local = {
        let world = shared.world.lock().unwrap_or_else(|e| e.into_inner());
        world.pod_ports.get(&key).and_then(|ports| {
            let wanted: u16 = port.parse().ok()?;
            ports.iter().find(|(c, _)| *c == wanted).map(|(_, l)| *l)
        })
    };
    let unreachable = |why: String| {
        error(
            503,
            "ServiceUnavailable",
            &format!("error trying to reach service: {why}"),
        )
    };
    let Some(local) = local else {
        return Some(unreachable(format!(
            "dial tcp {pod}:{port}: connect: connection refused"
        )));
    };
    let target = match uri.query() {
        Some(q) => format!("{sub}?{q}"),
        None => sub,
    };
    let forwarded = tokio::time::timeout(
        Duration::from_secs(10),
        forward(local, method, &target, body),
    )
    .await;
    Some(match forwarded {
        Ok(Ok((code, text))) => answer(code, "text/plain", text),
        Ok(Err(e)) => unreachable(format!("dial tcp 127.0.0.1:{local}: {e}")),
        Err(_) => unreachable("timed out".into()),
    })
}

/// One HTTP/1.1 exchange with the pod's process: (status, body).
async fn forward(
    port: u16,
    method: &Method,
    target: &str,
    body: &Bytes,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let status_line = String::from_utf8_lossy(&raw[..end]);
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((code, raw[end + 4..].to_vec()))
}

/// What a container runtime's port mapping means for a Job pod run as a local process: the
/// value of `--control-port` (aefm-load's start barrier), a declared container port, becomes
/// the local port the fake chose for it ([`super::JobRun::ports`]), where the proxy forwards.
pub fn map_control_port(args: &[String], ports: &[(u16, u16)]) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--control-port") {
        if let Some(v) = out.get_mut(i + 1) {
            if let Some((_, local)) = ports.iter().find(|(c, _)| c.to_string() == *v) {
                *v = local.to_string();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_parse() {
        assert_eq!(
            parse("/api/v1/namespaces/ns/pods/p-1:7431/proxy/start"),
            Some(("ns".into(), "p-1".into(), "7431".into(), "/start".into()))
        );
        assert_eq!(parse("/api/v1/namespaces/ns/pods/p/proxy").unwrap().3, "/");
        assert!(parse("/api/v1/namespaces/ns/pods/p/log").is_none());
    }

    #[test]
    fn control_port_is_mapped_to_the_local_port() {
        let args: Vec<String> = ["-R1", "--control-port", "7431", "http://h/"]
            .map(String::from)
            .to_vec();
        let mapped = map_control_port(&args, &[(7431, 40001)]);
        assert_eq!(mapped[2], "40001");
        assert_eq!(map_control_port(&args, &[]), args);
    }
}
