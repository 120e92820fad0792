//! Prometheus: the HTTP API client (instant and range queries), query templates over the test case,
//! automatic step choice, the default query set, and collection of a window into long-format rows.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::{self, Fetched, HttpSettings};
use crate::output::{Labels, MetricRow};
use crate::window::{unix_secs, Window};

/// Prometheus refuses range queries of more than 11,000 points per series.
pub const MAX_POINTS: u64 = 11_000;

/// What a test case is, for the query templates: `{{namespace}}`, `{{pod_regex}}`, `{{node}}`,
/// `{{case}}` and any `extra` key. The collector adds `{{window}}` (window length as a PromQL
/// duration), `{{step}}`, `{{rate_window}}`, `{{start}}` and `{{end}}` (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateContext {
    /// Kubernetes namespace of the application under test.
    pub namespace: Option<String>,
    /// Regular expression matching the pods of interest (Prometheus anchors it).
    pub pod_regex: Option<String>,
    /// Node of interest (for node-scoped queries written by the user).
    pub node: Option<String>,
    /// Test-case name.
    pub case: String,
    /// Further variables.
    pub extra: BTreeMap<String, String>,
}

/// Whether a query is evaluated over the window (range) or once at the window's end (instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryKind {
    /// `/api/v1/query_range` over `[start, end]` at the chosen step.
    #[default]
    Range,
    /// `/api/v1/query` at the window's end (use `{{window}}` for counters: `increase(x[{{window}}])`).
    Instant,
}

/// A named PromQL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTemplate {
    /// Name written in the `metric` column.
    pub name: String,
    /// PromQL with `{{variable}}` placeholders.
    pub promql: String,
    /// Range or instant.
    pub kind: QueryKind,
}

impl QueryTemplate {
    /// A range query template.
    pub fn range(name: impl Into<String>, promql: impl Into<String>) -> Self {
        QueryTemplate {
            name: name.into(),
            promql: promql.into(),
            kind: QueryKind::Range,
        }
    }
}

/// How to collect from one Prometheus server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// Query templates (see [`default_queries`]).
    pub queries: Vec<QueryTemplate>,
    /// Smallest step; set it to at least the scrape interval.
    pub min_step: Duration,
    /// A fixed step overriding the automatic choice (still raised to respect the 11,000-point limit).
    pub step: Option<Duration>,
    /// How long after the window's end to wait before querying (scrape interval + rule lag).
    pub grace: Duration,
    /// Range of `rate()`/`irate()` in the default queries (`{{rate_window}}`); raised to 2 steps.
    pub rate_window: Duration,
    /// Timeout and retries.
    pub http: HttpSettings,
}

impl PrometheusSettings {
    /// Settings with the default query set, a 15 s minimum step, a 30 s grace period, a 1 m rate window.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusSettings {
            url: url.into(),
            queries: default_queries(),
            min_step: Duration::from_secs(15),
            step: None,
            grace: Duration::from_secs(30),
            rate_window: Duration::from_secs(60),
            http: HttpSettings::default(),
        }
    }
}

/// The default query set: the original AEFM's CPU and memory working set per pod as a share of the
/// pod's limit (kube-prometheus-stack recording rules; values 0–1, not percent), the raw per-pod CPU
/// (cores) and working set (bytes), and node CPU busy share, memory and network from node-exporter.
pub fn default_queries() -> Vec<QueryTemplate> {
    const C: &str =
        r#"namespace="{{namespace}}", container!="POD", container!="", pod=~"{{pod_regex}}""#;
    vec![
        QueryTemplate::range(
            "pod_cpu_limit_share",
            format!(
                "sum(node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{{{C}}}) by (container, pod) / sum(kube_pod_container_resource_limits{{{C}, resource=\"cpu\"}}) by (container, pod)"
            ),
        ),
        QueryTemplate::range(
            "pod_memory_limit_share",
            format!(
                "sum(node_namespace_pod_container:container_memory_working_set_bytes{{{C}}}) by (pod) / sum(kube_pod_container_resource_limits{{{C}, resource=\"memory\"}}) by (pod)"
            ),
        ),
        QueryTemplate::range(
            "pod_cpu_cores",
            format!("sum(rate(container_cpu_usage_seconds_total{{{C}}}[{{{{rate_window}}}}])) by (container, pod)"),
        ),
        QueryTemplate::range(
            "pod_memory_working_set_bytes",
            format!("sum(container_memory_working_set_bytes{{{C}}}) by (container, pod)"),
        ),
        QueryTemplate::range(
            "node_cpu_busy_share",
            r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[{{rate_window}}]))"#,
        ),
        QueryTemplate::range("node_memory_available_bytes", "node_memory_MemAvailable_bytes"),
        QueryTemplate::range(
            "node_memory_used_share",
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        ),
        QueryTemplate::range(
            "node_network_receive_bytes_per_second",
            r#"sum by (instance) (rate(node_network_receive_bytes_total{device!="lo"}[{{rate_window}}]))"#,
        ),
        QueryTemplate::range(
            "node_network_transmit_bytes_per_second",
            r#"sum by (instance) (rate(node_network_transmit_bytes_total{device!="lo"}[{{rate_window}}]))"#,
        ),
    ]
}

