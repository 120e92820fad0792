//! The join: each slow traced client request next to its server-side trace, so a case answers
//! "the generator says 40 ms at p99, the traces say 8 ms: where did the time go?".
//!
//! Input: the load generator's traced requests (`aefm-load --traceparent`, the report's
//! `traced.slowest`: trace id, due and send times, corrected and uncorrected latency) and the
//! case's `spans.csv` (from any trace source: Jaeger or the OTLP receiver). Output:
//! - `join.csv`, one row per traced slow request (slowest first): its client latencies, the
//!   server's entry span (the span whose parent is the request's `traceparent` span, else the
//!   trace's earliest root), and the latency split into
//!   * `generator_lag_us`: send minus due time, the wait for a free connection or the generator
//!     itself (the part coordinated-omission correction adds),
//!   * `before_server_us`: entry span start minus send (network, kernel and accept queues, the
//!     server's own queueing before its first span),
//!   * `server_us`: the entry span's duration,
//!   * `after_server_us`: response arrival minus the entry span's end (the way back),
//!
//!   and the spans on the trace's critical path (from the entry span, each step the child that
//!   ended last), as `service:operation:self_us` joined by ` > `;
//! - `join_summary.csv`, `key,value`: how many were found and where their latency went on
//!   average (µs and share of the corrected latency), and each service's share of the critical
//!   paths' self time; once for every kept request and once (`tail_...`) for the slowest 1 % of
//!   the traced requests, those above their p99.
//!
//! The client's times come from the generator's clock and the spans' from the servers' clocks:
//! on one machine they agree; across machines `before_server_us` and `after_server_us` carry
//! the clock offset between them (with opposite signs), while their sum does not.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use aefm_loadgen::{Traced, TracedRequest};

use crate::error::{Error, Result};
use crate::output::{csv_field, write_atomic, Written};

/// Header of `join.csv`.
pub const JOIN_HEADER: &str = "trace_id,status,intended_us,sent_us,latency_us,uncorrected_us,generator_lag_us,found,spans,server_service,server_operation,server_start_us,server_us,before_server_us,after_server_us,critical_path";

/// Longest critical path followed (a guard against cyclic parent links in bad data).
const MAX_DEPTH: usize = 256;

/// One span of a wanted trace, as `spans.csv` has it.
#[derive(Clone, Debug, PartialEq)]
struct Span {
    id: String,
    parent: String,
    ref_type: String,
    service: String,
    operation: String,
    start: u64,
    end: u64,
    self_us: u64,
}

/// A trace id as the join compares it: lowercase hex without leading zeros (Jaeger may shorten
/// 128-bit ids whose high half is zero; OTLP and `traceparent` never do).
fn norm(id: &str) -> String {
    let t = id.trim().trim_start_matches('0').to_ascii_lowercase();
    if t.is_empty() {
        "0".into()
    } else {
        t
    }
}

/// The spans of the traces in `wanted` (normalized ids), read from `spans_csv` in one pass.
fn read_spans(spans_csv: &Path, wanted: &HashSet<String>) -> Result<HashMap<String, Vec<Span>>> {
    let bad = |line: u64, message: String| Error::Parse {
        path: spans_csv.display().to_string(),
        line: line as usize,
        message,
    };
    let mut rd = csv::Reader::from_path(spans_csv).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io("reading", spans_csv, io),
        other => bad(0, format!("{other:?}")),
    })?;
    let headers = rd.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(1, format!("no `{name}` column")))
    };
    let c = [
        col("trace_id")?,
        col("span_id")?,
        col("parent_id")?,
        col("ref_type")?,
        col("microservice")?,
        col("operation")?,
        col("start_time")?,
        col("end_time")?,
        col("self_duration")?,
    ];
    let mut out: HashMap<String, Vec<Span>> = HashMap::new();
    let mut row = csv::StringRecord::new();
    loop {
        let line = rd.position().line();
        match rd.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(bad(line, e.to_string())),
        }
        let trace = norm(&row[c[0]]);
        if !wanted.contains(&trace) {
            continue;
        }
        let num = |i: usize| {
            row[c[i]]
                .parse::<u64>()
                .map_err(|_| bad(line, format!("`{}` is not a number", &row[c[i]])))
        };
        let span = Span {
            id: norm(&row[c[1]]),
            parent: row[c[2]].trim().to_string(),
            ref_type: row[c[3]].to_string(),
            service: row[c[4]].to_string(),
            operation: row[c[5]].to_string(),
            start: num(6)?,
            end: num(7)?,
            self_us: num(8)?,
        };
        out.entry(trace).or_default().push(span);
    }
    Ok(out)
}

