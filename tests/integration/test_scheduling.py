"""Scheduling through the real app: readiness waits for warm-up, deadlines, overload, dynamic batching."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.asgi import GatedRuntime, running_app, until
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import raw_records, reference_scores

CTR = "/v1/ads/ctr"


def one_row(record: dict[str, Any], ad_id: str = "a") -> dict[str, Any]:
    return {"candidates": [{"ad_id": ad_id, "features": record}]}


async def test_not_ready_until_warm(ctr_repo: Path) -> None:
    warm = threading.Event()
    runtimes: list[GatedRuntime] = []

    def factory(_manifest: object) -> GatedRuntime:
        runtimes.append(GatedRuntime(warm_gate=warm))
        return runtimes[-1]

    async with running_app(ctr_repo, runtime_factory=factory, wait_ready=False) as svc:
        await until(lambda: runtimes, 10, "the load to start")
        expect_status(await svc.client.get("/v2/health/live"), 200)
        r = await svc.client.get("/v2/health/ready")
        assert r.status_code == 503 and r.json() == {"ready": False, "waiting_for": ["ad-ctr"]}, (r.status_code, r.text)
        index = (await svc.client.post("/v2/repository/index")).json()
        assert index == [{"name": "ad-ctr", "version": "1", "state": "LOADING", "reason": ""}]
        r = await svc.client.post(CTR, json=one_row(raw_records(1)[0]))
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready", (r.status_code, r.text)
        warm.set()
        await until(lambda: _is_ready(svc.client), 30, "readiness after warm-up")
        expect_status(await svc.client.post(CTR, json=one_row(raw_records(1)[0])), 200)


async def _is_ready(client: Any) -> bool:
    return (await client.get("/v2/health/ready")).status_code == 200


async def test_expired_request_is_504_and_never_runs(ctr_repo: Path) -> None:
    gate = threading.Event()
    rt = GatedRuntime(infer_gate=gate)
    async with running_app(ctr_repo, runtime_factory=lambda _m: rt, max_queue_delay_us=0) as svc:
        gate.clear()
        rt.infer_entered.clear()
        rt.seen_rows.clear()
        blocker = asyncio.create_task(svc.client.post(CTR, json=one_row(raw_records(1)[0])))
        await asyncio.to_thread(rt.infer_entered.wait, 10)
        records = raw_records(7)
        r = await svc.client.post(
            CTR,
            json={"candidates": [{"ad_id": str(i), "features": x} for i, x in enumerate(records)]},
            headers={"timeout-ms": "50"},
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded", (r.status_code, r.text)
        gate.set()
        expect_status(await blocker, 200)
        expect_status(await svc.client.post(CTR, json=one_row(records[0])), 200)
        assert 7 not in rt.seen_rows  # the expired 7-row item never reached the model
        assert await svc.metric("inference_requests_total", endpoint="ctr", code="deadline_exceeded") == 1


async def test_queue_full_is_503_with_retry_after(ctr_repo: Path) -> None:
    gate = threading.Event()
    rt = GatedRuntime(infer_gate=gate)
    async with running_app(ctr_repo, runtime_factory=lambda _m: rt, max_queue_delay_us=0, queue_cap_rows=10) as svc:
        gate.clear()
        rt.infer_entered.clear()
        records = raw_records(8)
        blocker = asyncio.create_task(svc.client.post(CTR, json=one_row(records[0])))
        await asyncio.to_thread(rt.infer_entered.wait, 10)
        queued = asyncio.create_task(
            svc.client.post(CTR, json={"candidates": [{"ad_id": str(i), "features": x} for i, x in enumerate(records)]})
        )
        await until(
            lambda: svc.app.state.service.registry.resolve("ad-ctr").batcher.queued_rows == 8, 10, "8 queued rows"
        )
        r = await svc.client.post(CTR, json={"candidates": [{"ad_id": "x", "features": records[0]}] * 3})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", (r.status_code, r.text)
        assert r.json()["error"]["code"] == "overloaded"
        gate.set()
        expect_status(await blocker, 200)
        expect_status(await queued, 200)


@pytest.mark.parametrize("concurrency", [32])
async def test_concurrent_single_rows_are_batched_and_equal_unbatched(ctr_repo: Path, concurrency: int) -> None:
    records = raw_records(concurrency)
    expected = reference_scores(ctr_repo / "ad-ctr" / "1", records)  # one row at a time is the same model
    singles = np.array([reference_scores(ctr_repo / "ad-ctr" / "1", [r])[0] for r in records[:4]])
    np.testing.assert_allclose(singles, expected[:4], atol=1e-6)
    async with running_app(ctr_repo, max_queue_delay_us=5000) as svc:
        rs = await asyncio.gather(*(svc.client.post(CTR, json=one_row(r, str(i))) for i, r in enumerate(records)))
        assert all(r.status_code == 200 for r in rs), [(r.status_code, r.text[:300]) for r in rs]
        got = np.array([r.json()["scores"][0]["pctr"] for r in rs])
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        text = (await svc.client.get("/metrics")).text
        from tests.fixtures.asgi import metric_value

        total = metric_value(text, "inference_batch_rows_count", model="ad-ctr", version="1")
        rows = metric_value(text, "inference_batch_rows_sum", model="ad-ctr", version="1")
        assert rows == concurrency and total < concurrency, (rows, total)  # at least one batch had > 1 row
        assert metric_value(text, "inference_queue_duration_seconds_count", model="ad-ctr", version="1") == concurrency
        assert metric_value(text, "inference_compute_duration_seconds_count", model="ad-ctr", version="1") == total
