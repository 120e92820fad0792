//! The built-in demo service: a small HTTP service of a few hops for trying AEFM on one machine.
//!
//! A front end does `work_us` of CPU work per request, then calls every back end concurrently
//! and answers when all answered; each back end does its own CPU work. The work is measured in
//! thread CPU time (not wall time), so CPU interference on the same core stretches it and moves
//! latency, as it would for a real service.
//!
//! Tracing (off unless [`DemoServer::otlp_endpoint`] is set, by `--otlp-endpoint` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`): every process exports OpenTelemetry spans over OTLP/HTTP
//! (protobuf) to `<endpoint>/v1/traces`. The front end's SERVER span `front` continues the
//! request's W3C `traceparent` when it has one (as `aefm-load --traceparent` sends) and is a new
//! root otherwise; under it, one CLIENT span `call back-<port>` per back-end call, whose context
//! goes to the back end as `traceparent`; each back end's SERVER span `back` is its child. Spans
//! carry the HTTP status and an error status on failures; the resource carries `service.name`
//! (`demo-front`, `demo-back-<port>`, or [`DemoServer::service_name`]), `host.name` and, when
//! `POD_NAME` is set, `k8s.pod.name`. Spans leave in batches from a background thread (which
//! shares the process's CPU, as a real instrumented service's exporter would); SIGTERM or
//! Ctrl-C stops the server and flushes them, so a case's last spans are not lost.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::Context;

pub mod telemetry;

use telemetry::{Telemetry, TelemetryError, Tracing};

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
    /// OTLP/HTTP base URL (`http://127.0.0.1:4318`) to send traces to; `None` = no tracing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans; `None` = `demo-front` or `demo-back-<listen port>`.
    pub service_name: Option<String>,
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
    /// Tracing could not be set up.
    #[error("demo: tracing")]
    Telemetry(#[source] TelemetryError),
}

/// The OTLP endpoint to use: the `--otlp-endpoint` flag, else `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (`env`), the standard variable; empty values count as unset.
pub fn otlp_endpoint(flag: Option<String>, env: Option<String>) -> Option<String> {
    flag.or(env).filter(|e| !e.trim().is_empty())
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

/// One back end as the front end calls it.
struct Backend {
    /// `<base>/work`.
    uri: Uri,
    /// `call back-<port>`: the name of the CLIENT span of a call.
    span_name: String,
}

fn parse_backends(urls: &[String]) -> Result<Vec<Backend>, DemoError> {
    urls.iter()
        .map(|b| {
            let bad = |reason: String| DemoError::BadBackend {
                url: b.clone(),
                reason,
            };
            let uri: Uri = format!("{}/work", b.trim_end_matches('/'))
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
            let port = uri.port_u16().unwrap_or(80);
            Ok(Backend {
                uri,
                span_name: format!("call back-{port}"),
            })
        })
        .collect()
}

/// What every request handler shares.
struct State {
    role: Role,
    work_us: u64,
    backends: Vec<Backend>,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// `None` when tracing is off. The handlers then skip every tracing step behind one branch
    /// per request and per call: no `traceparent` parsing or formatting, no span or context
    /// objects, no allocation, no lock. This is an `Option` rather than a no-op tracer provider
    /// because with the latter the propagator would still parse and write headers and the API
    /// would still build contexts on every request.
    tracing: Option<Tracing>,
}

impl DemoServer {
    /// Serves until SIGTERM or SIGINT (Ctrl-C), then flushes the spans still queued.
    pub fn serve(self) -> Result<(), DemoError> {
        let backends = parse_backends(&self.backends)?;
        let telemetry = match &self.otlp_endpoint {
            Some(url) => Some(
                Telemetry::start(url, &self.effective_service_name())
                    .map_err(DemoError::Telemetry)?,
            ),
            None => None,
        };
        // One thread: the service's CPU is one core's worth, like a container with a 1-CPU limit.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DemoError::Runtime)?;
        let state = State {
            role: self.role,
            work_us: self.work_us,
            backends,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
            tracing: telemetry.as_ref().map(Telemetry::tracing),
        };
        let result = rt.block_on(serve_async(self.role, self.listen, state));
        // Dropping the runtime drops the requests still in flight, which ends their spans
        // (a span ends when dropped), so the flush below sends them too.
        drop(rt);
        if let Some(t) = telemetry {
            if let Err(e) = t.shutdown() {
                eprintln!("aefm demo: flushing spans: {e}");
            }
        }
        result
    }

    /// `service.name`: the setting, or `demo-front` / `demo-back-<listen port>`.
    pub fn effective_service_name(&self) -> String {
        match (&self.service_name, self.role) {
            (Some(name), _) => name.clone(),
            (None, Role::Front) => "demo-front".into(),
            (None, Role::Back) => format!("demo-back-{}", self.listen.port()),
        }
    }
}

/// Resolves when the process gets SIGTERM or SIGINT.
async fn stop_signal() -> Result<(), DemoError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DemoError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DemoError::Runtime)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn serve_async(role: Role, addr: SocketAddr, state: State) -> Result<(), DemoError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { role, addr, source })?;
    let stop = stop_signal();
    tokio::pin!(stop);
    let state = Arc::new(state);
    loop {
        let stream = tokio::select! {
            stopped = &mut stop => return stopped,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
    }
    let (span_name, failure) = match state.role {
        Role::Front => ("front", "a back end failed"),
        Role::Back => ("back", ""),
    };
    let span = state.tracing.as_ref().map(|t| {
        t.server_span(
            span_name,
            req.method().as_str(),
            req.uri().path(),
            req.headers(),
        )
    });
    let sink = burn(state.work_us);
    let status = match state.role {
        Role::Front => call_backends(state, span.as_ref()).await,
        Role::Back => StatusCode::OK,
    };
    if let Some(cx) = &span {
        telemetry::end_server(cx, status, failure);
    }
    let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", sink % 10))));
    *resp.status_mut() = status;
    resp
}

