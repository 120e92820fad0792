use super::*;
use std::collections::BTreeMap;

fn span(id: &str, op: &str, start: u64, dur: u64, refs: &[(&str, &str)], pid: &str) -> String {
    let refs: Vec<String> = refs
        .iter()
        .map(|(k, p)| format!(r#"{{"refType":"{k}","traceID":"t","spanID":"{p}"}}"#))
        .collect();
    format!(
        r#"{{"traceID":"t","spanID":"{id}","operationName":"{op}","references":[{}],"startTime":{start},"duration":{dur},"processID":"{pid}","tags":[{{"key":"span.kind","type":"string","value":"server"}}],"logs":[]}}"#,
        refs.join(",")
    )
}

fn trace(id: &str, spans: &[String]) -> String {
    format!(
        r#"{{"traceID":"{id}","spans":[{}],"processes":{{"p1":{{"serviceName":"front","tags":[{{"key":"hostname","type":"string","value":"front-abc-1"}}]}},"p2":{{"serviceName":"back","tags":[{{"key":"ip","type":"string","value":"10.0.0.1"}},{{"key":"hostname","type":"string","value":"back-xyz-2"}}]}}}},"warnings":null}}"#,
        spans.join(",")
    )
}

fn run(traces: &[String]) -> (TraceCounts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let page = format!(
        r#"{{"data":[{}],"total":0,"limit":0,"offset":0,"errors":null}}"#,
        traces.join(",")
    );
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    p.add_page::<Vec<u8>>(page.as_bytes(), None).unwrap();
    let (c, _) = p.finish().unwrap();
    (c, dir)
}

/// spans.csv as span_id → (ref_type, self_duration, parent_id).
fn spans_of(dir: &Path) -> BTreeMap<String, (String, u64, String)> {
    let text = std::fs::read_to_string(dir.join("spans.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), SPANS_HEADER);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].to_string(),
                (f[3].to_string(), f[10].parse().unwrap(), f[2].to_string()),
            )
        })
        .collect()
}

#[test]
fn parallel_and_overlapping_children_are_subtracted_once() {
    let t = trace(
        "a1",
        &[
            span("A", "GET /", 1000, 100, &[], "p1"),
            span("B", "b", 1010, 40, &[("CHILD_OF", "A")], "p2"),
            span("C", "c", 1020, 40, &[("CHILD_OF", "A")], "p2"),
            span("D", "d", 1070, 10, &[("CHILD_OF", "A")], "p2"),
            span("E", "e", 1060, 10, &[("CHILD_OF", "A")], "p2"), // touches C's end and D's start
        ],
    );
    let (c, dir) = run(&[t]);
    let s = spans_of(dir.path());
    // union of [1010,1050] [1020,1060] [1060,1070] [1070,1080] = [1010,1080] = 70
    assert_eq!(s["A"].1, 30);
    assert_eq!(s["B"].1, 40);
    assert_eq!(c.edges, 4);
    assert_eq!(c.multi_root_traces + c.no_root_traces + c.orphan_spans, 0);
    let edges = std::fs::read_to_string(dir.path().join("edges.csv")).unwrap();
    let row = edges.lines().nth(1).unwrap();
    let f: Vec<&str> = row.split(',').collect();
    assert_eq!(f[0], "a1");
    assert_eq!(f[1], "A"); // parent_id
    assert_eq!(f[8], "back"); // child_ms
    assert_eq!(f[9], "back-xyz-2"); // child_pod
    assert_eq!(f[10], "front");
    assert_eq!(f[11], "front-abc-1");
    assert_eq!(f[14], "30"); // exact_parent_duration
    assert_eq!(f[16], "CHILD_OF");
}

#[test]
fn children_outliving_parents_are_clipped() {
    let t = trace(
        "a2",
        &[
            span("A", "root", 0, 100, &[], "p1"),
            span("B", "late", 90, 60, &[("CHILD_OF", "A")], "p2"),
            span("C", "early", 0, 5, &[("CHILD_OF", "B")], "p2"), // starts before its parent
        ],
    );
    let (c, dir) = run(&[t]);
    let s = spans_of(dir.path());
    assert_eq!(s["A"].1, 90);
    assert_eq!(s["B"].1, 60);
    assert_eq!(c.children_outside_parent, 2);
}

#[test]
fn follows_from_is_an_edge_but_not_subtracted() {
    let t = trace(
        "a3",
        &[
            span("A", "root", 0, 100, &[], "p1"),
            span("B", "async", 50, 250, &[("FOLLOWS_FROM", "A")], "p2"),
            span("C", "sync", 10, 20, &[("CHILD_OF", "A")], "p2"),
        ],
    );
    let (c, dir) = run(&[t]);
    let s = spans_of(dir.path());
    assert_eq!(s["A"].1, 80);
    assert_eq!(s["B"].0, "FOLLOWS_FROM");
    assert_eq!(s["B"].2, "A");
    assert_eq!(c.follows_from_edges, 1);
    let e2e = std::fs::read_to_string(dir.path().join("end_to_end.csv")).unwrap();
    let f: Vec<&str> = e2e.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((f[2], f[3]), ("100", "300")); // root duration, extent
}

#[test]
fn orphans_and_multiple_roots_are_counted_not_dropped() {
    let t1 = trace(
        "o1",
        &[
            span("A", "root", 0, 100, &[], "p1"),
            span("X", "lost", 10, 10, &[("CHILD_OF", "missing")], "p2"),
        ],
    );
    let t2 = trace(
        "m1",
        &[
            span("A", "r1", 0, 10, &[], "p1"),
            span("B", "r2", 20, 10, &[], "p1"),
        ],
    );
    let t3 = trace(
        "n1",
        &[span("X", "lost", 10, 10, &[("CHILD_OF", "gone")], "p2")],
    );
    let (c, dir) = run(&[t1, t2, t3.clone(), t3]);
    assert_eq!(c.traces, 3);
    assert_eq!(c.duplicate_traces, 1);
    assert_eq!(c.orphan_spans, 2);
    assert_eq!(c.traces_with_orphans, 2);
    assert_eq!(c.multi_root_traces, 1);
    assert_eq!(c.no_root_traces, 1);
    let s = std::fs::read_to_string(dir.path().join("spans.csv")).unwrap();
    assert!(
        s.contains("o1,X,missing,ORPHAN,back,back-xyz-2,lost,10,20,10,10,0,0"),
        "{s}"
    );
    let e2e = std::fs::read_to_string(dir.path().join("end_to_end.csv")).unwrap();
    assert!(e2e.contains("m1,0,30,30,2,2,0,front,r1,0"), "{e2e}"); // multi-root: extent
    let summary = std::fs::read_to_string(dir.path().join("traces_summary.csv")).unwrap();
    assert!(summary.contains("multi_root_traces,1"));
}

#[test]
fn statistics_per_operation_and_pod() {
    let traces: Vec<String> = (1..=4)
        .map(|i| {
            trace(
                &format!("s{i}"),
                &[
                    span("A", "GET /", 0, 100 * i, &[], "p1"),
                    span("B", "db", 0, 10 * i, &[("CHILD_OF", "A")], "p2"),
                ],
            )
        })
        .collect();
    let (_, dir) = run(&traces);
    let ops = std::fs::read_to_string(dir.path().join("operations.csv")).unwrap();
    let mut lines = ops.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("microservice,operation,{STAT_COLUMNS}")
    );
    let back = lines.next().unwrap();
    // back/db: self = total = 10,20,30,40 → mean 25, p50 25, p90 37, p95 38.5, p99 39.7
    assert!(back.starts_with("back,db,4,0,25,25,37,38.5,39.7"), "{back}");
    let front = lines.next().unwrap();
    // front self = 90,180,270,360 → mean 225; total mean 250
    assert!(front.starts_with("front,GET /,4,0,225,225,"), "{front}");
    let pods = std::fs::read_to_string(dir.path().join("pods.csv")).unwrap();
    assert!(pods.contains("\nfront,front-abc-1,4,0,225,"), "{pods}");
}

