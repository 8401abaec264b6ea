"""Shadow and canary comparisons: after a live answer, the same request scored by another version, compared.

* role ``shadow``: a ``rate`` share of live requests is also scored by the policy's shadow version; the live
  answer is the reference.
* role ``canary``: a ``compare_rate`` share of the canary's answers is also scored by the stable version (the
  reference): the agreement a canary's ``min_agreement`` limit reads.

The copy runs after the live answer was computed, as a low-priority request of the other version's own batcher,
with a short deadline. It is dropped (and counted) when the worker already runs ``APP_ROLLOUT_MAX_IN_FLIGHT``
comparisons, or when either version has queued work: a shadow sample as soon as anything is queued (a slow
shadow sheds its own samples and never slows live traffic), a canary sample only once the expected queue wait
passes half the batcher's queue budget. Canary samples are the automatic rollback's evidence: dropped whenever
anything was queued, a steadily loaded worker scored almost none and a broken canary kept its traffic long
after its minimum sample. Errors are counted, never surfaced.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.batching import DynamicBatcher, Priority
from app.errors import ServiceError
from app.request_options import RequestOptions
from app.rollout.compare import Comparison
from app.rollout.policy import Policy
from app.tasks.base import Call, Route, Task

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.registry import ModelRegistry

LOG = logging.getLogger(__name__)


class Mirror:
    """One per worker: starts comparisons after live answers, bounded by ``max_in_flight``."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, max_in_flight: int, timeout_s: float) -> None:
        self.registry, self.metrics = registry, metrics
        self.max_in_flight, self.timeout_s = max_in_flight, timeout_s
        self.in_flight = 0
        self.rng = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()

    def after(
        self, policy: Policy, model: str, version: int, route: Route[Any] | None, req: Any, result: Any, rows: int
    ) -> None:
        """Called once per live answer of a model with a policy (see :func:`app.rollout.answers.answered`)."""
        canary, shadow = policy.canary, policy.shadow
        if canary is not None and version == canary.version and self.rng.random() < canary.compare_rate:
            self._start(_Copy("canary", model, version, policy.stable, route, req, result, rows))
        if shadow is not None and version != shadow.version and self.rng.random() < shadow.rate:
            self._start(_Copy("shadow", model, version, shadow.version, route, req, result, rows))

    def _start(self, copy: _Copy) -> None:
        if self.in_flight >= self.max_in_flight or self._busy(copy.model, copy.live, copy.role):
            self.metrics.rollout_comparisons.labels(*copy.labels, "dropped").inc()
            return
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(copy))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _busy(self, model: str, live: int, role: str) -> bool:
        """Live work is queued on the answering version: the worker has no spare time for a comparison."""
        try:
            batcher = self.registry.resolve(model, live).batcher
        except ServiceError:
            return True
        return batcher is not None and _too_busy(batcher, role)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1

    async def _run(self, copy: _Copy) -> None:
        await asyncio.sleep(0)  # let the live answer go out first
        labels = copy.labels
        try:
            scored = await self._score(copy.model, copy.other, copy.route, copy.req, copy.rows, copy.role)
        except _Busy:
            self.metrics.rollout_comparisons.labels(*labels, "dropped").inc()
            return
        except Exception as e:  # noqa: BLE001 - a comparison's failure is counted, never surfaced
            self.metrics.rollout_comparisons.labels(*labels, "error").inc()
            LOG.debug("%s comparison of %s/%s failed: %r", copy.role, copy.model, copy.other, e)
            return
        compare = copy.route.owner.compare if copy.route is not None else Task.compare
        reference, candidate = (scored, copy.result) if copy.role == "canary" else (copy.result, scored)
        try:
            found = compare(reference, candidate)
        except Exception as e:  # noqa: BLE001 - answers of another shape (a task change between versions)
            self.metrics.rollout_comparisons.labels(*labels, "error").inc()
            LOG.debug("%s comparison of %s/%s could not compare: %r", copy.role, copy.model, copy.other, e)
            return
        self.record(labels, found)

    def record(self, labels: tuple[str, str, str, str], found: Comparison) -> None:
        m = self.metrics
        m.rollout_comparisons.labels(*labels, "scored").inc()
        m.rollout_agreement.labels(*labels).observe(found.agreement)
        for measure, value in found.measures.items():
            m.rollout_difference.labels(*labels, measure).observe(value)

    async def _score(self, model: str, version: int, route: Route[Any] | None, req: Any, rows: int, role: str) -> Any:
        with self.registry.lease(model, version) as mv:
            batcher = mv.batcher
            if batcher is None or _too_busy(batcher, role):
                raise _Busy
            opts = RequestOptions(time.monotonic() + self.timeout_s, Priority.LOW)
            if route is not None:
                if not isinstance(mv.task, route.owner):
                    raise ServiceError(f"{model}/{version} cannot serve {route.path}")
                return await route.handler(req, Call(mv.task, batcher, opts, model, version, self.registry.ctx))
            return await batcher.submit(req.inputs, rows, deadline=opts.deadline, priority=opts.priority)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class _Copy:
    """One live answer to score again on ``other``: the live version and its answer, the request, the role."""

    role: str
    model: str
    live: int
    other: int
    route: Route[Any] | None
    req: Any
    result: Any
    rows: int

    @property
    def labels(self) -> tuple[str, str, str, str]:
        """(model, role, version, reference): the canary against stable, or the shadow against the live version."""
        version, reference = (self.live, self.other) if self.role == "canary" else (self.other, self.live)
        return (self.model, self.role, str(version), str(reference))


CANARY_WAIT_NO_BUDGET_S = 0.05
"""A canary sample's wait limit on a batcher without a queue budget (no admission limit configured)."""


def _too_busy(batcher: DynamicBatcher, role: str) -> bool:
    """Whether a comparison of ``role`` must be dropped now: any queued work for a shadow; for a canary, an
    expected wait over half the queue budget (a worker near overload)."""
    wait: float = batcher.expected_wait_s()
    if role == "shadow":
        return wait > 0.0
    budget = batcher.config.queue_budget_s
    return wait > (budget / 2 if budget else CANARY_WAIT_NO_BUDGET_S)


class _Busy(Exception):
    """The other version already has queued work: the sample is dropped."""
