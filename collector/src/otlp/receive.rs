//! The OTLP/HTTP server: `POST /v1/traces` on hyper 1 (HTTP/1.1), one task per connection.
//!
//! Answers: 200 with an empty `ExportTraceServiceResponse` in the request's encoding; 400 for a
//! body that does not decode; 404 for another path; 405 for another method; 413 for a body
//! over the limit (refused from its `Content-Length` before any of it is read, or as soon as
//! a chunked body passes the limit); 415 for another content type or content encoding; 500
//! when the spill file cannot be written. Error bodies are the reason as plain text. A bad
//! request never ends the server: every error is an answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::decode::{decode, gunzip, to_records, Encoding, GzipError};
use super::Shared;

/// The OTLP/HTTP path for traces.
pub const TRACES_PATH: &str = "/v1/traces";

/// Accepts connections on `listener` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or similar: wait instead of spinning.
                    tracing::warn!("otlp: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &shared).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("otlp: connection ended: {e}");
            }
        });
    }
}

/// A refusal: the status and the reason, sent as plain text.
type Refusal = (StatusCode, String);

/// A refusal with its reason.
fn text(status: StatusCode, reason: impl Into<String>) -> Refusal {
    (status, reason.into())
}

/// The answer of a refusal (405s name the allowed method).
fn refused((status, reason): Refusal) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reason)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    r
}

/// Answers one request and counts it.
async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let r = accept(req, shared).await.unwrap_or_else(refused);
    if r.status() != StatusCode::OK {
        shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
    }
    r
}

type Answer = Result<Response<Full<Bytes>>, Refusal>;

/// Checks, reads, decodes and stores one request; any refusal is the `Err` answer.
async fn accept(req: Request<Incoming>, shared: &Shared) -> Answer {
    if req.uri().path() != TRACES_PATH {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("no such path; traces go to POST {TRACES_PATH}\n"),
        ));
    }
    if req.method() != Method::POST {
        return Err(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is allowed\n",
        ));
    }
    let enc = content_type(&req)?;
    let gzip = content_encoding(&req)?;
    let limit = shared.settings.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large(limit)),
        Err(e) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}\n"),
            ))
        }
    };
    let body = if gzip {
        gunzip(&body, limit).map(Bytes::from).map_err(|e| match e {
            GzipError::TooLarge { .. } => too_large(limit),
            GzipError::Invalid(_) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        })?
    } else {
        body
    };
    store(&body, enc, shared)?;
    let mut r = Response::new(Full::new(Bytes::from(enc.empty_response())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(enc.content_type()),
    );
    Ok(r)
}

fn too_large(limit: usize) -> Refusal {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body larger than the limit of {limit} bytes\n"),
    )
}

/// The body's encoding, or a 415.
fn content_type(req: &Request<Incoming>) -> Result<Encoding, Refusal> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    ct.and_then(Encoding::from_content_type).ok_or_else(|| {
        text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {:?} is not supported; use application/x-protobuf or application/json\n",
                ct.unwrap_or("")
            ),
        )
    })
}

/// Whether the body is gzip (`identity` or none: plain), or a 415 for other encodings.
fn content_encoding(req: &Request<Incoming>) -> Result<bool, Refusal> {
    match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim())
    {
        None | Some("") | Some("identity") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok(true),
        Some(e) => Err(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content encoding {e:?} is not supported; use gzip or none\n"),
        )),
    }
}

/// Decodes the body into records and adds them to the store (400 or 500 on failure). Decoding
/// runs on the connection's worker: even a 16 MiB body takes only milliseconds, and the other
/// worker keeps serving meanwhile.
fn store(body: &[u8], enc: Encoding, shared: &Shared) -> Result<(), Refusal> {
    let bad = |e: super::decode::DecodeError| text(StatusCode::BAD_REQUEST, format!("{e}\n"));
    let req = decode(body, enc).map_err(bad)?;
    let mut records = Vec::new();
    let n = to_records(&req, &mut records).map_err(bad)?;
    drop(req);
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    // The spill write happens under the lock, on this worker: rare (once per bound's worth of
    // spans) and sequential, so not worth a blocking-pool hop.
    store.push(&records, n).map_err(|e| {
        tracing::error!("otlp: cannot spill spans: {e}");
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store spans: {e}\n"),
        )
    })?;
    shared.stats.spans.fetch_add(n, Ordering::Relaxed);
    Ok(())
}
