//! The built-in demo service: a small HTTP service of a few hops for trying AEFM on one machine.
//!
//! A front end does `work_us` of CPU work per request, then calls every back end concurrently
//! and answers when all answered; each back end does its own CPU work. The work is measured in
//! thread CPU time (not wall time), so CPU interference on the same core stretches it and moves
//! latency, as it would for a real service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Role of a demo process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Calls the back ends.
    Front,
    /// Leaf service.
    Back,
}

/// Settings of one demo process.
#[derive(Clone, Debug)]
pub struct DemoServer {
    /// Front or back.
    pub role: Role,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Back-end base URLs (front only).
    pub backends: Vec<String>,
    /// CPU work per request, microseconds of thread CPU time.
    pub work_us: u64,
}

/// Errors of the demo server.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The listen address could not be bound.
    #[error("demo {role:?}: cannot listen on {addr}: {source}")]
    Bind {
        /// Role.
        role: Role,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A back-end URL is malformed.
    #[error("demo front: bad --backend URL {url:?}: {reason}")]
    BadBackend {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The runtime could not start.
    #[error("demo: runtime: {0}")]
    Runtime(std::io::Error),
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Burns `us` microseconds of this thread's CPU time; returns a value folded from the work so
/// the optimiser cannot remove it.
pub fn burn(us: u64) -> u64 {
    let start = thread_cpu_ns();
    let budget = us * 1000;
    let mut acc: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        for i in 0..256u64 {
            acc = acc.rotate_left(5) ^ i.wrapping_mul(0x100_0000_01B3);
        }
        if thread_cpu_ns().saturating_sub(start) >= budget {
            return std::hint::black_box(acc);
        }
    }
}

impl DemoServer {
    /// Serves until the process is killed (SIGTERM ends it by default).
    pub fn serve(self) -> Result<(), DemoError> {
        for b in &self.backends {
            b.parse::<hyper::Uri>().map_err(|e| DemoError::BadBackend {
                url: b.clone(),
                reason: e.to_string(),
            })?;
        }
        // One thread: the service's CPU is one core's worth, like a container with a 1-CPU limit.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DemoError::Runtime)?;
        rt.block_on(self.serve_async())
    }

    async fn serve_async(self) -> Result<(), DemoError> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| DemoError::Bind {
                role: self.role,
                addr: self.listen,
                source,
            })?;
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let shared = std::sync::Arc::new((self, client));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared.0, &shared.1, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}

async fn handle(
    server: &DemoServer,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
    }
    let sink = burn(server.work_us);
    let mut status = StatusCode::OK;
    if server.role == Role::Front {
        let calls = server.backends.iter().map(|b| {
            let uri: hyper::Uri = format!("{}/work", b.trim_end_matches('/'))
                .parse()
                .expect("validated");
            let req = Request::get(uri)
                .body(Empty::new())
                .expect("static request");
            async move {
                let resp = client.request(req).await.ok()?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await.ok()?;
                Some(ok)
            }
        });
        let results = futures::future::join_all(calls).await;
        if results.iter().any(|r| *r != Some(true)) {
            status = StatusCode::BAD_GATEWAY;
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", sink % 10))));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_uses_cpu_time() {
        let t0 = thread_cpu_ns();
        burn(2000);
        let used = thread_cpu_ns() - t0;
        assert!(used >= 2_000_000, "{used} ns");
        assert!(used < 200_000_000, "{used} ns");
    }
}
