//! OpenTelemetry tracing of the demo service: the tracer provider that exports spans over
//! OTLP/HTTP (protobuf) with a batch span processor, the W3C `traceparent` propagation between
//! the hops, and the spans the handlers open and close.
//!
//! Exports leave from the SDK's batch thread through [`ExportClient`], a plain-HTTP hyper client
//! running on a small runtime of its own: the SDK's batch thread has no Tokio runtime, and the
//! demo's own single-threaded runtime is the service under test, which export I/O must not
//! share. Plain HTTP only: the receiver is on loopback or in the cluster, and TLS would add a
//! large dependency tree for nothing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// Deadline of one export request, and of the final flush at shutdown. Short, because AEFM stops
/// a demo process with SIGTERM and kills it 3 s later; a loopback receiver answers in
/// milliseconds.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors setting up tracing.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not a plain-HTTP base URL.
    #[error("bad --otlp-endpoint {url:?}: {reason}")]
    BadEndpoint {
        /// The URL given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The export runtime could not start.
    #[error("cannot start the OTLP export thread")]
    Runtime(#[source] std::io::Error),
}

/// The OTLP/HTTP traces URL for a base URL such as `http://127.0.0.1:4318`: `<base>/v1/traces`,
/// as the OTLP spec derives it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn traces_url(base: &str) -> Result<Uri, TelemetryError> {
    let bad = |reason: &str| TelemetryError::BadEndpoint {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    let url = format!("{}/v1/traces", base.trim().trim_end_matches('/'));
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https is not supported (plain http only)")),
        _ => return Err(bad("expected http://HOST:PORT")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// The machine's hostname (`host.name`), if the system tells it.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// The resource of every span: `service.name`, `host.name` and, in a pod, `k8s.pod.name` (from
/// `POD_NAME`, which the pod spec sets with the downward API). `Resource::builder` also adds
/// the SDK's attributes and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(service_name: &str, pod_name: Option<String>) -> Resource {
    let mut attrs = Vec::new();
    if let Some(host) = host_name() {
        attrs.push(KeyValue::new("host.name", host));
    }
    if let Some(pod) = pod_name.filter(|p| !p.is_empty()) {
        attrs.push(KeyValue::new("k8s.pod.name", pod));
    }
    Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attributes(attrs)
        .build()
}

/// The exporter's HTTP client: hyper over plain TCP, driven by the export runtime.
#[derive(Debug)]
struct ExportClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        // Spawned on the export runtime: the caller (the SDK's batch thread) polls with a plain
        // executor, and hyper's connections need a Tokio reactor.
        let task = self.runtime.spawn(async move {
            let send = client.request(request.map(Full::new));
            let response = tokio::time::timeout(EXPORT_TIMEOUT, send).await??;
            let (parts, body) = response.into_parts();
            let body = tokio::time::timeout(EXPORT_TIMEOUT, body.collect()).await??;
            Ok::<_, HttpError>(http::Response::from_parts(parts, body.to_bytes()))
        });
        task.await?
    }
}

/// The tracer provider and the runtime its exports run on. Call [`Telemetry::shutdown`] when the
/// server stops, so the spans still queued are sent.
pub struct Telemetry {
    provider: SdkTracerProvider,
    export_runtime: tokio::runtime::Runtime,
}

impl Telemetry {
    /// Starts exporting to `<endpoint>/v1/traces` as `service_name`.
    pub fn start(endpoint: &str, service_name: &str) -> Result<Telemetry, TelemetryError> {
        let url = traces_url(endpoint)?;
        let export_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let client = ExportClient {
            runtime: export_runtime.handle().clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.to_string())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()
            .map_err(TelemetryError::Exporter)?;
        // Batch processor with the SDK's defaults (OTEL_BSP_* honoured): spans leave in batches
        // from its own thread, never on the request path.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service_name, std::env::var("POD_NAME").ok()))
            .build();
        Ok(Telemetry {
            provider,
            export_runtime,
        })
    }

    /// What the request handlers use to open spans.
    pub fn tracing(&self) -> Tracing {
        Tracing::new(&self.provider)
    }

