"""In-process timing of a callable for a fixed wall time (the no-HTTP ceiling rows of the benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def call_times(fn: Callable[[], Any], seconds: float, warmup: bool = True) -> list[float]:
    """Seconds per call of ``fn``, called back to back for ``seconds`` (after one untimed call with ``warmup``)."""
    if warmup:
        fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def percentile_ms(times: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``times`` (seconds), in milliseconds (nearest rank)."""
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3