/// The step for a window: the larger of `min_step` and the smallest step (in whole milliseconds)
/// that keeps `floor(window / step) + 1` at or under [`MAX_POINTS`].
pub fn choose_step(window: Duration, min_step: Duration) -> Duration {
    let w = window.as_millis() as u64;
    let needed = w.div_ceil(MAX_POINTS - 1).max(1);
    Duration::from_millis(needed)
        .max(min_step)
        .max(Duration::from_millis(1))
}

/// A duration as PromQL writes it: `15s`, `1500ms`.
pub fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Renders a template: replaces every `{{name}}` with its value. Unknown or unset variables are an
/// error naming the query and the variable.
pub fn render(
    template: &QueryTemplate,
    ctx: &TemplateContext,
    window: &Window,
    step: Duration,
    rate_window: Duration,
) -> Result<String> {
    let mut out = String::with_capacity(template.promql.len() + 64);
    let mut rest = template.promql.as_str();
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(Error::Template {
                name: template.name.clone(),
                variable: after.chars().take(20).collect(),
                hint: " (unclosed `{{`)".into(),
            });
        };
        let var = after[..close].trim();
        let missing = |hint: &str| Error::Template {
            name: template.name.clone(),
            variable: var.to_string(),
            hint: hint.to_string(),
        };
        let value =
            match var {
                "namespace" => ctx
                    .namespace
                    .clone()
                    .ok_or_else(|| missing(" for this test case"))?,
                "pod_regex" => ctx
                    .pod_regex
                    .clone()
                    .ok_or_else(|| missing(" for this test case"))?,
                "node" => ctx
                    .node
                    .clone()
                    .ok_or_else(|| missing(" for this test case"))?,
                "case" => ctx.case.clone(),
                "window" => promql_duration(window.duration()),
                "step" => promql_duration(step),
                "rate_window" => promql_duration(rate_window.max(step * 2)),
                "start" => format!("{:.3}", window.start_secs()),
                "end" => format!("{:.3}", window.end_secs()),
                other => ctx.extra.get(other).cloned().ok_or_else(|| {
                    missing(" (unknown variable: not a built-in and not in `extra`)")
                })?,
            };
        out.push_str(&value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One series of a query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels (`__name__` included when Prometheus returns it).
    pub labels: Labels,
    /// `(Unix seconds, value)` samples in time order.
    pub samples: Vec<(f64, f64)>,
}

