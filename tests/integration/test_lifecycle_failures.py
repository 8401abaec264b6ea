"""Failure modes of the version lifecycle: a bad new version never replaces a good one; drains end; deadlines
and batch concurrency behave as configured. In-process app, real ONNX Runtime, real published versions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from app.manifest import Manifest, Preprocessing, TensorSpec
from tests.fixtures.asgi import GatedRuntime, running_app, until
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version, raw_records

CTR = "/v1/ads/ctr"
ONE = {"candidates": [{"ad_id": "a", "features": raw_records(1)[0]}]}


async def _index(svc: Any) -> dict[str, dict[str, str]]:
    return {e["version"]: e for e in (await svc.client.post("/v2/repository/index")).json()}


def _renamed_input(m: Manifest) -> Manifest:
    inputs = [TensorSpec(name="dense_features", dtype="FP32", shape=[-1, 13]), m.inputs[1]]
    return m.model_copy(update={"inputs": inputs})


def _unknown_kind(m: Manifest) -> Manifest:
    assert m.preprocessing is not None
    pre = Preprocessing(kind="nonexistent-v9", path=m.preprocessing.path, code_version="x")
    return m.model_copy(update={"preprocessing": pre})


async def _bad_version_keeps_the_old_one(repo: Path, tweak: Any, reason: str, **settings: Any) -> None:
    async with running_app(repo, rescan_interval_s=0.05, **settings) as svc:
        await asyncio.to_thread(publish_ctr_version, repo, seed=1, tweak=tweak)
        await until(lambda: _state_of(svc, "2", "UNAVAILABLE"), 30, "version 2 to fail")
        entry = (await _index(svc))["2"]
        assert entry["reason"].startswith(reason), entry
        r = await svc.client.post(CTR, json=ONE)
        assert r.status_code == 200 and r.json()["version"] == 1, (r.status_code, r.text)
        failures = await svc.metric("model_load_failures_total", model="ad-ctr", version="2")
        assert failures == 1


async def _state_of(svc: Any, version: str, state: str) -> bool:
    entry = (await _index(svc)).get(version)
    return entry is not None and entry["state"] == state


async def test_graph_manifest_mismatch_leaves_v2_unavailable(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    await _bad_version_keeps_the_old_one(ctr_repo, _renamed_input, "incompatible: manifest input 'dense_features'")


async def test_unknown_preprocessing_kind_leaves_v2_unavailable(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    await _bad_version_keeps_the_old_one(ctr_repo, _unknown_kind, "incompatible: unknown preprocessing kind")


async def test_warmup_failure_leaves_v2_unavailable(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    class FailingWarmup(GatedRuntime):
        def warmup(self, batch_sizes: Any) -> None:
            raise MemoryError("arena exhausted at batch 512")

    def factory(manifest: Manifest) -> GatedRuntime:
        return FailingWarmup() if manifest.version == 2 else GatedRuntime()

    async with running_app(ctr_repo, runtime_factory=factory, rescan_interval_s=0.05) as svc:
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        await until(lambda: _state_of(svc, "2", "UNAVAILABLE"), 30, "version 2 to fail warm-up")
        assert (await _index(svc))["2"]["reason"] == "warmup_error: MemoryError: arena exhausted at batch 512"
        assert (await svc.client.post(CTR, json=ONE)).json()["version"] == 1


async def test_drain_timeout_unloads_a_stuck_version_and_fails_its_queue(
    ctr_repo: Path, ctr_artifacts_seed1: Path
) -> None:
    """A batch that never finishes cannot keep the old version alive past ``drain_timeout_s``: queued work behind
    it gets a clean 503, the version is unloaded, and the stuck request, whose runtime is gone when its batch
    finally proceeds, gets a clean 503 too (not a 500)."""
    gate = threading.Event()
    runtimes: list[GatedRuntime] = []

    def factory(_manifest: Manifest) -> GatedRuntime:
        runtimes.append(GatedRuntime(infer_gate=gate if not runtimes else None))
        return runtimes[-1]

    async with running_app(
        ctr_repo, runtime_factory=factory, rescan_interval_s=0.05, max_queue_delay_us=0, drain_timeout_s=0.5
    ) as svc:
        gate.clear()
        stuck = asyncio.create_task(svc.client.post(CTR, json=ONE))
        await asyncio.to_thread(runtimes[0].infer_entered.wait, 10)
        queued = asyncio.create_task(svc.client.post(CTR, json=ONE))
        await until(lambda: svc.app.state.service.registry.resolve("ad-ctr").batcher.queued_rows == 1, 10, "queued")
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        r = await asyncio.wait_for(queued, 30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready", (r.status_code, r.text)
        await until(lambda: _state_of(svc, "1", "UNAVAILABLE"), 30, "v1 unloaded after the drain timeout")
        assert not stuck.done()
        gate.set()
        r = await asyncio.wait_for(stuck, 30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready", (r.status_code, r.text)


async def test_default_timeout_applies_without_a_header(ctr_repo: Path) -> None:
    gate = threading.Event()
    rt = GatedRuntime(infer_gate=gate)
    async with running_app(
        ctr_repo, runtime_factory=lambda _m: rt, max_queue_delay_us=0, default_timeout_ms=100
    ) as svc:
        gate.clear()
        rt.infer_entered.clear()
        blocker = asyncio.create_task(svc.client.post(CTR, json=ONE, headers={"timeout-ms": "60000"}))
        await asyncio.to_thread(rt.infer_entered.wait, 10)
        r = await svc.client.post(CTR, json=ONE)  # no timeout-ms header: the default deadline applies
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded", (r.status_code, r.text)
        longer = asyncio.create_task(svc.client.post(CTR, json=ONE, headers={"timeout-ms": "60000"}))
        await until(lambda: svc.app.state.service.registry.resolve("ad-ctr").batcher.queued_rows == 1, 10, "queued")
        await asyncio.sleep(0.2)  # past the 100 ms default: only the header's own deadline keeps it alive
        gate.set()
        expect_status(await longer, 200)  # a header overrides the default
        expect_status(await blocker, 200)


async def test_batch_concurrency_runs_batches_side_by_side(ctr_repo: Path) -> None:
    both_in = threading.Barrier(2, timeout=20)

    class Concurrent(GatedRuntime):
        def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
            both_in.wait()  # only returns when a second batch runs at the same time
            return self.inner.infer(inputs)

    async with running_app(
        ctr_repo, runtime_factory=lambda _m: Concurrent(), max_queue_delay_us=0, batch_concurrency=2, max_batch_rows=1
    ) as svc:
        a, b = await asyncio.gather(svc.client.post(CTR, json=ONE), svc.client.post(CTR, json=ONE))
        assert a.status_code == b.status_code == 200, [(x.status_code, x.text[:300]) for x in (a, b)]
        assert not both_in.broken