#[test]
fn escaped_strings_and_quotes_survive() {
    let t = trace("q1", &[span("A", "GET /a\\\"b,c", 0, 10, &[], "p1")]);
    let (_, dir) = run(&[t]);
    let s = std::fs::read_to_string(dir.path().join("spans.csv")).unwrap();
    assert!(s.contains("\"GET /a\"\"b,c\""), "{s}");
}

#[test]
fn malformed_json_leaves_no_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    let err = p
        .add_page(
            br#"{"data":[{"traceID":"x","spans":[{"spanID":1}]}]}"#,
            None::<&mut Vec<u8>>,
        )
        .unwrap_err();
    assert!(err.contains("line"), "{err}");
    drop(p);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    let err = p
        .add_page(
            br#"{"data":null,"errors":[{"code":400,"msg":"bad service"}]}"#,
            None::<&mut Vec<u8>>,
        )
        .unwrap_err();
    assert!(err.contains("bad service"), "{err}");
}

#[test]
fn raw_output_keeps_new_traces_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = trace("r1", &[span("A", "x", 0, 10, &[], "p1")]);
    let page = format!(r#"{{"data":[{t},{t}]}}"#);
    let mut raw = Vec::new();
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    assert_eq!(p.add_page(page.as_bytes(), Some(&mut raw)).unwrap(), 1);
    let v: serde_json::Value =
        serde_json::from_slice(&[b"[".as_slice(), &raw, b"]"].concat()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn error_tags_are_counted() {
    let mut ok = span("A", "GET /", 0, 10, &[], "p1");
    let mut bad = span("B", "db", 1, 5, &[("CHILD_OF", "A")], "p2");
    ok = ok.replace(r#""tags":[{"#, r#""tags":[{"value":false,"key":"error"},{"#);
    bad = bad.replace(
        r#""tags":[{"#,
        r#""tags":[{"key":"error","type":"bool","value":true},{"#,
    );
    let (c, dir) = run(&[trace("e1", &[ok, bad])]);
    assert_eq!(c.error_spans, 1);
    let s = std::fs::read_to_string(dir.path().join("spans.csv")).unwrap();
    assert!(
        s.lines()
            .any(|l| l.starts_with("e1,B,") && l.ends_with(",1")),
        "{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("e1,A,") && l.ends_with(",0")),
        "{s}"
    );
    let ops = std::fs::read_to_string(dir.path().join("operations.csv")).unwrap();
    assert!(ops.contains("\nback,db,1,1,"), "{ops}");
}
