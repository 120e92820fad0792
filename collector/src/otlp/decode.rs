//! OTLP/HTTP request bodies to span records: protobuf (`application/x-protobuf`, decoded with
//! `prost` into `opentelemetry-proto`'s types) and OTLP JSON (`application/json`, with the same
//! types' serde derive).
//!
//! `opentelemetry-proto`'s `with-serde` feature follows the OTLP JSON mapping where it matters
//! here: keys are lowerCamelCase (`rename_all = "camelCase"`), trace and span IDs are hex strings,
//! 64-bit integers (times, `intValue`) are accepted as strings or numbers, missing fields take their
//! defaults and unknown fields are ignored. Enums (`status.code`, `kind`) must be integers, as the
//! OTLP specification requires; the protobuf JSON mapping's enum names (`"STATUS_CODE_ERROR"`)
//! are rejected with a 400, which no OTLP exporter sends.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;

use super::store::SpanRecord;

/// `status.code` of a failed span (`STATUS_CODE_ERROR`).
const STATUS_CODE_ERROR: i32 = 2;

/// The encoding of a request body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding named by a `Content-Type` value (parameters such as `charset` are ignored),
    /// or `None` for any other type.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// An empty `ExportTraceServiceResponse` (full success) in this encoding. In JSON that is
    /// `{}`: the serde derive would write `"partialSuccess":null`, legal but not canonical.
    pub fn empty_response(self) -> Vec<u8> {
        match self {
            Encoding::Protobuf => ExportTraceServiceResponse::default().encode_to_vec(),
            Encoding::Json => b"{}".to_vec(),
        }
    }
}

/// Why a body was refused (the message goes back to the sender with a 400).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid `ExportTraceServiceRequest` message.
    #[error("invalid protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// Not valid OTLP JSON.
    #[error("invalid OTLP JSON ExportTraceServiceRequest: {0}")]
    Json(#[source] serde_json::Error),
    /// A trace or span ID of the wrong length.
    #[error("span {index} of the request: {what} has {len} bytes, expected {expected}")]
    BadId {
        /// Position of the span in the request (0-based, over all resources and scopes).
        index: u64,
        /// `traceId`, `spanId` or `parentSpanId`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The length OTLP requires.
        expected: usize,
    },
}

/// Decodes a body in `enc`.
pub fn decode(body: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, DecodeError> {
    match enc {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(body).map_err(DecodeError::Protobuf)
        }
        Encoding::Json => serde_json::from_slice(body).map_err(DecodeError::Json),
    }
}

/// The string value of resource attribute `key`, if it has one.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    })
}

/// A fixed-size ID, or why not.
fn id<const N: usize>(b: &[u8], index: u64, what: &'static str) -> Result<[u8; N], DecodeError> {
    b.try_into().map_err(|_| DecodeError::BadId {
        index,
        what,
        len: b.len(),
        expected: N,
    })
}

/// Appends one record per span of `req` to `out`; returns the number of spans. Nothing is
/// appended when an ID is malformed (the whole request is refused).
pub fn to_records(req: &ExportTraceServiceRequest, out: &mut Vec<u8>) -> Result<u64, DecodeError> {
    let start = out.len();
    let mut index = 0u64;
    let r = (|| {
        for rs in &req.resource_spans {
            let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            // OTLP's default for a resource without a name (the SDKs' own fallback).
            let service = attr(attrs, "service.name").unwrap_or("unknown_service");
            let pod = attr(attrs, "k8s.pod.name")
                .or_else(|| attr(attrs, "host.name"))
                .unwrap_or(service);
            for sp in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let parent_id = match sp.parent_span_id.as_slice() {
                    [] => None,
                    p => Some(id::<8>(p, index, "parentSpanId")?).filter(|p| *p != [0; 8]),
                };
                SpanRecord {
                    trace_id: id::<16>(&sp.trace_id, index, "traceId")?,
                    span_id: id::<8>(&sp.span_id, index, "spanId")?,
                    parent_id,
                    name: &sp.name,
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    error: sp
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == STATUS_CODE_ERROR),
                    service,
                    pod,
                }
                .encode(out);
                index += 1;
            }
        }
        Ok(index)
    })();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Why a gzip body could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    /// The inflated body passes the limit.
    #[error("gzip body inflates past the limit of {limit} bytes")]
    TooLarge {
        /// The body limit.
        limit: usize,
    },
    /// Not valid gzip.
    #[error("invalid gzip body: {0}")]
    Invalid(#[source] std::io::Error),
}

/// Inflates a `Content-Encoding: gzip` body, stopping at `limit` bytes (a small body must not
/// inflate into gigabytes).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(GzipError::Invalid)?;
    if out.len() > limit {
        return Err(GzipError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
