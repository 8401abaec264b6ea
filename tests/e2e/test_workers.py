"""Several worker processes behind one port (SO_REUSEPORT): merged metrics, all-or-nothing readiness, hot reload
in every worker, and a clean SIGTERM drain of the whole process tree."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import httpx

from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version, raw_records
from tests.fixtures.servers import ServerFactory, wait_until

ONE = {"candidates": [{"ad_id": "a", "features": raw_records(1)[0]}]}


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _versions_seen(url: str, n: int) -> set[int]:
    """Fresh connections, so the kernel spreads them over the workers."""
    seen = set()
    for _ in range(n):
        with httpx.Client(timeout=10) as c:
            r = c.post(url + "/v1/ads/ctr", json=ONE)
            assert r.status_code == 200, r.text
            seen.add(r.json()["version"])
    return seen


def test_two_workers_share_the_port_and_the_metrics(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory
) -> None:
    server = start_server(
        ctr_repo, APP_WORKERS="2", APP_RESCAN_INTERVAL_S="0.2", APP_GRPC_ENABLED="false", APP_ADMIN_TOKEN="t0ken"
    )
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 90, "both workers ready")
    log = server.log.read_text()
    assert "with 2 workers (SO_REUSEPORT)" in log and "[w0]" in log and "[w1]" in log

    assert _versions_seen(server.url, 40) == {1}
    text = server.get("/metrics").text
    assert _metric(text, "inference_requests_total", endpoint="ctr", code="ok") == 40  # both workers' counts
    assert _metric(text, "model_load_events_total", version="1", event="load") == 2  # one load per worker

    publish_ctr_version(ctr_repo, seed=1)  # every worker's watcher finds it and swaps
    wait_until(
        lambda: _metric(server.get("/metrics").text, "model_load_events_total", version="2", event="load") == 2,
        60,
        "v2 loaded by both workers",
    )
    wait_until(
        lambda: _metric(server.get("/metrics").text, "model_load_events_total", version="1", event="unload") == 2,
        60,
        "v1 drained in both workers",
    )
    assert _versions_seen(server.url, 20) == {2}

    # the admin API reaches one worker; its siblings repeat the action from the pod's control file
    auth = {"authorization": "Bearer t0ken"}
    expect_status(server.post("/v2/repository/models/ad-ctr/unload", headers=auth), 200)
    wait_until(
        lambda: _metric(server.get("/metrics").text, "model_load_events_total", version="2", event="unload") == 2,
        30,
        "v2 unloaded by both workers",
    )
    answers = [server.post("/v1/ads/ctr", json=ONE) for _ in range(10)]
    assert all(r.status_code == 503 for r in answers), [(r.status_code, r.text[:300]) for r in answers]
    expect_status(server.post("/v2/repository/models/ad-ctr/load", headers=auth), 200)
    wait_until(
        lambda: _metric(server.get("/metrics").text, "model_load_events_total", version="2", event="load") == 4,
        30,
        "v2 loaded again by both workers",
    )
    assert _versions_seen(server.url, 20) == {2}


def test_sigterm_drains_every_worker_with_nothing_lost(ctr_repo: Path, start_server: ServerFactory) -> None:
    server = start_server(ctr_repo, APP_WORKERS="2", APP_GRPC_ENABLED="false")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 90, "both workers ready")
    statuses: list[int] = []
    refused = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal refused
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    statuses.append(c.post(server.url + "/v1/ads/ctr", json=ONE).status_code)
                except httpx.TransportError:  # the listener is closed: refused cleanly, never half-answered
                    refused += 1
                    if server.proc.poll() is not None:
                        return

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(statuses) >= 50, 30, "traffic flowing")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    stop.set()
    for t in threads:
        t.join(15)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))  # every answered request succeeded
    log = server.log.read_text()
    assert len(re.findall(r"all versions drained and unloaded", log)) == 2
