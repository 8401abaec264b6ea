"""Progress for long runs: stage lines (always, via the ``compress.stage`` logger) and bars on a terminal.

A run takes minutes; a newcomer must see which model, which step and candidate, the time spent and an ETA
without ``-v``. The CLI prints ``compress.stage`` records to stderr by default (``-q`` silences them); bars
appear only when stderr is a terminal and ``COMPRESS_PROGRESS`` is not ``0``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from compress.settings import compress_settings

T = TypeVar("T")
stage_log = logging.getLogger("compress.stage")


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
