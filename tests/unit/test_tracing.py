# mypy: disable-error-code="index,union-attr,arg-type,operator"
# (span attributes and contexts are Optional in the SDK types; the assertions check them)
"""The tracing module without the app: the OTLP pipeline ``APP_TRACING_ENABLED`` installs delivers spans to a real
HTTP receiver, the raw-header entry point samples the way :func:`app.tracing.start_request` does, and a traced
batch's span bookkeeping is not taken for model cost by the batcher."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app import tracing
from app.batching import BatchConfig, DynamicBatcher

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


class _SlowEnd(SpanProcessor):
    """Span bookkeeping that costs 200 ms a span (4x the inline limit below); spans reach processors finished."""

    def on_end(self, span: Any) -> None:
        time.sleep(0.2)  # the cost being simulated, not a wait for anything


async def test_span_bookkeeping_does_not_count_as_batch_cost_or_move_later_batches_off_the_loop() -> None:
    threads: list[int] = []

    def infer(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        return {"y": x["x"] * 2}

    provider = TracerProvider()
    provider.add_span_processor(_SlowEnd())
    tracing.install(provider, 1.0)
    # a 50 ms limit: a trivial batch stays far under it even when a loaded machine preempts the measuring thread
    batcher = DynamicBatcher("test/1", infer, BatchConfig(max_queue_delay_us=0, inline_max_s=0.05))
    batcher.start()

    async def traced() -> None:
        trace = tracing.start_http([], lambda: "POST /t", "rid")
        assert trace is not None
        await batcher.submit(_rows(2), 2)
        tracing.end_request(trace, 200)

    try:
        await batcher.submit(_rows(1), 1)  # not measured yet: a worker thread
        await batcher.submit(_rows(2), 2)  # measured cheap: on the loop
        await asyncio.create_task(traced())  # a traced batch: 400 ms of span records (queue, batch) on the loop
        await batcher.submit(_rows(2), 2)  # an untraced one right after: still estimated cheap
    finally:
        await batcher.close(5)
        tracing.shutdown()
    loop = threading.get_ident()
    assert [t == loop for t in threads] == [False, True, True, True], threads


def _rows(n: int) -> dict[str, np.ndarray]:
    return {"x": np.ones((n, 2), dtype=np.float32)}


def _memory(ratio: float) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, ratio)
    return exporter


def _traced_request(raw: list[tuple[bytes, bytes]], fail_batch: bool) -> tracing.RequestTrace | None:
    """A request through every tracing step the service takes, the batch as the batcher runs it."""
    trace = tracing.start_http(raw, lambda: "POST /v1/ads/ctr", "rid-7")
    if trace is None:
        return None
    tracing.mark("parse")
    tracing.mark("validate")
    tracing.skip()
    item = tracing.item_context()
    token = tracing.begin_batch("ad-ctr/1", [item, item], [time.monotonic()] * 2, time.monotonic(), 3)
    tracing.batch_child("feature_store.read", time.time_ns(), backend="memory", users=2)
    tracing.end_batch(token, RuntimeError("model exploded") if fail_batch else None)
    tracing.mark("postprocess")
    tracing.annotate("ad-ctr", "1", "ok")
    tracing.end_request(trace, 200)
    return trace


@pytest.mark.parametrize("fail_batch", [False, True])
def test_a_sampled_request_is_traced_fully_and_an_unsampled_one_records_nothing(fail_batch: bool) -> None:
    exporter = _memory(1.0)
    try:
        traced = contextvars.copy_context().run(_traced_request, [(b"host", b"x")], fail_batch)
        assert traced is not None, "ratio 1 samples every request"
        tracing.uninstall()
        tracing.install(exporter_provider := TracerProvider(), 0.0)
        exporter_provider.add_span_processor(SimpleSpanProcessor(exporter))
        assert contextvars.copy_context().run(_traced_request, [(b"host", b"x")], fail_batch) is None
    finally:
        tracing.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["POST /v1/ads/ctr", "batch", "feature_store.read", "parse", "postprocess", "queue", "queue",
                     "validate"], names  # fmt: skip
    request = spans["POST /v1/ads/ctr"]
    assert request.kind is SpanKind.SERVER and request.parent is None and request.context.trace_flags.sampled
    assert dict(request.attributes) == {"shopinfer.request_id": "rid-7", "shopinfer.model": "ad-ctr",
                                        "shopinfer.version": "1", "shopinfer.code": "ok",
                                        "http.response.status_code": 200}, request.attributes  # fmt: skip
    rid = request.context.span_id
    for name in ("parse", "validate", "queue", "postprocess"):
        child = spans[name]
        assert child.parent.span_id == rid and child.context.trace_id == request.context.trace_id, child
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time, (name, child)
    assert spans["parse"].end_time == spans["validate"].start_time, "marks lie end to end"
    batch = spans["batch"]
    assert [link.context.span_id for link in batch.links] == [rid, rid], batch.links
    assert dict(batch.attributes)["shopinfer.batch_rows"] == 3, batch.attributes
    read = spans["feature_store.read"]
    assert read.parent.span_id == batch.context.span_id and dict(read.attributes)["users"] == 2, read
    if fail_batch:
        assert batch.status.status_code is StatusCode.ERROR and "model exploded" in str(batch.status.description)
        event = batch.events[0]
        assert event.name == "exception" and event.attributes["exception.type"] == "RuntimeError", event.attributes
    else:
        assert batch.status.status_code is StatusCode.UNSET and not batch.events, (batch.status, batch.events)


def test_an_incoming_sampled_traceparent_is_honoured_at_ratio_zero() -> None:
    exporter = _memory(0.0)
    raw = [(b"traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()), (b"tracestate", b"vendor=v1")]
    try:
        trace = contextvars.copy_context().run(_traced_request, raw, False)
    finally:
        tracing.shutdown()
    assert trace is not None, "a sampled traceparent is followed whatever the ratio"
    spans = list(exporter.get_finished_spans())
    request = next(s for s in spans if s.name == "POST /v1/ads/ctr")
    assert format(request.context.trace_id, "032x") == TRACE_ID, request.context
    assert request.parent is not None and request.parent.is_remote, request.parent
    assert format(request.parent.span_id, "016x") == "00f067aa0ba902b7", request.parent
    assert request.context.trace_state.get("vendor") == "v1", request.context.trace_state
    in_trace = sorted(s.name for s in spans if format(s.context.trace_id, "032x") == TRACE_ID)
    assert in_trace == ["POST /v1/ads/ctr", "parse", "postprocess", "queue", "queue", "validate"], in_trace
    batch = next(s for s in spans if s.name == "batch")  # a batch may serve several traces: its own, linked
    assert [link.context.span_id for link in batch.links] == [request.context.span_id] * 2, batch.links
