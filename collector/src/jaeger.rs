//! Jaeger: a client of the query service's HTTP API (`/api/services`, `/api/traces`) that fetches
//! *all* traces of a window. Jaeger has no bulk export and caps each answer at `limit` traces, so a
//! full page means "there may be more": the window is split in two and each half fetched again,
//! recursively, until no page is full. Traces are deduplicated by trace ID (a trace can match both
//! halves) and streamed into the trace tables of [`crate::traces`].

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::{self, Fetched, HttpSettings};
use crate::output::Written;
use crate::traces::{TraceCounts, TraceProcessor};
use crate::window::{unix_micros, Window};

/// How to collect traces from one Jaeger query service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaegerSettings {
    /// Base URL of the query service, e.g. `http://127.0.0.1:16686`.
    pub url: String,
    /// Service whose traces to fetch (the entrance service, e.g. `nginx-web-server`).
    pub service: String,
    /// Restrict to one operation.
    pub operation: Option<String>,
    /// Tag filters (`tags={"http.status_code":"200"}`); empty = all traces, errors included.
    pub tags: BTreeMap<String, String>,
    /// Traces per request; a full page triggers a split of the window.
    pub page_limit: usize,
    /// Upper bound on requests per window (a safety net against endless splitting).
    pub max_requests: usize,
    /// How long after the window's end to wait before querying (span flush and ingestion lag).
    pub grace: Duration,
    /// Keep the raw traces as `jaeger_traces.json` so they can be reprocessed.
    pub keep_raw: bool,
    /// Timeout and retries.
    pub http: HttpSettings,
    /// Trace ids to fetch one by one (`/api/traces/{id}`) when the window's search did not
    /// return them: the load generator's slow traced requests, so that joining them with their
    /// traces never depends on the search's paging or limits.
    pub wanted: Vec<String>,
}

impl JaegerSettings {
    /// Settings with a 1,000-trace page, 5,000 requests at most, a 10 s grace period, raw JSON kept.
    pub fn new(url: impl Into<String>, service: impl Into<String>) -> Self {
        JaegerSettings {
            url: url.into(),
            service: service.into(),
            operation: None,
            tags: BTreeMap::new(),
            page_limit: 1000,
            max_requests: 5000,
            grace: Duration::from_secs(10),
            keep_raw: true,
            http: HttpSettings::default(),
            wanted: Vec::new(),
        }
    }
}

/// How the fetch went: written to `traces_summary.csv` next to the trace counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// HTTP requests made to `/api/traces`.
    pub requests: usize,
    /// Windows whose page was full but could not be split further (some traces may be missing).
    pub truncated_windows: usize,
    /// Distinct traces fetched.
    pub traces: u64,
    /// Requests the load generator sent in the window, when known.
    pub requests_sent: Option<u64>,
    /// Wanted traces the search missed, fetched by id.
    pub by_id: usize,
    /// Wanted traces Jaeger does not have (404 by id: not sampled, not yet stored, or lost).
    pub by_id_missing: usize,
}

impl FetchReport {
    /// Traces fetched / requests sent (sampling coverage), when the requests are known.
    pub fn coverage(&self) -> Option<f64> {
        self.requests_sent
            .filter(|&n| n > 0)
            .map(|n| self.traces as f64 / n as f64)
    }
}

/// A client of one Jaeger query service.
#[derive(Debug, Clone)]
pub struct JaegerClient {
    base: url::Url,
    http: HttpSettings,
}

#[derive(Deserialize)]
struct Count {
    #[serde(default)]
    data: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Option<Vec<ErrorItem>>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    msg: String,
}

#[derive(Deserialize)]
struct Services {
    #[serde(default)]
    data: Option<Vec<String>>,
}

impl JaegerClient {
    /// A client for the query service at `url`.
    pub fn new(url: &str, http: HttpSettings) -> Result<Self> {
        let mut base = url::Url::parse(url).map_err(|e| Error::Invalid {
            what: "Jaeger URL",
            message: format!("`{url}`: {e}"),
        })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(JaegerClient { base, http })
    }