/// Calls every back end concurrently: 200 when all answered 2xx, else 502.
async fn call_backends(state: &State, parent: Option<&Context>) -> StatusCode {
    let calls = state
        .backends
        .iter()
        .map(|b| call_backend(state, b, parent));
    let results = futures::future::join_all(calls).await;
    if results.iter().all(|ok| *ok) {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// One back-end call, in a CLIENT span under `parent` when tracing; true when it answered 2xx.
async fn call_backend(state: &State, backend: &Backend, parent: Option<&Context>) -> bool {
    let mut req = Request::get(backend.uri.clone())
        .body(Empty::new())
        .expect("static request");
    let span = match (&state.tracing, parent) {
        (Some(t), Some(p)) => Some(t.client_span(
            p,
            backend.span_name.clone(),
            &backend.uri,
            req.headers_mut(),
        )),
        _ => None,
    };
    let outcome = fetch(&state.client, req).await;
    if let Some(cx) = &span {
        telemetry::end_client(cx, &outcome);
    }
    matches!(outcome, Ok(s) if s.is_success())
}

/// Sends `req` and reads the whole answer: its status, or the transport error.
async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<StatusCode, String> {
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
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

    #[test]
    fn otlp_endpoint_flag_wins_over_env_and_empty_is_off() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            otlp_endpoint(s("http://a:1"), s("http://b:2")),
            s("http://a:1")
        );
        assert_eq!(otlp_endpoint(None, s("http://b:2")), s("http://b:2"));
        assert_eq!(otlp_endpoint(None, s("")), None);
        assert_eq!(otlp_endpoint(None, None), None);
    }

    fn server(role: Role, service_name: Option<&str>) -> DemoServer {
        DemoServer {
            role,
            listen: "127.0.0.1:9002".parse().unwrap(),
            backends: Vec::new(),
            work_us: 0,
            otlp_endpoint: None,
            service_name: service_name.map(str::to_string),
        }
    }

    #[test]
    fn service_names_default_by_role_and_port() {
        assert_eq!(
            server(Role::Front, None).effective_service_name(),
            "demo-front"
        );
        assert_eq!(
            server(Role::Back, None).effective_service_name(),
            "demo-back-9002"
        );
        assert_eq!(
            server(Role::Back, Some("db")).effective_service_name(),
            "db"
        );
    }

    #[test]
    fn backends_are_parsed_once_with_their_span_names() {
        let b = parse_backends(&["http://127.0.0.1:9001/".into(), "http://back".into()]).unwrap();
        assert_eq!(b[0].uri.to_string(), "http://127.0.0.1:9001/work");
        assert_eq!(b[0].span_name, "call back-9001");
        assert_eq!(b[1].span_name, "call back-80");
        assert!(parse_backends(&["http://bad host:1".into()]).is_err());
    }
}
