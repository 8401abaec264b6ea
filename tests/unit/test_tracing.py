"""The tracing module without the app: the OTLP pipeline ``APP_TRACING_ENABLED`` installs delivers spans to a real
HTTP receiver, and the raw-header entry point samples the way :func:`app.tracing.start_request` does."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP endpoint that keeps every body it is sent."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()


def _request(name: str) -> None:
    trace = tracing.start_http([(b"host", b"x")], lambda: name, "rid-1")
    assert trace is not None, "ratio 1 samples every request"
    tracing.mark("parse")
    tracing.end_request(trace, 200)


def test_the_otlp_provider_delivers_every_span_with_its_attributes(receiver: tuple[str, list[bytes]]) -> None:
    url, bodies = receiver
    tracing.install(tracing.otlp_provider("svc-under-test", url), 1.0)
    try:
        for i in range(3):
            contextvars.copy_context().run(_request, f"POST /r{i}")
        tracing.flush()
    finally:
        tracing.shutdown()
    assert not tracing.ENABLED
    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "svc-under-test", service
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert sorted(s.name for s in spans) == ["POST /r0", "POST /r1", "POST /r2", "parse", "parse", "parse"], spans
    servers = [s for s in spans if s.name.startswith("POST")]
    for span in servers:
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["shopinfer.request_id"].string_value == "rid-1", attributes
        assert attributes["http.response.status_code"].int_value == 200, attributes
    parents = {s.parent_span_id for s in spans if s.name == "parse"}
    assert parents == {s.span_id for s in servers}, (parents, [s.span_id for s in servers])


@pytest.mark.parametrize(
    ("ratio", "flags", "traced"),
    [(0.0, None, False), (1.0, None, True), (0.0, "01", True), (1.0, "00", False)],
)
def test_raw_headers_are_sampled_by_the_ratio_unless_the_caller_decided(
    ratio: float, flags: str | None, traced: bool
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, ratio)
    raw = [(b"host", b"x")]
    if flags is not None:
        raw.append((b"traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-{flags}".encode()))
    named: list[str] = []

    def name() -> str:
        named.append("POST /x")
        return "POST /x"

    try:
        trace = contextvars.copy_context().run(tracing.start_http, raw, name, "rid")
        if trace is not None:
            tracing.end_request(trace, 200)
    finally:
        tracing.shutdown()
    spans = exporter.get_finished_spans()
    assert (trace is not None, len(spans), len(named)) == (traced, int(traced), int(traced)), (trace, spans, named)
    if traced and flags is not None:
        assert format(spans[0].context.trace_id, "032x") == TRACE_ID, spans[0].context
