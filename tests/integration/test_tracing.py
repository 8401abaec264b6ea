# mypy: disable-error-code="index,union-attr,misc,arg-type,return-value,operator"
# (span attributes and contexts are Optional in the SDK types; the assertions check them)
"""OpenTelemetry tracing with the SDK's in-memory exporter: span tree per request, W3C traceparent on HTTP and
gRPC, batch spans linked to every request they served, sampling decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app import tracing
from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests.fixtures.asgi import running_app
from tests.fixtures.ctr_model import raw_records

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, ratio=1.0)
    try:
        yield exporter
    finally:
        tracing.shutdown()
    assert not tracing.ENABLED


def _ctr(n: int, offset: int) -> dict[str, Any]:
    return {"candidates": [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(raw_records(n, offset))]}


def children(finished: list[Any], parent: Any) -> list[str]:
    sid = parent.context.span_id
    return sorted(s.name for s in finished if s.parent is not None and s.parent.span_id == sid)


async def test_requests_get_a_span_tree_and_batches_link_every_request(
    ctr_repo: Path, spans: InMemorySpanExporter
) -> None:
    async with running_app(ctr_repo, grpc_port=0, max_queue_delay_us=30_000) as t:
        spans.clear()  # readiness probes are not traced; start from the requests below
        headers = [{"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}] + [{} for _ in range(5)]
        answers = await asyncio.gather(
            *(t.client.post("/v1/ads/ctr", json=_ctr(3, 8000 + 10 * i), headers=h) for i, h in enumerate(headers))
        )
        assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
        async with aio.insecure_channel(f"127.0.0.1:{t.app.state.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            meta = (("traceparent", f"00-{'1' * 32}-{PARENT}-01"), ("x-request-id", "g-1"))
            bad = pb.ModelInferRequest(model_name="ad-ctr")
            with pytest.raises(aio.AioRpcError):
                await stub.ModelInfer(bad, metadata=meta, timeout=10)

    finished = list(spans.get_finished_spans())
    servers = [s for s in finished if s.kind is SpanKind.SERVER]
    http = [s for s in servers if s.name == "POST /v1/ads/ctr"]
    assert len(http) == 6, [s.name for s in servers]
    for span in http:
        assert children(finished, span) == ["parse", "postprocess", "queue", "validate"], children(finished, span)
        assert span.attributes["shopinfer.model"] == "ad-ctr" and span.attributes["shopinfer.code"] == "ok"
        assert span.attributes["http.response.status_code"] == 200
    continued = [s for s in http if format(s.context.trace_id, "032x") == TRACE_ID]
    assert len(continued) == 1 and format(continued[0].parent.span_id, "016x") == PARENT, continued
    batches = [s for s in finished if s.name == "batch"]
    linked = {link.context.span_id for b in batches for link in b.links}
    assert {s.context.span_id for s in http} <= linked, (len(batches), linked)
    assert any(len(b.links) > 1 for b in batches), "6 concurrent requests in a 30 ms window share a batch"
    rows = sum(int(b.attributes["shopinfer.batch_rows"]) for b in batches)
    assert rows == 18, rows
    for span in http:  # children lie inside their request, in order
        kids = sorted(
            (s for s in finished if s.parent is not None and s.parent.span_id == span.context.span_id),
            key=lambda s: s.start_time,
        )
        assert [k.name for k in kids] == ["parse", "validate", "queue", "postprocess"], [k.name for k in kids]
        assert span.start_time <= kids[0].start_time and kids[-1].end_time <= span.end_time
    grpc_span = next(s for s in servers if s.name.endswith("/ModelInfer"))
    assert format(grpc_span.context.trace_id, "032x") == "1" * 32 and grpc_span.status.is_ok is False
    assert grpc_span.attributes["shopinfer.request_id"] == "g-1", grpc_span.attributes


async def test_sampling_follows_the_ratio_and_the_callers_decision(ctr_repo: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, ratio=0.0)
    try:
        async with running_app(ctr_repo) as t:
            body = _ctr(1, 8000)
            for _ in range(20):
                assert (await t.client.post("/v1/ads/ctr", json=body)).status_code == 200
            not_sampled = {"traceparent": f"00-{TRACE_ID}-{PARENT}-00"}
            assert (await t.client.post("/v1/ads/ctr", json=body, headers=not_sampled)).status_code == 200
            assert exporter.get_finished_spans() == (), [s.name for s in exporter.get_finished_spans()]
            sampled = {"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
            assert (await t.client.post("/v1/ads/ctr", json=body, headers=sampled)).status_code == 200
        names = sorted(s.name for s in exporter.get_finished_spans())
        assert names == ["POST /v1/ads/ctr", "batch", "parse", "postprocess", "queue", "validate"], names
    finally:
        tracing.shutdown()
