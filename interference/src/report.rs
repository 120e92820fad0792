//! The report: one JSON object per line on stdout, once per second and once at the end (with
//! `"final": true`), stating the target next to what was achieved, in the stressor's unit.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One report line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLine {
    /// Stressor kind: `cpu`, `memcap`, `membw`, `cache`, `net-server`, `net-client`.
    pub kind: String,
    /// Seconds since the stressor started (monotonic wall clock).
    pub elapsed_s: f64,
    /// The requested intensity, in `unit` (0 when the stressor has none, e.g. an iperf3 server).
    pub target: f64,
    /// The intensity measured over the last interval (for the final line: over the whole run, or the
    /// last state for sizes).
    pub achieved: f64,
    /// `%` (CPU per worker), `bytes` (RSS, cache footprint), `GB/s`, `bit/s`.
    pub unit: String,
    /// True on the last line, written when the stressor stops.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r#final: bool,
    /// Kind-specific details (workers, CPUs, limit source, restarts, ...).
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The detail key of a runtime error: present (a sentence) on every line written while the
/// stressor could not do its job, and on the final line when the run failed.
pub const ERROR_KEY: &str = "error";

impl ReportLine {
    /// The runtime error this line reports (its `error` detail), if any.
    pub fn error(&self) -> Option<&str> {
        self.details.get(ERROR_KEY).and_then(|v| v.as_str())
    }

    /// A detail as f64, if present and numeric.
    pub fn detail_f64(&self, key: &str) -> Option<f64> {
        self.details.get(key).and_then(|v| v.as_f64())
    }
}

/// Writes report lines, one JSON object per line, flushed at once (the reader may be a pipe).
pub fn write_line(out: &mut dyn Write, line: &ReportLine) -> Result<()> {
    let text = serde_json::to_string(line).map_err(|e| Error::Io {
        context: "serialising a report line".into(),
        source: std::io::Error::other(e),
    })?;
    let io = |source| Error::Io {
        context: "writing the report".into(),
        source,
    };
    writeln!(out, "{text}").map_err(io)?;
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_final_and_details() {
        let mut details = serde_json::Map::new();
        details.insert("workers".into(), 2.into());
        let line = ReportLine {
            kind: "membw".into(),
            elapsed_s: 3.0,
            target: 8.0,
            achieved: 7.9,
            unit: "GB/s".into(),
            r#final: true,
            details,
        };
        let mut buf = Vec::new();
        write_line(&mut buf, &line).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["final"], true);
        assert_eq!(v["unit"], "GB/s");
        assert_eq!(v["workers"], 2);
        let back: ReportLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back, line);
        assert_eq!(back.detail_f64("workers"), Some(2.0));
        assert_eq!(back.error(), None);
        let mut failed = line.clone();
        failed
            .details
            .insert(ERROR_KEY.into(), "iperf3: connection refused".into());
        assert_eq!(failed.error(), Some("iperf3: connection refused"));
        // Non-final lines omit the key, and readers default it to false.
        let mut l2 = line.clone();
        l2.r#final = false;
        let t2 = serde_json::to_string(&l2).unwrap();
        assert!(!t2.contains("final"));
        assert!(!serde_json::from_str::<ReportLine>(&t2).unwrap().r#final);
    }
}
