"""Step timing for a run that must fit a short lease: per-step budgets, a heartbeat, and a record of every step.

A lent GPU machine gives a session about 15 minutes in all, start-up included, so a check must end inside its
budget whatever happens: a step that runs out of time stops its remaining items (recorded as skipped, with the
reason), a step that fails is recorded and the run goes on, and a background heartbeat prints where the run is
at least every ``heartbeat_s`` seconds (the device tool returns only what was printed).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepRecord:
    name: str
    budget_s: float
    status: str = "pending"  # ok | failed | skipped | over_budget
    seconds: float = 0.0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "budget_s": self.budget_s,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "note": self.note,
        }


class Skip(Exception):
    """Raised inside a step to end it as skipped (a missing tool, nothing to do), with the reason."""


@dataclass
class Budget:
    """The whole run's deadline and its steps; ``say`` prints with the elapsed time (flushed at once)."""

    total_s: float
    heartbeat_s: float = 20.0
    started: float = field(default_factory=time.monotonic)
    steps: list[StepRecord] = field(default_factory=list)
    _current: str = "starting"
    _step_started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def say(self, msg: str) -> None:
        print(f"[gpu-check {self.elapsed():6.1f}s] {msg}", flush=True)

    def step_left(self) -> float:
        """Seconds left to the current step (its budget, capped by the whole run's)."""
        rec = self.steps[-1]
        return min(rec.budget_s - (time.monotonic() - self._step_started), self.left())

    def step(self, name: str, budget_s: float, fn: Callable[[], str | None]) -> StepRecord:
        """Run ``fn`` as one step (its return value is the step's note). It is skipped up front if the run has
        less time left than a tenth of the step's budget; :class:`Skip` ends it as skipped and any other
        exception as failed (recorded and printed) without ending the run."""
        rec = StepRecord(name, min(budget_s, max(0.0, self.left())))
        self.steps.append(rec)
        self._current, self._step_started = name, time.monotonic()
        if self.left() < budget_s / 10:
            rec.status, rec.note = "skipped", f"only {self.left():.0f}s of the run's budget left"
            self.say(f"step {name}: skipped ({rec.note})")
            return rec
        self.say(f"step {name} (budget {rec.budget_s:.0f}s)")
        try:
            rec.note = fn() or ""
            rec.status = "ok"
        except Skip as e:
            rec.status, rec.note = "skipped", str(e)
        except Exception as e:  # noqa: BLE001 - one failed step is recorded; the run goes on to the next
            rec.status, rec.note = "failed", f"{type(e).__name__}: {e}"
            self.say(traceback.format_exc(limit=4).rstrip())
        finally:
            rec.seconds = time.monotonic() - self._step_started
            if rec.status == "ok" and rec.seconds > rec.budget_s:
                rec.status = "over_budget"
            self.say(f"step {name}: {rec.status} in {rec.seconds:.1f}s {('- ' + rec.note) if rec.note else ''}")
            self._current = "between steps"
        return rec

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """A daemon thread printing the current step every ``heartbeat_s`` seconds while the body runs."""

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                self.say(f"... still in {self._current} ({self.left():.0f}s of the run left)")

        t = threading.Thread(target=beat, name="gpu-check-heartbeat", daemon=True)
        t.start()
        try:
            yield
        finally:
            self._stop.set()
            t.join(timeout=2)
