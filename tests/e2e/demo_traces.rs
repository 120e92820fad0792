//! End-to-end tests: the demo service traced with OpenTelemetry. A front end and two back ends
//! (`aefm demo serve --otlp-endpoint`) export to a capture server started here that decodes the
//! OTLP/HTTP protobuf bodies; the tests check the span trees across the three processes, the
//! incoming `traceparent` being honoured, the resources, and that SIGTERM flushes everything.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aefm_tests::recording_server::{RecordingServer, Reply};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// Generous: the machine may be busy with other builds and tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// The demo processes; killed if a test fails before stopping them.
struct Demo(Vec<Child>);

impl Drop for Demo {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Demo {
    /// Starts `aefm demo serve` with `args` (after `serve`) and waits until it answers /health.
    fn start(&mut self, port: u16, args: &[String]) {
        let child = Command::new(aefm_tests::bins::bin("aefm"))
            .args(["demo", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn aefm demo");
        self.0.push(child);
        let deadline = Instant::now() + PATIENCE;
        while get(port, "/health", None).is_err() {
            assert!(
                Instant::now() < deadline,
                "demo on port {port} never got ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM to every process (front end first), then their exit statuses.
    fn stop(mut self) -> Vec<ExitStatus> {
        let children = std::mem::take(&mut self.0);
        for c in children.iter().rev() {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        children.into_iter().rev().map(wait_exit).collect()
    }
}

fn wait_exit(mut c: Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = c.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("demo process {} ignored SIGTERM", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One HTTP/1.1 GET over a fresh connection; returns the status code.
fn get(port: u16, path: &str, traceparent: Option<&str>) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(PATIENCE))?;
    let tp = traceparent
        .map(|t| format!("traceparent: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: demo\r\n{tp}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok());
    code.ok_or_else(|| std::io::Error::other(format!("bad answer {answer:?}")))
}

/// A span with its process's `service.name` and `host.name`.
#[derive(Debug)]
struct Got {
    service: String,
    host: Option<String>,
    span: Span,
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// Every span the capture server received, checking each export was an OTLP/HTTP protobuf POST.
fn captured(capture: &RecordingServer) -> Vec<Got> {
    let mut out = Vec::new();
    for r in capture.requests() {
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("POST", "/v1/traces")
        );
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            let service = string_attr(&attrs, "service.name").expect("service.name");
            let host = string_attr(&attrs, "host.name");
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                out.push(Got {
                    service: service.clone(),
                    host: host.clone(),
                    span,
                });
            }
        }
    }
    out
}

/// A capture server answering as an OTLP receiver does (an empty protobuf response).
fn capture_server() -> RecordingServer {
    RecordingServer::start_with(|_| Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
        body: Vec::new(),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `parent` contains `child` in time. Both come from the same machine's clock and the child
/// causally starts after and ends before its parent, so only clock granularity needs slack.
fn assert_nested(parent: &Span, child: &Span) {
    const SLACK_NS: u64 = 1_000;
    assert!(
        child.start_time_unix_nano + SLACK_NS >= parent.start_time_unix_nano
            && child.end_time_unix_nano <= parent.end_time_unix_nano + SLACK_NS,
        "{} not within {}",
        child.name,
        parent.name
    );
    assert!(child.start_time_unix_nano <= child.end_time_unix_nano);
}

fn the_one<'a>(spans: &[&'a Got], what: &str, pred: impl Fn(&Got) -> bool) -> &'a Got {
    let found: Vec<&&Got> = spans.iter().filter(|g| pred(g)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}");
    found[0]
}

/// Checks one request's trace: front SERVER → a CLIENT per back end → that back end's SERVER.
fn check_trace(spans: &[&Got], backs: &[u16], incoming_parent: Option<&str>, host: &str) {
    assert_eq!(spans.len(), 1 + 2 * backs.len(), "{spans:#?}");
    for g in spans {
        assert_eq!(g.host.as_deref(), Some(host), "host.name of {}", g.service);
        let status = g.span.status.clone().unwrap_or_default();
        assert_eq!(status.code, StatusCode::Unset as i32, "{}", g.span.name);
        assert_eq!(
            int_attr(&g.span.attributes, "http.response.status_code"),
            Some(200)
        );
    }
    let front = the_one(spans, "front span", |g| {
        g.span.name == "front" && g.span.kind == SpanKind::Server as i32
    });
    assert_eq!(front.service, "demo-front");
    assert_eq!(
        hex(&front.span.parent_span_id),
        incoming_parent.unwrap_or("")
    );
    for port in backs {
        let call = the_one(spans, "client span", |g| {
            g.span.name == format!("call back-{port}")
        });
        assert_eq!(call.span.kind, SpanKind::Client as i32);
        assert_eq!(call.service, "demo-front");
        assert_eq!(call.span.parent_span_id, front.span.span_id);
        let back = the_one(spans, "back span", |g| {
            g.service == format!("demo-back-{port}")
        });
        assert_eq!(
            (back.span.name.as_str(), back.span.kind),
            ("back", SpanKind::Server as i32)
        );
        assert_eq!(back.span.parent_span_id, call.span.span_id);
        assert_nested(&front.span, &call.span);
        assert_nested(&call.span, &back.span);
    }
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    h.trim().to_string()
}

#[test]
fn demo_traces_cross_three_processes() {
    let capture = capture_server();
    let otlp = vec!["--otlp-endpoint".to_string(), capture.url("")];
    let backs = [free_port(), free_port()];
    let front = free_port();
    let mut demo = Demo(Vec::new());
    let mut front_args: Vec<String> = ["--role", "front", "--work-us", "200"]
        .map(String::from)
        .into();
    for port in backs {
        demo.start(
            port,
            &[&["--role".to_string(), "back".into()][..], &otlp].concat(),
        );
        front_args.extend(["--backend".to_string(), format!("http://127.0.0.1:{port}")]);
    }
    demo.start(front, &[front_args, otlp].concat());

    // Three requests continue a caller's trace, two start their own.
    let incoming: Vec<(String, String)> = (1..=3u8)
        .map(|i| {
            (
                format!("4bf92f3577b34da6a3ce929d0e0e47{i:02x}"),
                format!("00f067aa0ba902{i:02x}"),
            )
        })
        .collect();
    for (trace, parent) in &incoming {
        let tp = format!("00-{trace}-{parent}-01");
        assert_eq!(get(front, "/", Some(&tp)).unwrap(), 200);
    }
    for _ in 0..2 {
        assert_eq!(get(front, "/", None).unwrap(), 200);
    }
    // The batch processor holds the spans (5 s schedule): only the SIGTERM flush sends them.
    for status in demo.stop() {
        assert!(status.success(), "demo exited with {status}");
    }

    let got = captured(&capture);
    let mut traces: BTreeMap<String, Vec<&Got>> = BTreeMap::new();
    for g in &got {
        traces.entry(hex(&g.span.trace_id)).or_default().push(g);
    }
    assert_eq!(
        traces.len(),
        5,
        "one trace per request: {:?}",
        traces.keys()
    );
    let host = hostname();
    for (trace, parent) in &incoming {
        let spans = traces
            .remove(trace)
            .unwrap_or_else(|| panic!("no trace {trace}"));
        check_trace(&spans, &backs, Some(parent), &host);
    }
    for spans in traces.values() {
        check_trace(spans, &backs, None, &host);
    }
}

#[test]
fn demo_traces_mark_failed_calls() {
    let capture = capture_server();
    // Nothing listens on the back end's port: the call fails, the front end answers 502.
    let (front, dead) = (free_port(), free_port());
    let mut demo = Demo(Vec::new());
    let args = [
        "--role",
        "front",
        "--backend",
        &format!("http://127.0.0.1:{dead}"),
    ];
    let args: Vec<String> = args.map(String::from).into();
    demo.start(
        front,
        &[args, vec!["--otlp-endpoint".into(), capture.url("/")]].concat(),
    );
    assert_eq!(get(front, "/", None).unwrap(), 502);
    for status in demo.stop() {
        assert!(status.success(), "demo exited with {status}");
    }

    let got = captured(&capture);
    assert_eq!(got.len(), 2, "{got:#?}");
    let error = StatusCode::Error as i32;
    let call = got
        .iter()
        .find(|g| g.span.kind == SpanKind::Client as i32)
        .expect("client span");
    assert_eq!(call.span.name, format!("call back-{dead}"));
    assert_eq!(call.span.status.as_ref().map(|s| s.code), Some(error));
    let server = got
        .iter()
        .find(|g| g.span.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(server.span.status.as_ref().map(|s| s.code), Some(error));
    assert_eq!(
        int_attr(&server.span.attributes, "http.response.status_code"),
        Some(502)
    );
    assert_eq!(call.span.parent_span_id, server.span.span_id);
}
