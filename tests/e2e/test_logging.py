"""The service's own output on a real server: no Redis password in any line, a Redis outage bounded per cause,
JSON lines, and the request id echoed over HTTP and gRPC."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests.e2e.test_rec_serving import _start as start_rec_server
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.ctr_model import publish_ctr_version
from tests.fixtures.servers import ServerFactory, ServerProcess, free_port, start_redis, stop, wait_until

PASSWORD = "pw-Zq81-never-logged"


@pytest.fixture
def secret_redis(tmp_path: Path) -> Iterator[tuple[str, object]]:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server must be installed (.ci/run installs it)"
    port = free_port()
    proc = start_redis(port, tmp_path, password=PASSWORD)
    yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0", proc
    stop(proc)


def _output(server: ServerProcess) -> str:
    stop(server.proc)
    return server.log.read_text(errors="replace")


def test_no_password_in_any_line_json_lines_and_request_ids(
    tmp_path: Path, start_server: ServerFactory, secret_redis: tuple[str, object]
) -> None:
    url, redis_proc = secret_redis
    repo = tmp_path / "repo"
    repo.mkdir()
    publish_ctr_version(repo, seed=0)
    server = start_server(repo, REDIS_URL=url, APP_LOG_FORMAT="json", APP_LOG_LEVEL="debug")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    wait_until(lambda: "notices on redis://:***@" in server.log.read_text(), 30, "the watcher to subscribe")

    given = server.post("/v2/models/ad-ctr/infer", json={"inputs": []}, headers={"x-request-id": "abc-123"})
    assert given.headers.get("x-request-id") == "abc-123", given.headers
    made = server.get("/v2/health/ready").headers.get("x-request-id")
    assert made and made != "abc-123", made
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelReady.with_call(pb.ModelReadyRequest(name="ad-ctr"))  # no request id on this RPC
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(pb.ModelInferRequest(model_name="ad-ctr"), metadata=[("x-request-id", "grpc-77")])
        trailers = dict(err.value.trailing_metadata() or ())
    assert trailers.get("x-request-id") == "grpc-77" and "shopinfer-error-code" in trailers, trailers

    redis_proc.kill()  # type: ignore[attr-defined]
    wait_until(lambda: "redis notices unavailable" in server.log.read_text(), 30, "the watcher to lose Redis")
    out = _output(server)
    assert PASSWORD not in out, [line for line in out.splitlines() if PASSWORD in line][:3]
    lines = [line for line in out.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object (a parse error fails here)
    assert all({"timestamp", "level", "logger", "message"} <= set(r) for r in records), records[:3]
    assert any(r["logger"].startswith("uvicorn") for r in records), "uvicorn's own lines must go through the handler"
    assert {r.get("worker") for r in records if r["logger"].startswith("app.")} >= {0, 1}, records[:5]


@pytest.mark.timeout(900)
def test_a_redis_outage_logs_a_bounded_number_of_lines(
    rec_compress_run: CompressRun, start_server: ServerFactory, secret_redis: tuple[str, object]
) -> None:
    url, redis_proc = secret_redis
    server = start_rec_server(start_server, rec_compress_run, REDIS_URL=url, APP_LOG_RATE_INTERVAL_S="2")
    redis_proc.kill()  # type: ignore[attr-defined]
    body = {"user_id": "u1", "item_id": "21977", "type": "view"}

    def send(i: int) -> tuple[int, bool]:
        r = server.post("/v1/events", json={**body, "user_id": f"u{i}"})
        return r.status_code, bool(r.json().get("degraded"))

    began = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(600)))
    # the flood goes on until a summary line says how much was suppressed (at most one interval later)
    extra: list[tuple[int, bool]] = []

    def one_more() -> bool:
        extra.append(send(0))
        return "suppressed" in server.log.read_text()

    wait_until(one_more, 30, "a summary line")
    answers += extra
    elapsed = time.monotonic() - began
    assert {a for a in answers} == {(200, True)}, sorted(set(answers))[:5]
    out = _output(server)
    assert PASSWORD not in out, [line for line in out.splitlines() if PASSWORD in line][:3]
    dropped = [line for line in out.splitlines() if "event not stored" in line]
    # one worker, one cause: the burst (10) in the first 2 s window, at most one summary line per later window
    bound = 10 + math.ceil(elapsed / 2) + 1
    assert 1 <= len(dropped) <= bound, (len(dropped), bound, f"{elapsed:.0f}s", dropped[:3])
    suppressed = sum(int(k) for k in re.findall(r"suppressed (\d+) similar lines", "\n".join(dropped)))
    # every failed event is either a line or counted in a later one, never both
    assert suppressed > 0 and len(dropped) + suppressed <= len(answers), (len(dropped), suppressed, len(answers))
    assert len(out.splitlines()) < 200, f"{len(out.splitlines())} lines for {len(answers)} failed events"
