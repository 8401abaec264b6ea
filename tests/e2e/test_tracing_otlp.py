"""Tracing end to end: a real 2-worker server exports its spans over OTLP/HTTP to a receiver in the test.

The receiver is a plain HTTP server decoding ``ExportTraceServiceRequest`` protobufs, as a collector would.
A recommendation request with a W3C ``traceparent`` must arrive as one trace: the server span continuing the
caller's, its children, and a batch span (linked to it) with the feature-store read under it.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fixtures.compress_run import CompressRun
from tests.fixtures.servers import ServerFactory, wait_until

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.service_names: set[str] = set()
        self.lock = threading.Lock()


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, Receiver]]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            request = ExportTraceServiceRequest.FromString(body)
            with received.lock:
                for rs in request.resource_spans:
                    for attr in rs.resource.attributes:
                        if attr.key == "service.name":
                            received.service_names.add(attr.value.string_value)
                    for ss in rs.scope_spans:
                        received.spans.extend(ss.spans)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_reach_an_otlp_receiver_as_one_trace(
    rec_compress_run: CompressRun,
    tmp_path: Path,
    start_server: ServerFactory,
    otlp_receiver: tuple[str, Receiver],
) -> None:
    endpoint, received = otlp_receiver
    repo = tmp_path / "repo"
    shutil.copytree(rec_compress_run.repo, repo)
    server = start_server(
        repo,
        APP_TASK_MODELS=json.dumps({"recommend": rec_compress_run.cfg.model.name}),
        APP_TRACING_ENABLED="true",
        APP_TRACING_SAMPLE_RATIO="0",  # only the caller's sampled traceparent is traced
        APP_TRACING_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "readiness")
    server.post("/v1/events", json={"user_id": "visitor-9", "item_id": "21977", "type": "view"})
    for _ in range(5):  # untraced: ratio 0 and no traceparent
        assert server.post("/v1/recommend", json={"user_id": "visitor-9", "k": 5}).status_code == 200
    r = server.post(
        "/v1/recommend",
        json={"user_id": "visitor-9", "k": 5},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01", "x-request-id": "otlp-1"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "otlp-1", r.text

    def names() -> set[str]:
        with received.lock:
            return {s.name for s in received.spans}

    wanted = {"POST /v1/recommend", "parse", "validate", "queue", "postprocess", "batch", "feature_store.read"}
    wait_until(lambda: wanted <= names(), 30, f"the spans {sorted(wanted)} at the receiver (got {sorted(names())})")
    with received.lock:
        spans = list(received.spans)
    request = next(s for s in spans if s.name == "POST /v1/recommend")
    assert request.trace_id.hex() == TRACE_ID and request.parent_span_id.hex() == PARENT, request
    in_trace = {s.name for s in spans if s.trace_id.hex() == TRACE_ID}
    assert {"parse", "validate", "queue", "postprocess"} <= in_trace, in_trace
    batch = next(s for s in spans if s.name == "batch" and any(link.span_id == request.span_id for link in s.links))
    read = next(s for s in spans if s.name == "feature_store.read")
    assert read.parent_span_id == batch.span_id and read.trace_id == batch.trace_id, (read, batch)
    servers = [s for s in spans if s.name.startswith("POST ")]
    assert len(servers) == 1, [s.name for s in servers]  # the five unsampled requests exported nothing
    assert received.service_names == {"shopinfer"}, received.service_names
