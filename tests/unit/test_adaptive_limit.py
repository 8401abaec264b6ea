"""The adaptive in-progress limit on simulated latencies (a fake clock, no timing): it shrinks when answers slow
down, grows back when they are fast and the limit is in use, settles near the worker's capacity, and never
refuses an idle worker."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import numpy as np
import pytest

from app.adaptive_limit import AdaptiveConfig, AdaptiveLimit
from app.batching import BatchConfig, BatchStats, DynamicBatcher
from app.errors import Overloaded
from app.settings import ModelSettings, Settings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def feed(limit: AdaptiveLimit, latency_s: float, n: int, in_flight: int | None = None) -> None:
    for _ in range(n):
        limit.started(in_flight if in_flight is not None else int(limit.limit))
        limit.answered(latency_s)


def test_slow_answers_shrink_the_limit_to_its_minimum_and_idle_is_still_admitted() -> None:
    lim = AdaptiveLimit(AdaptiveConfig(min_limit=1, initial_limit=32, buffer_s=0.0, window=10), clock=Clock())
    feed(lim, 0.001, 10)  # the no-load latency: 1 ms
    feed(lim, 0.050, 200)  # 50x slower: far above 2x
    assert lim.limit == 1, f"limit {lim.limit} after sustained 50x latency"  # min_limit 1 here
    assert lim.allows(0), "an idle worker must admit"
    assert not lim.allows(1)


def test_the_limit_moves_only_while_it_is_used() -> None:
    lim = AdaptiveLimit(AdaptiveConfig(initial_limit=4, buffer_s=0.0, window=10), clock=Clock())
    feed(lim, 0.001, 100, in_flight=1)  # on target, but demand never reaches half the limit
    assert lim.limit == 4, f"limit moved to {lim.limit} without demand"
    feed(lim, 0.009, 100, in_flight=1)  # slow (noise, a slow client) while the limit shaped nothing
    assert lim.limit == 4, f"slow answers far below the limit moved it to {lim.limit}"
    feed(lim, 0.001, 100)  # on target, at the limit
    assert lim.limit > 20, f"limit {lim.limit} did not grow while in use and fast"
    feed(lim, 0.001, 10_000)
    assert lim.limit == lim.config.max_limit


def test_limit_settles_near_capacity_of_a_simulated_worker() -> None:
    """A worker that answers 4 at a time in 1 ms each: with n in progress a request takes max(1, n/4) ms. The
    2x latency target is reached at 8 in progress, so the limit must settle around there, not at 1 or 256."""
    lim = AdaptiveLimit(AdaptiveConfig(min_limit=1, initial_limit=64, buffer_s=0.0, window=16), clock=Clock())
    feed(lim, 0.001, 16, in_flight=1)
    seen = []
    for _ in range(400):
        n = max(1, int(lim.limit))  # 64 clients: always at the limit
        lim.started(n)
        lim.answered(0.001 * max(1.0, n / 4))
        seen.append(lim.limit)
    tail = seen[-200:]
    assert 4 <= min(tail) and max(tail) <= 16, f"limit ranged {min(tail):.1f}-{max(tail):.1f} (expected ~8)"


def test_no_load_latency_expires_so_a_slower_version_is_learnt() -> None:
    clock = Clock()
    lim = AdaptiveLimit(AdaptiveConfig(initial_limit=8, buffer_s=0.0, window=8, min_rtt_s=10), clock=clock)
    feed(lim, 0.001, 8, in_flight=1)
    assert lim.min_rtt == 0.001
    for step in range(300):  # 30 s of a version whose requests take 5 ms
        clock.t = step * 0.1
        feed(lim, 0.005, 1)
    assert lim.min_rtt == 0.005, lim.min_rtt
    assert lim.limit >= 8, f"the slower version's own latency shrank the limit to {lim.limit}"


async def test_batcher_refuses_past_the_adaptive_limit_and_reports_it() -> None:
    b = DynamicBatcher(
        "m/1", lambda x: x, BatchConfig(adaptive=AdaptiveConfig(initial_limit=16), max_in_flight=2, queue_cap_rows=8)
    )
    assert b.limiter is not None and b.limiter.limit == 2, "max_in_flight is the adaptive limit's ceiling"
    with b.admit(), b.admit():
        with pytest.raises(Overloaded) as e:
            b.admit()
        assert "adaptive limit 2" in str(e.value) and e.value.status == 503
    assert b.admitted == 0
    with b.admit():
        b.start()
        out = await b.submit({"x": np.ones((1, 1), np.float32)}, rows=1)
    assert out["x"].shape == (1, 1)
    await b.close(5)
    await asyncio.sleep(0)


def test_settings_switch_the_adaptive_limit_per_model() -> None:
    s = Settings(models={"ad-ctr": ModelSettings(adaptive_in_flight=True)}, adaptive_latency_tolerance=3)
    on = s.adaptive_config_for("ad-ctr")
    assert on is not None and on.tolerance == 3
    assert s.adaptive_config_for("other") is None
    assert Settings(adaptive_in_flight=True).adaptive_config_for("other") is not None


class Limits(BatchStats):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def in_flight_limit(self, limit: int) -> None:
        self.seen.append(limit)


async def test_batcher_reports_the_limit_as_it_moves() -> None:
    stats = Limits()
    b = DynamicBatcher("m/1", lambda x: x, BatchConfig(adaptive=AdaptiveConfig(initial_limit=8, window=4)), stats)
    assert stats.seen == [8]
    assert b.limiter is not None
    b.limiter.answered(0.0001)  # a fast no-load sample, then slow answers: the limit halves
    with ExitStack() as held:  # 4 in progress (half the limit), each answered >= 5 ms after admission
        for _ in range(4):
            held.enter_context(b.admit())
        time.sleep(0.005)  # above the 2.2 ms target
    assert b.limiter is not None and stats.seen[-1] == int(b.limiter.limit) and len(stats.seen) >= 2, stats.seen


def test_failed_requests_do_not_teach_the_limit() -> None:
    b = DynamicBatcher("m/1", lambda x: x, BatchConfig(adaptive=AdaptiveConfig(window=4)))
    assert b.limiter is not None
    for _ in range(8):
        with pytest.raises(ValueError), b.admit():
            raise ValueError("bad input, refused in microseconds")
    assert b.limiter.min_rtt == float("inf") and b.admitted == 0, (b.limiter.min_rtt, b.admitted)