/// A client of one Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    base: url::Url,
    http: HttpSettings,
}

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: Labels,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl PrometheusClient {
    /// A client for the server at `url` (`http://host:port`, with or without a path prefix).
    pub fn new(url: &str, http: HttpSettings) -> Result<Self> {
        let mut base = url::Url::parse(url).map_err(|e| Error::Invalid {
            what: "Prometheus URL",
            message: format!("`{url}`: {e}"),
        })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(PrometheusClient { base, http })
    }

    /// A range query over the window (inclusive) at `step`.
    pub fn range(&self, query: &str, window: &Window, step: Duration) -> Result<Vec<Series>> {
        let mut url = self.endpoint("api/v1/query_range")?;
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("start", &format!("{:.3}", window.start_secs()))
            .append_pair("end", &format!("{:.3}", window.end_secs()))
            .append_pair("step", &format!("{}", step.as_secs_f64()))
            .append_pair("timeout", &promql_duration(self.http.timeout));
        self.run(url, query, window)
    }

    /// An instant query evaluated at `at`; `window` only labels errors.
    pub fn instant(&self, query: &str, at: SystemTime, window: &Window) -> Result<Vec<Series>> {
        let mut url = self.endpoint("api/v1/query")?;
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("time", &format!("{:.3}", unix_secs(at)))
            .append_pair("timeout", &promql_duration(self.http.timeout));
        self.run(url, query, window)
    }

    fn endpoint(&self, path: &str) -> Result<url::Url> {
        self.base.join(path).map_err(|e| Error::Invalid {
            what: "Prometheus URL",
            message: format!("{}: {e}", self.base),
        })
    }

    fn run(&self, url: url::Url, query: &str, window: &Window) -> Result<Vec<Series>> {
        let what = format!("query `{query}`");
        let window_s = window.to_string();
        let url_s = strip_query(&url);
        let (status, body) = match http::get(&url, &self.http) {
            Fetched::Failed { message, attempts } => {
                return Err(Error::Unreachable {
                    origin: "prometheus",
                    url: url_s,
                    what,
                    window: window_s,
                    attempts,
                    message,
                })
            }
            Fetched::Answer { status, body, .. } => (status, body),
        };
        let parsed: std::result::Result<ApiAnswer, _> = serde_json::from_slice(&body);
        if status >= 400 {
            let detail = match &parsed {
                Ok(a) => format!(
                    "{}: {}",
                    a.error_type.as_deref().unwrap_or("error"),
                    a.error.as_deref().unwrap_or("(no message)")
                ),
                Err(_) => String::from_utf8_lossy(&body[..body.len().min(500)])
                    .trim()
                    .to_string(),
            };
            return Err(Error::Http {
                origin: "prometheus",
                url: url_s,
                status,
                what,
                window: window_s,
                body: detail,
            });
        }
        let malformed = |message: String| Error::Malformed {
            origin: "prometheus",
            url: url_s.clone(),
            what: what.clone(),
            window: window_s.clone(),
            message,
        };
        let answer = parsed.map_err(|e| malformed(e.to_string()))?;
        if answer.status != "success" {
            return Err(Error::Http {
                origin: "prometheus",
                url: url_s.clone(),
                status,
                what: what.clone(),
                window: window_s.clone(),
                body: format!(
                    "{}: {}",
                    answer.error_type.as_deref().unwrap_or("error"),
                    answer.error.as_deref().unwrap_or("(no message)")
                ),
            });
        }
        let data = answer
            .data
            .ok_or_else(|| malformed("no `data` in a success answer".into()))?;
        let parse_v = |s: &str| {
            s.parse::<f64>()
                .map_err(|e| malformed(format!("sample value `{s}`: {e}")))
        };
        let series = match data.result_type.as_str() {
            "matrix" | "vector" => {
                let list: Vec<ApiSeries> =
                    serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
                let mut out = Vec::with_capacity(list.len());
                for s in list {
                    let mut samples = Vec::with_capacity(s.values.len() + 1);
                    for (t, v) in s.values.iter().chain(s.value.iter()) {
                        samples.push((*t, parse_v(v)?));
                    }
                    out.push(Series {
                        labels: s.metric,
                        samples,
                    });
                }
                out
            }
            "scalar" => {
                let (t, v): (f64, String) =
                    serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
                vec![Series {
                    labels: Labels::new(),
                    samples: vec![(t, parse_v(&v)?)],
                }]
            }
            other => return Err(malformed(format!("unsupported resultType `{other}`"))),
        };
        if series.iter().all(|s| s.samples.is_empty()) {
            return Err(Error::Empty {
                origin: "prometheus",
                what,
                window: window_s,
            });
        }
        Ok(series)
    }
}

