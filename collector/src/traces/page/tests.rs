//! Tests of pages, single traces and files: where malformed input is reported.

use super::*;
use crate::traces::tests::{span, trace};

#[test]
fn malformed_input_is_an_error_at_its_byte() {
    let ok = trace("m", &[span("A", "x", 0, 10, &[], "p1")]);
    // Cases built from the trace `ok` are wrapped in a list.
    let cases: Vec<(String, &str)> = vec![
        (format!("{{\"data\":[{ok}"), "unexpected end of input"),
        (format!("{{\"data\":[{ok}]}} x"), "trailing characters"),
        (format!("{{\"data\":[{ok},]}}"), "a trace object"),
        (ok.replace("\"x\"", "\"x\\q\""), "invalid escape"),
        (ok.replace("\"x\"", "\"x\u{1}\""), "control character"),
        (ok.replace("\"x\"", "\"\\ud83d\""), "surrogate"),
        (ok.replace(":0,", ":00,"), "leading zero"),
        (ok.replace(":0,", ":1.5,"), "floating point"),
        (ok.replace(":0,", ":-1,"), "negative"),
        (ok.replace(":0,", ":99999999999999999999,"), "64 bits"),
        (
            ok.replace("\"spanID\":\"A\",", ""),
            "missing field `spanID`",
        ),
        (
            ok.replace("\"spanID\":\"A\"", "\"spanID\":\"A\",\"spanID\":\"B\""),
            "duplicate field",
        ),
        (
            ok.replace("\"logs\":[]", "\"logs\":[1 2]"),
            "expected `,` or `]`",
        ),
        (
            ok.replace("\"logs\":[]", "\"logs\":[01]"),
            "expected `,` or `]`",
        ),
        (
            ok.replace("\"logs\":[]", "\"logs\":{\"a\"}"),
            "expected `:`",
        ),
        (
            ok.replace("\"logs\":[]", "\"logs\":nul"),
            "expected a value",
        ),
        (
            // Deep nesting in a skipped value is fine (as with serde's `IgnoredAny`); this one
            // is not closed.
            ok.replace("\"logs\":[]", &format!("\"logs\":{}]", "[".repeat(200))),
            "expected `,` or `]`",
        ),
        (
            ok.replace("\"traceID\":\"m\",", ""),
            "missing field `traceID`",
        ),
        (
            ok.replace("\"spans\":[", "\"spans\":{")
                .replace("],\"processes\"", "},\"processes\""),
            "list of spans",
        ),
        (
            "{\"data\":[],\"errors\":[{\"msg\":\"x\"}".into(),
            "unexpected end",
        ),
        ("\"data\"".into(), "expected a Jaeger answer"),
    ];
    for (json, want) in cases {
        let page = if json.starts_with("{\"data\"") || !json.starts_with('{') {
            json
        } else {
            format!("[{json}]")
        };
        let dir = tempfile::tempdir().unwrap();
        let mut p = TraceProcessor::create(dir.path()).unwrap();
        let e = p
            .add_page::<Vec<u8>>(page.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("(byte "),
            "{page}\n→ {e}\n(wanted {want})"
        );
    }
    // Invalid UTF-8 in a string the tables keep.
    let bad = ok.replace("\"x\"", "\"x\u{e9}\"").into_bytes();
    let at = bad.iter().position(|&b| b == 0xc3).unwrap();
    let mut bad = bad;
    bad[at + 1] = b'!';
    let dir = tempfile::tempdir().unwrap();
    let mut p = TraceProcessor::create(dir.path()).unwrap();
    let e = p.add_trace(&bad).unwrap_err().to_string();
    assert!(e.contains("invalid UTF-8"), "{e}");
}

#[test]
fn file_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = trace("f", &[span("A", "x", 0, 10, &[], "p1")]);
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        format!("{{\"data\":[\n{ok},\n{},\n]}}", ok.replace(":0,", ":zero,")),
    )
    .unwrap();
    let e = process_file(&path, &dir.path().join("out")).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 3, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("bad.json:3: ") && msg.contains("line 3 column"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        0
    );
}
