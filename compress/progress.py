"""Progress for long runs: stage lines (always, via the ``compress.stage`` logger) and bars on a terminal.

A run takes minutes; a newcomer must see which model, which step and candidate, the time spent and an ETA
without ``-v``, and never a silence longer than half a minute: long loops (epochs x batches, vectors) carry a
:class:`Heartbeat` that says where they are every :data:`EVERY_S` seconds, with an ETA measured from the rate
so far. The CLI prints ``compress.stage`` records to stderr by default (``-q`` silences them); bars
appear only when stderr is a terminal and ``COMPRESS_PROGRESS`` is not ``0``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import TypeVar

from compress.settings import compress_settings

T = TypeVar("T")
stage_log = logging.getLogger("compress.stage")
EVERY_S = 20.0
"""Longest silence of a long loop (a line is due at the first step after this many seconds)."""


def progress(it: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    if not compress_settings().progress or not sys.stderr.isatty():
        return it
    from tqdm import tqdm

    bar: Iterable[T] = tqdm(it, desc=desc, total=total, leave=False)
    return bar


def clock(seconds: float) -> str:
    """``75.2`` -> ``'1:15'``; ``3725`` -> ``'1:02:05'``."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Stages:
    """Stage lines of one model's run: ``[ad-ctr 0:42] candidate 3/12 int8_qdq (ETA 1:10)``."""

    def __init__(self, model: str) -> None:
        self.model, self.start = model, time.monotonic()
        _active.set(self)  # heartbeats of the loops below this run carry its prefix

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, text: str, *args: object) -> None:
        stage_log.info("[%s %s] " + text, self.model, clock(self.elapsed()), *args)

    def each(self, items: Sequence[T], what: str) -> Iterator[T]:
        """Yield ``items`` with a stage line before each: position, name, and an ETA from the mean so far."""
        t0 = time.monotonic()
        for i, item in enumerate(progress(items, desc=what, total=len(items))):
            done = time.monotonic() - t0
            eta = f", ETA {clock(done / i * (len(items) - i))}" if i else ""
            self.say("%s %d/%d %s%s", what, i + 1, len(items), item, eta)
            yield item


_active: ContextVar[Stages | None] = ContextVar("compress_stages", default=None)


def _say(text: str, *args: object) -> None:
    stages = _active.get()
    if stages is not None:
        stages.say(text, *args)
    else:
        stage_log.info(text, *args)


class Heartbeat:
    """A stage line at least every ``every_s`` seconds through a long loop, with an ETA from the measured rate.

    ``tick()`` after each step (a batch, a chunk of vectors); a line is written at the first tick after
    ``every_s`` seconds of silence: ``distil student: batch 120/900 (13%), 0.8 s/batch, ETA 10:24``.
    ``clock`` and ``say`` are injectable so a test can drive hours of steps without sleeping.
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str = "batch",
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[..., None] = _say,
    ) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.clock, self.say = clock, say
        self.done = 0
        self.start = self.last = clock()

    def tick(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self.say("%s", self.line(now))

    def line(self, now: float) -> str:
        per = (now - self.start) / self.done
        rate = f"{per:.2f} s/{self.unit}" if per >= 0.1 else f"{1 / per:,.0f} {self.unit}/s"
        if not self.total:
            return f"{self.what}: {self.unit} {self.done:,}, {rate}"
        eta = clock(per * max(0, self.total - self.done))
        return (
            f"{self.what}: {self.unit} {self.done:,}/{self.total:,} ({self.done / self.total:.0%}), {rate}, ETA {eta}"
        )

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, ticking once after each has been processed."""
        for item in items:
            yield item
            self.tick()
