//! Tests of the receiver as a whole: spill versus no spill, window selection, self times through
//! the processor, and the HTTP answers. Also the request builders the decode tests share.

use std::io::{Read, Write};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::collect::{collect, Select};
use super::decode::to_records;
use super::store::Store;
use super::*;

/// One test span: trace `trace`, ID `id`, parent `parent` (0: none), times in µs.
#[derive(Clone, Copy)]
pub(super) struct S {
    pub trace: u64,
    pub id: u64,
    pub parent: u64,
    pub name: &'static str,
    pub start_us: u64,
    pub end_us: u64,
    pub error: bool,
}

/// A string attribute.
pub(super) fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The 16-byte trace ID of test trace `t`: spread over the whole ID range (a multiplicative
/// hash), as random IDs are.
pub(super) fn trace_id(t: u64) -> Vec<u8> {
    let hi = t.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    [hi.to_be_bytes(), t.to_be_bytes()].concat()
}

/// A request with one resource per `(attributes, spans)`.
pub(super) fn request(resources: &[(Vec<KeyValue>, Vec<S>)]) -> ExportTraceServiceRequest {
    let span = |s: &S| Span {
        trace_id: trace_id(s.trace),
        span_id: s.id.to_be_bytes().to_vec(),
        parent_span_id: if s.parent == 0 {
            vec![]
        } else {
            s.parent.to_be_bytes().to_vec()
        },
        name: s.name.into(),
        start_time_unix_nano: s.start_us * 1000,
        end_time_unix_nano: s.end_us * 1000 + 999,
        status: s.error.then(|| Status {
            code: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: resources
            .iter()
            .map(|(attrs, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs.clone(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: spans.iter().map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// `n` traces of five spans over two services, with errors and orphans sprinkled in.
fn many_traces(n: u64) -> Vec<(Vec<KeyValue>, Vec<S>)> {
    let mut front = Vec::new();
    let mut back = Vec::new();
    for t in 1..=n {
        let base = 1_700_000_000_000_000 + t * 1_000;
        let id = |k: u64| t * 10 + k;
        let s = |k, parent, start, end| S {
            trace: t,
            id: id(k),
            parent,
            name: ["root", "a", "b", "c", "d"][k as usize],
            start_us: base + start,
            end_us: base + end,
            error: (t + k).is_multiple_of(7),
        };
        front.push(s(0, 0, 0, 500 + t % 13));
        front.push(s(1, id(0), 10, 200));
        back.push(s(2, id(0), 50, 300 + t % 5));
        back.push(s(3, id(2), 60, 400));
        // Every fourth trace loses a parent: an orphan.
        back.push(s(
            4,
            if t.is_multiple_of(4) { 999_999 } else { id(1) },
            20,
            30,
        ));
    }
    vec![
        (
            vec![kv("service.name", "front"), kv("k8s.pod.name", "front-7f")],
            front,
        ),
        (
            vec![kv("service.name", "back"), kv("host.name", "node-2")],
            back,
        ),
    ]
}

/// The tables of `resources` sent one span per request into a store bounded at `bound` bytes.
fn tables(
    resources: &[(Vec<KeyValue>, Vec<S>)],
    bound: usize,
    select: Select,
) -> (Vec<(String, Vec<u8>)>, collect::Sorted) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::new(bound, tmp.path());
    for (attrs, spans) in resources {
        for s in spans {
            let mut rec = Vec::new();
            let n = to_records(&request(&[(attrs.clone(), vec![*s])]), &mut rec).unwrap();
            store.push(&rec, n).unwrap();
        }
    }
    let out = tmp.path().join("out");
    let mut p = TraceProcessor::create_with(&out, false).unwrap();
    let sorted = collect(store.take().unwrap(), select, bound, tmp.path(), &mut p).unwrap();
    p.finish().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    (files, sorted)
}

#[test]
fn spilling_gives_the_same_tables() {
    let traces = many_traces(400);
    let (small, s) = tables(&traces, 4 << 10, Select::All);
    let (big, b) = tables(&traces, 64 << 20, Select::All);
    assert!(s.buckets > 10, "{} buckets", s.buckets);
    assert_eq!(b.buckets, 1);
    assert_eq!((s.written, b.written), (2000, 2000));
    assert_eq!(small.len(), 6);
    for ((name, a), (_, b)) in small.iter().zip(&big) {
        assert_eq!(a, b, "{name} differs");
    }
    let spans =
        String::from_utf8(big.iter().find(|f| f.0 == "spans.csv").unwrap().1.clone()).unwrap();
    assert_eq!(spans.lines().count(), 2001);
    assert_eq!(
        spans.lines().filter(|l| l.contains(",ORPHAN,")).count(),
        100
    );
}

#[test]
fn window_takes_traces_by_their_root_start() {
    let traces = many_traces(10);
    // Trace t starts at base + t ms: the window holds traces 3, 4 and 5.
    let t0 = 1_700_000_000_000_000_000u64;
    let select = Select::Window {
        start_ns: t0 + 3_000_000,
        end_ns: t0 + 6_000_000,
    };
    let (files, sorted) = tables(&traces, 1 << 20, select);
    assert_eq!(
        (sorted.dropped, sorted.written, sorted.kept_spans),
        (10, 15, 25)
    );
    let e2e = String::from_utf8(
        files
            .iter()
            .find(|f| f.0 == "end_to_end.csv")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert_eq!(e2e.lines().count(), 4);
}

#[test]
fn self_times_through_the_processor() {
    let s = |id, parent, start_us, end_us| S {
        trace: 1,
        id,
        parent,
        name: "op",
        start_us,
        end_us,
        error: false,
    };
    // Root 0..100; parallel children 10..50 and 30..70 (union 60); a child 80..150 that outlives
    // the root (counts 20 inside it): root self time 100 - 60 - 20 = 20.
    let spans = vec![
        s(1, 0, 0, 100),
        s(2, 1, 10, 50),
        s(3, 1, 30, 70),
        s(4, 1, 80, 150),
        s(5, 2, 20, 25),
    ];
    let (files, _) = tables(
        &[(vec![kv("service.name", "x")], spans)],
        1 << 20,
        Select::All,
    );
    let csv =
        String::from_utf8(files.iter().find(|f| f.0 == "spans.csv").unwrap().1.clone()).unwrap();
    let self_of = |span: &str| -> String {
        let line = csv
            .lines()
            .find(|l| l.split(',').nth(1) == Some(span))
            .unwrap();
        line.split(',').nth(10).unwrap().to_string()
    };
    assert_eq!(self_of("0000000000000001"), "20");
    assert_eq!(self_of("0000000000000002"), "35");
    assert_eq!(self_of("0000000000000004"), "70");
    // No k8s.pod.name or host.name: the pod column is the service.
    assert!(csv.lines().nth(1).unwrap().contains(",x,x,op,"));
}

/// Sends one raw HTTP/1.1 request and returns the status and body.
fn send(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    send_part(addr, head, body.len(), body)
}

/// Sends a request declaring `len` body bytes but only `body`, and reads the answer.
fn send_part(addr: std::net::SocketAddr, head: &str, len: usize, body: &[u8]) -> (u16, String) {
    send_raw(addr, &format!("{head}\r\nContent-Length: {len}"), body)
}

/// Sends `head` (request line and headers), an empty line and `body` as they are; reads the
/// answer.
fn send_raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "{head}\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    c.write_all(body).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let out = String::from_utf8(raw).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn answers_each_kind_of_request() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_body: 1000,
        spill_dir: tmp.path().into(),
        ..Settings::default()
    })
    .unwrap();
    let a = r.addr();
    let good = request(&many_traces(1)[..1]).encode_to_vec();
    let pb = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf";
    assert_eq!(send(a, pb, &good), (200, String::new()));
    assert_eq!(
        send(
            a,
            "POST /v1/traces HTTP/1.1\r\nContent-Type: application/json",
            b"{}"
        ),
        (200, "{}".into())
    );
    let (st, why) = send(a, pb, &good[..good.len() - 3]);
    assert_eq!(st, 400);
    assert!(why.contains("invalid protobuf"), "{why}");
    assert_eq!(
        send(
            a,
            "POST /v1/traces HTTP/1.1\r\nContent-Type: text/plain",
            &good
        )
        .0,
        415
    );
    assert_eq!(
        send(a, &format!("{pb}\r\nContent-Encoding: br"), &good).0,
        415
    );
    // Refused from the declared length: the body is never sent.
    assert_eq!(send_part(a, pb, 1001, b"").0, 413);
    // A chunked body is cut off as soon as it passes the limit.
    let chunked = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked";
    assert_eq!(
        send_raw(a, chunked, &[b"3e9\r\n".as_slice(), &[0u8; 1001]].concat()).0,
        413
    );
    assert_eq!(
        send(
            a,
            "POST /v1/logs HTTP/1.1\r\nContent-Type: application/json",
            b"{}"
        )
        .0,
        404
    );
    assert_eq!(send(a, "GET /v1/traces HTTP/1.1", b"").0, 405);
    let gzip = |b: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b).unwrap();
        gz.finish().unwrap()
    };
    let gz = format!("{pb}\r\nContent-Encoding: gzip");
    assert_eq!(send(a, &gz, &gzip(&good)).0, 200);
    // Small on the wire, past the limit once inflated.
    assert_eq!(send(a, &gz, &gzip(&[0; 5000])).0, 413);
    assert_eq!(
        r.received(),
        Received {
            requests: 11,
            spans: 4,
            rejected: 8
        }
    );
    let (counts, _) = r.collect_all(&tmp.path().join("out")).unwrap();
    assert_eq!((counts.traces, counts.spans), (1, 4));
    let summary = std::fs::read_to_string(tmp.path().join("out/traces_summary.csv")).unwrap();
    assert!(summary.contains("otlp_rejected_requests,8\n"), "{summary}");
    r.stop();
}

#[test]
fn sizes_parse_with_binary_suffixes() {
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("16M").unwrap(), 16 << 20);
    assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
    assert_eq!(parse_size("1g").unwrap(), 1 << 30);
    for bad in ["", "0", "M", "12X", "-1", "99999999999999999999G"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
}

#[test]
fn consecutive_windows_take_each_trace_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        spill_dir: tmp.path().into(),
        grace: Duration::ZERO,
        ..Settings::default()
    })
    .unwrap();
    // Trace t starts t ms after T0 (see many_traces).
    let body = request(&many_traces(6)).encode_to_vec();
    let pb = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf";
    assert_eq!(send(r.addr(), pb, &body).0, 200);
    let t0 = std::time::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000);
    let ms = |n| t0 + Duration::from_millis(n);
    // Traces 1..=3, then 4..=6: the second window finds the traces the first put back.
    for (i, (from, to)) in [(1, 4), (4, 7)].into_iter().enumerate() {
        let dir = tmp.path().join(format!("w{i}"));
        let window = Window::new(ms(from), ms(to)).unwrap();
        let (counts, _) = r.collect_window(&window, &dir).unwrap();
        assert_eq!((counts.traces, counts.spans), (3, 15), "window {i}");
    }
    // Nothing is left for a third window.
    let (counts, _) = r.collect_all(&tmp.path().join("rest")).unwrap();
    assert_eq!(counts.spans, 0);
}
