//! The report framed for a log (`--report-frame`): when the only channel back is a container log
//! that stdout and stderr share (a Kubernetes pod), the JSON report travels as marked lines of
//! base64 of its gzip, so nothing else in the log (warnings, a Lua script's `print`, braces) can
//! be mistaken for it, and it stays compact (the kubelet keeps about 10 MiB of a container's log).
//!
//! ```text
//! AEFM-REPORT 1/2 H4sIAAAAAAAA/+1d...
//! AEFM-REPORT 2/2 ...AAA=
//! ```
//!
//! Each line is `AEFM-REPORT <i>/<n> <base64>` with at most [`LINE_PAYLOAD`] characters of
//! payload (far below the 16 KiB at which container runtimes split log lines). Text before the
//! marker on a line (output of a script whose own line was not finished) is ignored; the gzip
//! CRC checks the reassembled bytes. A log with a frame missing (a rotated log) is an error that
//! says so.

use std::io::{Read, Write};

use base64::Engine as _;

use crate::Report;

/// The marker that starts every frame line.
pub const MARKER: &str = "AEFM-REPORT ";

/// Base64 characters per line.
pub const LINE_PAYLOAD: usize = 3072;

/// Why a log holds no readable report.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// No frame line at all.
    #[error("no report in the log (no {} lines)", MARKER.trim())]
    Missing,
    /// Some frames are missing (the log was cut or rotated: the kubelet keeps about 10 MiB).
    #[error(
        "report incomplete: {have} of {total} frames in the log (was the log rotated or cut?)"
    )]
    Incomplete {
        /// Frames found.
        have: usize,
        /// Frames announced.
        total: usize,
    },
    /// The reassembled frames are not base64 of gzip of a report.
    #[error("report frames are corrupt: {0}")]
    Corrupt(String),
}

/// The report as frame lines (each ending in `\n`).
pub fn encode(report: &Report) -> String {
    let json = serde_json::to_vec(report).expect("a report always serializes");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("writing to memory");
    let bytes = gz.finish().expect("writing to memory");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let chunks: Vec<&str> = b64
        .as_bytes()
        .chunks(LINE_PAYLOAD)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let n = chunks.len();
    let mut out = String::with_capacity(b64.len() + n * 24);
    for (i, c) in chunks.iter().enumerate() {
        out.push_str(&format!("{MARKER}{}/{n} {c}\n", i + 1));
    }
    out
}

/// Finds the frames in `log` (anything else ignored) and returns the report. With several
/// framed reports in one log the last complete one counts.
pub fn decode(log: &str) -> Result<Report, FrameError> {
    let mut frames: Vec<Option<&str>> = Vec::new();
    let mut complete: Option<Vec<Option<&str>>> = None;
    let mut seen_any = false;
    for line in log.lines() {
        let Some(pos) = line.rfind(MARKER) else {
            continue;
        };
        let Some((i, n, payload)) = parse_line(&line[pos + MARKER.len()..]) else {
            continue;
        };
        seen_any = true;
        if i == 1 || frames.len() != n {
            frames = vec![None; n];
        }
        frames[i - 1] = Some(payload);
        if frames.iter().all(Option::is_some) {
            complete = Some(std::mem::take(&mut frames));
        }
    }
    let Some(parts) = complete else {
        if !seen_any {
            return Err(FrameError::Missing);
        }
        return Err(FrameError::Incomplete {
            have: frames.iter().filter(|f| f.is_some()).count(),
            total: frames.len(),
        });
    };
    let b64: String = parts.into_iter().flatten().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| FrameError::Corrupt(format!("base64: {e}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut json)
        .map_err(|e| FrameError::Corrupt(format!("gzip: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| FrameError::Corrupt(format!("JSON: {e}")))
}

/// `i/n payload` with 1 <= i <= n.
fn parse_line(rest: &str) -> Option<(usize, usize, &str)> {
    let (pos, payload) = rest.split_once(' ')?;
    let (i, n) = pos.split_once('/')?;
    let (i, n): (usize, usize) = (i.parse().ok()?, n.parse().ok()?);
    (i >= 1 && i <= n && n <= 1 << 20).then_some((i, n, payload.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seconds: u64) -> Report {
        let mut r = crate::report::sample_report(&[100, 250, 99_000], 3, seconds);
        r.url = "http://x/{}".into();
        r
    }

    #[test]
    fn frames_round_trip_among_noise() {
        let r = report(2000);
        let framed = encode(&r);
        let lines: Vec<&str> = framed.lines().collect();
        assert!(lines.len() > 1, "a big report spans several lines");
        assert!(lines.iter().all(|l| l.len() <= LINE_PAYLOAD + 32));
        // Warnings, script output with braces, and a script line left unfinished before a frame.
        let mut log = String::from("aefm-load: warning: {\"not\": \"json\"}\n{ print from lua }\n");
        for (i, l) in lines.iter().enumerate() {
            if i == 1 {
                log.push_str("half a lua line {");
            }
            log.push_str(l);
            log.push('\n');
            log.push_str("}{\n");
        }
        assert_eq!(decode(&log).unwrap(), r);
    }

    #[test]
    fn missing_or_cut_frames_are_named() {
        assert!(matches!(decode("{\"a\": 1}\n"), Err(FrameError::Missing)));
        let framed = encode(&report(2000));
        let cut: String = framed.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let e = decode(&cut).unwrap_err();
        assert!(matches!(e, FrameError::Incomplete { .. }), "{e}");
        assert!(e.to_string().contains("rotated"), "{e}");
        // The gzip magic overwritten: the frames are all there but do not decode.
        let corrupt = framed.replace("H4sI", "AAAA");
        assert!(matches!(decode(&corrupt), Err(FrameError::Corrupt(_))));
    }
}
