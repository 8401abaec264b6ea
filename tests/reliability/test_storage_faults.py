"""Storage faults under traffic: a repository that looks empty or unreadable for a while, a worker restarted
while it is unreadable, and files of the served version deleted or changed. Real workers, real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.fixtures.ctr_model import publish_ctr_version
from tests.fixtures.servers import ServerFactory, ServerProcess, wait_until, worker_pids
from tests.fixtures.traffic import Traffic
from tests.reliability.conftest import ctr_body, metric, ready, ready_now

FAST_RESCAN = {"APP_RESCAN_INTERVAL_S": "0.2", "APP_WORKERS": "2"}
NO_DAC_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]
"""Root ignores file modes: the server runs without that power so ``chmod 000`` makes the repository unreadable."""


def fresh_connections(server: ServerProcess, timeout_s: float = 5) -> httpx.AsyncClient:
    """A new connection per request, so the kernel spreads them over every worker's listener."""
    return httpx.AsyncClient(base_url=server.url, timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=0))


async def until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def summary(traffic: Traffic) -> Counter[str]:
    """Outcomes as ``200``, ``<status> <error code>`` or the client's exception name."""
    return Counter(_outcome(o.status, o.error) for o in traffic.outcomes)


def _outcome(status: int, error: str) -> str:
    if status == 200:
        return "200"
    if not status:
        return error.split("(")[0]
    try:
        return f"{status} {json.loads(error)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {error[:80]}"


TOLERATED = {"200", "503 overloaded"}
"""Admission may refuse a request on a loaded machine whatever the fault: that is not a fault's doing."""
CONNECTION_LOST = {"ReadError", "RemoteProtocolError", "ConnectError"}
"""Requests on the connections of a killed worker. With ``SO_REUSEPORT`` each worker has its own listen queue, and
Linux resets the connections still in a closing listener's queue: a handshake that lands there fails as a
``ConnectError`` (the client never reached a live worker), one accepted but unanswered as a ``ReadError``."""


async def test_an_empty_repository_for_five_seconds_unloads_nothing(repo: Path, start_server: ServerFactory) -> None:
    server = start_server(repo, **FAST_RESCAN)
    ready(server)
    away = repo.with_name("model_repo.away")
    details: list[str] = []
    async with fresh_connections(server) as c:
        traffic = Traffic(c, workers=4)
        traffic.start()
        await asyncio.sleep(1.0)  # traffic established before the glitch (load shape, not synchronisation)
        repo.rename(away)  # what a remount or `mv repo old && mkdir repo` looks like to the service
        repo.mkdir()
        glitch_end = time.monotonic() + 5.0
        while time.monotonic() < glitch_end:  # the glitch lasts 5 s whatever happens; readiness sampled meanwhile
            details.append((await c.get("/v2/health/ready")).json().get("repository", ""))
            await asyncio.sleep(0.2)
        degraded = metric(server, "model_repository_degraded")
        repo.rmdir()
        away.rename(repo)
        await asyncio.sleep(2.0)  # traffic after the repository is back
        await traffic.stop()
    counts = summary(traffic)
    assert set(counts) <= TOLERATED and counts["200"] > 50, f"outcomes: {counts}"
    assert "unloaded" not in server.log.read_text(), "a version was unloaded during the glitch"
    assert any("empty" in d for d in details), f"readiness during the glitch said {details}"
    assert degraded == 1 and metric(server, "model_repository_scan_problems_total", reason="empty") > 0
    await until(lambda: metric(server, "model_repository_degraded") == 0, 10, "the degraded gauge back at 0")
    assert "repository" not in server.get("/v2/health/ready").json()


