"""wrk runs, their parsed output, server CPU/memory from /proc, medians, and the markdown table.

Kept free of process management and installs so a unit test can feed it captured wrk output.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms), request count and failures."""

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


@dataclass(frozen=True)
class Sample:
    """One wrk run against one server plus what the server's process tree used meanwhile."""

    wrk: WrkResult
    cores: float  # CPU seconds of the server tree / wall seconds
    rss_mib: float  # resident memory of the server tree after the run


@dataclass(frozen=True)
class Row:
    """Medians over the interleaved runs of one server."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    cores: float
    rss_mib: float
    non_2xx: int
    socket_errors: int
    runs: int
    good_rps: float = 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.cores / self.rps * 1e6 if self.rps else float("nan")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
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


def wrk_command(url: str, script: Path, connections: int, duration_s: int, threads: int = 1) -> list[str]:
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s", "--latency",
            "-s", str(script), url]  # fmt: skip


# ---- the server's process tree, from /proc ----
def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Triton's python stubs, PyTriton's tritonserver, uvicorn workers)."""
    children, tree, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the live processes in ``pids`` (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+) kB", status)
        total_kib += int(m.group(1)) if m else 0
    return total_kib / 1024


def run_wrk(url: str, script: Path, connections: int, duration_s: int, server_pid: int) -> Sample:
    """One wrk run; the server tree's CPU is read just before and after it (tree taken before the run)."""
    import time

    tree = process_tree(server_pid)
    c0, t0 = cpu_seconds(tree), time.monotonic()
    out = subprocess.run(wrk_command(url, script, connections, duration_s), capture_output=True, text=True,
                         check=True, timeout=duration_s + 60).stdout  # fmt: skip
    c1, t1 = cpu_seconds(tree), time.monotonic()
    return Sample(parse_wrk(out), (c1 - c0) / (t1 - t0), rss_mib(tree))


def summarize(name: str, samples: list[Sample]) -> Row:
    med = statistics.median
    return Row(
        name, med(s.wrk.rps for s in samples), med(s.wrk.p50_ms for s in samples), med(s.wrk.p99_ms for s in samples),
        med(s.cores for s in samples), max(s.rss_mib for s in samples), sum(s.wrk.non_2xx for s in samples),
        sum(s.wrk.socket_errors for s in samples), len(samples), med(s.wrk.good_rps for s in samples),
    )  # fmt: skip


def render(rows: list[Row], header: str, reference: str | None = None) -> str:
    """Markdown table; with ``reference`` (a row name) a column of req/s ratios to it."""
    ref = next((r for r in rows if r.name == reference), None)
    lines = [header, "",
             "| server | req/s (median) | p50 ms | p99 ms | server cores used | server CPU µs/req | RSS MiB | non-2xx / socket errors |"
             + (f" × {reference} |" if ref else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref else "")]  # fmt: skip
    for r in rows:
        line = (f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.1f} | {r.cores:.2f} | "
                f"{r.cpu_us_per_request:,.0f} | {r.rss_mib:,.0f} | {r.non_2xx} / {r.socket_errors} |")  # fmt: skip
        if ref:
            line += f" {r.rps / ref.rps:.2f} |" if ref.rps else " - |"
        lines.append(line)
    return "\n".join(lines)


BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"


def write_section(doc: Path, body: str) -> None:
    """Replace the marked peer-benchmark section of ``doc`` (append it, markers included, if absent)."""
    text = doc.read_text() if doc.exists() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
