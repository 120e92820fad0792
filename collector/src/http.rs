//! A small blocking HTTP GET client (hyper 1 + hyper-util legacy client) with a per-attempt timeout
//! and retries with exponential backoff on connection errors, timeouts and 5xx answers.
//!
//! The collector's API is blocking; each call runs on a private current-thread tokio runtime. When
//! the caller is itself inside a tokio runtime, the request runs on a scoped helper thread so that
//! `block_on` never nests (which would panic).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Transport settings shared by the Prometheus and Jaeger clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Timeout of one attempt (connect + full body).
    pub timeout: Duration,
    /// Retries after the first attempt, on connection errors, timeouts and 5xx answers.
    pub retries: u32,
    /// Backoff before the first retry; doubled each retry.
    pub backoff: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// What a GET produced: the final status and body, or the last transport error.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// An HTTP answer (any status; 5xx only after the retries ran out).
    Answer { status: u16, body: Bytes },
    /// No answer at all.
    Failed { message: String, attempts: u32 },
}

/// GETs `url` with the settings' timeout and retries. `url` must be `http://`.
pub(crate) fn get(url: &url::Url, settings: &HttpSettings) -> Fetched {
    let run = || -> Fetched {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                return Fetched::Failed {
                    message: format!("cannot start runtime: {e}"),
                    attempts: 0,
                }
            }
        };
        rt.block_on(get_async(url, settings))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run).join().unwrap_or_else(|_| Fetched::Failed {
                message: "request thread panicked".into(),
                attempts: 0,
            })
        })
    } else {
        run()
    }
}

async fn get_async(url: &url::Url, settings: &HttpSettings) -> Fetched {
    if url.scheme() != "http" {
        return Fetched::Failed {
            message: format!(
                "unsupported scheme `{}` (only http:// is supported)",
                url.scheme()
            ),
            attempts: 0,
        };
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.timeout));
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut backoff = settings.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last_try = attempts > settings.retries;
        let outcome = tokio::time::timeout(settings.timeout, async {
            let req = http::Request::get(url.as_str())
                .header(
                    http::header::ACCEPT,
                    "application/json, text/plain;q=0.9, */*;q=0.5",
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = client.request(req).await.map_err(|e| describe(&e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        match outcome {
            Ok(Ok((status, body))) if status < 500 || last_try => {
                return Fetched::Answer { status, body };
            }
            Ok(Err(message)) if last_try => return Fetched::Failed { message, attempts },
            Err(_) if last_try => {
                return Fetched::Failed {
                    message: format!("timed out after {:?}", settings.timeout),
                    attempts,
                };
            }
            _ => {
                tracing::debug!(%url, attempts, "retrying after {:?}", backoff);
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
    }
}

/// hyper-util's error Display hides the cause ("client error (Connect)"); include the chain.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