/// The server's entry span of `spans` for a request whose `traceparent` parent id was
/// `client_span`: its direct child, else the earliest root, else the earliest span.
fn entry<'a>(spans: &'a [Span], client_span: &str) -> Option<&'a Span> {
    let client = norm(client_span);
    let earliest = |f: &dyn Fn(&&Span) -> bool| spans.iter().filter(f).min_by_key(|s| s.start);
    earliest(&|s| !s.parent.is_empty() && norm(&s.parent) == client)
        .or_else(|| earliest(&|s| s.ref_type == "ROOT"))
        .or_else(|| earliest(&|_| true))
}

/// The critical path from `from`: each step the `CHILD_OF` child that ended last.
fn critical_path<'a>(spans: &'a [Span], from: &'a Span) -> Vec<&'a Span> {
    let mut children: HashMap<String, Vec<&Span>> = HashMap::new();
    for s in spans.iter().filter(|s| s.ref_type == "CHILD_OF") {
        children.entry(norm(&s.parent)).or_default().push(s);
    }
    let mut path = vec![from];
    let mut at = from;
    while path.len() < MAX_DEPTH {
        let next = children
            .get(&at.id)
            .and_then(|c| c.iter().copied().max_by_key(|s| (s.end, s.start)));
        match next {
            Some(n) => {
                path.push(n);
                at = n;
            }
            None => break,
        }
    }
    path
}

/// A joined request: the client's side and what its trace shows.
struct Joined<'a> {
    req: &'a TracedRequest,
    spans: usize,
    server: Option<&'a Span>,
    path: Vec<&'a Span>,
}

impl Joined<'_> {
    fn lag(&self) -> u64 {
        self.req.latency_us.saturating_sub(self.req.uncorrected_us)
    }

    /// (before, server, after) in µs, signed: clocks may differ between client and server.
    fn split(&self) -> Option<(i64, i64, i64)> {
        let s = self.server?;
        let sent = self.req.sent_us as i64;
        let back = sent + self.req.uncorrected_us as i64;
        Some((
            s.start as i64 - sent,
            (s.end - s.start) as i64,
            back - s.end as i64,
        ))
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        let r = self.req;
        write!(
            w,
            "{},{},{},{},{},{},{},{},{},",
            r.trace_id,
            r.status,
            r.intended_us,
            r.sent_us,
            r.latency_us,
            r.uncorrected_us,
            self.lag(),
            self.server.is_some(),
            self.spans
        )?;
        match (self.server, self.split()) {
            (Some(s), Some((before, server, after))) => {
                csv_field(w, &s.service)?;
                w.write_all(b",")?;
                csv_field(w, &s.operation)?;
                write!(w, ",{},{server},{before},{after},", s.start)?;
            }
            _ => w.write_all(b",,,,,,")?,
        }
        let path: Vec<String> = self
            .path
            .iter()
            .map(|s| format!("{}:{}:{}", s.service, s.operation, s.self_us))
            .collect();
        csv_field(w, &path.join(" > "))?;
        w.write_all(b"\n")
    }
}

