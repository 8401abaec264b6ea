"""Defect 5: clients looping multi-megabyte bodies must not stall everyone else's requests."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import httpx

from tests.fixtures.checks import expect_status
from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, ready, start


def test_big_bodies_are_refused_cheaply(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    big = json.dumps(ctr_body(1000) | {"candidates": ctr_body(1000)["candidates"] * 11}).encode()
    assert len(big) > 5_000_000
    stop = threading.Event()
    refused: list[int] = []

    def flood() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/ads/ctr", content=big, headers={"content-type": "application/json"})
                    refused.append(r.status_code)
                except httpx.HTTPError:  # the server may close after answering 413 without reading the body
                    refused.append(0)

    small = ctr_body(1)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(20):
            c.post("/v1/ads/ctr", json=small)
        quiet = []
        for _ in range(50):
            t = time.perf_counter()
            expect_status(c.post("/v1/ads/ctr", json=small), 200)
            quiet.append(time.perf_counter() - t)
        floods = [threading.Thread(target=flood) for _ in range(2)]
        for f in floods:
            f.start()
        loaded = []
        try:
            for _ in range(100):
                t = time.perf_counter()
                expect_status(c.post("/v1/ads/ctr", json=small), 200)
                loaded.append(time.perf_counter() - t)
        finally:
            stop.set()
            for f in floods:
                f.join(30)
    assert refused and all(s in (413, 0) for s in refused), refused[:10]
    p50_quiet, p50_loaded = statistics.median(quiet), statistics.median(loaded)
    # before the fix: 2.2 ms -> 925 ms; the bound leaves room for a shared CI machine
    assert p50_loaded < max(0.05, 5 * p50_quiet), (p50_quiet, p50_loaded)
