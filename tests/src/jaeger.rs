//! A fake Jaeger query service (`/api/services`, `/api/traces`) serving JSON generated from span
//! trees whose answers (self times, roots, orphans) the tests know, plus a tiny HTTP server helper
//! shared with the Prometheus harness.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// What a handler answers: status, content type, body.
pub type Answer = (u16, &'static str, String);

/// A handler: path and query string in, answer out.
pub type Handler = Arc<dyn Fn(&str, &str) -> Answer + Send + Sync>;

/// An HTTP/1 server on 127.0.0.1 (free port) running `handler` on its own thread until dropped.
pub struct TestServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Requests served so far.
    pub requests: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts the server.
    pub fn start(handler: Handler) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let handler = Arc::clone(&handler);
                            let counter = Arc::clone(&counter);
                            tokio::spawn(async move {
                                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    let (status, ctype, body) = handler(req.uri().path(), req.uri().query().unwrap_or(""));
                                    async move {
                                        Ok::<_, Infallible>(
                                            hyper::Response::builder()
                                                .status(status)
                                                .header("content-type", ctype)
                                                .body(Full::new(Bytes::from(body)))
                                                .expect("response"),
                                        )
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        TestServer {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Decodes a query string into pairs (`+` and `%XX` decoded).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// How a span hangs from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ref {
    /// CHILD_OF.
    ChildOf,
    /// FOLLOWS_FROM.
    FollowsFrom,
}

/// One span of a generated trace.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    /// Span ID.
    pub id: String,
    /// Parent reference (kind, span ID); the ID may be absent from the trace (orphan).
    pub parent: Option<(Ref, String)>,
    /// Service name.
    pub service: String,
    /// Pod name (the process's `hostname` tag).
    pub pod: String,
    /// Operation.
    pub operation: String,
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// Duration, µs.
    pub duration_us: u64,
}

/// Shorthand for a span.
pub fn span(
    id: &str,
    parent: Option<(Ref, &str)>,
    service: &str,
    op: &str,
    start_us: u64,
    duration_us: u64,
) -> SpanSpec {
    SpanSpec {
        id: id.into(),
        parent: parent.map(|(r, p)| (r, p.to_string())),
        service: service.into(),
        pod: format!("{service}-7d9c-abcde"),
        operation: op.into(),
        start_us,
        duration_us,
    }
}

/// A trace: ID and spans.
#[derive(Debug, Clone)]
pub struct TraceSpec {
    /// Trace ID.
    pub id: String,
    /// Spans.
    pub spans: Vec<SpanSpec>,
}

impl TraceSpec {
    /// Jaeger's JSON for this trace (processes deduplicated per (service, pod)).
    pub fn to_json(&self) -> Value {
        let mut procs: Vec<(String, String)> = Vec::new();
        let spans: Vec<Value> = self
            .spans
            .iter()
            .map(|s| {
                let key = (s.service.clone(), s.pod.clone());
                let pi = procs.iter().position(|p| *p == key).unwrap_or_else(|| {
                    procs.push(key);
                    procs.len() - 1
                });
                let refs: Vec<Value> = s
                    .parent
                    .iter()
                    .map(|(r, p)| {
                        json!({"refType": if *r == Ref::ChildOf {"CHILD_OF"} else {"FOLLOWS_FROM"}, "traceID": self.id, "spanID": p})
                    })
                    .collect();
                json!({
                    "traceID": self.id, "spanID": s.id, "flags": 1, "operationName": s.operation,
                    "references": refs, "startTime": s.start_us, "duration": s.duration_us,
                    "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
                    "logs": [], "processID": format!("p{}", pi + 1), "warnings": null
                })
            })
            .collect();
        let processes: serde_json::Map<String, Value> = procs
            .iter()
            .enumerate()
            .map(|(i, (svc, pod))| {
                (
                    format!("p{}", i + 1),
                    json!({"serviceName": svc, "tags": [{"key": "hostname", "type": "string", "value": pod}]}),
                )
            })
            .collect();
        json!({"traceID": self.id, "spans": spans, "processes": processes, "warnings": null})
    }

    /// Earliest span start, µs.
    pub fn start_us(&self) -> u64 {
        self.spans.iter().map(|s| s.start_us).min().unwrap_or(0)
    }
}

/// How the fake answers `/api/traces`.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Like Jaeger: traces with a span of the service starting in [start, end], newest first,
    /// at most `limit`.
    Normal,
    /// Always this status and body.
    Fail(u16, String),
}

/// A fake Jaeger query service.
pub struct FakeJaeger {
    /// The server.
    pub server: TestServer,
}

impl FakeJaeger {
    /// Serves `traces`.
    pub fn start(traces: Vec<TraceSpec>, mode: Mode) -> FakeJaeger {
        Self::start_hiding(traces, mode, BTreeSet::new())
    }

    /// Serves `traces`, those whose ID is in `hidden` only by ID (`/api/traces/{id}`), never in a
    /// search: as a real Jaeger whose search pages miss them.
    pub fn start_hiding(
        traces: Vec<TraceSpec>,
        mode: Mode,
        hidden: BTreeSet<String>,
    ) -> FakeJaeger {
        let traces: Arc<Vec<(TraceSpec, String)>> = Arc::new(
            traces
                .into_iter()
                .map(|t| {
                    let j = t.to_json().to_string();
                    (t, j)
                })
                .collect(),
        );
        let handler: Handler = Arc::new(move |path, query| {
            let services: BTreeSet<&str> = traces
                .iter()
                .flat_map(|(t, _)| t.spans.iter().map(|s| s.service.as_str()))
                .collect();
            match path {
                "/api/services" => (
                    200,
                    "application/json",
                    json!({"data": services, "total": services.len(), "errors": null}).to_string(),
                ),
                p if p.starts_with("/api/traces/") => {
                    let id = &p["/api/traces/".len()..];
                    match traces.iter().find(|(t, _)| t.id == id) {
                        Some((_, j)) => (
                            200,
                            "application/json",
                            format!(r#"{{"data":[{j}],"total":1,"limit":0,"offset":0,"errors":null}}"#),
                        ),
                        None => (
                            404,
                            "application/json",
                            json!({"data": null, "errors": [{"code": 404, "msg": "trace not found"}]}).to_string(),
                        ),
                    }
                }
                "/api/traces" => {
                    if let Mode::Fail(status, body) = &mode {
                        return (*status, "application/json", body.clone());
                    }
                    let q = query_pairs(query);
                    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                    let Some(service) = get("service") else {
                        return (400, "application/json", json!({"data": null, "errors": [{"code": 400, "msg": "parameter 'service' is required"}]}).to_string());
                    };
                    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
                    let (start, end, limit) = (
                        num("start").unwrap_or(0),
                        num("end").unwrap_or(u64::MAX),
                        num("limit").unwrap_or(20) as usize,
                    );
                    let mut hits: Vec<&(TraceSpec, String)> = traces
                        .iter()
                        .filter(|(t, _)| {
                            !hidden.contains(&t.id)
                                && t.spans.iter().any(|s| {
                                    s.service == service && s.start_us >= start && s.start_us <= end
                                })
                        })
                        .collect();
                    hits.sort_by_key(|(t, _)| std::cmp::Reverse(t.start_us()));
                    hits.truncate(limit);
                    let body = format!(
                        r#"{{"data":[{}],"total":{},"limit":0,"offset":0,"errors":null}}"#,
                        hits.iter()
                            .map(|(_, j)| j.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        hits.len()
                    );
                    (200, "application/json", body)
                }
                _ => (404, "text/plain", "404 page not found\n".into()),
            }
        });
        FakeJaeger {
            server: TestServer::start(handler),
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Requests served.
    pub fn requests(&self) -> usize {
        self.server.requests.load(Ordering::SeqCst)
    }
}
