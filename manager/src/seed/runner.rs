//! Sending one phase of seed requests: at most `concurrency` in flight over kept-alive
//! connections (hyper's pooled client on a one-thread runtime), each retried with exponential
//! backoff after a transport error, a timeout or a 5xx answer, and counted per outcome.
//!
//! An answer whose body says the record "already exist(s/ed)" counts as success (`existing`):
//! DeathStarBench's social network answers a second registration of a user with HTTP 500 and
//! `User registration failure: User username_0 already existed`, and a rerun of the seed must
//! succeed. A 4xx answer is not retried (the request itself is wrong). Once the failures of the
//! whole seed exceed `max_failures`, no new request is sent and the phase stops.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::load::CancelToken;

/// How requests are sent.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Further attempts after a retryable answer.
    pub retries: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Failures (after retries) tolerated over the whole seed.
    pub max_failures: u64,
}

/// One request of a phase: a POST of a form or a JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedRequest {
    /// Path below the base URL, e.g. `/wrk2-api/user/register`.
    pub path: &'static str,
    /// `application/x-www-form-urlencoded` or `application/json`.
    pub content_type: &'static str,
    /// The encoded body.
    pub body: Bytes,
}

impl SeedRequest {
    /// A form POST with these fields, URL-encoded in order.
    pub fn form(path: &'static str, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self {
            path,
            content_type: "application/x-www-form-urlencoded",
            body: Bytes::from(body),
        }
    }

    /// A JSON POST.
    pub fn json(path: &'static str, value: &serde_json::Value) -> Self {
        Self {
            path,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
        }
    }

    /// `POST <path> <body, shortened>` for failure messages.
    fn describe(&self) -> String {
        format!("POST {} {}", self.path, excerpt(&self.body, 80))
    }
}

/// The figures of one phase (one object of `seed.json`'s `phases`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseStats {
    /// Phase name, e.g. `register`, `follow`.
    pub phase: String,
    /// The endpoint it posts to.
    pub endpoint: String,
    /// Requests the phase was to send.
    pub planned: u64,
    /// Items left out on purpose (dataset records without an id, posts of users that existed).
    pub skipped: u64,
    /// Requests finished (answered or given up), excluding retries.
    pub requests: u64,
    /// Answered with success.
    pub created: u64,
    /// Answered "already exists" (counted as success).
    pub existing: u64,
    /// Still failing after their retries, or refused with a 4xx.
    pub failures: u64,
    /// Extra attempts made.
    pub retries: u64,
    /// Wall time of the phase.
    pub seconds: f64,
    /// `requests / seconds`.
    pub requests_per_second: f64,
    /// Up to five failed requests with their last error.
    pub failure_examples: Vec<String>,
}

/// Why a phase stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The seed's failures exceeded `max_failures`.
    TooManyFailures,
    /// Ctrl-C.
    Cancelled,
}

/// What a phase produced.
#[derive(Clone, Debug)]
pub struct PhaseOutcome {
    /// Its figures.
    pub stats: PhaseStats,
    /// Indexes (in the phase's request order) of the requests answered "already exists".
    pub existing: Vec<u64>,
    /// Set when the phase stopped early.
    pub stopped: Option<Stop>,
}

/// How one attempt (or the last one) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 2xx.
    Created,
    /// The record existed already.
    Exists,
    /// Worth another attempt: transport error, timeout, 5xx, 408, 429.
    Retry(String),
    /// Not worth another attempt: another 4xx (or 3xx).
    Fatal(String),
}

/// Sends phases of requests to one base URL.
pub struct Runner {
    rt: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
    settings: Settings,
    cancel: CancelToken,
    failures: u64,
}

impl Runner {
    /// A runner with its own one-thread runtime (the seed is bound by the app, not by us).
    pub fn new(settings: Settings, cancel: CancelToken) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.concurrency)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(http);
        Ok(Self {
            rt,
            client,
            settings,
            cancel,
            failures: 0,
        })
    }

    /// Sends every request of `items` (`planned` of them, for progress; all to `endpoint`) and
    /// counts the answers.
    pub fn run_phase(
        &mut self,
        phase: &str,
        endpoint: &str,
        planned: u64,
        items: impl Iterator<Item = SeedRequest>,
    ) -> PhaseOutcome {
        let mut out = PhaseOutcome {
            stats: PhaseStats {
                phase: phase.to_string(),
                endpoint: endpoint.to_string(),
                planned,
                ..Default::default()
            },
            existing: Vec::new(),
            stopped: None,
        };
        tracing::info!(phase, endpoint, requests = planned, "seed phase start");
        let start = Instant::now();
        let (client, settings, cancel) = (&self.client, &self.settings, &self.cancel);
        let failures = &mut self.failures;
        self.rt.block_on(async {
            let mut answers = futures::stream::iter(items.enumerate())
                .map(|(i, req)| async move {
                    let (answer, retries) = send(client, settings, &req).await;
                    (i as u64, req, answer, retries)
                })
                .buffer_unordered(settings.concurrency);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_log = Instant::now();
            loop {
                let next = tokio::select! {
                    n = answers.next() => n,
                    _ = tick.tick() => {
                        if cancel.is_cancelled() {
                            out.stopped = Some(Stop::Cancelled);
                            break;
                        }
                        if last_log.elapsed() >= Duration::from_secs(5) {
                            last_log = Instant::now();
                            tracing::info!(phase, done = out.stats.requests, of = planned, "seed progress");
                        }
                        continue;
                    }
                };
                let Some((i, req, answer, retries)) = next else { break };
                let s = &mut out.stats;
                s.requests += 1;
                s.retries += u64::from(retries);
                match answer {
                    Answer::Created => s.created += 1,
                    Answer::Exists => {
                        s.existing += 1;
                        out.existing.push(i);
                    }
                    Answer::Retry(m) | Answer::Fatal(m) => {
                        s.failures += 1;
                        *failures += 1;
                        if s.failure_examples.len() < 5 {
                            s.failure_examples.push(format!("{}: {m}", req.describe()));
                        }
                        if *failures > settings.max_failures {
                            out.stopped = Some(Stop::TooManyFailures);
                            break;
                        }
                    }
                }
            }
        });
        let s = &mut out.stats;
        s.seconds = start.elapsed().as_secs_f64();
        s.requests_per_second = if s.seconds > 0.0 {
            s.requests as f64 / s.seconds
        } else {
            0.0
        };
        tracing::info!(
            phase,
            created = s.created,
            existing = s.existing,
            failures = s.failures,
            retries = s.retries,
            seconds = format!("{:.2}", s.seconds),
            per_second = format!("{:.0}", s.requests_per_second),
            "seed phase done"
        );
        out
    }
}

