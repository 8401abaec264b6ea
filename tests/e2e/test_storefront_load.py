"""The storefront locust scenario (loadtest/locustfile.py), headless for ~10 s against a real server on loopback
serving ad-ctr and the chatbot: HTTP and gRPC users, real Criteo rows and Bitext messages; zero failures and every
endpoint hit."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.compress_run import CompressRun
from tests.fixtures.ctr_model import DATA, publish_ctr_version
from tests.fixtures.servers import ROOT, ServerFactory, wait_until

EXPECTED = {f"{proto} {call}" for proto in ("http", "grpc") for call in ("ScoreAds x100", "ScoreAds x1", "Chat")}


def test_storefront_mix_over_http_and_grpc_has_no_failures(
    tmp_path: Path, chat_compress_run: CompressRun, start_server: ServerFactory
) -> None:
    if importlib.util.find_spec("locust") is None:  # never import it here: locust monkey-patches on import (gevent)
        pytest.skip("locust (dev extra) runs the storefront scenario")
    if not DATA.is_file():
        pytest.skip(f"Criteo sample not found at {DATA} (set DATA_DIR)")
    repo = tmp_path / "repo"
    repo.mkdir()
    publish_ctr_version(repo, seed=0)
    shutil.copytree(chat_compress_run.repo / "chat-intent", repo / "chat-intent")
    # default worker pool (one per core): gRPC and HTTP both share their port across workers. The queue-time budget
    # is lifted: this checks the scenario end to end, not admission control on a CI box shared with the generator.
    server = start_server(repo, APP_REQUIRED_MODELS="ad-ctr,chat-intent", APP_QUEUE_BUDGET_MS="60000")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 90, "readiness")

    prefix = tmp_path / "storefront"
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
           "--host", server.url, "--grpc-host", server.grpc_target, "-u", "4", "-r", "4", "-t", "10s",
           "--stop-timeout", "5", "--csv", str(prefix), "--only-summary", "--exit-code-on-error", "1"]  # fmt: skip
    env = {**os.environ, "DATA_DIR": str(DATA.parents[1])}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert set(rows) - {"Aggregated"} == EXPECTED, sorted(rows)
    for name in EXPECTED:
        assert int(rows[name]["Request Count"]) > 0, f"{name} was never called"
        assert int(rows[name]["Failure Count"]) == 0, f"{name} failed"
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    # both protocols carried comparable load: the users are split evenly between them
    http = sum(int(rows[n]["Request Count"]) for n in EXPECTED if n.startswith("http"))
    grpc_ = sum(int(rows[n]["Request Count"]) for n in EXPECTED if n.startswith("grpc"))
    assert 0.3 < http / (http + grpc_) < 0.7