    fn get(&self, url: url::Url, what: &str, window: &str) -> Result<bytes::Bytes> {
        let mut url_s = url.clone();
        url_s.set_query(None);
        let url_s = url_s.to_string();
        match http::get(&url, &self.http) {
            Fetched::Failed { message, attempts } => Err(Error::Unreachable {
                origin: "jaeger",
                url: url_s,
                what: what.into(),
                window: window.into(),
                attempts,
                message,
            }),
            Fetched::Answer { status, body } if status >= 400 => {
                let msg = serde_json::from_slice::<ErrorBody>(&body)
                    .ok()
                    .and_then(|b| b.errors)
                    .map(|e| e.into_iter().map(|i| i.msg).collect::<Vec<_>>().join("; "))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| {
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                            .trim()
                            .to_string()
                    });
                Err(Error::Http {
                    origin: "jaeger",
                    url: url_s,
                    status,
                    what: what.into(),
                    window: window.into(),
                    body: msg,
                })
            }
            Fetched::Answer { body, .. } => Ok(body),
        }
    }

    /// The services Jaeger knows (`/api/services`).
    pub fn services(&self) -> Result<Vec<String>> {
        let url = self.base.join("api/services").map_err(|e| Error::Invalid {
            what: "Jaeger URL",
            message: e.to_string(),
        })?;
        let body = self.get(url.clone(), "services", "-")?;
        let s: Services = serde_json::from_slice(&body).map_err(|e| Error::Malformed {
            origin: "jaeger",
            url: url.to_string(),
            what: "services".into(),
            window: "-".into(),
            message: e.to_string(),
        })?;
        Ok(s.data.unwrap_or_default())
    }

    /// One page of `/api/traces` for `[start_us, end_us]`, as the raw JSON answer.
    pub fn traces_page(
        &self,
        s: &JaegerSettings,
        start_us: u64,
        end_us: u64,
    ) -> Result<bytes::Bytes> {
        let mut url = self.base.join("api/traces").map_err(|e| Error::Invalid {
            what: "Jaeger URL",
            message: e.to_string(),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("service", &s.service)
                .append_pair("start", &start_us.to_string())
                .append_pair("end", &end_us.to_string())
                .append_pair("limit", &s.page_limit.to_string());
            if let Some(op) = &s.operation {
                q.append_pair("operation", op);
            }
            if !s.tags.is_empty() {
                q.append_pair("tags", &serde_json::to_string(&s.tags).unwrap_or_default());
            }
        }
        self.get(url, &describe(s), &window_us(start_us, end_us))
    }

    /// One trace by id (`/api/traces/{id}`) as the raw JSON answer (`{"data":[trace]}`);
    /// `None` when Jaeger does not have it (404).
    pub fn trace_by_id(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let url = self
            .base
            .join(&format!("api/traces/{id}"))
            .map_err(|e| Error::Invalid {
                what: "Jaeger URL",
                message: e.to_string(),
            })?;
        if let Fetched::Answer { status: 404, .. } = http::get(&url, &self.http) {
            return Ok(None);
        }
        self.get(url, &format!("trace {id}"), "-").map(Some)
    }
}

/// The spellings of a trace id that Jaeger's JSON may use: the id as given, and for a hex id the
/// forms Jaeger versions print (32 digits; the high half without leading zeros; only the low 16
/// digits when the high half is zero). Ids that are not hex have only their own spelling.
pub fn jaeger_trace_ids(id: &str) -> Vec<String> {
    let mut out = vec![id.trim().to_ascii_lowercase()];
    if let Ok(v) = u128::from_str_radix(id.trim(), 16) {
        let (high, low) = ((v >> 64) as u64, v as u64);
        out.push(format!("{high:016x}{low:016x}"));
        if high == 0 {
            out.push(format!("{low:016x}"));
        } else {
            out.push(format!("{high:x}{low:016x}"));
        }
    }
    out.dedup();
    out
}

/// Fetches by id each of `settings.wanted` that the window's pages did not hold and adds it to
/// `proc`, counting in `report` what was fetched and what Jaeger did not have.
fn fetch_wanted(
    client: &JaegerClient,
    settings: &JaegerSettings,
    proc: &mut TraceProcessor,
    raw: Option<&mut BufWriter<tempfile::NamedTempFile>>,
    report: &mut FetchReport,
) -> Result<()> {
    let mut raw = raw;
    for id in &settings.wanted {
        let spellings = jaeger_trace_ids(id);
        if spellings.iter().any(|s| proc.has_trace(s)) {
            continue;
        }
        let Some(page) = client.trace_by_id(&spellings[0])? else {
            report.by_id_missing += 1;
            continue;
        };
        report.requests += 1;
        report.by_id += 1;
        proc.add_page(&page, raw.as_deref_mut())
            .map_err(|m| Error::Malformed {
                origin: "jaeger",
                url: settings.url.clone(),
                what: format!("trace {id}"),
                window: "-".into(),
                message: m.to_string(),
            })?;
    }
    Ok(())
}

fn describe(s: &JaegerSettings) -> String {
    let mut d = format!("traces of service `{}`", s.service);
    if let Some(op) = &s.operation {
        d.push_str(&format!(" operation `{op}`"));
    }
    if !s.tags.is_empty() {
        d.push_str(&format!(
            " tags {}",
            serde_json::to_string(&s.tags).unwrap_or_default()
        ));
    }
    d
}

fn window_us(start: u64, end: u64) -> String {
    let t = |us: u64| crate::window::rfc3339(std::time::UNIX_EPOCH + Duration::from_micros(us));
    format!("{}..{}", t(start), t(end))
}