    /// Sends the queued spans and stops the exporter; waits at most about [`EXPORT_TIMEOUT`], so
    /// an unreachable receiver cannot outlast AEFM's stop grace. Call it outside async code.
    pub fn shutdown(self) -> Result<(), String> {
        let result = self
            .provider
            .shutdown_with_timeout(EXPORT_TIMEOUT)
            .map_err(|e| e.to_string());
        // Not waited for: an export still running after the deadline is abandoned.
        self.export_runtime.shutdown_background();
        result
    }
}

/// Opens and closes the demo's spans and carries their context between processes.
#[derive(Debug)]
pub struct Tracing {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl Tracing {
    /// Spans of `provider`, propagated as W3C trace context.
    pub fn new(provider: &SdkTracerProvider) -> Tracing {
        Tracing {
            tracer: provider.tracer("aefm-demo"),
            propagator: TraceContextPropagator::new(),
        }
    }

    /// Opens the SERVER span of an incoming request: the child of its `traceparent` when there
    /// is a valid one, else a new root. Returns the context that holds it.
    pub fn server_span(
        &self,
        name: &'static str,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Context {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.path", path.to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// Opens the CLIENT span of a call to a back end under `parent` and writes its
    /// `traceparent` into the outgoing request's `headers`.
    pub fn client_span(
        &self,
        parent: &Context,
        name: String,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Context {
        let mut attrs = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", uri.to_string()),
        ];
        if let Some(host) = uri.host() {
            attrs.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = uri.port_u16() {
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent);
        let cx = parent.with_span(span);
        self.propagator
            .inject_context(&cx, &mut HeaderInjector(headers));
        cx
    }
}

/// Ends the span in `cx` with the status the server answered: an error status for 5xx (as the
/// HTTP semantic conventions say for server spans), with `failure` as its description.
pub fn end_server(cx: &Context, status: StatusCode, failure: &str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(failure.to_string()));
    }
    span.end();
}

/// Ends the CLIENT span in `cx` with the call's outcome: the status received (an error status
/// unless 2xx), or the transport error.
pub fn end_client(cx: &Context, outcome: &Result<StatusCode, String>) {
    let span = cx.span();
    match outcome {
        Ok(status) => {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if !status.is_success() {
                span.set_status(Status::error(format!("HTTP {}", status.as_u16())));
            }
        }
        Err(e) => {
            span.set_attribute(KeyValue::new("error.type", "transport"));
            span.set_status(Status::error(e.clone()));
        }
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry::Value;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    use super::*;

    /// Keeps every span it is given.
    #[derive(Clone, Debug, Default)]
    struct Keep(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Keep {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// A tracer whose spans land in the returned list as soon as they end.
    fn recorder() -> (Tracing, Keep, SdkTracerProvider) {
        let keep = Keep::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(keep.clone())
            .build();
        (Tracing::new(&provider), keep, provider)
    }

    fn attr(span: &SpanData, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    fn headers_with_traceparent(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", value.parse().unwrap());
        h
    }

    #[test]
    fn traces_url_appends_the_signal_path() {
        let u = traces_url("http://127.0.0.1:4318").unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:4318/v1/traces");
        let u = traces_url("http://collector.obs:4318/").unwrap();
        assert_eq!(u.to_string(), "http://collector.obs:4318/v1/traces");
    }

    #[test]
    fn traces_url_refuses_tls_and_non_urls() {
        for bad in [
            "https://127.0.0.1:4318",
            "127.0.0.1:4318",
            "not a url",
            "ftp://h:1",
        ] {
            assert!(traces_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn host_name_is_the_kernels() {
        let want = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(host_name().as_deref(), Some(want.trim()));
    }

    #[test]
    fn resource_names_service_host_and_pod() {
        let r = resource("demo-front", Some("front-7d9f".into()));
        let get = |k: &'static str| r.get(&opentelemetry::Key::from_static_str(k));
        assert_eq!(get("service.name"), Some("demo-front".into()));
        assert_eq!(get("k8s.pod.name"), Some("front-7d9f".into()));
        assert_eq!(get("host.name"), host_name().map(Value::from));
        let r = resource("demo-back-9000", Some(String::new()));
        assert_eq!(r.get(&"k8s.pod.name".into()), None);
    }

    #[test]
    fn server_span_continues_an_incoming_traceparent() {
        let (tracing, keep, _p) = recorder();
        let h = headers_with_traceparent(&format!("00-{TRACE}-{PARENT}-01"));
        let cx = tracing.server_span("front", "GET", "/", &h);
        end_server(&cx, StatusCode::OK, "unused");
        let spans = keep.0.lock().unwrap();
        let s = &spans[0];
        assert_eq!(s.span_context.trace_id(), TraceId::from_hex(TRACE).unwrap());
        assert_eq!(s.parent_span_id, SpanId::from_hex(PARENT).unwrap());
        assert!(s.parent_span_is_remote);
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(s.name, "front");
        assert_eq!(attr(s, "http.response.status_code"), Some(Value::I64(200)));
        assert_eq!(attr(s, "url.path"), Some("/".into()));
        assert_eq!(s.status, Status::Unset);
    }

    #[test]
    fn server_span_is_a_root_without_a_valid_traceparent() {
        let (tracing, keep, _p) = recorder();
        for h in [HeaderMap::new(), headers_with_traceparent("00-zz-yy-01")] {
            let cx = tracing.server_span("back", "GET", "/work", &h);
            end_server(&cx, StatusCode::OK, "unused");
        }
        let spans = keep.0.lock().unwrap();
        assert_eq!(spans.len(), 2);
        for s in spans.iter() {
            assert_eq!(s.parent_span_id, SpanId::INVALID);
            assert!(s.span_context.is_valid());
        }
        assert_ne!(
            spans[0].span_context.trace_id(),
            spans[1].span_context.trace_id()
        );
    }

    #[test]
    fn client_span_is_a_child_and_travels_as_traceparent() {
        let (tracing, keep, _p) = recorder();
        let server = tracing.server_span("front", "GET", "/", &HeaderMap::new());
        let uri: Uri = "http://127.0.0.1:9001/work".parse().unwrap();
        let mut out = HeaderMap::new();
        let client = tracing.client_span(&server, "call back-9001".into(), &uri, &mut out);
        let sc = client.span().span_context().clone();
        let sent = out.get("traceparent").unwrap().to_str().unwrap();
        assert_eq!(sent, format!("00-{}-{}-01", sc.trace_id(), sc.span_id()));
        end_client(&client, &Ok(StatusCode::OK));
        end_server(&server, StatusCode::OK, "unused");
        let spans = keep.0.lock().unwrap();
        let (c, s) = (&spans[0], &spans[1]);
        assert_eq!(c.span_kind, SpanKind::Client);
        assert_eq!(c.parent_span_id, s.span_context.span_id());
        assert!(!c.parent_span_is_remote);
        assert_eq!(c.span_context.trace_id(), s.span_context.trace_id());
        assert_eq!(attr(c, "server.port"), Some(Value::I64(9001)));
        assert_eq!(attr(c, "http.response.status_code"), Some(Value::I64(200)));
    }

    #[test]
    fn failures_set_error_status() {
        let (tracing, keep, _p) = recorder();
        let server = tracing.server_span("front", "GET", "/", &HeaderMap::new());
        let uri: Uri = "http://127.0.0.1:9001/work".parse().unwrap();
        let refused = tracing.client_span(&server, "a".into(), &uri, &mut HeaderMap::new());
        end_client(&refused, &Err("connection refused".into()));
        let http500 = tracing.client_span(&server, "b".into(), &uri, &mut HeaderMap::new());
        end_client(&http500, &Ok(StatusCode::INTERNAL_SERVER_ERROR));
        end_server(&server, StatusCode::BAD_GATEWAY, "a back end failed");
        let spans = keep.0.lock().unwrap();
        let status: Vec<_> = spans.iter().map(|s| s.status.clone()).collect();
        assert_eq!(
            status,
            [
                Status::error("connection refused"),
                Status::error("HTTP 500"),
                Status::error("a back end failed")
            ]
        );
        assert_eq!(attr(&spans[0], "error.type"), Some("transport".into()));
        assert_eq!(
            attr(&spans[2], "http.response.status_code"),
            Some(Value::I64(502))
        );
    }
}
