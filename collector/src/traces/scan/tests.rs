use super::*;

/// Byte `k` of `w` is flagged.
fn flagged(m: u64, k: usize) -> bool {
    m >> (8 * k + 7) & 1 == 1
}

#[test]
fn word_masks_find_the_first_match_exactly() {
    // Every byte value at every position, behind bytes that never match.
    for c in 0..=255u8 {
        for k in 0..8 {
            let mut b = [b'a'; 8];
            b[k] = c;
            let w = u64::from_le_bytes(b);
            let first = |m: u64| (m != 0).then(|| m.trailing_zeros() as usize / 8);
            assert_eq!(
                first(eq_mask(w, b'"')),
                (c == b'"').then_some(k),
                "{c} at {k}"
            );
            assert_eq!(first(ctl_mask(w)), (c < 0x20).then_some(k), "{c} at {k}");
            // The lowest flagged byte is exact even when a lower match borrows into it.
            let mut b2 = b;
            b2[0] = b'"';
            assert!(flagged(eq_mask(u64::from_le_bytes(b2), b'"'), 0));
        }
    }
}

#[test]
fn eight_digits_reads_only_digits() {
    assert_eq!(
        eight_digits(u64::from_le_bytes(*b"12345678")),
        Some(12_345_678)
    );
    assert_eq!(eight_digits(u64::from_le_bytes(*b"00000009")), Some(9));
    assert_eq!(
        eight_digits(u64::from_le_bytes(*b"99999999")),
        Some(99_999_999)
    );
    for c in 0..=255u8 {
        for k in 0..8 {
            let mut b = *b"10203040";
            b[k] = c;
            let want = std::str::from_utf8(&b)
                .ok()
                .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
                .map(|s| s.parse::<u64>().unwrap());
            assert_eq!(eight_digits(u64::from_le_bytes(b)), want, "{c} at {k}");
        }
    }
}

/// Scans one kept string from `json` (which starts with its quote).
fn kept(json: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut sc = Scanner::new(json);
    let mut arena = Vec::new();
    match sc.string(&mut arena) {
        Ok(s) => {
            let (off, len) = (s.off as usize, s.len as usize);
            let bytes = if s.flags & IN_ARENA != 0 {
                arena[off..off + len].to_vec()
            } else {
                json[off..off + len].to_vec()
            };
            Ok((bytes, s.needs_quotes()))
        }
        Err(e) => match *e {
            ScanError::Syntax { message, .. } => Err(message),
            ScanError::Io(e) => Err(e.to_string()),
        },
    }
}

#[test]
fn kept_strings_match_a_byte_by_byte_reading() {
    // Every byte value at every position of a 20-byte string (fast and slow paths).
    for c in 0..=255u8 {
        for k in 0..20 {
            let mut body = vec![b'x'; 20];
            body[k] = c;
            let json = [&b"\""[..], &body, b"\"   "].concat();
            let got = kept(&json);
            match c {
                b'"' => assert_eq!(got, Ok((vec![b'x'; k], false))),
                b'\\' => assert!(got.is_err(), "{got:?}"),
                0..=0x1f => assert!(got.unwrap_err().contains("control"), "{c} at {k}"),
                0x80..=0xff => assert!(got.unwrap_err().contains("UTF-8"), "{c} at {k}"),
                b',' => assert_eq!(got, Ok((body.clone(), true))),
                _ => assert_eq!(got, Ok((body.clone(), false))),
            }
        }
    }
    assert_eq!(
        kept(br#""a\"b,\n\u00e9\ud83d\ude00""#),
        Ok(("a\"b,\né😀".as_bytes().to_vec(), true))
    );
    assert_eq!(
        kept("\"héllo wörld, ok\"".as_bytes()),
        Ok(("héllo wörld, ok".as_bytes().to_vec(), true))
    );
    assert_eq!(kept(br#""x\/y""#), Ok((b"x/y".to_vec(), false)));
    assert!(kept(br#""\udc00""#).unwrap_err().contains("surrogate"));
    assert!(kept(br#""\u12G4""#).unwrap_err().contains("escape"));
    assert!(kept(br#""abc"#).unwrap_err().contains("end of input"));
}

/// Skips one value of `json` and checks that nothing follows, through a slice and through a
/// reader pulled one byte at a time.
fn skips(json: &str) -> [bool; 2] {
    fn run<S: Source>(mut sc: Scanner<S>) -> bool {
        sc.skip_value().is_ok() && sc.at_end().unwrap_or(false)
    }
    [
        run(Scanner::new(json.as_bytes())),
        run(Scanner::new(ReadSource::new(json.as_bytes(), 1))),
    ]
}

#[test]
fn skipped_values_are_checked_as_serde_json_checks_them() {
    let corpus = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "12",
        "-12.5e+3",
        "1E9",
        "0.5",
        "[]",
        "{}",
        "[ ]",
        "[1,[2,[3]],{\"a\":{\"b\":[]}}]",
        "{\"a\" : 1 , \"b\":[true,false,null]}",
        "\"\"",
        "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\"",
        " [1] ",
        "[\"x\",\"y\"]",
        "01",
        "-",
        "1.",
        "1e",
        "1e+",
        ".5",
        "+1",
        "tru",
        "nul",
        "nulll",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{1:2}",
        "[",
        "]",
        "{",
        "\"abc",
        "\"a\\x\"",
        "\"\\u12\"",
        "\"a\u{1}b\"",
        "[]]",
        "",
        "  ",
        "truefalse",
        "[true false]",
        "{\"a\":1 \"b\":2}",
    ];
    for json in corpus {
        let want = serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok();
        assert_eq!(skips(json), [want, want], "{json:?}");
    }
    for n in [128, 129, 1000] {
        let deep = format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let want = serde_json::from_str::<serde::de::IgnoredAny>(&deep).is_ok();
        assert_eq!(skips(&deep), [want, want], "depth {n}");
        let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let want = serde_json::from_str::<serde::de::IgnoredAny>(&deep).is_ok();
        assert_eq!(skips(&deep), [want, want], "depth {n}, empty");
    }
}

#[test]
fn line_and_column_count_bytes_from_one() {
    let text = b"ab\ncd\n\nef";
    assert_eq!(line_column(&text[..], 0).unwrap(), (1, 1));
    assert_eq!(line_column(&text[..], 2).unwrap(), (1, 3));
    assert_eq!(line_column(&text[..], 3).unwrap(), (2, 1));
    assert_eq!(line_column(&text[..], 8).unwrap(), (4, 2));
}

// ---------------------------------------------------------------- span_fast against the general path

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
