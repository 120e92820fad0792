#!/usr/bin/env python3
"""Sends span trees with known self times to an OTLP/HTTP receiver, with the official
OpenTelemetry Python SDK (the end-to-end test of aefm's receiver runs it).

usage: emit_spans.py ENDPOINT MODE BASE_NS
  ENDPOINT  http://HOST:PORT/v1/traces
  MODE      protobuf: the official OTLPSpanExporter (application/x-protobuf);
            json: the SDK's own OTLP encoder, turned into OTLP JSON (hex IDs, lowerCamelCase,
            int64 as strings, enums as integers) and posted as application/json, because the
            official HTTP exporter only speaks protobuf
  BASE_NS   start of the trace, Unix ns

Two services: `frontend` (host.name host-a) and `backend` (host.name host-b, k8s.pod.name
backend-pod-1). The tree, in µs after BASE_NS, with the self time each span must get:

  root      frontend  0..1000   children auth 100..400 and store 200..600 run in parallel
                                (union 500) and async-log 900..1500 outlives it (100 inside):
                                self 400
  auth      backend   100..400  self 300
  store     backend   200..600  error status; child db 300..350: self 350
  db        backend   300..350  self 50
  async-log backend   900..1500 self 600
  orphan    backend   2000..2300, parent span never sent: self 300, flagged ORPHAN

Prints {"trace_id": HEX, "spans": {NAME: SPAN_ID_HEX}} on stdout.
"""
import base64
import json
import sys
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from google.protobuf.json_format import MessageToDict


class OtlpJsonExporter(SpanExporter):
    """Posts spans as OTLP JSON: the protobuf JSON mapping, except IDs in hex (not base64)."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def export(self, spans):
        body = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        for rs in body.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in s:
                            s[key] = base64.b64decode(s[key]).hex()
        req = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            ok = resp.status == 200 and json.loads(resp.read() or b"{}") == {}
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self):
        pass


def provider(attrs, endpoint, mode):
    p = TracerProvider(resource=Resource.create(attrs))
    exporter = OTLPSpanExporter(endpoint=endpoint) if mode == "protobuf" else OtlpJsonExporter(endpoint)
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def main():
    endpoint, mode, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    front_p = provider({"service.name": "frontend", "host.name": "host-a"}, endpoint, mode)
    back_p = provider(
        {"service.name": "backend", "host.name": "host-b", "k8s.pod.name": "backend-pod-1"},
        endpoint,
        mode,
    )
    front, back = front_p.get_tracer("emit"), back_p.get_tracer("emit")
    us = lambda t: base + t * 1000
    ids = {}

    def span(tracer, name, parent_ctx, start, end):
        s = tracer.start_span(name, context=parent_ctx, start_time=us(start))
        s.end(end_time=us(end))
        ids[name] = format(s.get_span_context().span_id, "016x")
        return trace.set_span_in_context(s)

    root = front.start_span("root", start_time=us(0))
    root_ctx = trace.set_span_in_context(root)
    span(back, "auth", root_ctx, 100, 400)
    store = back.start_span("store", context=root_ctx, start_time=us(200))
    span(back, "db", trace.set_span_in_context(store), 300, 350)
    store.set_status(Status(StatusCode.ERROR, "failed"))
    store.end(end_time=us(600))
    ids["store"] = format(store.get_span_context().span_id, "016x")
    span(back, "async-log", root_ctx, 900, 1500)
    root.end(end_time=us(1000))
    ids["root"] = format(root.get_span_context().span_id, "016x")
    trace_id = root.get_span_context().trace_id
    # A parent in the same trace that is never sent.
    lost = SpanContext(trace_id, 0xDEAD_BEEF_0000_0001, is_remote=True, trace_flags=TraceFlags(1))
    span(back, "orphan", trace.set_span_in_context(NonRecordingSpan(lost)), 2000, 2300)
    front_p.shutdown()
    back_p.shutdown()
    print(json.dumps({"trace_id": format(trace_id, "032x"), "spans": ids}))


if __name__ == "__main__":
    main()
