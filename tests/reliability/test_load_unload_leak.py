"""Defect 3 / issue 8: 200 admin load/unload cycles with traffic keep RSS growth under 10 %."""

from __future__ import annotations

from pathlib import Path

import httpx

from loadtest.harness import cpu
from tests.fixtures.checks import expect_status
from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, ready, start

CYCLES = 200
WARMUP_CYCLES = 5


def rss(pid: int) -> float:
    """The server's resident memory (MiB), worker processes included."""
    return cpu.rss_mib(cpu.process_tree(pid))


def test_load_unload_cycles_do_not_leak(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo, APP_ADMIN_TOKEN="t", APP_LOG_LEVEL="warning")
    ready(server)
    auth = {"authorization": "Bearer t"}
    bodies = [ctr_body(1), ctr_body(100)]  # traffic builds the featurizer's lookup tables: the memory at stake

    with httpx.Client(base_url=server.url, timeout=30) as c:

        def cycle() -> None:
            expect_status(c.post("/v2/repository/models/ad-ctr/unload", headers=auth), 200)
            r = c.post("/v2/repository/models/ad-ctr/load", headers=auth)
            assert r.status_code == 200, r.text
            for body in bodies:
                expect_status(c.post("/v1/ads/ctr", json=body), 200)

        for _ in range(WARMUP_CYCLES):  # allocator arenas and caches settle first
            cycle()
        base = rss(server.proc.pid)
        for _ in range(CYCLES):
            cycle()
        grown = rss(server.proc.pid) - base
    assert grown < 0.10 * base, f"RSS grew {grown:.1f} MiB over {CYCLES} cycles from {base:.1f} MiB"
