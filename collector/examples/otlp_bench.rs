//! OTLP receiver benchmark: `otlp_bench [SPANS] [MEMORY_BOUND_BYTES]` (default 1,000,000 spans,
//! the receiver's default bound).
//!
//! Generates the spans as protobuf `ExportTraceServiceRequest`s of 512 spans (traces of eight
//! spans over two services), posts them from one client over one keep-alive connection to a
//! receiver on loopback, then writes the trace tables. Prints spans per second ingested, the
//! processing time, and peak RSS (`VmHWM`): once for ingest (it includes the encoded bodies,
//! printed too) and once for processing alone (the peak is reset through
//! `/proc/self/clear_refs` after the bodies are dropped).

use std::time::{Duration, Instant};

use aefm_collector::otlp::{Receiver, Settings};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const BATCH: u64 = 512;
const PER_TRACE: u64 = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spans: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        spill_dir: tmp.path().into(),
        ..Settings::default()
    };
    if let Some(b) = args.get(2) {
        settings.memory_bound = b.parse()?;
    }
    let bodies: Vec<Bytes> = (0..spans.div_ceil(BATCH))
        .map(|b| Bytes::from(batch(b * BATCH, BATCH.min(spans - b * BATCH)).encode_to_vec()))
        .collect();
    let body_bytes: usize = bodies.iter().map(Bytes::len).sum();
    let receiver = Receiver::start(settings)?;
    let t0 = Instant::now();
    post_all(receiver.addr(), bodies)?;
    let ingest = t0.elapsed();
    let r = receiver.received();
    anyhow::ensure!(r.spans == spans && r.rejected == 0, "receiver got {r:?}");
    println!(
        "ingest: {spans} spans in {} requests ({:.1} MB protobuf) in {:.3} s = {:.0} spans/s; peak RSS {} MiB (bodies included)",
        r.requests,
        body_bytes as f64 / 1e6,
        ingest.as_secs_f64(),
        spans as f64 / ingest.as_secs_f64(),
        vm_hwm_kib() / 1024
    );
    // The bodies are gone: measure the processing's own peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t1 = Instant::now();
    let (counts, _) = receiver.collect_all(&tmp.path().join("tables"))?;
    println!(
        "processing: {} traces, {} spans in {:.3} s = {:.0} spans/s; peak RSS {} MiB",
        counts.traces,
        counts.spans,
        t1.elapsed().as_secs_f64(),
        counts.spans as f64 / t1.elapsed().as_secs_f64(),
        vm_hwm_kib() / 1024
    );
    receiver.stop();
    Ok(())
}

/// `n` spans from span number `first`: traces of [`PER_TRACE`] spans, a root and children.
fn batch(first: u64, n: u64) -> ExportTraceServiceRequest {
    let attrs = |svc: &str, pod: &str| {
        [("service.name", svc), ("k8s.pod.name", pod)]
            .map(|(k, v)| KeyValue {
                key: k.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v.into())),
                }),
                ..Default::default()
            })
            .to_vec()
    };
    let mut by_service = [Vec::new(), Vec::new()];
    for i in first..first + n {
        let (t, k) = (i / PER_TRACE, i % PER_TRACE);
        let start = 1_700_000_000_000_000_000 + t * 1_000_000 + k * 10_000;
        by_service[(k > 0) as usize].push(Span {
            trace_id: [t.wrapping_mul(0x9E37_79B9_7F4A_7C15), t]
                .map(u64::to_be_bytes)
                .concat(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            parent_span_id: if k == 0 {
                vec![]
            } else {
                (t * PER_TRACE + 1).to_be_bytes().to_vec()
            },
            name: format!("operation-{k}"),
            start_time_unix_nano: start,
            end_time_unix_nano: start + if k == 0 { 900_000 } else { 50_000 },
            ..Default::default()
        });
    }
    let resource_spans = [("frontend", "frontend-0"), ("backend", "backend-3")]
        .into_iter()
        .zip(by_service)
        .map(|((svc, pod), spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: attrs(svc, pod),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Posts every body in turn over one HTTP/1.1 connection.
fn post_all(addr: std::net::SocketAddr, bodies: Vec<Bytes>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        for body in bodies {
            let req = http::Request::post("/v1/traces")
                .header(http::header::HOST, addr.to_string())
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(body))?;
            let resp =
                tokio::time::timeout(Duration::from_secs(60), send.send_request(req)).await??;
            anyhow::ensure!(resp.status() == 200, "HTTP {}", resp.status());
            resp.into_body().collect().await?;
        }
        Ok(())
    })
}

/// Peak resident set size of this process (receiver and client), KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
