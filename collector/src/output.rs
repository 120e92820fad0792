//! Files: the long-format metric row, the label encoding, CSV quoting, atomic writes and summaries.
//!
//! Every file is written to a temporary file in the destination directory and renamed into place
//! (`tempfile::NamedTempFile::persist`), so a crash or an error never leaves half a file behind.
//! The large trace tables are written the same way, but around the page cache (`output/direct.rs`).
//! Temp files are named, given their mode and cleaned up after a killed writer in one place,
//! [`temp`], which the manager uses too.
//! CSV quoting is hand-written (RFC 4180: quote a field holding `,`, `"`, CR or LF, double the
//! quotes) because no CSV crate is in the workspace and the hot path (2 M span rows per second)
//! wants direct `itoa` formatting into one buffered writer anyway.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) mod direct;
pub mod temp;

/// One file the collector wrote, and what it holds (the binary prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Final path of the file.
    pub path: PathBuf,
    /// One line for the user: what the file holds (`"prometheus series: 3 queries, 12 series, 480 rows"`).
    pub what: String,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

/// Labels of a series, kept sorted so the encoding is stable.
pub type Labels = BTreeMap<String, String>;

/// One sample in long format: the columns of `prometheus.csv`, `host.csv`, `loadgen.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Unix seconds (float).
    pub timestamp: f64,
    /// Where the sample came from: `prometheus`, `scrape`, `host`, `loadgen`, `wrk`.
    pub source: String,
    /// Metric name (the query name for Prometheus queries).
    pub metric: String,
    /// Labels of the series.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Header of every long-format CSV.
pub const LONG_HEADER: &str = "timestamp,source,metric,labels,value";

/// Encodes labels as `k=v;k=v`, sorted by key. `\`, `;` and `=` inside keys or values are escaped
/// with a backslash, so the encoding is reversible with [`decode_labels`].
pub fn encode_labels(labels: &Labels) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape_label_part(&mut out, k);
        out.push('=');
        escape_label_part(&mut out, v);
    }
    out
}

fn escape_label_part(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '\\' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Inverse of [`encode_labels`].
pub fn decode_labels(s: &str) -> Labels {
    let mut labels = Labels::new();
    let (mut key, mut cur, mut in_value, mut esc) = (String::new(), String::new(), false, false);
    for c in s.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == '=' && !in_value {
            key = std::mem::take(&mut cur);
            in_value = true;
        } else if c == ';' {
            labels.insert(std::mem::take(&mut key), std::mem::take(&mut cur));
            in_value = false;
        } else {
            cur.push(c);
        }
    }
    if in_value || !cur.is_empty() {
        labels.insert(key, cur);
    }
    labels
}

