"""Defect 4: admission by expected queue time keeps admitted requests fast and refusals cheap under overload."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.batching import BatchConfig, DynamicBatcher
from app.errors import Overloaded
from app.settings import Settings
from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, metric, ready, run_wrk, start


async def test_expected_queue_time_over_budget_is_refused_with_retry_after() -> None:
    gate = threading.Event()

    def infer(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # a slow model: 5 ms per row
        gate.wait(10)
        time.sleep(0.005 * len(x["x"]))
        return {"y": x["x"] * 2}

    b = DynamicBatcher("m/1", infer, BatchConfig(max_batch_rows=4, max_queue_delay_us=0, queue_budget_s=0.05))
    b.start()
    gate.set()
    await b.submit({"x": np.ones((4, 1), np.float32)}, rows=4)  # measures the service rate
    assert b.seconds_per_row is not None and b.seconds_per_row >= 0.005
    gate.clear()
    running = asyncio.create_task(b.submit({"x": np.ones((1, 1), np.float32)}, rows=1))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(b.submit({"x": np.ones((4, 1), np.float32)}, rows=4)) for _ in range(3)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as e:  # 12 rows ahead x >= 5 ms = 60 ms > 50 ms
        await b.submit({"x": np.ones((1, 1), np.float32)}, rows=1)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "1"
    gate.set()
    await asyncio.gather(running, *queued)
    await b.submit({"x": np.ones((1, 1), np.float32)}, rows=1)  # drained: admitted again
    await b.close(5)


def test_budget_and_default_deadline_settings() -> None:
    s = Settings(queue_budgets_ms={"ad-ctr": 40})
    assert s.default_timeout_ms is not None  # nothing waits unbounded by default
    assert s.queue_budget_for("ad-ctr", 10) == 0.04 and s.queue_budget_for("other", 10) == 0.01
    assert s.queue_budget_for("other") == (s.queue_budget_ms or 0) / 1000


def test_overload_keeps_admitted_latency_and_refuses_fast(
    repo: Path, start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start(start_server, repo, APP_QUEUE_BUDGET_MS="25")
    ready(server)
    url, body = server.url + "/v1/ads/ctr", ctr_body(100)
    capacity = run_wrk(url, body, tmp_path, connections=4, seconds=2).rate(200)
    connections = 64  # paced so that the offered load is ~3x what the service completes (as loadtest/overload.py)
    over = run_wrk(url, body, tmp_path, connections=connections, seconds=4, pace_ms=1000 * connections / (3 * capacity))
    assert over.n(200) > 0 and over.n(503) > 0, over  # before the fix: never refused (the row cap is 82 requests)
    assert metric(server, "inference_admission_refusals_total") > 0
    assert metric(server, "inference_requests_total", code="overloaded") >= over.n(503)
    # before the fix the admitted p99 was seconds (1.7 s here); refusals come back fast, not after the queue
    assert over.p(200) < 0.5, over.status
    assert over.p(503) < 0.3, over.status
