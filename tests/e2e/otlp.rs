//! End-to-end test: the OTLP/HTTP receiver fed by a real emitter, the official OpenTelemetry
//! Python SDK (`tests/otlp/emit_spans.py`), once through the official protobuf exporter and once
//! as OTLP JSON, with span trees whose self times are known by construction; then bad requests
//! (truncated protobuf, wrong content type, oversized body) that must be refused while the
//! receiver keeps serving.
//!
//! The Python environment comes from `scripts/setup` (`$AEFM_VENV`, default
//! `~/.cache/aefm/venv`) or `AEFM_OTEL_PYTHON`. Without it the test says why and passes, unless
//! `AEFM_REQUIRE_OTEL` is set (as `scripts/test` does).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aefm_collector::cli::{execute, CollectCommand};
use aefm_collector::otlp::{Receiver, Settings};
use aefm_collector::Window;
use clap::Parser;

/// The Python with the OpenTelemetry SDK and exporter, or why there is none.
fn otel_python() -> Result<PathBuf, String> {
    let python = match std::env::var_os("AEFM_OTEL_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let venv = std::env::var_os("AEFM_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/aefm/venv")
                });
            venv.join("bin/python")
        }
    };
    let check = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .output();
    match check {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => Err(format!(
            "{} lacks the OpenTelemetry SDK: {}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("{}: {e} (run scripts/setup)", python.display())),
    }
}

/// Runs the emitter; returns the trace ID and the span IDs by name.
fn emit(
    python: &Path,
    addr: SocketAddr,
    mode: &str,
    base_ns: u64,
) -> (String, BTreeMap<String, String>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp/emit_spans.py");
    let endpoint = format!("http://{addr}/v1/traces");
    let out = Command::new(python)
        .arg(&script)
        .args([&endpoint, mode, &base_ns.to_string()])
        .output()
        .expect("running emit_spans.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "emit_spans.py {mode} failed: {stderr}"
    );
    // The SDK logs failed exports without failing: any log line means a refused request.
    assert!(!stderr.contains("Failed to export"), "{mode}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("emitter output");
    let spans = v["spans"].as_object().expect("spans").iter();
    let ids = spans
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (v["trace_id"].as_str().unwrap().to_string(), ids)
}

/// Sends a raw request declaring `len` body bytes but writing only `body`; the status answered.
fn raw(addr: SocketAddr, content_type: &str, len: usize, body: &[u8]) -> u16 {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    c.write_all(body).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Rows of a CSV written by the collector (no field here holds a comma).
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

/// The tree's truths (see emit_spans.py): span → (service, pod, self time µs, ref_type).
const TRUTH: [(&str, &str, &str, u64, &str); 6] = [
    ("root", "frontend", "host-a", 400, "ROOT"),
    ("auth", "backend", "backend-pod-1", 300, "CHILD_OF"),
    ("store", "backend", "backend-pod-1", 350, "CHILD_OF"),
    ("db", "backend", "backend-pod-1", 50, "CHILD_OF"),
    ("async-log", "backend", "backend-pod-1", 600, "CHILD_OF"),
    ("orphan", "backend", "backend-pod-1", 300, "ORPHAN"),
];

#[test]
fn python_sdk_spans_become_trace_tables() {
    let python = match otel_python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("AEFM_REQUIRE_OTEL").is_none() => {
            eprintln!("skipping the OTLP end-to-end test: {why}");
            return;
        }
        Err(why) => panic!("AEFM_REQUIRE_OTEL is set: {why}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        // A small bound: the spans of this test pass through the spill file.
        memory_bound: 256,
        spill_dir: tmp.path().into(),
        grace: Duration::ZERO,
        ..Settings::default()
    })
    .unwrap();
    let addr = receiver.addr();
    let start = SystemTime::now() - Duration::from_secs(60);
    let base = |ago: u64| {
        (SystemTime::now() - Duration::from_secs(ago))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let pb = emit(&python, addr, "protobuf", base(30));

    // Field 1 (resourceSpans) announces 16 bytes and has 1: a truncated protobuf.
    assert_eq!(
        raw(addr, "application/x-protobuf", 3, &[0x0a, 0x10, 0x01]),
        400
    );
    assert_eq!(raw(addr, "text/plain", 2, b"{}"), 415);
    // Over the 16 MiB default, refused from its length: the body is never sent.
    assert_eq!(raw(addr, "application/x-protobuf", 17 << 20, b""), 413);

    let json = emit(&python, addr, "json", base(20));
    let window = Window::new(start, SystemTime::now()).unwrap();
    let out = tmp.path().join("tables");
    let (counts, _) = receiver.collect_window(&window, &out).unwrap();
    assert_eq!(
        (counts.traces, counts.spans, counts.orphan_spans),
        (2, 12, 2)
    );

    let spans = csv(&out.join("spans.csv"));
    let e2e = csv(&out.join("end_to_end.csv"));
    for (trace_id, ids) in [&pb, &json] {
        for (name, service, pod, self_us, ref_type) in TRUTH {
            let row = spans
                .iter()
                .find(|r| r["span_id"] == ids[name])
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(&row["trace_id"], trace_id);
            assert_eq!(
                (&*row["microservice"], &*row["pod"], &*row["operation"]),
                (service, pod, name)
            );
            assert_eq!(row["self_duration"], self_us.to_string(), "{name}");
            assert_eq!(row["ref_type"], ref_type, "{name}");
            assert_eq!(
                row["error"],
                if name == "store" { "1" } else { "0" },
                "{name}"
            );
        }
        let t = e2e
            .iter()
            .find(|r| &r["trace_id"] == trace_id)
            .expect("end_to_end row");
        // The root's duration; the extent runs to the orphan's end.
        assert_eq!((&*t["trace_duration"], &*t["extent"]), ("1000", "2300"));
        assert_eq!(
            (&*t["spans"], &*t["roots"], &*t["orphans"], &*t["errors"]),
            ("6", "1", "1", "1")
        );
        assert_eq!(
            (&*t["root_ms"], &*t["root_operation"]),
            ("frontend", "root")
        );
    }
    let summary = std::fs::read_to_string(out.join("traces_summary.csv")).unwrap();
    assert!(summary.contains("otlp_rejected_requests,3\n"), "{summary}");
    assert!(summary.contains("otlp_spans_received,12\n"), "{summary}");
    // The 256-byte bound made the spans go through the spill file and the bucket files.
    assert!(!summary.contains("otlp_spilled_bytes,0\n"), "{summary}");
    assert!(!summary.contains("otlp_buckets,1\n"), "{summary}");
    receiver.stop();
}

/// `aefm collect ...` as the binary parses it.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: CollectCommand,
}

/// Two spans in OTLP JSON as the specification writes it, written here rather than by an SDK:
/// a root 0..1000 µs and a child 200..700 µs (root self time 500) after `base_us`.
fn json_spans(base_us: u64) -> String {
    let span = |id: &str, parent: &str, start: u64, end: u64| {
        format!(
            r#"{{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"{id}","parentSpanId":"{parent}","name":"op-{id}","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}"#,
            (base_us + start) * 1000,
            (base_us + end) * 1000
        )
    };
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"cli-svc"}}}}]}},"scopeSpans":[{{"spans":[{},{}]}}]}}]}}"#,
        span("00f067aa0ba902b7", "", 0, 1000),
        span("00f067aa0ba902b8", "00f067aa0ba902b7", 200, 700)
    )
}

