//! Tests of the JSON scanner: the word-at-a-time tests, kept and skipped strings checked as
//! `serde_json` checks them, line and column of a byte.

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