async def test_an_unreadable_repository_and_a_worker_death_keep_the_service_up(
    repo: Path, start_server: ServerFactory
) -> None:
    server = start_server(repo, NO_DAC_OVERRIDE, **FAST_RESCAN)
    ready(server)
    async with fresh_connections(server) as c:
        traffic = Traffic(c, workers=2)
        traffic.start()
        os.chmod(repo, 0)
        try:
            await asyncio.sleep(1.0)  # a few rescans of the unreadable repository (0.2 s apart) before the kill
            detail = server.get("/v2/health/ready").json()
            victim = worker_pids(server.proc.pid)[0]
            os.kill(victim, signal.SIGKILL)
            await until(lambda: victim not in worker_pids(server.proc.pid), 30, "the killed worker to go")
            await asyncio.sleep(10.0)  # long enough for a crash loop to show (a worker starts in 2-3 s)
            alive_while_unreadable = server.proc.poll() is None
            exits = server.log.read_text().count("exited with")
        finally:
            os.chmod(repo, 0o755)
        if alive_while_unreadable:
            await until(lambda: ready_now(server.url), 60, "readiness once readable")
        await traffic.stop()
    counts = summary(traffic)
    assert alive_while_unreadable and exits == 1, f"server alive: {alive_while_unreadable}, worker exits: {exits}"
    assert "keep crashing" not in server.log.read_text()
    assert set(counts) <= TOLERATED | CONNECTION_LOST, f"outcomes: {counts} (only the killed worker's may fail)"
    assert counts["200"] > 20, counts
    assert "unreadable" in detail.get("repository", ""), f"readiness while unreadable said {detail}"


async def test_a_deleted_model_file_moves_every_worker_to_the_previous_version(
    repo: Path, start_server: ServerFactory
) -> None:
    v2 = publish_ctr_version(repo, seed=1)
    server = start_server(repo, **FAST_RESCAN)
    ready(server)
    body = ctr_body(3)
    async with fresh_connections(server) as c:
        served = {(await c.post("/v1/ads/ctr", json=body)).json()["version"] for _ in range(20)}
        assert served == {v2}, served
        (repo / "ad-ctr" / str(v2) / "model.onnx").unlink()
        await until(lambda: metric(server, "model_integrity_failures_total", reason="missing_file") >= 2, 15, "both")
        detail = (await c.get("/v2/health/ready")).json()
        after = Counter([(await c.post("/v1/ads/ctr", json=body)).json().get("version") for _ in range(40)])
        victim = worker_pids(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        await until(lambda: victim not in worker_pids(server.proc.pid), 30, "the killed worker to go")
        await until(lambda: ready_now(server.url), 60, "readiness after the restart")
        restarted = Counter([(await c.post("/v1/ads/ctr", json=body)).json().get("version") for _ in range(40)])
    assert any("model.onnx was deleted" in line for line in detail.get("integrity", [])), detail
    assert after == {v2 - 1: 40}, f"versions served after the deletion: {after}"
    assert restarted == {v2 - 1: 40}, f"versions served after a worker restart: {restarted}"
    assert "was deleted; serving the loaded copy" in server.log.read_text()


async def test_a_changed_model_file_without_a_replacement_keeps_serving_the_loaded_copy(
    repo: Path, start_server: ServerFactory
) -> None:
    server = start_server(repo, **FAST_RESCAN)
    ready(server)
    model = repo / "ad-ctr" / "1" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))  # same size, new content
    await until(lambda: metric(server, "model_integrity_failures_total", reason="checksum") >= 2, 15, "detection")
    with httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        codes = Counter(c.post("/v1/ads/ctr", json=ctr_body(3)).status_code for _ in range(20))
        detail = c.get("/v2/health/ready").json()
    assert codes == {200: 20}, codes
    assert any("no longer matches" in line for line in detail.get("integrity", [])), detail


def test_a_worker_waiting_on_an_unreadable_repository_still_stops_on_sigterm(
    repo: Path, start_server: ServerFactory
) -> None:
    server = start_server(repo, NO_DAC_OVERRIDE, **FAST_RESCAN)
    ready(server)
    os.chmod(repo, 0)
    try:
        victim = worker_pids(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: "listening once the first scan" in server.log.read_text(), 30, "the replacement to wait")
        server.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = server.proc.wait(60)
        took = time.monotonic() - stopped
    finally:
        os.chmod(repo, 0o755)
    assert took < 10, f"the pod took {took:.1f}s to stop (exit code {code})"
    assert "did not stop in time" not in server.log.read_text()
