"""Preemptible runtime calls: a shadow sample's ONNX Runtime run is terminated when live work arrives.

A shadow sample starts only while the worker's live path is idle (:mod:`app.rollout.shadow`), but once started, a
sample of a costly reference (an FP32 teacher: ~7 ms of a core per chat message) holds its core until it ends, and
a live request arriving meanwhile shares the cores with it. ONNX Runtime checks ``RunOptions.terminate`` between
kernels, so setting it ends the run within one kernel (tens of µs); the sample is then shed (:class:`Preempted`,
counted as dropped) and the live request has the core.

Live work is counted per process: the batcher calls :func:`live_started` / :func:`live_ended` around every item
that is not preemptible. A preemptible run that registers while the count is above zero does not start, and every
live arrival terminates the registered runs. Both sides write before they read, so under the GIL either the
arrival sees the run or the run sees the arrival: no sample slips between them.

Only the ONNX Runtime backend honours it (:meth:`app.runtime.onnx.OnnxRuntime.infer`); other runtimes run a
preemptible batch to its end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from app.errors import Overloaded

_live = 0
"""Live (not preemptible) items queued or running in this process; written on the event loop thread only."""

_RATE_WINDOW_S = 1.0
"""Time constant of the live arrival rate (an exponentially decaying count of arrivals per second)."""

_rate = 0.0
_last = 0.0

_running: dict[int, Any] = {}
"""The ``RunOptions`` of the preemptible runs in progress, by id (written by worker threads)."""

_local = threading.local()


class Preempted(Overloaded):
    """A preemptible run gave way to live work: shed like a sample refused for lack of time, never retried."""


def live_started() -> None:
    """A live item was queued: terminate the preemptible runs in progress (called on the event loop)."""
    global _live, _rate, _last
    _live += 1
    now = time.monotonic()
    _rate = _rate * math.exp((_last - now) / _RATE_WINDOW_S) + 1.0 / _RATE_WINDOW_S
    _last = now
    if _running:
        for options in list(_running.values()):
            options.terminate = True


def live_ended() -> None:
    """A live item was answered, failed or dropped (called on the event loop)."""
    global _live
    _live -= 1


def live_items() -> int:
    """Live items in flight in this process (what a preemptible run waits to be zero)."""
    return _live


def arrival_rate() -> float:
    """Live items queued per second in this process, recently (exponentially decaying over about a second)."""
    return _rate * math.exp((_last - time.monotonic()) / _RATE_WINDOW_S)


def completion_chance(cost_s: float) -> float:
    """The chance that a preemptible run of ``cost_s`` seconds ends before the next live arrival, if arrivals
    keep their recent rate (Poisson): ``exp(-rate x cost)``. A run that is likely to be terminated only takes CPU
    from the other processes on the host (other workers, the load generator) and scores nothing."""
    return math.exp(-arrival_rate() * cost_s)


@contextmanager
def preemptible() -> Iterator[None]:
    """Runtime calls made by this thread inside the block may be terminated by live arrivals."""
    _local.on = True
    try:
        yield
    finally:
        _local.on = False


def requested() -> bool:
    """Whether this thread is inside :func:`preemptible` (one attribute read: checked once per batch)."""
    return bool(getattr(_local, "on", False))


def run(session: Any, names: Sequence[str], feeds: dict[str, Any]) -> list[Any]:
    """``session.run`` with its own ``RunOptions``, terminated by :func:`live_started`; raises :class:`Preempted`."""
    import onnxruntime as ort

    options = ort.RunOptions()
    key = id(options)
    _running[key] = options
    try:
        if _live:
            raise Preempted("live work is in progress: the preemptible run did not start")
        return list(session.run(list(names), feeds, options))
    except Preempted:
        raise
    except Exception as e:
        if options.terminate:
            raise Preempted("a live request arrived: the preemptible run was terminated") from None
        raise e
    finally:
        del _running[key]
