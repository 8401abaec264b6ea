"""Fixtures of the reliability suite: a published CTR repository, a restartable Redis, wrk runs, RSS, metrics.

Every test here runs the real service (``python -m app`` under uvicorn) on loopback with bounded time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.ctr_model import DATA, publish_ctr_version, raw_records
from tests.fixtures.servers import ServerFactory, ServerProcess, free_port, start_redis, wait_until

ROOT = Path(__file__).resolve().parents[2]
WRK_SCRIPT = ROOT / "loadtest" / "overload.lua"


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
@dataclass
class WrkResult:
    """Per-status counts and latency percentiles (seconds) from ``loadtest/overload.lua``."""

    duration_s: float
    status: dict[int, dict[str, float]]
    socket_errors: dict[str, int]

    def n(self, status: int) -> int:
        return int(self.status.get(status, {}).get("n", 0))

    def p(self, status: int, q: str = "p99") -> float:
        return self.status[status][f"{q}_us"] / 1e6

    def rate(self, status: int) -> float:
        return self.n(status) / self.duration_s


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
) -> WrkResult:
    """``wrk`` POSTing ``body`` to ``url``; latencies are split by status (admitted vs refused)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (CI installs it)")
    body_file, out = tmp / f"body-{os.getpid()}.json", tmp / "wrk-out.json"
    body_file.write_text(json.dumps(body))
    out.unlink(missing_ok=True)
    args = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(body_file),
        timeout_ms,
        str(int(pace_ms)),
    ]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=seconds + 60, env={**os.environ, "OVERLOAD_OUT": str(out)}
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr + proc.stdout
    doc = json.loads(out.read_text())
    status = {int(k): v for k, v in doc["status"].items()}
    return WrkResult(doc["duration_us"] / 1e6, status, doc["socket_errors"])


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
        self.proc = start_redis(shutil.which("redis-server") or "redis-server", self.port, self.dir)

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
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    r = RestartableRedis(free_port(), tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.kill()


def lua_post(tmp: Path, body: Any, headers: dict[str, str]) -> Path:
    """A minimal wrk script that POSTs ``body`` with ``headers`` (for plain wrk runs)."""
    script = tmp / "post.lua"
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(
        textwrap.dedent(f"""\
        wrk.method = "POST"
        wrk.body = [[{json.dumps(body)}]]
        wrk.headers["content-type"] = "application/json"
        """)
        + hdrs
    )
    return script


def client(server: ServerProcess, timeout_s: float = 30) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=timeout_s)