/// Whether `s` must be quoted as a CSV field (RFC 4180): it holds `,`, `"`, CR or LF.
pub fn csv_needs_quotes(s: &[u8]) -> bool {
    s.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Writes one CSV field, quoted when needed (RFC 4180): text (`&str`, `String`) or bytes.
pub fn csv_field<W: Write + ?Sized>(
    w: &mut W,
    s: &(impl AsRef<[u8]> + ?Sized),
) -> std::io::Result<()> {
    let s = s.as_ref();
    csv_field_quoted(w, s, csv_needs_quotes(s))
}

/// Writes `s` as one CSV field, quoted (its quotes doubled) when `quote`: the crate's one CSV
/// quoting routine. Callers that already know whether `s` needs quotes pass it (the trace
/// scanner notes it while reading each string, see `traces/json/strings.rs`); others use
/// [`csv_field`], which asks [`csv_needs_quotes`].
pub fn csv_field_quoted<W: Write + ?Sized>(
    w: &mut W,
    s: &[u8],
    quote: bool,
) -> std::io::Result<()> {
    if !quote {
        return w.write_all(s);
    }
    w.write_all(b"\"")?;
    for (i, part) in s.split(|&c| c == b'"').enumerate() {
        if i > 0 {
            w.write_all(b"\"\"")?;
        }
        w.write_all(part)?;
    }
    w.write_all(b"\"")
}

/// Formats a float for CSV: integers without a fraction, `NaN`/`+Inf`/`-Inf` as Prometheus spells them.
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Writes a file atomically: `fill` writes into a buffered temp file in `dir`, which is then renamed
/// to `dir/name` (mode 0666 less the umask). On any error the temp file is removed and nothing
/// appears at `dir/name`; a killed writer's temp file is removed by the next writer ([`temp`]).
pub fn write_atomic<F>(dir: &Path, name: &str, fill: F) -> Result<PathBuf>
where
    F: FnOnce(&mut BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
{
    let path = dir.join(name);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let mut tmp = temp::create(dir, name).map_err(|e| Error::io("writing", &path, e))?;
    {
        let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        fill(&mut w)
            .and_then(|_| w.flush())
            .map_err(|e| Error::io("writing", &path, e))?;
    }
    tmp.persist(&path)
        .map_err(|e| Error::io("writing", &path, e.error))?;
    Ok(path)
}

/// Writes rows in long format (`timestamp,source,metric,labels,value`) to `dir/name`.
pub fn write_long(dir: &Path, name: &str, rows: &[MetricRow]) -> Result<PathBuf> {
    write_atomic(dir, name, |w| {
        writeln!(w, "{LONG_HEADER}")?;
        for r in rows {
            write!(w, "{},", fmt_f64(r.timestamp))?;
            csv_field(w, &r.source)?;
            w.write_all(b",")?;
            csv_field(w, &r.metric)?;
            w.write_all(b",")?;
            csv_field(w, &encode_labels(&r.labels))?;
            writeln!(w, ",{}", fmt_f64(r.value))?;
        }
        Ok(())
    })
}

/// Quantile with linear interpolation between closest ranks (numpy/pandas default), on sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Header of a series summary file (`prometheus_summary.csv`, `host_summary.csv`).
pub const SUMMARY_HEADER: &str = "source,metric,labels,samples,first,last,min,mean,p50,p95,max";

/// Writes one summary row per series (same source, metric and labels) of `rows`: the hardware summary.
/// NaN samples are skipped in the statistics but counted in `samples`.
pub fn write_series_summary(dir: &Path, name: &str, rows: &[MetricRow]) -> Result<PathBuf> {
    type Key<'r> = (&'r str, &'r str, String);
    let mut groups: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((&r.source, &r.metric, encode_labels(&r.labels)))
            .or_default()
            .push((r.timestamp, r.value));
    }
    write_atomic(dir, name, |w| {
        writeln!(w, "{SUMMARY_HEADER}")?;
        for ((source, metric, labels), mut pts) in groups {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut vals: Vec<f64> = pts.iter().map(|p| p.1).filter(|v| !v.is_nan()).collect();
            vals.sort_by(f64::total_cmp);
            let mean = if vals.is_empty() {
                f64::NAN
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            };
            csv_field(w, source)?;
            w.write_all(b",")?;
            csv_field(w, metric)?;
            w.write_all(b",")?;
            csv_field(w, &labels)?;
            writeln!(
                w,
                ",{},{},{},{},{},{},{},{}",
                pts.len(),
                fmt_f64(pts.first().map_or(f64::NAN, |p| p.1)),
                fmt_f64(pts.last().map_or(f64::NAN, |p| p.1)),
                fmt_f64(vals.first().copied().unwrap_or(f64::NAN)),
                fmt_f64(mean),
                fmt_f64(quantile_sorted(&vals, 0.5)),
                fmt_f64(quantile_sorted(&vals, 0.95)),
                fmt_f64(vals.last().copied().unwrap_or(f64::NAN)),
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_with_separators() {
        let mut l = Labels::new();
        l.insert("pod".into(), "a=b;c\\d".into());
        l.insert("ns".into(), "x".into());
        let s = encode_labels(&l);
        assert_eq!(s, "ns=x;pod=a\\=b\\;c\\\\d");
        assert_eq!(decode_labels(&s), l);
        assert_eq!(decode_labels(""), Labels::new());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut v = Vec::new();
        csv_field(&mut v, "plain").unwrap();
        v.push(b'|');
        csv_field(&mut v, "a,\"b\"").unwrap();
        v.push(b'|');
        csv_field(&mut v, b"\"\"x\r\n").unwrap();
        v.push(b'|');
        csv_field_quoted(&mut v, b"q\"", false).unwrap();
        v.push(b'|');
        csv_field_quoted(&mut v, b"", true).unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "plain|\"a,\"\"b\"\"\"|\"\"\"\"\"x\r\n\"|q\"|\"\""
        );
    }

    #[test]
    fn quantile_interpolates_like_pandas() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert!((quantile_sorted(&v, 0.95) - 3.85).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = write_atomic(dir.path(), "x.csv", |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