/// Writes `join.csv` and `join_summary.csv` into `dir` for `traced`'s slowest requests against
/// the spans of `spans_csv`.
pub fn write_join(dir: &Path, traced: &Traced, spans_csv: &Path) -> Result<Vec<Written>> {
    let wanted: HashSet<String> = traced.slowest.iter().map(|r| norm(&r.trace_id)).collect();
    let spans = read_spans(spans_csv, &wanted)?;
    let joined: Vec<Joined> = traced
        .slowest
        .iter()
        .map(|req| {
            let trace = spans.get(&norm(&req.trace_id)).map_or(&[][..], |v| &v[..]);
            let server = entry(trace, &req.span_id);
            Joined {
                req,
                spans: trace.len(),
                server,
                path: server.map_or_else(Vec::new, |s| critical_path(trace, s)),
            }
        })
        .collect();
    let found = joined.iter().filter(|j| j.server.is_some()).count();
    let path = write_atomic(dir, "join.csv", |w| {
        writeln!(w, "{JOIN_HEADER}")?;
        joined.iter().try_for_each(|j| j.write(w))
    })?;
    let summary = write_atomic(dir, "join_summary.csv", |w| {
        writeln!(w, "key,value")?;
        for (k, v) in summary_rows(traced, &joined) {
            csv_field(w, &k)?;
            writeln!(w, ",{v}")?;
        }
        Ok(())
    })?;
    Ok(vec![
        Written {
            path,
            what: format!(
                "slow traced requests joined with their traces: {found} of {} found",
                joined.len()
            ),
        },
        Written {
            path: summary,
            what: "where the slow requests' latency went".into(),
        },
    ])
}

/// The summary's `key,value` rows: counts, then where the latency went for every kept request
/// and, under `tail_`, for the slowest 1 % of all traced requests (everything above their p99:
/// the first of the kept list, which the report's bound always holds).
fn summary_rows(traced: &Traced, joined: &[Joined]) -> Vec<(String, String)> {
    let tail = (traced.requests.div_ceil(100) as usize).clamp(1, joined.len().max(1));
    let mut rows = vec![
        ("traced_requests".to_string(), traced.requests.to_string()),
        ("slow_requests".into(), joined.len().to_string()),
        ("tail_requests".into(), tail.min(joined.len()).to_string()),
    ];
    rows.extend(split_rows("", joined));
    rows.extend(split_rows("tail_", &joined[..tail.min(joined.len())]));
    rows
}

/// `found`, the mean latency, the mean and share of each part of it, and each service's share
/// of the critical paths' self time, over the found requests of `joined`; keys start `prefix`.
fn split_rows(prefix: &str, joined: &[Joined]) -> Vec<(String, String)> {
    let found: Vec<&Joined> = joined.iter().filter(|j| j.server.is_some()).collect();
    let mut rows = vec![(format!("{prefix}found"), found.len().to_string())];
    if found.is_empty() {
        return rows;
    }
    let n = found.len() as f64;
    let mean = |f: &dyn Fn(&Joined) -> f64| found.iter().map(|j| f(j)).sum::<f64>() / n;
    let latency = mean(&|j| j.req.latency_us as f64);
    let split = |k: usize| move |j: &Joined| j.split().map_or(0.0, |(b, s, a)| [b, s, a][k] as f64);
    let parts: [(&str, f64); 4] = [
        ("generator_lag", mean(&|j| j.lag() as f64)),
        ("before_server", mean(&split(0))),
        ("server", mean(&split(1))),
        ("after_server", mean(&split(2))),
    ];
    rows.push((format!("{prefix}latency_mean_us"), format!("{latency:.1}")));
    for (name, v) in parts {
        rows.push((format!("{prefix}{name}_mean_us"), format!("{v:.1}")));
        rows.push((format!("{prefix}{name}_share"), share(v, latency)));
    }
    let mut by_service: HashMap<&str, u64> = HashMap::new();
    for j in &found {
        for s in &j.path {
            *by_service.entry(&s.service).or_default() += s.self_us;
        }
    }
    let mut services: Vec<(&str, u64)> = by_service.into_iter().collect();
    services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (service, self_us) in services {
        rows.push((
            format!("{prefix}critical_self_share:{service}"),
            share(self_us as f64 / n, latency),
        ));
    }
    rows
}

fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.4}", part / whole)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
