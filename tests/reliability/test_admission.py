"""Defect 4: admission by expected queue time keeps admitted requests fast and refusals cheap under overload."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.batching import BatchConfig, DynamicBatcher
from app.errors import Overloaded
from app.settings import Settings
from tests.fixtures.checks import expect_status
from tests.fixtures.servers import ServerFactory, wait_until
from tests.reliability.conftest import client, ctr_body, metric, ready, run_wrk, start


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
    async with asyncio.timeout(5):  # the 1-row item is running (held by the gate), the three 4-row items queued
        while b.queued_rows != 12:
            await asyncio.sleep(0)
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


async def test_requests_in_progress_are_capped_and_every_exit_releases_its_place() -> None:
    b = DynamicBatcher("m/1", lambda x: x, BatchConfig(max_in_flight=2))
    with b.admit(), b.admit():
        assert b.admitted == 2
        with pytest.raises(Overloaded) as e:  # refused before any body is read: nothing is queued
            b.admit()
        assert e.value.status == 503 and "cap 2" in e.value.message and b.queued_rows == 0
    assert b.admitted == 0
    with pytest.raises(RuntimeError), b.admit():  # a failing request gives its place back too
        raise RuntimeError("bad input")
    assert b.admitted == 0
    unlimited = DynamicBatcher("m/2", lambda x: x, BatchConfig())
    with unlimited.admit(), unlimited.admit(), unlimited.admit():
        assert unlimited.admitted == 3
    await b.close(1)
    await unlimited.close(1)


def test_max_in_flight_settings() -> None:
    s = Settings(max_in_flight=8, max_in_flight_models={"ad-ctr": 3})
    assert s.max_in_flight_for("ad-ctr") == 3 and s.max_in_flight_for("other") == 8
    assert Settings().max_in_flight_for("ad-ctr") is None  # no cap unless configured: it depends on the traffic


def test_cap_refuses_early_with_retry_after_and_admits_again_when_answered(
    repo: Path, start_server: ServerFactory
) -> None:
    # two 1-candidate requests wait in the queue for the 4 s batching delay; a third finds the cap full
    server = start(start_server, repo, APP_MAX_IN_FLIGHT="2", APP_MAX_QUEUE_DELAY_US="4000000")
    ready(server)
    url = server.url + "/v1/ads/ctr"
    with ThreadPoolExecutor(2) as pool, client(server) as c:
        held = [pool.submit(c.post, url, json=ctr_body(1, offset=8000 + i)) for i in range(2)]
        wait_until(lambda: metric(server, "inference_queue_rows", model="ad-ctr") == 2, 10, "two requests queued")
        refused = c.post(url, json=ctr_body(1))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["Retry-After"]) >= 1
        answers = [f.result(timeout=30) for f in held]
        assert [r.status_code for r in answers] == [200, 200], [(r.status_code, r.text[:300]) for r in answers]
    assert metric(server, "inference_admission_refusals_total", model="ad-ctr") == 1
    assert metric(server, "inference_requests_total", endpoint="ctr", code="overloaded") == 1
    with client(server) as c:  # places given back: admitted again
        expect_status(c.post(url, json=ctr_body(1)), 200)