/// The URL without its query string (queries go in the error's `what`, not twice).
fn strip_query(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// The outcome of one query of a collection.
#[derive(Debug)]
pub struct QueryReport {
    /// Query name.
    pub name: String,
    /// Rendered PromQL (empty when rendering failed).
    pub promql: String,
    /// Step used (range queries).
    pub step: Duration,
    /// Series returned.
    pub series: usize,
    /// Samples returned.
    pub points: usize,
    /// Samples a complete answer would have (`series × (floor(window/step)+1)`); the difference
    /// counts missing scrapes or series that started or ended inside the window.
    pub expected_points: usize,
    /// Why the query failed, if it did.
    pub error: Option<Error>,
}

/// Runs every query of `settings` over `window` (without waiting for the grace period) and returns
/// the samples in long format (`source = prometheus`, `metric` = query name) and one report per query.
pub fn collect(
    settings: &PrometheusSettings,
    window: &Window,
    ctx: &TemplateContext,
) -> (Vec<MetricRow>, Vec<QueryReport>) {
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    let auto = choose_step(window.duration(), settings.min_step);
    let step = settings.step.map_or(auto, |s| {
        s.max(choose_step(window.duration(), Duration::from_millis(1)))
    });
    let client = PrometheusClient::new(&settings.url, settings.http);
    for q in &settings.queries {
        let mut report = QueryReport {
            name: q.name.clone(),
            promql: String::new(),
            step,
            series: 0,
            points: 0,
            expected_points: 0,
            error: None,
        };
        let result = client.as_ref().map_err(clone_invalid).and_then(|client| {
            let promql = render(q, ctx, window, step, settings.rate_window)?;
            report.promql = promql.clone();
            if q.kind == QueryKind::Instant || window.duration().is_zero() {
                client.instant(&promql, window.end, window)
            } else {
                client.range(&promql, window, step)
            }
        });
        match result {
            Ok(series) => {
                let per_series = if q.kind == QueryKind::Instant || window.duration().is_zero() {
                    1
                } else {
                    (window.duration().as_millis() / step.as_millis().max(1)) as usize + 1
                };
                report.series = series.len();
                report.expected_points = per_series * series.len();
                for s in series {
                    report.points += s.samples.len();
                    for (t, v) in s.samples {
                        rows.push(MetricRow {
                            timestamp: t,
                            source: "prometheus".into(),
                            metric: q.name.clone(),
                            labels: s.labels.clone(),
                            value: v,
                        });
                    }
                }
            }
            Err(e) => report.error = Some(e),
        }
        reports.push(report);
    }
    (rows, reports)
}

fn clone_invalid(e: &Error) -> Error {
    Error::Invalid {
        what: "Prometheus URL",
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn win(secs: u64) -> Window {
        Window::new(
            UNIX_EPOCH + Duration::from_secs(1000),
            UNIX_EPOCH + Duration::from_secs(1000 + secs),
        )
        .unwrap()
    }

    #[test]
    fn step_respects_point_limit_and_minimum() {
        assert_eq!(
            choose_step(Duration::from_secs(60), Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            choose_step(Duration::from_secs(60), Duration::from_secs(15)),
            Duration::from_secs(15)
        );
        // A day at 1 s would be 86,401 points.
        let day = Duration::from_secs(86_400);
        let s = choose_step(day, Duration::from_secs(1));
        assert!(day.as_millis() / s.as_millis() < MAX_POINTS as u128);
        assert!(s < Duration::from_secs(8));
        // exactly 10,999 s at 1 s = 11,000 points: allowed
        assert_eq!(
            choose_step(Duration::from_secs(10_999), Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert!(
            choose_step(Duration::from_secs(11_000), Duration::from_secs(1))
                > Duration::from_secs(1)
        );
    }

    #[test]
    fn renders_variables_and_names_missing_ones() {
        let ctx = TemplateContext {
            namespace: Some("social".into()),
            pod_regex: Some("nginx.*".into()),
            case: "tc1".into(),
            extra: [("job".to_string(), "node".to_string())].into(),
            ..Default::default()
        };
        let q = QueryTemplate::range(
            "q",
            r#"rate(x{namespace="{{namespace}}",pod=~"{{ pod_regex }}",job="{{job}}"}[{{window}}])"#,
        );
        let s = render(
            &q,
            &ctx,
            &win(90),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            s,
            r#"rate(x{namespace="social",pod=~"nginx.*",job="node"}[90s])"#
        );
        let q = QueryTemplate::range("cpu", "x{node=\"{{node}}\"}");
        let e = render(
            &q,
            &ctx,
            &win(1),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`cpu`") && e.to_string().contains("`node`"),
            "{e}"
        );
        let q = QueryTemplate::range("u", "{{nope}}");
        assert!(render(
            &q,
            &ctx,
            &win(1),
            Duration::from_secs(1),
            Duration::from_secs(60)
        )
        .is_err());
        let q = QueryTemplate::range("u", "x{{nope");
        assert!(render(
            &q,
            &ctx,
            &win(1),
            Duration::from_secs(1),
            Duration::from_secs(60)
        )
        .is_err());
    }

    #[test]
    fn default_queries_render_with_a_full_context() {
        let ctx = TemplateContext {
            namespace: Some("ns".into()),
            pod_regex: Some("a.*|b.*".into()),
            ..Default::default()
        };
        for q in default_queries() {
            let s = render(
                &q,
                &ctx,
                &win(60),
                Duration::from_secs(15),
                Duration::from_secs(60),
            )
            .unwrap();
            assert!(!s.contains("{{"), "{s}");
        }
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
    }
}
