"""``wrk`` for every benchmark and reliability test: the Lua scripts, the command, and its parsed results.

Two kinds of run: a plain one (``--latency``: throughput and latency percentiles over all answers) and an
overload one with ``loadtest/overload.lua`` (latencies split by status, optional pacing and timeout header).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.harness.procs import ROOT

OVERLOAD_LUA = ROOT / "loadtest" / "overload.lua"
_POST_FILE = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
"""
_POST_LINES = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{}}
for line in io.lines("{bodies}") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def binary() -> str:
    """The ``wrk`` on PATH; a missing one is an error (CI installs it), never a silent skip."""
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk; CI installs it)")
    return found


def post_script(script: Path, body: Any, headers: dict[str, str] | None = None) -> Path:
    """Write ``body`` (JSON) beside ``script`` and a script POSTing it with ``headers``; returns ``script``."""
    body_file = script.with_suffix(".json")
    body_file.write_text(body if isinstance(body, str) else json.dumps(body))
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script.write_text(_POST_FILE.format(headers=hdrs, body=body_file))
    return script


def rotating_script(script: Path, bodies_jsonl: Path) -> Path:
    """A script POSTing the lines of ``bodies_jsonl`` in turn (one JSON body a line)."""
    script.write_text(_POST_LINES.format(bodies=bodies_jsonl))
    return script


@dataclass(frozen=True)
class WrkResult:
    """One plain wrk run: throughput, latency percentiles (ms), request count and failures."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int = 0
    socket_errors: int = 0  # connect + read + write + timeout (no answer within wrk's --timeout)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def good_rps(self) -> float:
        """Goodput: successful answers per second (a refused request is not throughput)."""
        return self.rps * max(0, self.requests - self.errors) / self.requests if self.requests else 0.0


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(text: str) -> WrkResult:
    """Parse ``wrk --latency`` output; raises ValueError if a needed line is missing."""

    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text)
        if m is None:
            raise ValueError(f"wrk output has no match for {pattern!r}:\n{text[-2000:]}")
        return m

    rps = float(need(r"Requests/sec:\s+([\d.]+)").group(1))
    p50 = _ms(need(r"\n\s+50%\s+(\S+)").group(1))
    p99 = _ms(need(r"\n\s+99%\s+(\S+)").group(1))
    requests = int(need(r"(\d+) requests in ").group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non_2xx = int(bad.group(1)) if bad else 0
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    return WrkResult(rps, p50, p99, requests, non_2xx, socket_errors)


def command(
    url: str, script: Path, connections: int, duration_s: float, threads: int = 1, timeout_s: float = 5
) -> list[str]:
    """The plain run's argv (``--latency``, one thread by default: the server gets the other cores)."""
    return [binary(), f"-t{min(threads, connections)}", f"-c{connections}", f"-d{round(duration_s)}s",
            "--timeout", f"{timeout_s:g}s", "--latency", "-s", str(script), url]  # fmt: skip


def run(url: str, script: Path, connections: int, duration_s: float, threads: int = 1) -> WrkResult:
    """One plain run (raises with wrk's output when it fails)."""
    proc = subprocess.run(command(url, script, connections, duration_s, threads), capture_output=True, text=True,
                          timeout=duration_s + 60)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr}{proc.stdout}")
    return parse(proc.stdout)


@dataclass(frozen=True)
class OverloadResult:
    """Per-status counts and latency percentiles (µs) of one ``overload.lua`` run (status keys are strings)."""

    duration_s: float
    status: dict[str, dict[str, float]]
    socket_errors: dict[str, int]

    def n(self, status: int | str) -> int:
        return int(self.status.get(str(status), {}).get("n", 0))

    def p(self, status: int | str, q: str = "p99") -> float:
        """Latency percentile ``q`` of the answers with ``status``, in seconds."""
        return self.status[str(status)][f"{q}_us"] / 1e6

    def rate(self, status: int | str) -> float:
        return self.n(status) / self.duration_s

    @property
    def offered_rps(self) -> float:
        return sum(v["n"] for v in self.status.values()) / self.duration_s


def run_overload(
    url: str,
    body_file: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    timeout_ms: str = "",
    pace_ms: float = 0,
    prefix: Sequence[str] = (),
) -> OverloadResult:
    """``overload.lua`` POSTing ``body_file`` to ``url``; ``pace_ms`` > 0 paces each connection (open-ish loop).

    ``prefix`` goes before wrk (e.g. ``taskset -c 1``: pin the load generator away from the server).
    """
    out = body_file.with_name(f"{body_file.stem}-wrk-{os.getpid()}.json")
    out.unlink(missing_ok=True)
    args = [*prefix, binary(), f"-t{min(threads, connections)}", f"-c{connections}", f"-d{round(seconds)}s",
            "--timeout", "10s", "-s", str(OVERLOAD_LUA), url, "--", str(body_file), timeout_ms, str(int(pace_ms))]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60,
                          env={**os.environ, "OVERLOAD_OUT": str(out)})  # fmt: skip
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr}{proc.stdout}")
    doc = json.loads(out.read_text())
    out.unlink()
    return OverloadResult(doc["duration_us"] / 1e6, doc["status"], doc["socket_errors"])