#[test]
fn cli_receives_for_its_duration_then_writes_the_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cli");
    // A free port, released for the command to bind (nothing else binds loopback ports here).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args = [
        "x",
        "otlp",
        "--listen",
        &addr.to_string(),
        "--duration",
        "4s",
    ];
    let cli = Cli::try_parse_from(args.iter().copied().chain([
        "--memory-bound",
        "1K",
        "--out",
        out.to_str().unwrap(),
    ]))
    .unwrap();
    let running = std::thread::spawn(move || execute(&cli.command));
    let body = json_spans(1_700_000_000_000_000);
    // Retry until the receiver listens.
    let status = (0..200)
        .find_map(|_| match std::net::TcpStream::connect(addr) {
            Ok(_) => Some(raw(addr, "application/json", body.len(), body.as_bytes())),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        })
        .expect("the receiver never listened");
    assert_eq!(status, 200);
    let written = running.join().unwrap().unwrap();
    assert_eq!(written.len(), 6);
    let spans = csv(&out.join("spans.csv"));
    let selfs: Vec<_> = spans
        .iter()
        .map(|r| (&*r["operation"], &*r["self_duration"], &*r["pod"]))
        .collect();
    assert_eq!(
        selfs,
        [
            ("op-00f067aa0ba902b7", "500", "cli-svc"),
            ("op-00f067aa0ba902b8", "500", "cli-svc")
        ]
    );
}
