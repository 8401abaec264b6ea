"""Defect 1: deadlines expiring while items are taken must never kill (or wedge) the batch collector."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, lua_post, metric, ready, start


def test_short_deadlines_under_load_leave_the_batcher_working(
    repo: Path, start_server: ServerFactory, tmp_path: Path
) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (CI installs it)")
    server = start(start_server, repo)
    ready(server)
    script = lua_post(tmp_path, ctr_body(1), {"timeout-ms": "20"})
    out = subprocess.run(
        [wrk, "-t2", "-c64", "-d4s", "-s", str(script), server.url + "/v1/ads/ctr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # the race fired: some requests expired (504) while others ran
    assert metric(server, "inference_requests_total", code="deadline_exceeded") > 0
    assert metric(server, "inference_requests_total", code="ok") > 0
    r = httpx.post(server.url + "/v1/ads/ctr", json=ctr_body(1), timeout=5)  # a plain request must not hang
    assert r.status_code == 200, r.text
    assert metric(server, "background_task_crashes_total") == 0, server.log.read_text()[-3000:]
    assert "InvalidStateError" not in server.log.read_text()
    assert server.get("/v2/health/live").status_code == 200
