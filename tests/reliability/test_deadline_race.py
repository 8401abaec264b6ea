"""Defect 1: deadlines expiring while items are taken must never kill (or wedge) the batch collector."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from loadtest.harness import wrk
from tests.fixtures.checks import expect_status
from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, lua_post, metric, ready, start


def test_short_deadlines_under_load_leave_the_batcher_working(
    repo: Path, start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start(start_server, repo)
    ready(server)
    # 100-candidate bodies from 64 connections queue for longer than 20 ms on any machine, so deadlines expire
    # while items are being taken (1-row bodies are served within 20 ms on a quiet, fast machine); a few plain
    # 1-row clients run beside them, so expiring and completing items share batches
    racing = lua_post(tmp_path, ctr_body(100), {"timeout-ms": "20"})
    (tmp_path / "plain").mkdir()
    plain = lua_post(tmp_path / "plain", ctr_body(1), {})
    procs = [
        subprocess.Popen(wrk.command(server.url + "/v1/ads/ctr", script, c, 4), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for script, c in ((racing, 64), (plain, 4))
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    # the race fired: some requests expired (504) while others ran
    assert metric(server, "inference_requests_total", code="deadline_exceeded") > 0
    assert metric(server, "inference_requests_total", code="ok") > 0
    r = httpx.post(server.url + "/v1/ads/ctr", json=ctr_body(1), timeout=5)  # a plain request must not hang
    assert r.status_code == 200, r.text
    assert metric(server, "background_task_crashes_total") == 0, server.log.read_text()[-3000:]
    assert "InvalidStateError" not in server.log.read_text()
    expect_status(server.get("/v2/health/live"), 200)
