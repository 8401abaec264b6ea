"""Version lifecycle in-process: Redis notices, version policies, draining in-flight work before unload."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.repository import list_versions
from tests.fixtures.asgi import GatedRuntime, running_app, until
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version, raw_records
from tests.fixtures.servers import RedisServer, free_port

CTR = "/v1/ads/ctr"
ONE = {"candidates": [{"ad_id": "a", "features": raw_records(1)[0]}]}


async def _versions_ready(svc: Any) -> list[int]:
    return svc.app.state.service.registry.ready_versions("ad-ctr")


async def test_publishing_sends_the_notice_and_the_version_is_served_within_a_second(
    ctr_repo: Path, ctr_artifacts_seed1: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher itself announces the version (REDIS_URL set): no hand-sent notice, no rescan interval."""
    async with running_app(ctr_repo, redis_url=redis_server.url, rescan_interval_s=3600) as svc:
        watcher = svc.app.state.watcher
        await asyncio.wait_for(watcher.subscribed.wait(), 10)
        await until(lambda: watcher.rescans >= 1, 10, "the first scan")
        before = watcher.rescans
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        published = time.monotonic()
        await until(lambda: svc.app.state.service.registry.ready_versions("ad-ctr") == [2], 1.0, "v2 within 1 s")
        assert time.monotonic() - published < 1.0
        assert watcher.rescans == before + 1
        assert (await svc.client.post(CTR, json=ONE)).json()["version"] == 2


def test_publishing_without_redis_sends_nothing_and_never_fails(
    tmp_path: Path, ctr_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compress.notify import notify_published

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("APP_REDIS_URL", raising=False)
    assert notify_published("ad-ctr", 1) is False
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert notify_published("ad-ctr", 1, redis_url=dead) is False  # warns; the rescan still finds the version
    monkeypatch.setenv("REDIS_URL", dead)
    assert publish_ctr_version(tmp_path, seed=0) == 1


async def test_unreachable_redis_does_not_stop_serving(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    async with running_app(ctr_repo, redis_url=f"redis://127.0.0.1:{free_port()}/0", rescan_interval_s=0.2) as svc:
        expect_status(await svc.client.post(CTR, json=ONE), 200)
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        await until(lambda: svc.app.state.service.registry.ready_versions("ad-ctr") == [2], 30, "version 2 by rescan")


async def test_pinned_policy_ignores_newer_versions(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    policy = {"ad-ctr": {"specific": [1]}}
    async with running_app(ctr_repo, version_policy=policy, rescan_interval_s=0.1) as svc:
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        await until(lambda: list_versions(ctr_repo, "ad-ctr") == [1, 2], 5, "v2 on disk")
        rescans = svc.app.state.watcher.rescans
        await until(lambda: svc.app.state.watcher.rescans >= rescans + 2, 10, "two rescans")
        assert await _versions_ready(svc) == [1]
        index = (await svc.client.post("/v2/repository/index")).json()
        assert index[1] == {
            "name": "ad-ctr",
            "version": "2",
            "state": "UNAVAILABLE",
            "reason": "not selected by the version policy",
        }
        r = await svc.client.post(CTR, json={**ONE, "model_version": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready", (r.status_code, r.text)


async def test_latest_two_serves_both_and_defaults_to_the_newest(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
    async with running_app(ctr_repo, default_latest_versions=2) as svc:
        await until(lambda: svc.app.state.service.registry.ready_versions("ad-ctr") == [1, 2], 30, "both versions")
        assert (await svc.client.post(CTR, json=ONE)).json()["version"] == 2
        assert (await svc.client.post(CTR, json={**ONE, "model_version": 1})).json()["version"] == 1
        assert (await svc.client.get("/v2/models/ad-ctr")).json()["versions"] == ["1", "2"]


async def test_old_version_drains_in_flight_work_before_unloading(ctr_repo: Path, ctr_artifacts_seed1: Path) -> None:
    gate = threading.Event()
    runtimes: list[GatedRuntime] = []

    def factory(_manifest: object) -> GatedRuntime:
        runtimes.append(GatedRuntime(infer_gate=gate if not runtimes else None))
        return runtimes[-1]

    async with running_app(ctr_repo, runtime_factory=factory, rescan_interval_s=0.1, max_queue_delay_us=0) as svc:
        gate.clear()
        in_flight = asyncio.create_task(svc.client.post(CTR, json=ONE))
        await asyncio.to_thread(runtimes[0].infer_entered.wait, 10)
        await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1)
        await until(lambda: svc.app.state.service.registry.ready_versions("ad-ctr") == [2], 30, "switch to v2")
        assert (await svc.client.post(CTR, json=ONE)).json()["version"] == 2  # new work goes to v2 at once
        index = {e["version"]: e["state"] for e in (await svc.client.post("/v2/repository/index")).json()}
        assert index == {"1": "UNLOADING", "2": "READY"}
        assert not in_flight.done()
        gate.set()
        r = await in_flight
        assert r.status_code == 200 and r.json()["version"] == 1, (
            r.status_code,
            r.text,
        )  # finished on the version it started on
        await until(lambda: _is_state(svc, "1", "UNAVAILABLE"), 10, "v1 unloaded after draining")
        assert runtimes[0].bytes == 0 and runtimes[1].bytes > 0


async def _is_state(svc: Any, version: str, state: str) -> bool:
    entries = (await svc.client.post("/v2/repository/index")).json()
    return next(e["state"] for e in entries if e["version"] == version) == state
