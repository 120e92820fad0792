//! Direct scraping of Prometheus text exposition endpoints (exporters, `aefm-stress`'s endpoint) at a
//! fixed interval, for when no Prometheus server is there. Parsing is done by `prometheus-parse`.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::http::{self, Fetched, HttpSettings};
use crate::output::{Labels, MetricRow};
use crate::window::{rfc3339, unix_secs};

/// Scrapes `url` once and returns one row per sample (`source = scrape`), stamped with the scrape
/// time. Histograms become `<name>_bucket` rows with an `le` label, summaries `<name>` rows with a
/// `quantile` label. An `instance` label (`host:port` of the URL) is added.
pub fn scrape_once(url: &str, http: &HttpSettings) -> Result<Vec<MetricRow>> {
    let at = SystemTime::now();
    let parsed = url::Url::parse(url).map_err(|e| Error::Invalid {
        what: "scrape URL",
        message: format!("`{url}`: {e}"),
    })?;
    let when = rfc3339(at);
    let body = match http::get(&parsed, http) {
        Fetched::Failed { message, attempts } => {
            return Err(Error::Unreachable {
                origin: "scrape",
                url: url.into(),
                what: "metrics scrape".into(),
                window: when,
                attempts,
                message,
            })
        }
        Fetched::Answer { status, body, .. } if status >= 400 => {
            return Err(Error::Http {
                origin: "scrape",
                url: url.into(),
                status,
                what: "metrics scrape".into(),
                window: when,
                body: String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_string(),
            })
        }
        Fetched::Answer { body, .. } => body,
    };
    let text = std::str::from_utf8(&body).map_err(|e| Error::Malformed {
        origin: "scrape",
        url: url.into(),
        what: "metrics scrape".into(),
        window: when.clone(),
        message: e.to_string(),
    })?;
    let instance = format!(
        "{}:{}",
        parsed.host_str().unwrap_or(""),
        parsed.port_or_known_default().unwrap_or(0)
    );
    parse_exposition(text, unix_secs(at), &instance).map_err(|message| Error::Malformed {
        origin: "scrape",
        url: url.into(),
        what: "metrics scrape".into(),
        window: when,
        message,
    })
}

/// Parses exposition text into rows at `timestamp`, adding `instance` as a label.
pub fn parse_exposition(
    text: &str,
    timestamp: f64,
    instance: &str,
) -> std::result::Result<Vec<MetricRow>, String> {
    use prometheus_parse::Value;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::with_capacity(scrape.samples.len());
    for s in scrape.samples {
        let mut labels: Labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("instance".into(), instance.into());
        let mut push = |metric: String, labels: Labels, value: f64| {
            rows.push(MetricRow {
                timestamp,
                source: "scrape".into(),
                metric,
                labels,
                value,
            })
        };
        match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => push(s.metric, labels, v),
            Value::Histogram(buckets) => {
                for b in buckets {
                    let mut l = labels.clone();
                    l.insert("le".into(), crate::output::fmt_f64(b.less_than));
                    push(format!("{}_bucket", s.metric), l, b.count);
                }
            }
            Value::Summary(qs) => {
                for q in qs {
                    let mut l = labels.clone();
                    l.insert("quantile".into(), crate::output::fmt_f64(q.quantile));
                    push(s.metric.clone(), l, q.count);
                }
            }
        }
    }
    Ok(rows)
}

/// Samples several endpoints at a fixed interval on a background thread.
#[derive(Debug)]
pub struct Scraper {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<(Vec<MetricRow>, Vec<Error>)>,
}

impl Scraper {
    /// Starts scraping every URL every `interval` (the first scrape is immediate).
    pub fn start(urls: Vec<String>, interval: Duration, http: HttpSettings) -> Scraper {
        let (stop, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let (mut rows, mut errors) = (Vec::new(), Vec::new());
            let mut next = Instant::now();
            loop {
                for u in &urls {
                    match scrape_once(u, &http) {
                        Ok(r) => rows.extend(r),
                        Err(e) => errors.push(e),
                    }
                }
                next += interval;
                let wait = next.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            (rows, errors)
        });
        Scraper { stop, handle }
    }

    /// Stops and returns the rows and the failed scrapes.
    pub fn stop(self) -> (Vec<MetricRow>, Vec<Error>) {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_else(|_| {
            (
                Vec::new(),
                vec![Error::Host("scrape thread panicked".into())],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_and_histograms() {
        let text = "# TYPE a counter\na_total{x=\"1\"} 5\n# TYPE g gauge\ng 2.5\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 7\nh_count 4\n";
        let rows = parse_exposition(text, 10.0, "h:1").unwrap();
        let find = |m: &str| rows.iter().filter(|r| r.metric == m).collect::<Vec<_>>();
        assert_eq!(find("a_total")[0].value, 5.0);
        assert_eq!(
            find("a_total")[0].labels.get("x").map(String::as_str),
            Some("1")
        );
        assert_eq!(find("g")[0].value, 2.5);
        assert_eq!(
            find("g")[0].labels.get("instance").map(String::as_str),
            Some("h:1")
        );
        assert_eq!(find("h_bucket").len(), 2);
    }
}
