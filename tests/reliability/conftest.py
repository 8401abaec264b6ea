"""Fixtures of the reliability suite: a published CTR repository, a restartable Redis, wrk runs, RSS, metrics.

Every test here runs the real service (``python -m app`` under uvicorn) on loopback with bounded time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtest.harness import wrk
from loadtest.harness.wrk import OverloadResult
from tests.fixtures.ctr_model import DATA, publish_ctr_version, raw_records
from tests.fixtures.servers import ServerFactory, ServerProcess, free_port, start_redis, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _needs_data() -> None:
    if not DATA.is_file():
        pytest.skip(f"the Criteo sample {DATA} is missing (set DATA_DIR)")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A model repository with one published ``ad-ctr`` version (the real CTR fixture model)."""
    root = tmp_path / "model_repo"
    root.mkdir()
    publish_ctr_version(root, seed=0)
    return root


def start(start_server: ServerFactory, repo: Path, **env: str) -> ServerProcess:
    """One worker process unless a test says otherwise: admin load/unload, RSS and logs are then per process."""
    return start_server(repo, **{"APP_WORKERS": "1", **env})


def ctr_body(n: int, offset: int = 8000) -> dict[str, Any]:
    return {"candidates": [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(raw_records(n, offset))]}


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for line in server.get("/metrics").text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def ready(server: ServerProcess, timeout_s: float = 60) -> None:
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, timeout_s, "readiness")


# ---- wrk ----
def run_wrk(
    url: str,
    body: Any,
    tmp: Path,
    *,
    connections: int,
    seconds: float,
    timeout_ms: str = "",
    threads: int = 2,
    pace_ms: float = 0,
) -> OverloadResult:
    """``wrk`` POSTing ``body`` to ``url``; latencies are split by status (admitted vs refused)."""
    body_file = tmp / f"body-{os.getpid()}.json"
    body_file.write_text(json.dumps(body))
    return wrk.run_overload(url, body_file, connections=connections, seconds=seconds, threads=threads,
                            timeout_ms=timeout_ms, pace_ms=pace_ms)  # fmt: skip


# ---- a Redis that can be killed and restarted on the same port ----
@dataclass
class RestartableRedis:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.port, self.dir)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def command(self, *args: str) -> str:
        cli = shutil.which("redis-cli")
        if cli is not None:
            return subprocess.run([cli, "-p", str(self.port), *args], capture_output=True, text=True, timeout=10).stdout
        import redis

        return str(redis.Redis(port=self.port).execute_command(*args))  # type: ignore[no-untyped-call]


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    r = RestartableRedis(free_port(), tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.kill()


def lua_post(tmp: Path, body: Any, headers: dict[str, str]) -> Path:
    """A minimal wrk script that POSTs ``body`` with ``headers`` (for plain wrk runs)."""
    return wrk.post_script(tmp / "post.lua", body, headers)


def client(server: ServerProcess, timeout_s: float = 30) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=timeout_s)


def ready_now(url: str) -> bool:
    """Readiness over a fresh connection is 200 (a connection to the worker just killed may be reset)."""
    try:
        return httpx.get(url + "/v2/health/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
