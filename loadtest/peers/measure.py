"""Benchmark tables: wrk runs with the server's CPU share, medians over interleaved runs, the markdown table.

Kept free of process management and installs so a unit test can feed it captured samples; wrk itself and the
process-tree CPU come from :mod:`loadtest.harness`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from loadtest.harness import cpu, wrk
from loadtest.harness.wrk import WrkResult


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


def run_wrk(url: str, script: Path, connections: int, duration_s: int, server_pid: int) -> Sample:
    """One wrk run; the server tree's CPU is read just before and after it (tree taken before the run)."""
    tree = cpu.process_tree(server_pid)
    c0, t0 = cpu.cpu_seconds(tree), time.monotonic()
    result = wrk.run(url, script, connections, duration_s)
    c1, t1 = cpu.cpu_seconds(tree), time.monotonic()
    return Sample(result, (c1 - c0) / (t1 - t0), cpu.rss_mib(tree))


def interleaved(
    targets: dict[str, tuple[str, int]], path: str, script: Path, connections: int, duration_s: int, runs: int
) -> dict[str, list[Sample]]:
    """``runs`` rounds of one wrk run per target (name -> base URL, server pid), interleaved so background load
    affects every target alike."""
    per: dict[str, list[Sample]] = {name: [] for name in targets}
    for _ in range(runs):
        for name, (url, pid) in targets.items():
            per[name].append(run_wrk(url + path, script, connections, duration_s, pid))
    return per


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
