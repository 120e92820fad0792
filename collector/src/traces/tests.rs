//! Tests of the trace tables: the span tree, self times, statistics, counts and the bytes of
//! every table, through the public API.

use super::*;
use std::collections::BTreeMap;

pub(super) fn span(
    id: &str,
    op: &str,
    start: u64,
    dur: u64,
    refs: &[(&str, &str)],
    pid: &str,
) -> String {
    let refs: Vec<String> = refs
        .iter()
        .map(|(k, p)| format!(r#"{{"refType":"{k}","traceID":"t","spanID":"{p}"}}"#))
        .collect();
    format!(
        r#"{{"traceID":"t","spanID":"{id}","operationName":"{op}","references":[{}],"startTime":{start},"duration":{dur},"processID":"{pid}","tags":[{{"key":"span.kind","type":"string","value":"server"}}],"logs":[]}}"#,
        refs.join(",")
    )
}

pub(super) fn trace(id: &str, spans: &[String]) -> String {
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
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1 column 44 (byte 43)"), "{err}");
    assert!(err.contains("`spanID`"), "{err}");
    drop(p);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    let err = p
        .add_page(
            br#"{"data":null,"errors":[{"code":400,"msg":"bad service"}]}"#,
            None::<&mut Vec<u8>>,
        )
        .unwrap_err();
    assert!(
        matches!(&err, PageError::Reported(m) if m == &["bad service"]),
        "{err}"
    );
    assert_eq!(err.to_string(), "Jaeger reported errors: bad service");
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

// ---------------------------------------------------------------- streaming and the scanner

/// All tables of a finished processor in `dir`, by file name.
fn tables(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A page that exercises most of the format: escapes (kept and skipped), non-ASCII text, a
/// comma to quote, FOLLOWS_FROM, orphans, a duplicate trace, error tags, unknown keys and values
/// of every type, processes without tags or without spans, `references: null`.
fn varied_page() -> String {
    let mut ok = span("A", "GET /é,\\\"x\\\"\\n", 0, 100, &[], "p1");
    ok = ok.replace(
        r#""tags":[{"#,
        r#""extra":{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00"],"b":{}},"tags":[{"key":"err\u006fr","value":"true"},{"#,
    );
    let t1 = trace(
        "t1\\u0031",
        &[
            ok,
            span("B", "b", 10, 40, &[("CHILD_OF", "A")], "p2"),
            span("C", "c", 20, 200, &[("FOLLOWS_FROM", "A")], "p2"),
            span("D", "d", 20, 5, &[("CHILD_OF", "missing")], "p9"),
            span(
                "E",
                "\\ud83d\\ude00",
                30,
                5,
                &[("FOLLOWS_FROM", "zz"), ("CHILD_OF", "B")],
                "p1",
            ),
        ],
    );
    let t2 = trace("t2", &[span("X", "x", 5, 1, &[], "p2")])
        .replace(
            r#""spans":["#,
            r#""spans":[{"spanID":"N","startTime":7,"references":null},"#,
        )
        .replace(
            r#""processes":{"#,
            r#""processes":{"p3":{"serviceName":"idle"},"#,
        );
    format!(r#"{{"data":[{t1},{t2},{t1}],"total":3,"limit":0,"offset":0,"errors":null}}"#)
}

fn page_tables(page: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    p.add_page::<Vec<u8>>(page.as_bytes(), None).unwrap();
    p.finish().unwrap();
    tables(dir.path())
}

/// Tables of `page` written direct (`O_DIRECT` where the file system has it) or buffered.
fn page_tables_with(page: &str, direct: bool) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut p = TraceProcessor::create_with(dir.path(), direct).unwrap();
    p.add_page::<Vec<u8>>(page.as_bytes(), None).unwrap();
    p.finish().unwrap();
    tables(dir.path())
}

#[test]
fn direct_and_buffered_tables_are_byte_identical() {
    // Several MiB of rows: many direct blocks per table, buffer swaps with the writer thread,
    // and tails of every length; the varied page adds quoting, escapes and odd traces.
    let long = "o".repeat(200);
    let mut traces = Vec::new();
    for t in 0..4000u64 {
        let op = format!("{long}{}", t % 7);
        let id = format!("trace{t:05}");
        traces.push(trace(
            &id,
            &[
                span("A", &op, t, 100 + t % 13, &[], "p1"),
                span("B", &op, t + 1, 40, &[("CHILD_OF", "A")], "p2"),
                span("C", "c,\\\"q\\\"", t + 2, 30, &[("CHILD_OF", "A")], "p2"),
                span("D", &op, t + 3, 9, &[("FOLLOWS_FROM", "B")], "p1"),
                span("E", "e", t + 4, 1, &[("CHILD_OF", "gone")], "p1"),
            ],
        ));
    }
    let varied = varied_page();
    let inner = &varied[r#"{"data":["#.len()..varied.find(r#"],"total""#).unwrap()];
    traces.push(inner.to_string());
    let page = format!(r#"{{"data":[{}]}}"#, traces.join(","));
    let direct = page_tables_with(&page, true);
    assert!(direct["spans.csv"].len() > 3 << 20);
    assert!(direct["edges.csv"].len() > 3 << 20);
    let buffered = page_tables_with(&page, false);
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        buffered.keys().collect::<Vec<_>>()
    );
    for (name, text) in &direct {
        assert!(*text == buffered[name], "{name} differs");
    }
}

#[test]
fn streaming_gives_the_same_tables_at_every_chunk_size() {
    let page = varied_page();
    let whole = page_tables(&page);
    assert!(
        whole["spans.csv"].contains("\"GET /é,\"\"x\"\"\n\""),
        "{}",
        whole["spans.csv"]
    );
    for chunk in [1, 2, 3, 7, 16, 64, 1000, 1 << 18] {
        let dir = tempfile::tempdir().unwrap();
        let input = Path::new("page.json");
        process_reader(page.as_bytes(), chunk, dir.path(), input, || {
            Ok(page.as_bytes())
        })
        .unwrap();
        assert_eq!(tables(dir.path()), whole, "chunk {chunk}");
    }
}

#[test]
fn missing_field_errors_name_the_same_byte_at_every_chunk_size() {
    // A refill in the middle of a trace moves the buffer: the offset of a missing field must
    // still be the one the whole input gives.
    let ok = trace("m", &[span("A", "x", 0, 10, &[], "p1")]);
    let cases = [
        ok.replace("\"traceID\":\"m\",", ""),
        ok.replace("\"spanID\":\"A\",", ""),
    ];
    for bad in cases {
        let page = format!("{{\"data\":[{ok},{ok},{bad}]}}");
        let input = Path::new("page.json");
        let run = |chunk: usize| {
            let dir = tempfile::tempdir().unwrap();
            process_reader(page.as_bytes(), chunk, dir.path(), input, || {
                Ok(page.as_bytes())
            })
            .unwrap_err()
            .to_string()
        };
        let whole = run(1 << 20);
        assert!(whole.contains("missing field"), "{whole}");
        for chunk in [1, 3, 7, 16, 64, 100] {
            assert_eq!(run(chunk), whole, "chunk {chunk}");
        }
    }
}

#[test]
fn whitespace_and_key_order_do_not_matter() {
    let page = varied_page();
    let compact = page_tables(&page);
    // serde_json's pretty printer keeps key order; its maps sort keys (a different order).
    let v: serde_json::Value = serde_json::from_str(&page).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert_eq!(page_tables(&pretty), compact);
    let spaced = pretty.replace('\n', "\r\n\t ");
    assert_eq!(page_tables(&spaced), compact);
}

#[test]
fn escapes_are_decoded_and_rows_quoted() {
    let t = page_tables(&varied_page());
    let spans = &t["spans.csv"];
    assert!(
        spans.contains("t11,E,B,CHILD_OF,front,front-abc-1,😀,"),
        "{spans}"
    );
    // The escaped `err\u006fr` key is the error tag; the orphan keeps its reference.
    assert!(
        spans.contains("t11,D,missing,ORPHAN,,,d,20,25,5,5,0,0"),
        "{spans}"
    );
    let summary = &t["traces_summary.csv"];
    for line in [
        "traces,2",
        "duplicate_traces,1",
        "error_spans,1",
        "follows_from_edges,1",
    ] {
        assert!(summary.contains(line), "{summary}");
    }
    // A process no span uses gets no row.
    assert!(!t["pods.csv"].contains("idle"), "{}", t["pods.csv"]);
    // Spans without a process (D, N) are grouped under empty names.
    assert!(t["pods.csv"].contains("\n,,2,"), "{}", t["pods.csv"]);
}

#[test]
fn raw_output_is_each_trace_as_written() {
    let page = varied_page().replace("},{", "},\n  {");
    let dir = tempfile::tempdir().unwrap();
    let mut raw = Vec::new();
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    assert_eq!(p.add_page(page.as_bytes(), Some(&mut raw)).unwrap(), 2);
    let raw = String::from_utf8(raw).unwrap();
    let v: serde_json::Value = serde_json::from_str(&format!("[{raw}]")).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(page.contains(raw.split(",\n").next().unwrap()));
}

#[test]
fn single_traces_and_bare_lists() {
    let dir = tempfile::tempdir().unwrap();
    let t = trace("s1", &[span("A", "x", 0, 10, &[], "p1")]);
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    assert!(p.add_trace(format!(" {t} ").as_bytes()).unwrap());
    assert!(!p.add_trace(t.as_bytes()).unwrap());
    assert!(p.add_trace(b"{\"spans\":[]}").is_err());
    assert_eq!(
        p.add_page::<Vec<u8>>(format!("[{t}]").as_bytes(), None)
            .unwrap(),
        0
    );
    assert_eq!(p.add_page::<Vec<u8>>(b"{\"data\":null}", None).unwrap(), 0);
    let e = p.add_page::<Vec<u8>>(b"{\"total\":0}", None).unwrap_err();
    assert!(e.to_string().contains("missing field `data`"), "{e}");
    let (c, _) = p.finish().unwrap();
    assert_eq!((c.traces, c.duplicate_traces), (1, 2));
}

#[test]
fn duplicate_span_ids_resolve_as_the_sorted_lookup_did() {
    // Two spans "P" (ops "one" and "two"): the child's parent is the one the former
    // sort-and-binary-search found.
    let spans = [
        span("P", "one", 0, 100, &[], "p1"),
        span("Q", "q", 0, 100, &[], "p1"),
        span("P", "two", 0, 100, &[], "p1"),
        span("K", "k", 10, 10, &[("CHILD_OF", "P")], "p2"),
    ];
    let ids = ["P", "Q", "P", "K"];
    let mut order: Vec<u32> = (0..4).collect();
    order.sort_unstable_by(|&a, &b| ids[a as usize].cmp(ids[b as usize]));
    let parent = order[order
        .binary_search_by(|&i| ids[i as usize].cmp("P"))
        .unwrap()];
    let (_, dir) = run(&[trace("d1", &spans)]);
    let edges = std::fs::read_to_string(dir.path().join("edges.csv")).unwrap();
    let want = if parent == 0 { ",k,one," } else { ",k,two," };
    assert!(edges.contains(want), "{edges}");
}

#[test]
fn statistics_of_long_durations_switch_to_u64() {
    let big = 5_000_000_000u64;
    let traces: Vec<String> = (0..3)
        .map(|i| {
            trace(
                &format!("l{i}"),
                &[span("A", "long", 0, big + i, &[], "p1")],
            )
        })
        .collect();
    let (_, dir) = run(&traces);
    let ops = std::fs::read_to_string(dir.path().join("operations.csv")).unwrap();
    assert!(
        ops.contains("\nfront,long,3,0,5000000001,5000000001,"),
        "{ops}"
    );
}
