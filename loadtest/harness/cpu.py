"""CPU seconds and resident memory of a server's whole process tree (uvicorn workers, Triton stubs), via psutil."""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its live descendants, taken now (read it before a run: workers exit when the server stops)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(tree: list[psutil.Process]) -> float:
    """User + system CPU seconds of the processes in ``tree`` that are still alive."""
    total = 0.0
    for p in tree:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def rss_mib(tree: list[psutil.Process]) -> float:
    total = 0
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20
