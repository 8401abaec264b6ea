"""Shadow and canary comparisons: after a live answer, the same request scored by another version, compared.

* role ``shadow``: a ``rate`` share of live requests is also scored by the policy's shadow version; the live
  answer is the reference.
* role ``canary``: a ``compare_rate`` share of the canary's answers is also scored by the stable version (the
  reference): the agreement a canary's ``min_agreement`` limit reads.

The copy runs after the live answer was computed, as a low-priority request of the other version's own batcher,
with a short deadline. Shadow samples only use time the live path leaves idle: a sample is scored only when no
live batch is queued or running in this worker (every loaded version's batcher but the shadow-only ones), checked
when it is drawn and again just before it is submitted, and one sample at a time (the shadow version's own
batcher, one batch of one request); every other drawn sample is dropped (counted). A sample that has started
is preemptible (:mod:`app.runtime.preempt`): a live request queued in this worker while it runs terminates its
ONNX Runtime call within one kernel and the sample is dropped, so a costly shadow (an FP32 teacher costs ~13 live
chat requests per sample) never holds a core a live request is waiting for. The shadow's threads keep the
process's CPU priority on purpose: a lowered one starves on a busy host while its thread holds the GIL
(featurizing, tokenizing), which stalls the live threads of the whole worker. A slow shadow thus sheds its own
samples and never queues behind or ahead of live work.
Canary samples are the automatic rollback's evidence and are kept longer: dropped when the worker already runs
``APP_ROLLOUT_MAX_IN_FLIGHT`` comparisons or once the expected queue wait of either version passes half the
batcher's queue budget (dropped whenever anything was queued, a steadily loaded worker scored almost none and a
broken canary kept its traffic long after its minimum sample). A comparison that misses its deadline or is
refused by the other version's admission counts as dropped too; other errors are counted, never surfaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.batching import DynamicBatcher, Priority
from app.errors import DeadlineExceeded, Overloaded, ServiceError
from app.request_options import RequestOptions
from app.rollout.compare import Comparison
from app.rollout.policy import Policy
from app.runtime import preempt
from app.tasks.base import Call, Route, Task

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.registry import ModelRegistry

LOG = logging.getLogger(__name__)


class Mirror:
    """One per worker: starts comparisons after live answers, bounded by ``max_in_flight``."""

    def __init__(
        self, registry: ModelRegistry, metrics: Metrics, max_in_flight: int, timeout_s: float, min_chance: float = 0.0
    ) -> None:
        self.registry, self.metrics = registry, metrics
        self.max_in_flight, self.timeout_s = max_in_flight, timeout_s
        self.min_chance = min_chance
        self.in_flight = 0
        self.shadow_in_flight = 0
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
        shadow = copy.role == "shadow"
        if (
            self.in_flight >= self.max_in_flight
            or (
                shadow and (self.shadow_in_flight >= SHADOW_AT_ONCE or live_busy(self.registry) or self._unlikely(copy))
            )
            or (not shadow and self._busy(copy.model, copy.live))
        ):
            self.metrics.rollout_comparisons.labels(*copy.labels, "dropped").inc()
            return
        self.in_flight += 1
        self.shadow_in_flight += shadow
        task = asyncio.get_running_loop().create_task(self._run(copy))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, shadow))

    def _unlikely(self, copy: _Copy) -> bool:
        """A shadow sample that would probably be terminated by the next live arrival before it ends (its
        version's cost per sample at the worker's recent arrival rate): not started. The cost is the shadow
        batcher's measured one; until a sample has finished, the manifest's latency at batch 1 (measured at
        publish time; terminated runs teach nothing), else unknown and the sample starts."""
        if self.min_chance <= 0:
            return False
        try:
            mv = self.registry.resolve(copy.model, copy.other)
        except ServiceError:
            return True
        if mv.batcher is None:
            return True
        cost = mv.batcher.estimate_s(copy.rows)
        if cost == float("inf"):
            cost = published_cost_s(mv.manifest.latency, copy.rows)
        return cost != float("inf") and preempt.completion_chance(cost) < self.min_chance

    def _busy(self, model: str, live: int) -> bool:
        """A canary sample: the answering version's queue is near its budget (no spare time for a comparison)."""
        try:
            batcher = self.registry.resolve(model, live).batcher
        except ServiceError:
            return True
        return batcher is not None and _too_busy(batcher, "canary")

    def _done(self, task: asyncio.Task[None], shadow: bool) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        self.shadow_in_flight -= shadow

    async def _run(self, copy: _Copy) -> None:
        await asyncio.sleep(0)  # let the live answer go out first
        labels = copy.labels
        try:
            scored = await self._score(copy.model, copy.other, copy.route, copy.req, copy.rows, copy.role)
        except (_Busy, DeadlineExceeded, Overloaded):  # no time for it (a low-priority thread may get none): shed
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
            if batcher is None or _too_busy(batcher, role) or (role == "shadow" and live_busy(self.registry)):
                raise _Busy  # live work arrived since the sample was drawn: it goes first, the sample is shed
            opts = RequestOptions(time.monotonic() + self.timeout_s, Priority.LOW, preemptible=role == "shadow")
            if route is not None:
                if not isinstance(mv.task, route.owner):
                    raise ServiceError(f"{model}/{version} cannot serve {route.path}")
                return await route.handler(req, Call(mv.task, batcher, opts, model, version, self.registry.ctx))
            return await batcher.submit(
                req.inputs, rows, deadline=opts.deadline, priority=opts.priority, preemptible=opts.preemptible
            )

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


SHADOW_AT_ONCE = 1
"""Shadow samples scored at once per worker: one, so a shadow holds at most one batch of one request."""

CANARY_WAIT_NO_BUDGET_S = 0.05
"""A canary sample's wait limit on a batcher without a queue budget (no admission limit configured)."""


def published_cost_s(latency: dict[str, float], rows: int) -> float:
    """Seconds of a batch of ``rows`` rows from a manifest's latency table (ms per batch by batch size, measured
    at publish time): interpolated between the sizes around ``rows``, the smallest size's time below it, scaled
    from the largest above it; infinity without a table."""
    points = sorted((int(k), ms) for k, ms in latency.items() if k.isdigit() and int(k) > 0)
    if not points:
        return float("inf")
    if rows <= points[0][0]:
        return points[0][1] / 1000
    for (lo, lo_ms), (hi, hi_ms) in itertools.pairwise(points):
        if rows <= hi:
            return (lo_ms + (hi_ms - lo_ms) * (rows - lo) / (hi - lo)) / 1000
    top, top_ms = points[-1]
    return top_ms * rows / top / 1000


def live_busy(registry: ModelRegistry) -> bool:
    """Whether this worker's live path has work: a batch queued or running on any loaded version that is not
    only a policy's shadow (live answers, canary references and v2 requests alike)."""
    for mv in registry.loaded():
        batcher = mv.batcher
        if batcher is None or not batcher.busy:
            continue
        policy = registry.policies.get(mv.model)
        if policy is None or not policy.shadow_only(mv.version):
            return True
    return False


def _too_busy(batcher: DynamicBatcher, role: str) -> bool:
    """Whether a comparison of ``role`` must be dropped now, seen from the version that would score it: any
    queued or running work for a shadow; for a canary, an expected wait over half the queue budget (a worker
    near overload)."""
    if role == "shadow":
        return bool(batcher.busy)
    wait: float = batcher.expected_wait_s()
    budget = batcher.config.queue_budget_s
    return wait > (budget / 2 if budget else CANARY_WAIT_NO_BUDGET_S)


class _Busy(Exception):
    """The other version (or, for a shadow, the live path) has work: the sample is dropped."""
