"""Hot reload against the real server (``python -m app``, two worker processes) while a client keeps sending
requests: every worker swaps on its own, so "done" means the merged metrics count one event per worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.fixtures.asgi import metric_value, until
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version
from tests.fixtures.servers import ServerFactory
from tests.fixtures.traffic import Traffic

WORKERS = 2


def _events(url: str, version: str, event: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return metric_value(text, "model_load_events_total", model="ad-ctr", version=version, event=event)


def _failures(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return metric_value(text, "model_load_failures_total", model="ad-ctr", version="2", reason="checksum")


def index_state(url: str) -> dict[str, tuple[str, str]]:
    entries = httpx.post(url + "/v2/repository/index", timeout=10).json()
    return {e["version"]: (e["state"], e["reason"]) for e in entries}


async def test_new_version_takes_over_with_zero_failed_requests(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory
) -> None:
    server = start_server(ctr_repo, APP_RESCAN_INTERVAL_S="0.2", APP_WORKERS=str(WORKERS))
    await until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        traffic = Traffic(client, workers=8)
        traffic.start()
        await until(lambda: traffic.count(1) >= 100, 60, "100 answers from version 1")
        assert await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1) == 2
        await until(lambda: traffic.count(2) >= 200, 60, "200 answers from version 2")
        await until(lambda: _events(server.url, "1", "unload") == WORKERS, 30, "v1 unloaded by every worker")
        tail = len(traffic.outcomes)
        await until(lambda: len(traffic.outcomes) >= tail + 100, 30, "100 more answers")
        await traffic.stop()
    print("hot-reload outcomes:", traffic.versions())
    assert traffic.failures() == [], traffic.failures()[:5]
    assert set(traffic.versions()) == {1, 2}
    assert {o.version for o in traffic.outcomes[tail:]} == {2}  # after the unload, only the new version answers
    assert index_state(server.url) == {"1": ("UNAVAILABLE", "unloaded"), "2": ("READY", "")}
    text = server.get("/metrics").text
    assert metric_value(text, "model_load_events_total", model="ad-ctr", version="1", event="unload") == WORKERS
    assert metric_value(text, "model_load_events_total", model="ad-ctr", version="2", event="load") == WORKERS
    assert 'model_loaded_bytes{model="ad-ctr",version="1"}' not in text
    assert metric_value(text, "model_loaded_bytes", model="ad-ctr", version="2") > 0


async def test_corrupt_version_is_refused_while_the_old_keeps_serving(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory
) -> None:
    server = start_server(ctr_repo, APP_RESCAN_INTERVAL_S="0.2", APP_WORKERS=str(WORKERS))
    await until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        traffic = Traffic(client, workers=4)
        traffic.start()
        await until(lambda: traffic.count(1) >= 50, 60, "50 answers from version 1")
        assert await asyncio.to_thread(publish_ctr_version, ctr_repo, seed=1, corrupt=True) == 2
        await until(lambda: _failures(server.url) == WORKERS, 30, "v2 refused by every worker")
        mark = len(traffic.outcomes)
        await until(lambda: len(traffic.outcomes) >= mark + 100, 30, "100 more answers")
        await traffic.stop()
    assert traffic.failures() == [] and set(traffic.versions()) == {1}
    state, reason = index_state(server.url)["2"]
    assert state == "UNAVAILABLE" and reason.startswith("checksum")
    assert index_state(server.url)["1"] == ("READY", "")
    text = server.get("/metrics").text
    assert metric_value(text, "model_load_failures_total", model="ad-ctr", version="2", reason="checksum") == WORKERS
    expect_status(server.get("/v2/health/ready"), 200)
    assert "failed to load (checksum)" in server.log.read_text()
