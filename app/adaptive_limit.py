"""An adaptive cap on requests in progress, found from measured latency instead of picked per model.

A gradient rule in the style of Envoy's adaptive concurrency filter and Netflix's concurrency-limits: requests
are timed from admission to answer; every ``window`` answers the window's median latency is compared with the
no-load latency (the smallest seen over the last ``min_rtt_s`` seconds), and the limit is scaled by

    gradient = clamp((tolerance * min_rtt + buffer_s) / median, 0.5, 1.0)
    limit    = limit * gradient                 when gradient < 1 (slower than the target)
    limit    = limit + sqrt(limit)              when on target

both only when at least half the limit was in use during the window (otherwise the limit shaped nothing). It
settles where requests take about ``tolerance`` x their no-load time plus ``buffer_s`` (room for the
batching delay): the worker is kept at its capacity, not behind it, whatever the request shape costs.

Recovery: a request is always admitted while fewer than ``min_limit`` (>= 1) are in progress, so an idle worker
never refuses, and a limit driven down by a burst grows back once it is in use and answers are on target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AdaptiveConfig:
    min_limit: int = 4
    """Requests always admitted (the idle rule: a worker with fewer than this in progress never refuses). Not 1:
    under a flood of refused requests an admitted one waits on the event loop behind the refusals, whatever the
    limit, so its latency says "slower" and a floor of 1 leaves one request at a time to fight the flood (measured:
    8 answers/s at 1.1x offered load; the best fixed cap for 100-candidate requests on one core is 3-4)."""
    max_limit: int = 256
    initial_limit: int = 16
    tolerance: float = 2.0
    """Latency, as a multiple of the no-load latency, the limit aims for."""
    buffer_s: float = 0.002
    """Latency allowed on top of ``tolerance`` x no-load: the batching delay and scheduling noise of a small box."""
    window: int = 32
    """Answers per limit update (the median of a window is robust to one slow request)."""
    min_rtt_s: float = 30.0
    """How long a no-load latency sample counts: old enough minima expire so a slower new version is learnt."""


class AdaptiveLimit:
    """The limit of one model version in one worker process (event-loop thread only: no locking)."""

    def __init__(self, config: AdaptiveConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or AdaptiveConfig()
        self._clock = clock
        c = self.config
        self.limit = float(min(max(c.initial_limit, c.min_limit), c.max_limit))
        self._samples: list[float] = []
        self._peak_in_flight = 0
        # windowed minimum as two buckets (this period's and the last one's): O(1), forgets within 2 periods
        self._min_now, self._min_prev = math.inf, math.inf
        self._period_end = clock() + c.min_rtt_s

    @property
    def min_rtt(self) -> float:
        return min(self._min_now, self._min_prev)

    def allows(self, in_flight: int) -> bool:
        """Whether one more request may start while ``in_flight`` are in progress."""
        return in_flight < max(self.config.min_limit, int(self.limit))

    def started(self, in_flight: int) -> None:
        """Record the number in progress once a request is admitted (is the limit the bottleneck?)."""
        if in_flight > self._peak_in_flight:
            self._peak_in_flight = in_flight

    def answered(self, latency_s: float) -> None:
        """Feed one admitted request's admission-to-answer time; updates the limit every ``window`` answers."""
        c = self.config
        now = self._clock()
        if now >= self._period_end:
            self._min_prev, self._min_now = self._min_now, math.inf
            self._period_end = now + c.min_rtt_s
        if latency_s < self._min_now:
            self._min_now = latency_s
        self._samples.append(latency_s)
        if len(self._samples) < c.window:
            return
        self._samples.sort()
        median = self._samples[len(self._samples) // 2]
        self._samples.clear()
        target = c.tolerance * self.min_rtt + c.buffer_s
        gradient = min(1.0, max(0.5, target / median)) if median > 0 else 1.0
        if self._peak_in_flight < self.limit / 2:
            new = self.limit  # the limit shaped nothing: slow or fast, these answers say nothing about it
        elif gradient < 1.0:
            new = self.limit * gradient  # slower than the target at the limit: back off in proportion
        else:
            new = self.limit + math.sqrt(self.limit)  # on target at the limit: probe higher
        self._peak_in_flight = 0
        self.limit = min(float(c.max_limit), max(float(c.min_limit), new))
