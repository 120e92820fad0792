//! Spans of one trace to the Jaeger JSON trace object that [`crate::traces::TraceProcessor`]
//! reads, with exactly the fields it uses:
//!
//! * `traceID`, and per span `traceID`, `spanID` (lowercase hex), `operationName`, `startTime`
//!   and `duration` (µs: start is `start_ns / 1000`, duration is `end_ns / 1000` minus that, never
//!   negative), and `processID`;
//! * `references`: one `CHILD_OF` to the parent span, when the span has one (OTLP links are not
//!   parents and are ignored);
//! * `tags`: `error` = `true` (boolean) when the status is `STATUS_CODE_ERROR`, else none;
//! * `processes`: one per distinct (service, pod) of the trace, `p1`, `p2`... in order of first
//!   use, with `serviceName` and the pod as the `hostname` tag (the processor's pod column).

use std::io::Write;

use super::store::SpanRecord;

/// Lowercase hex of `b`.
fn hex(out: &mut Vec<u8>, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)]);
        out.push(DIGITS[usize::from(x & 15)]);
    }
}

/// `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends the Jaeger JSON trace object of `spans` (all of one trace, not empty) to `out`.
pub fn jaeger_trace(spans: &[SpanRecord<'_>], out: &mut Vec<u8>) {
    let Some(first) = spans.first() else { return };
    let mut trace_id = Vec::with_capacity(32);
    hex(&mut trace_id, &first.trace_id);
    let mut procs: Vec<(&str, &str)> = Vec::new();
    out.extend_from_slice(b"{\"traceID\":\"");
    out.extend_from_slice(&trace_id);
    out.extend_from_slice(b"\",\"spans\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A trace has few processes: a linear search beats hashing.
        let p = match procs.iter().position(|&k| k == (s.service, s.pod)) {
            Some(p) => p,
            None => {
                procs.push((s.service, s.pod));
                procs.len() - 1
            }
        };
        span(out, &trace_id, s, p + 1);
    }
    out.extend_from_slice(b"],\"processes\":{");
    for (i, (service, pod)) in procs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "\"p{}\":{{\"serviceName\":", i + 1);
        string(out, service);
        out.extend_from_slice(b",\"tags\":[{\"key\":\"hostname\",\"type\":\"string\",\"value\":");
        string(out, pod);
        out.extend_from_slice(b"}]}");
    }
    out.extend_from_slice(b"}}");
}

/// One span object; `process` is the number of its `p<N>` process.
fn span(out: &mut Vec<u8>, trace_id: &[u8], s: &SpanRecord<'_>, process: usize) {
    out.extend_from_slice(b"{\"traceID\":\"");
    out.extend_from_slice(trace_id);
    out.extend_from_slice(b"\",\"spanID\":\"");
    hex(out, &s.span_id);
    out.extend_from_slice(b"\",\"operationName\":");
    string(out, s.name);
    out.extend_from_slice(b",\"references\":[");
    if let Some(p) = s.parent_id {
        out.extend_from_slice(b"{\"refType\":\"CHILD_OF\",\"traceID\":\"");
        out.extend_from_slice(trace_id);
        out.extend_from_slice(b"\",\"spanID\":\"");
        hex(out, &p);
        out.extend_from_slice(b"\"}");
    }
    let start = s.start_ns / 1000;
    let duration = (s.end_ns / 1000).saturating_sub(start);
    let _ = write!(
        out,
        "],\"startTime\":{start},\"duration\":{duration},\"tags\":["
    );
    if s.error {
        out.extend_from_slice(b"{\"key\":\"error\",\"type\":\"bool\",\"value\":true}");
    }
    let _ = write!(out, "],\"processID\":\"p{process}\"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_has_the_fields_the_processor_reads() {
        let a = SpanRecord {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_id: None,
            name: "GET /\"x\"",
            start_ns: 1_700_000_000_123_456_789,
            end_ns: 1_700_000_000_124_456_000,
            error: false,
            service: "front",
            pod: "front-1",
        };
        let b = SpanRecord {
            span_id: [2; 8],
            parent_id: Some([1; 8]),
            name: "db",
            error: true,
            service: "db",
            pod: "node-a",
            ..a.clone()
        };
        let mut out = Vec::new();
        jaeger_trace(&[a, b.clone(), b], &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let tid = "ab".repeat(16);
        assert_eq!(v["traceID"], tid.as_str());
        let s0 = &v["spans"][0];
        assert_eq!(s0["operationName"], "GET /\"x\"");
        assert_eq!(s0["startTime"], 1_700_000_000_123_456u64);
        // End 1_700_000_000_124_456 µs (ns truncated) minus the start.
        assert_eq!(s0["duration"], 1000);
        assert_eq!(s0["references"], serde_json::json!([]));
        assert_eq!(s0["tags"], serde_json::json!([]));
        let s1 = &v["spans"][1];
        assert_eq!(s1["spanID"], "0202020202020202");
        assert_eq!(
            s1["references"],
            serde_json::json!([{"refType": "CHILD_OF", "traceID": tid, "spanID": "0101010101010101"}])
        );
        assert_eq!(
            s1["tags"],
            serde_json::json!([{"key": "error", "type": "bool", "value": true}])
        );
        // The same (service, pod) shares one process.
        assert_eq!(v["spans"][2]["processID"], "p2");
        assert_eq!(
            v["processes"],
            serde_json::json!({
                "p1": {"serviceName": "front", "tags": [{"key": "hostname", "type": "string", "value": "front-1"}]},
                "p2": {"serviceName": "db", "tags": [{"key": "hostname", "type": "string", "value": "node-a"}]},
            })
        );
    }
}