/// Fetches every trace of `window` and writes the trace tables (and `jaeger_traces.json` when
/// `keep_raw`) into `dir`. `requests_sent` (from the load generator) gives the coverage line.
/// Nothing is written when the fetch fails or finds no trace.
pub fn collect(
    settings: &JaegerSettings,
    window: &Window,
    dir: &Path,
    requests_sent: Option<u64>,
) -> Result<(TraceCounts, FetchReport, Vec<Written>)> {
    let client = JaegerClient::new(&settings.url, settings.http)?;
    let limit = settings.page_limit.max(1);
    let (start, end) = (unix_micros(window.start), unix_micros(window.end));
    let what = describe(settings);
    let malformed = |message: String, a: u64, b: u64| Error::Malformed {
        origin: "jaeger",
        url: settings.url.clone(),
        what: what.clone(),
        window: window_us(a, b),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let mut proc = TraceProcessor::create(dir)?;
    let raw_path = dir.join("jaeger_traces.json");
    let mut raw = if settings.keep_raw {
        let tmp = tempfile::Builder::new()
            .prefix(".jaeger_traces.json.")
            .tempfile_in(dir)
            .map_err(|e| Error::io("writing", &raw_path, e))?;
        let mut w = BufWriter::with_capacity(1 << 18, tmp);
        w.write_all(b"{\"data\":[\n")
            .map_err(|e| Error::io("writing", &raw_path, e))?;
        Some(w)
    } else {
        None
    };
    let mut report = FetchReport {
        requests_sent,
        ..Default::default()
    };
    // Depth-first, left half first, so pages arrive in time order.
    let mut stack = vec![(start, end)];
    while let Some((a, b)) = stack.pop() {
        let page = client.traces_page(settings, a, b)?;
        report.requests += 1;
        let n = serde_json::from_slice::<Count>(&page)
            .map_err(|e| malformed(e.to_string(), a, b))?
            .data
            .map_or(0, |d| d.len());
        if n >= limit {
            if b - a >= 2 && report.requests + stack.len() + 2 <= settings.max_requests {
                let mid = a + (b - a) / 2;
                stack.push((mid + 1, b));
                stack.push((a, mid));
                continue;
            }
            report.truncated_windows += 1;
            tracing::warn!(window = %window_us(a, b), "Jaeger page full and window not split further: traces may be missing");
        }
        proc.add_page(&page, raw.as_mut())
            .map_err(|m| malformed(m.to_string(), a, b))?;
    }
    fetch_wanted(&client, settings, &mut proc, raw.as_mut(), &mut report)?;
    report.traces = proc.counts().traces;
    if report.traces == 0 {
        let known = client
            .services()
            .ok()
            .filter(|s| !s.contains(&settings.service));
        let hint = known.map_or(String::new(), |s| {
            format!(
                " (Jaeger knows no such service; it knows: {})",
                s.join(", ")
            )
        });
        return Err(Error::Empty {
            origin: "jaeger",
            what: format!("{what}{hint}"),
            window: window.to_string(),
        });
    }
    proc.add_summary("fetch_requests", report.requests.to_string());
    proc.add_summary("page_limit", limit.to_string());
    proc.add_summary("truncated_windows", report.truncated_windows.to_string());
    proc.add_summary("wanted_by_id", settings.wanted.len().to_string());
    proc.add_summary("fetched_by_id", report.by_id.to_string());
    proc.add_summary("missing_by_id", report.by_id_missing.to_string());
    proc.add_summary("window_start_us", start.to_string());
    proc.add_summary("window_end_us", end.to_string());
    proc.add_summary(
        "requests_sent",
        requests_sent.map_or(String::new(), |n| n.to_string()),
    );
    proc.add_summary(
        "coverage",
        report
            .coverage()
            .map_or(String::new(), |c| format!("{c:.6}")),
    );
    let (counts, mut written) = proc.finish()?;
    if let Some(mut w) = raw {
        w.write_all(b"\n]}\n")
            .map_err(|e| Error::io("writing", &raw_path, e))?;
        let tmp = w
            .into_inner()
            .map_err(|e| Error::io("writing", &raw_path, e.into_error()))?;
        tmp.persist(&raw_path)
            .map_err(|e| Error::io("writing", &raw_path, e.error))?;
        written.push(Written {
            path: raw_path,
            what: format!(
                "raw Jaeger traces ({} traces, {} requests)",
                counts.traces, report.requests
            ),
        });
    }
    Ok((counts, report, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_spelled_as_jaeger_spells_them() {
        let full = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            jaeger_trace_ids(full),
            vec![full.to_string(), "af7651916cd43dd8448eb211c80319c".into()]
        );
        assert_eq!(
            jaeger_trace_ids("00000000000000000000000000000ABC"),
            vec![
                "00000000000000000000000000000abc".to_string(),
                "0000000000000abc".into()
            ]
        );
        assert_eq!(jaeger_trace_ids("not-hex"), vec!["not-hex".to_string()]);
    }
}