/// Sends one request until it is answered for good or its retries are used up; returns the last
/// answer and the number of retries made.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    settings: &Settings,
    req: &SeedRequest,
) -> (Answer, u32) {
    let uri = format!("{}{}", settings.base_url, req.path);
    let mut retry = 0;
    loop {
        let answer = attempt(client, &uri, req, settings.timeout).await;
        match answer {
            Answer::Retry(m) if retry >= settings.retries => {
                let m = if settings.retries == 0 {
                    m
                } else {
                    format!("{m} (still, after {retry} retries)")
                };
                return (Answer::Retry(m), retry);
            }
            Answer::Retry(_) => {
                tokio::time::sleep(backoff(retry)).await;
                retry += 1;
            }
            other => return (other, retry),
        }
    }
}

/// 100 ms doubled per retry, at most 3.2 s, times a random 0.5–1 so retries of requests that
/// failed together do not come back together.
fn backoff(retry: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.pow(retry.min(5));
    base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

async fn attempt(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &str,
    req: &SeedRequest,
    timeout: Duration,
) -> Answer {
    let request = match hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, req.content_type)
        .body(Full::new(req.body.clone()))
    {
        Ok(r) => r,
        Err(e) => return Answer::Fatal(format!("bad request {uri}: {e}")),
    };
    let exchange = async {
        let resp = client.request(request).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Answer::Retry(format!(
            "no answer within {}",
            crate::config::format_duration(timeout)
        )),
        Ok(Err(e)) => Answer::Retry(crate::events::error_chain(e.as_ref())),
        Ok(Ok((status, body))) => classify(status, &body),
    }
}

/// What an answer means for the seed.
pub(crate) fn classify(status: u16, body: &[u8]) -> Answer {
    if says_exists(body) {
        return Answer::Exists;
    }
    let what = || format!("HTTP {status}: {}", excerpt(body, 120));
    match status {
        200..=299 => Answer::Created,
        408 | 429 | 500..=599 => Answer::Retry(what()),
        _ => Answer::Fatal(what()),
    }
}

/// "already exist", "already exists", "already existed", in any case.
fn says_exists(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"already exist";
    body.windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// The first `max` characters of a body on one line.
fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, b"Success!\n"), Answer::Created);
        assert_eq!(
            classify(
                500,
                b"User registration failure: User username_0 already existed\n"
            ),
            Answer::Exists
        );
        assert_eq!(classify(409, b"Already Exists"), Answer::Exists);
        assert_eq!(
            classify(503, b"<html>\n busy </html>"),
            Answer::Retry("HTTP 503: <html> busy </html>".into())
        );
        assert!(matches!(classify(429, b""), Answer::Retry(_)));
        assert_eq!(
            classify(400, b"Incomplete arguments\n"),
            Answer::Fatal("HTTP 400: Incomplete arguments".into())
        );
    }

    #[test]
    fn form_bodies_are_url_encoded_in_order() {
        let r = SeedRequest::form("/p", &[("text", "a b&c"), ("user_id", "7")]);
        assert_eq!(r.body, Bytes::from("text=a+b%26c&user_id=7"));
        assert_eq!(r.content_type, "application/x-www-form-urlencoded");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        for retry in 0..10 {
            let b = backoff(retry);
            let base = Duration::from_millis(100) * 2u32.pow(retry.min(5));
            assert!(b >= base / 2 && b <= base, "{retry}: {b:?}");
        }
    }

    #[test]
    fn excerpts_are_one_line_and_short() {
        assert_eq!(excerpt(b"a\n  b", 10), "a b");
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
    }

    #[test]
    fn an_unreachable_server_fails_after_its_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
            base_url: format!("http://127.0.0.1:{port}"),
            concurrency: 2,
            retries: 1,
            timeout: Duration::from_secs(5),
            max_failures: 0,
        };
        let mut r = Runner::new(settings, CancelToken::new()).unwrap();
        let items = (0..3).map(|_| SeedRequest::form("/x", &[("a", "1")]));
        let out = r.run_phase("p", "/x", 3, items);
        assert_eq!(out.stopped, Some(Stop::TooManyFailures));
        assert_eq!(out.stats.failures, 1);
        assert_eq!(out.stats.retries, 1);
        let e = &out.stats.failure_examples[0];
        assert!(
            e.starts_with("POST /x a=1: ") && e.contains("after 1 retries"),
            "{e}"
        );
    }
}
