//! Decoding tests: protobuf built with `opentelemetry-proto` and encoded with `prost`, and OTLP
//! JSON as the specification writes it.

use super::*;
use crate::otlp::store::decode_at;
use crate::otlp::tests::{kv, request, trace_id, S};

/// All records of `b`.
fn records(b: &[u8]) -> Vec<SpanRecord<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let (r, next) = decode_at(b, at).unwrap();
        out.push(r);
        at = next;
    }
    out
}

#[test]
fn protobuf_spans_keep_ids_times_status_service_and_pod() {
    let s = |id, parent, error| S {
        trace: 7,
        id,
        parent,
        name: "GET /x",
        start_us: 1_000,
        end_us: 3_000,
        error,
    };
    let req = request(&[
        (
            vec![
                kv("service.name", "front"),
                kv("host.name", "h1"),
                kv("k8s.pod.name", "pod-1"),
            ],
            vec![s(1, 0, false), s(2, 1, true)],
        ),
        (
            vec![kv("service.name", "back"), kv("host.name", "h2")],
            vec![s(3, 2, false)],
        ),
        (vec![], vec![s(4, 3, false)]),
    ]);
    let body = req.encode_to_vec();
    let back = decode(&body, Encoding::Protobuf).unwrap();
    let mut out = Vec::new();
    assert_eq!(to_records(&back, &mut out).unwrap(), 4);
    let r = records(&out);
    let tid: [u8; 16] = trace_id(7).try_into().unwrap();
    assert_eq!(r[0].trace_id, tid);
    assert_eq!(r[0].span_id, 1u64.to_be_bytes());
    assert_eq!(r[0].parent_id, None);
    assert_eq!(r[1].parent_id, Some(1u64.to_be_bytes()));
    assert_eq!((r[0].error, r[1].error), (false, true));
    assert_eq!((r[0].start_ns, r[0].end_ns), (1_000_000, 3_000_999));
    assert_eq!(r[0].name, "GET /x");
    // k8s.pod.name wins over host.name; host.name next; then the service.
    assert_eq!((r[0].service, r[0].pod), ("front", "pod-1"));
    assert_eq!((r[2].service, r[2].pod), ("back", "h2"));
    assert_eq!(
        (r[3].service, r[3].pod),
        ("unknown_service", "unknown_service")
    );
}

/// A request as the OTLP specification's JSON example writes it: hex IDs, lowerCamelCase keys,
/// 64-bit integers as strings, enums as integers, plus fields this receiver does not know.
const OTLP_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "my.service"}},
      {"key": "host.name", "value": {"stringValue": "node-9"}},
      {"key": "pid", "value": {"intValue": "4242"}}
    ]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
        "status": {"code": 2, "message": "boom"},
        "links": [{"traceId": "00000000000000000000000000000001", "spanId": "0000000000000002"}],
        "somethingNew": {"x": 1}
      }]
    }]
  }]
}"#;

#[test]
fn otlp_json_follows_the_specification_mapping() {
    let req = decode(OTLP_JSON.as_bytes(), Encoding::Json).unwrap();
    let mut out = Vec::new();
    assert_eq!(to_records(&req, &mut out).unwrap(), 1);
    let r = &records(&out)[0];
    assert_eq!(r.trace_id[..4], [0x5b, 0x8e, 0xff, 0xf7]);
    assert_eq!(r.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    assert_eq!(r.parent_id.unwrap()[7], 0x73);
    assert_eq!(
        (r.start_ns, r.end_ns),
        (1_544_712_660_000_000_000, 1_544_712_661_000_000_000)
    );
    assert!(r.error);
    assert_eq!(
        (r.service, r.pod, r.name),
        ("my.service", "node-9", "I'm a server span")
    );
}

#[test]
fn malformed_bodies_are_errors_with_a_reason() {
    let body = request(&[(
        vec![kv("service.name", "a")],
        vec![S {
            trace: 1,
            id: 1,
            parent: 0,
            name: "x",
            start_us: 1,
            end_us: 2,
            error: false,
        }],
    )])
    .encode_to_vec();
    let e = decode(&body[..body.len() - 2], Encoding::Protobuf).unwrap_err();
    assert!(matches!(e, DecodeError::Protobuf(_)), "{e}");
    let e = decode(b"{\"resourceSpans\": [", Encoding::Json).unwrap_err();
    assert!(e.to_string().starts_with("invalid OTLP JSON"), "{e}");
    let bad_hex = OTLP_JSON.replace("EEE19B7EC3C1B174", "XYZ");
    assert!(decode(bad_hex.as_bytes(), Encoding::Json).is_err());
    // A short span ID decodes but is refused, and nothing of the request is kept.
    let short = OTLP_JSON.replace("EEE19B7EC3C1B174", "EEE19B7E");
    let req = decode(short.as_bytes(), Encoding::Json).unwrap();
    let mut out = vec![1, 2, 3];
    let e = to_records(&req, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "span 0 of the request: spanId has 4 bytes, expected 8"
    );
    assert_eq!(out, [1, 2, 3]);
    // Enum names are not OTLP JSON.
    let named = OTLP_JSON.replace("\"code\": 2", "\"code\": \"STATUS_CODE_ERROR\"");
    assert!(decode(named.as_bytes(), Encoding::Json).is_err());
}

#[test]
fn content_types_responses_and_gzip() {
    let e = Encoding::from_content_type;
    assert_eq!(e("application/x-protobuf"), Some(Encoding::Protobuf));
    assert_eq!(e("Application/JSON; charset=utf-8"), Some(Encoding::Json));
    assert_eq!(e("application/grpc"), None);
    assert!(Encoding::Protobuf.empty_response().is_empty());
    let json = Encoding::Json.empty_response();
    let back: ExportTraceServiceResponse = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, ExportTraceServiceResponse::default());
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[7u8; 5000]).unwrap();
    let z = gz.finish().unwrap();
    assert_eq!(gunzip(&z, 5000).unwrap(), vec![7u8; 5000]);
    assert!(matches!(
        gunzip(&z, 4999),
        Err(GzipError::TooLarge { limit: 4999 })
    ));
    assert!(matches!(
        gunzip(b"not gzip", 100),
        Err(GzipError::Invalid(_))
    ));
}
