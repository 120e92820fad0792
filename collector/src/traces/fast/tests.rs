//! Tests of the fast path: it reads every span, intact or damaged, as the general path does.

use super::*;
use crate::traces::jaeger::{TraceBuf, TraceView};
use crate::traces::json::{ReadSource, Scanner, Source};
use crate::traces::page::{scan_page, PageFail};

/// Every span of `json` (a page) as text, read through a reader pulled `chunk` bytes at a time
/// (0: the whole page in memory), with or without [`span_fast`]; or the error.
fn spans_read(json: &[u8], chunk: usize, slow: bool) -> Result<Vec<String>, String> {
    fn run<S: Source>(mut sc: Scanner<S>) -> Result<Vec<String>, String> {
        let mut t = TraceBuf::default();
        let mut out = Vec::new();
        let r = scan_page(&mut sc, &mut t, &mut |v: TraceView<'_>| -> Result<(), ()> {
            let text = |s: Str| format!("{}:{:?}", s.flags, String::from_utf8_lossy(v.get(s)));
            for s in &v.t.spans {
                out.push(format!(
                    "{} {} {} {} {} {}={} {}={} {}",
                    text(s.id),
                    text(s.op),
                    text(s.process),
                    text(s.child_of),
                    text(s.follows_from),
                    s.start,
                    text(s.start_text),
                    s.duration,
                    text(s.duration_text),
                    s.error
                ));
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(out),
            Err(PageFail::Scan(e)) => Err(format!("{e:?} after {out:?}")),
            Err(PageFail::Reported(m)) => Err(format!("reported {m:?}")),
            Err(PageFail::Callback(())) => Err("callback".into()),
        }
    }
    SLOW_SPANS.with(|c| c.set(slow));
    let r = if chunk == 0 {
        run(Scanner::new(json))
    } else {
        run(Scanner::new(ReadSource::new(json, chunk)))
    };
    SLOW_SPANS.with(|c| c.set(false));
    r
}

/// A trace as Jaeger writes it, whose spans take the fast path.
fn jaeger_trace(t: usize) -> String {
    let tid = format!("{t:032x}");
    let mut spans = Vec::new();
    for i in 0..4 {
        let refs = match i {
            0 => String::new(),
            3 => format!(
                r#"{{"refType":"FOLLOWS_FROM","traceID":"{tid}","spanID":"{:016x}"}},{{"refType":"CHILD_OF","traceID":"{tid}","spanID":"{:016x}"}}"#,
                1, 2
            ),
            _ => format!(
                r#"{{"refType":"CHILD_OF","traceID":"{tid}","spanID":"{:016x}"}}"#,
                i
            ),
        };
        let tags = match i {
            1 => {
                r#"{"key":"error","type":"bool","value":true},{"key":"http.status_code","type":"int64","value":500}"#
            }
            2 => {
                r#"{"key":"error","type":"string","value":"true"},{"key":"note","type":"string","value":"ünïcode, fine"}"#
            }
            _ => r#"{"key":"span.kind","type":"string","value":"server"}"#,
        };
        let flags = if i == 2 {
            String::new()
        } else {
            r#""flags":1,"#.to_string()
        };
        spans.push(format!(
            r#"{{"traceID":"{tid}","spanID":"{:016x}",{flags}"operationName":"/svc/op{i}","references":[{refs}],"startTime":{},"duration":{},"tags":[{tags}],"logs":[],"processID":"p{}","warnings":null}}"#,
            i + 1,
            1_700_000_000_000_000u64 + 10 * i as u64,
            [9u64, 0, 10, 12_345_678_901_234_567][i],
            i % 2 + 1
        ));
    }
    format!(
        r#"{{"traceID":"{tid}","spans":[{}],"processes":{{"p1":{{"serviceName":"a","tags":[]}},"p2":{{"serviceName":"b","tags":[]}}}},"warnings":null}}"#,
        spans.join(",")
    )
}

#[test]
fn the_fast_path_takes_jaeger_spans_and_reads_them_as_the_general_path() {
    let page = format!(r#"{{"data":[{},{}]}}"#, jaeger_trace(1), jaeger_trace(2));
    let slow = spans_read(page.as_bytes(), 0, true).unwrap();
    assert_eq!(slow.len(), 8);
    assert!(
        slow[1].ends_with(" true") && slow[2].ends_with(" true"),
        "{slow:?}"
    );
    // The fast path does take them (compact, in Jaeger's order).
    let b = page.as_bytes();
    let first = page.find(r#"{"traceID":"0000"#).unwrap();
    let span = page[first + 1..].find(r#"{"traceID""#).unwrap() + first + 1;
    assert!(span_fast(b, span, 0).is_some());
    for chunk in [0, 1, 5, 64, 333, 4096] {
        assert_eq!(
            spans_read(b, chunk, false),
            Ok(slow.clone()),
            "chunk {chunk}"
        );
    }
}

#[test]
fn every_damaged_span_reads_as_the_general_path_reads_it() {
    // Each byte of a trace deleted, doubled or replaced by a byte that matters to the fast path:
    // valid variants (whitespace, other strings, numbers) and invalid ones alike must give the
    // same spans, or the same error at the same byte, with and without the fast path.
    let trace = jaeger_trace(7);
    let replacements: &[u8] = b" \"\\,:0123a{}[]-.e\x01";
    let mut variants: Vec<Vec<u8>> = Vec::new();
    let b = trace.as_bytes();
    for k in 0..b.len() {
        let mut v = b.to_vec();
        v.remove(k);
        variants.push(v);
        let mut v = b.to_vec();
        v.insert(k, b[k]);
        variants.push(v);
        for &c in replacements.iter().chain([0xC3u8, 0xFF].iter()) {
            if c != b[k] {
                let mut v = b.to_vec();
                v[k] = c;
                variants.push(v);
            }
        }
    }
    for v in &variants {
        let page = [&b"["[..], v, b"]"].concat();
        let slow = spans_read(&page, 0, true);
        assert_eq!(
            spans_read(&page, 0, false),
            slow,
            "{}",
            String::from_utf8_lossy(v)
        );
    }
    // And with buffer ends everywhere, for a sample.
    for v in variants.iter().step_by(37) {
        let page = [&b"["[..], v, b"]"].concat();
        for chunk in [1, 17, 200] {
            assert_eq!(
                spans_read(&page, chunk, false),
                spans_read(&page, chunk, true),
                "chunk {chunk}: {}",
                String::from_utf8_lossy(v)
            );
        }
    }
}
