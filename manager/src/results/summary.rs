//! summary.csv: one row per test case, in run order, rebuilt from the journal (so it includes
//! cases finished by earlier runs of a resumed experiment).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::journal::{Entry, Status};
use super::{write_atomic, ResultsError};
use crate::config::fmt_num;

/// The summary's file name.
pub const FILE: &str = "summary.csv";

/// Quotes a CSV cell when needed (RFC 4180).
pub fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>, scale: f64) -> String {
    v.map(|x| format!("{:.3}", x / scale)).unwrap_or_default()
}

/// Renders the summary CSV from journal entries (sorted by case index).
pub fn render(dims: &[String], entries: &BTreeMap<String, Entry>) -> String {
    let mut rows: Vec<&Entry> = entries.values().collect();
    rows.sort_by_key(|e| e.index);
    let mut s = String::from("index,case,");
    for d in dims {
        s.push_str(&cell(d));
        s.push(',');
    }
    s.push_str("status,validity,invalid_reasons,offered_rps,achieved_rps,requests,errors,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms,mean_ms,app_cpu_percent,other_cpu_cores,window_start,window_end,error,invalid_detail,attempt\n");
    for e in rows {
        let _ = write!(s, "{},{},", e.index, cell(&e.case));
        for d in dims {
            let v = e
                .values
                .iter()
                .find(|(n, _)| n == d)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            s.push_str(&cell(v));
            s.push(',');
        }
        let l = e.latency.as_ref();
        let v = e.verdict.as_ref();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            match e.status {
                Status::Ok => "ok",
                Status::Failed => "failed",
            },
            v.map(|v| v.validity.to_string()).unwrap_or_default(),
            cell(&v.map(|v| v.codes()).unwrap_or_default()),
            fmt_num(e.offered),
            e.achieved.map(|a| format!("{a:.2}")).unwrap_or_default(),
            e.requests.map(|r| r.to_string()).unwrap_or_default(),
            e.errors.map(|r| r.to_string()).unwrap_or_default(),
            opt(l.map(|l| l.p50_us), 1000.0),
            opt(l.map(|l| l.p90_us), 1000.0),
            opt(l.map(|l| l.p99_us), 1000.0),
            opt(l.map(|l| l.p999_us), 1000.0),
            opt(l.map(|l| l.max_us), 1000.0),
            opt(l.map(|l| l.mean_us), 1000.0),
            e.app_cpu_percent
                .map(|c| format!("{c:.1}"))
                .unwrap_or_default(),
            e.other_cpu_cores
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
            e.window_start.clone().unwrap_or_default(),
            e.window_end.clone().unwrap_or_default(),
            cell(e.error.as_deref().unwrap_or("")),
            cell(&v.map(|v| v.sentences()).unwrap_or_default()),
            e.attempt,
        );
    }
    s
}

/// Writes summary.csv into `dir`.
pub fn write(
    dir: &Path,
    dims: &[String],
    entries: &BTreeMap<String, Entry>,
) -> Result<(), ResultsError> {
    write_atomic(&dir.join(FILE), render(dims, entries).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cells_with_commas() {
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(cell("x"), "x");
    }

    #[test]
    fn other_cpu_follows_app_cpu() {
        let measured = Entry {
            app_cpu_percent: Some(150.0),
            other_cpu_cores: Some(0.256),
            ..Entry::sample("a", 0, Status::Ok)
        };
        let entries = BTreeMap::from([
            ("a".to_string(), measured),
            ("b".to_string(), Entry::sample("b", 1, Status::Ok)),
        ]);
        let csv = render(&["rate".to_string()], &entries);
        let lines: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        let header = &lines[0];
        assert_eq!(
            header.join(","),
            "index,case,rate,status,validity,invalid_reasons,offered_rps,achieved_rps,requests,\
             errors,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms,mean_ms,app_cpu_percent,other_cpu_cores,\
             window_start,window_end,error,invalid_detail,attempt"
        );
        let col = header.iter().position(|h| *h == "other_cpu_cores").unwrap();
        assert_eq!(lines[1][col - 1], "150.0");
        assert_eq!(lines[1][col], "0.26");
        assert_eq!(lines[2][col], "", "not measured: empty");
        assert!(lines.iter().all(|l| l.len() == header.len()), "{csv}");
    }
}
