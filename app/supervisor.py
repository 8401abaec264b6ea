"""Supervised background tasks: a crash is never silent.

A background loop (batch collector, repository rescan, Redis listener) that dies with an exception is logged
with its traceback, reported to ``on_crash`` and restarted with capped backoff while ``on_crash`` says so. When
a loop crashes more than ``max_restarts`` times within ``window_s`` it stays down and the process is marked
not-live (:data:`HEALTH`), so the orchestrator restarts the whole pod instead of leaving it wedged.

Typical usage::

    task = supervise("batcher-ad-ctr/3", batcher._collect, lambda exc: True)
    ...
    task.stop()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

LOG = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]
OnCrash = Callable[[BaseException], bool]


class Health:
    """Process liveness as seen by ``/v2/health/live``: the names of loops that are down for good."""

    def __init__(self) -> None:
        self.dead: dict[str, str] = {}

    @property
    def live(self) -> bool:
        return not self.dead

    def mark_dead(self, name: str, reason: str) -> None:
        self.dead[name] = reason

    def forget(self, name: str) -> None:
        self.dead.pop(name, None)


HEALTH = Health()


class Supervised:
    """One supervised loop; :meth:`stop` cancels it for good (a stopped loop is not a crash)."""

    def __init__(
        self,
        name: str,
        loop: Loop,
        on_crash: OnCrash,
        *,
        max_restarts: int = 5,
        window_s: float = 60.0,
        health: Health = HEALTH,
    ) -> None:
        self.name = name
        self._loop = loop
        self._on_crash = on_crash
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._health = health
        self._crashes: deque[float] = deque()
        self._stopped = False
        self.task: asyncio.Task[None] = self._spawn()

    def _spawn(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)
        task.add_done_callback(self._exited)
        return task

    def done(self) -> bool:
        return self.task.done()

    def stop(self) -> None:
        self._stopped = True
        self.task.cancel()
        self._health.forget(self.name)

    def cancel(self) -> None:
        self.stop()

    def _exited(self, task: asyncio.Task[None]) -> None:
        if self._stopped or task.cancelled():
            return
        error = task.exception()
        if error is None:
            error = RuntimeError("the loop returned")
        LOG.error("background task %s crashed: %r", self.name, error, exc_info=error)
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and self._crashes[0] < now - self._window_s:
            self._crashes.popleft()
        try:
            restart = self._on_crash(error)
        except Exception:  # the crash handler must not hide the crash
            LOG.exception("crash handler of %s failed", self.name)
            restart = False
        if not restart:
            return
        if len(self._crashes) > self._max_restarts:
            reason = f"crashed {len(self._crashes)} times in {self._window_s:.0f}s: {error!r}"
            LOG.critical("background task %s is down for good (%s); marking the process not live", self.name, reason)
            self._health.mark_dead(self.name, reason)
            return
        delay = min(0.05 * 2 ** (len(self._crashes) - 1), 2.0)
        asyncio.get_running_loop().call_later(delay, self._restart)

    def _restart(self) -> None:
        if not self._stopped:
            LOG.warning("restarting background task %s", self.name)
            self.task = self._spawn()


def supervise(name: str, loop: Loop, on_crash: OnCrash | None = None, **kwargs: Any) -> Supervised:
    """Start ``loop()`` as a supervised task on the running event loop (``on_crash`` returns 'restart?')."""
    return Supervised(name, loop, on_crash or (lambda _e: True), **kwargs)
