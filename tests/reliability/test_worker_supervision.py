"""Worker supervision with real worker processes: a hung worker (SIGSTOP) is detected, fails liveness and is
replaced; a replacement worker takes no connection before its models are loaded."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from tests.fixtures.servers import ServerFactory, worker_pids
from tests.fixtures.traffic import Traffic
from tests.reliability.conftest import ready, ready_now
from tests.reliability.test_storage_faults import CONNECTION_LOST, TOLERATED, fresh_connections, summary, until


def live_503(url: str, seen: list[httpx.Response]) -> bool:
    """Liveness over a fresh connection is 503 (a connection that lands on the stopped worker times out)."""
    try:
        r = httpx.get(url + "/v2/health/live", timeout=1.0)
    except httpx.HTTPError:
        return False
    seen.append(r)
    return r.status_code == 503


async def test_a_stopped_worker_fails_liveness_and_is_replaced_within_ten_seconds(
    repo: Path, start_server: ServerFactory
) -> None:
    server = start_server(repo, APP_WORKERS="2")
    ready(server)
    victim = worker_pids(server.proc.pid)[0]
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()
    await until(lambda: victim not in worker_pids(server.proc.pid), 15, "the hung worker to be killed")
    killed_s = time.monotonic() - stopped
    await until(lambda: len(worker_pids(server.proc.pid)) == 2, 15, "a replacement worker")
    replaced_s = time.monotonic() - stopped
    await until(lambda: ready_now(server.url), 60, "readiness after the replacement")
    assert replaced_s < 10, f"hung worker killed after {killed_s:.1f}s, replaced after {replaced_s:.1f}s"
    assert "hung; killing it" in server.log.read_text()

    # With the supervisor stopped too, nothing replaces the hung worker: liveness must say so.
    victim = worker_pids(server.proc.pid)[0]
    server.proc.send_signal(signal.SIGSTOP)
    os.kill(victim, signal.SIGSTOP)
    seen: list[httpx.Response] = []
    try:
        await until(lambda: live_503(server.url, seen), 15, "liveness 503 while a worker is hung")
    finally:
        server.proc.send_signal(signal.SIGCONT)
    body = seen[-1].json()
    assert body["live"] is False and len(body["hung_workers"]) == 1, body
    await until(lambda: victim not in worker_pids(server.proc.pid), 15, "the supervisor to kill the hung worker")
    await until(lambda: ready_now(server.url), 60, "readiness after the replacement")
    assert server.get("/v2/health/live").json() == {"live": True}


async def test_a_replacement_worker_never_answers_model_not_found(repo: Path, start_server: ServerFactory) -> None:
    server = start_server(repo, APP_WORKERS="2")
    ready(server)
    async with fresh_connections(server) as c:
        traffic = Traffic(c, workers=4)
        traffic.start()
        await asyncio.sleep(1.0)  # traffic established first (load shape, not synchronisation)
        victim = worker_pids(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        await until(
            lambda: victim not in worker_pids(server.proc.pid) and len(worker_pids(server.proc.pid)) == 2,
            30,
            "a new worker",
        )
        await until(lambda: server.log.read_text().count("is READY") >= 3, 60, "the new worker's model")
        await asyncio.sleep(3.0)  # traffic keeps flowing over both workers after the replacement is ready
        await traffic.stop()
    counts = summary(traffic)
    assert counts["404 model_not_found"] == 0 and counts["503 model_not_ready"] == 0, f"outcomes: {counts}"
    assert set(counts) <= TOLERATED | CONNECTION_LOST, f"outcomes: {counts} (only the killed worker's may fail)"
