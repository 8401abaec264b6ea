"""Dynamic batching per loaded version, counted in rows (a 100-candidate request is 100 rows, not 1).

Typical usage::

    batcher = DynamicBatcher("ad-ctr/3", runtime.infer, BatchConfig(max_batch_rows=256))
    batcher.start()
    outputs = await batcher.submit({"dense": d, "sparse": s}, rows=len(d), deadline=time.monotonic() + 0.05)
    await batcher.close(timeout_s=30)

A batch is dispatched when a run slot is free and either ``max_batch_rows`` rows are queued or the oldest item
has waited ``max_queue_delay_us``; while every slot is busy, requests accumulate (adaptive batching). High
priority items are taken first. Expired items are answered ``DeadlineExceeded`` and never run. A failed batch
is re-run item by item so one bad request cannot fail the others.

Admission (``queue_budget_s``): an item is refused up front (:class:`Overloaded`, 503 + Retry-After) when the
rows already queued, at the measured seconds per row, would keep it waiting longer than the budget, or when the
oldest queued item has already waited that long. Refusing early is what keeps admitted requests fast under
overload: a queue that only bounds rows lets 1-row requests wait seconds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app import tracing
from app.adaptive_limit import AdaptiveConfig, AdaptiveLimit
from app.errors import DeadlineExceeded, InferenceFailed, ModelNotReady, Overloaded, PayloadTooLarge, ServiceError
from app.runtime import preempt
from app.supervisor import Supervised, supervise

LOG = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
InferFn = Callable[[Tensors], Tensors]
Prepare = Callable[[list[Any]], Tensors]
"""Turns the raw rows of several items into one set of model inputs (e.g. a featurizer), in a worker thread.
Keys starting with ``_`` are per-row side outputs, not model inputs: they are returned with the outputs."""


class Priority(enum.IntEnum):
    HIGH = 0
    LOW = 1


@dataclass(frozen=True)
class BatchConfig:
    max_batch_rows: int = 512
    max_queue_delay_us: int = 2000
    queue_cap_rows: int = 8192
    concurrency: int = 1
    """Batches that may run at once (threads of this version's executor)."""
    queue_budget_s: float | None = None
    """Admission: refuse (503 + Retry-After) when the expected queue time of a new item exceeds this; None = only
    ``queue_cap_rows`` applies."""
    max_in_flight: int | None = None
    """Admission: requests admitted by :meth:`DynamicBatcher.admit` and not yet answered, at most; None = no cap."""
    adaptive: AdaptiveConfig | None = None
    """Admission: an adaptive cap on requests in progress (:mod:`app.adaptive_limit`); ``max_in_flight``, when
    also set, is its ceiling. None = off."""
    inline_max_s: float = 0.0
    """Run a batch on the event-loop thread when its measured cost is at most this (0 = always a worker thread):
    for sub-100 µs batches the thread hand-off (queue, wake-up, result callback) costs more than the work."""


EWMA_ALPHA = 0.2
"""Weight of the newest batch in the seconds-per-row estimate: follows a change of regime within ~10 batches."""


class BatchStats:
    """Observer hooks; the default does nothing (unit tests), :mod:`app.metrics` records them."""

    def queue_depth(self, rows: int) -> None:
        """Rows waiting after an enqueue or dequeue."""

    def waited(self, seconds: float) -> None:
        """Queue time of one item, observed when its batch starts."""

    def ran(self, rows: int, seconds: float) -> None:
        """One batch of ``rows`` rows took ``seconds`` of worker time (called from the worker thread)."""

    def collector_crashed(self) -> None:
        """The collector task died with an exception (it is restarted)."""

    def refused(self) -> None:
        """An item was refused because its expected queue time exceeded the budget."""

    def in_flight_limit(self, limit: int) -> None:
        """The adaptive cap on requests in progress moved to ``limit``."""


class BatchCost:
    """Seconds of a batch of ``rows`` rows as ``fixed + per_row x rows``, fitted on recent batches (EWMA moments).

    Seconds per row alone overstates big batches when a call has a fixed cost (a 1-row call of a small MLP is
    mostly fixed cost), which would send cheap batches to a worker thread needlessly. Until the batch sizes
    seen vary, the estimate is the average seconds per row times ``rows``.
    """

    def __init__(self) -> None:
        self._n = 0
        self._x = self._y = self._xx = self._xy = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        a = 1.0 if self._n == 0 else EWMA_ALPHA
        self._n += 1
        self._x += a * (rows - self._x)
        self._y += a * (seconds - self._y)
        self._xx += a * (rows * rows - self._xx)
        self._xy += a * (rows * seconds - self._xy)

    def estimate(self, rows: int) -> float:
        """Expected seconds for ``rows`` rows; infinity before any batch was measured."""
        if self._n == 0:
            return float("inf")
        var = self._xx - self._x * self._x
        if var < 1.0:  # (nearly) one batch size so far: no slope to fit
            return self._y / max(self._x, 1.0) * rows
        slope = max((self._xy - self._x * self._y) / var, 0.0)
        fixed = max(self._y - slope * self._x, 0.0)
        return fixed + slope * rows


class _State(enum.Enum):
    QUEUED = 1
    RUNNING = 2
    DROPPED = 3


@dataclass(eq=False)
class _Item:
    inputs: Any  # Tensors, or a list of raw rows when ``prepare`` is set
    rows: int
    deadline: float | None
    enqueued: float
    future: asyncio.Future[Tensors]
    prepare: Prepare | None = None
    state: _State = _State.QUEUED
    trace: Any = None  # the request span's context when the request is traced (app.tracing)
    preemptible: bool = False  # a shadow sample: its batch yields to live work (app.runtime.preempt)


@dataclass
class _Queues:
    by_priority: tuple[deque[_Item], ...] = field(default_factory=lambda: tuple(deque() for _ in Priority))

    def drop_dead_heads(self) -> None:
        for q in self.by_priority:
            while q and q[0].state is _State.DROPPED:
                q.popleft()

    def oldest(self) -> float | None:
        self.drop_dead_heads()
        heads = [q[0].enqueued for q in self.by_priority if q]
        return min(heads) if heads else None


class Admitted:
    """An admitted request's place under :attr:`BatchConfig.max_in_flight`, released when the block exits."""

    __slots__ = ("_batcher",)

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._batcher.admitted -= 1


class AdmittedTimed(Admitted):
    """An admitted request under the adaptive limit: its admission-to-answer time feeds the limit when it was
    answered (a 4xx answered in microseconds must not pass for the no-load latency)."""

    __slots__ = ("_limit", "_t0")

    def __init__(self, batcher: DynamicBatcher, limit: AdaptiveLimit) -> None:
        self._batcher, self._limit, self._t0 = batcher, limit, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self._batcher.admitted -= 1
        if exc and exc[0] is not None:  # refused input, deadline, failure: their time says nothing about capacity
            return
        before = int(self._limit.limit)
        self._limit.answered(time.monotonic() - self._t0)
        if int(self._limit.limit) != before:
            self._batcher._stats.in_flight_limit(int(self._limit.limit))


class BatcherClosed(ModelNotReady):
    """The version is draining and takes no new work."""


class DynamicBatcher:
    """Collects items into row-bounded batches and runs them in this version's worker threads."""

    def __init__(self, name: str, infer: InferFn, config: BatchConfig, stats: BatchStats | None = None) -> None:
        self.name = name
        self.config = config
        self._infer = infer
        self._stats = stats or BatchStats()
        self._queues = _Queues()
        self._queued_rows = 0
        self._in_flight = 0
        self._closed = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix=f"infer-{name}")
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: Supervised | None = None
        self.crashes = 0
        self._s_per_row: float | None = None  # EWMA of worker seconds per row, measured on real batches
        self.admitted = 0  # requests between admit() and their answer
        self.limiter: AdaptiveLimit | None = None
        if config.adaptive is not None:
            a = config.adaptive
            if config.max_in_flight is not None:  # the fixed cap is the adaptive one's ceiling
                cap = config.max_in_flight
                a = replace(a, max_limit=cap, initial_limit=min(a.initial_limit, cap), min_limit=min(a.min_limit, cap))
            self.limiter = AdaptiveLimit(a)
            self._stats.in_flight_limit(int(self.limiter.limit))
        self._cost = BatchCost()  # seconds of a batch as fixed + per-row cost: decides inline runs

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def busy(self) -> bool:
        """Whether any item is queued or any batch is running (shadow scoring waits for a version to be idle)."""
        return self._queued_rows > 0 or self._in_flight > 0

    def start(self) -> None:
        """Start the collector task on the running event loop, supervised: a crash is logged and restarted."""
        if self._loop_task is None:
            self._loop_task = supervise(f"batcher-{self.name}", self._collect, self._collector_crashed)

    def estimate_s(self, rows: int) -> float:
        """Expected seconds of a batch of ``rows`` rows (fixed + per-row cost of recent batches); infinity before a
        batch has run."""
        return self._cost.estimate(rows)

    @property
    def seconds_per_row(self) -> float | None:
        """Measured worker cost of one row (EWMA over recent batches); None until a batch has run."""
        return self._s_per_row

    def expected_wait_s(self) -> float:
        """Expected queue time of an item queued now: the rows ahead of it at the measured service rate, or the
        age of the oldest queued item if that is larger (a standing queue the rate estimate has not caught)."""
        rate_wait = 0.0
        if self._s_per_row is not None:
            rate_wait = self._queued_rows * self._s_per_row / self.config.concurrency
        oldest = self._queues.oldest() if self._queued_rows else None
        age = 0.0 if oldest is None else time.monotonic() - oldest
        return max(rate_wait, age)

    def check_admission(self, rows: int = 0) -> None:
        """Raise :class:`Overloaded` if an item of ``rows`` rows would wait longer than the queue budget or
        overflow the row cap. Cheap: routes call it with ``rows=0`` before reading and parsing a body."""
        if self._queued_rows + rows > self.config.queue_cap_rows:
            raise Overloaded(f"{self.name}: {self._queued_rows} rows already queued", retry_after_s=1.0)
        budget = self.config.queue_budget_s
        if budget is None or self._queued_rows == 0:
            return
        wait = self.expected_wait_s()
        if wait > budget:
            self._stats.refused()
            raise Overloaded(
                f"{self.name}: expected queue time {wait * 1000:.0f} ms exceeds the {budget * 1000:.0f} ms budget",
                retry_after_s=wait,
            )

    def admit(self) -> Admitted:
        """Admission of one request before its body is read: the queue-time rule (:meth:`check_admission`), then
        the cap on requests in progress. Use as ``with batcher.admit():`` around everything up to the answer.

        The cap counts work the queue cannot see yet (bodies being read and parsed on the event loop, batches
        running): on one core a request's parse competes with the running batch, so queue time alone admitted
        more than the core could answer in time (100-candidate requests at 3x capacity on one core, medians:
        admitted p99 36 ms and goodput 0.59 with a 10 ms queue budget; ~10 ms and 0.78-0.87 with a cap of 3-4)."""
        self.check_admission()
        if self.limiter is not None:
            return self._admit_adaptive(self.limiter)
        cap = self.config.max_in_flight
        if cap is not None and self.admitted >= cap:
            self._stats.refused()
            raise Overloaded(f"{self.name}: {self.admitted} requests in progress (cap {cap})",
                             retry_after_s=self.expected_wait_s())  # fmt: skip
        self.admitted += 1
        return Admitted(self)

    def _admit_adaptive(self, limiter: AdaptiveLimit) -> Admitted:
        if not limiter.allows(self.admitted):
            self._stats.refused()
            raise Overloaded(f"{self.name}: {self.admitted} requests in progress (adaptive limit {int(limiter.limit)})",
                             retry_after_s=self.expected_wait_s())  # fmt: skip
        self.admitted += 1
        limiter.started(self.admitted)
        return AdmittedTimed(self, limiter)

    @property
    def collector_alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def _collector_crashed(self, error: BaseException) -> bool:
        """Restart unless closing; a crash between taking a slot and starting a batch must not leak the slot."""
        self._stats.collector_crashed()
        self.crashes += 1
        if self._closed:
            return False
        self._slots = asyncio.Semaphore(self.config.concurrency - self._in_flight)
        return True

    async def submit(
        self,
        inputs: Any,
        rows: int,
        *,
        deadline: float | None = None,
        priority: Priority = Priority.LOW,
        prepare: Prepare | None = None,
        preemptible: bool = False,
    ) -> Tensors:
        """Queue ``rows`` rows and wait for this item's slice of the batch outputs.

        ``inputs`` are model tensors, or (with ``prepare``) a list of already-validated raw rows that are turned
        into tensors for the whole batch at once, in the worker thread: per-request pre-processing overhead is
        then paid once per batch.

        ``preemptible`` (shadow samples): a batch of only such items is terminated when a live item is queued in
        this process while it runs, and answers :class:`app.runtime.preempt.Preempted`; every other item counts
        as live work.
        """
        if self._closed:
            raise BatcherClosed(f"version {self.name} is draining")
        if rows > self.config.queue_cap_rows:
            raise PayloadTooLarge(
                f"{rows} rows exceed the queue capacity of {self.config.queue_cap_rows} rows "
                "(setting APP_MODELS queue_cap_rows or APP_QUEUE_CAP_ROWS, or the manifest's serving.queue_cap_rows)"
            )
        self.check_admission(rows)
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            raise DeadlineExceeded("the request deadline passed before it was queued")
        item = _Item(inputs, rows, deadline, now, asyncio.get_running_loop().create_future(), prepare,
                     preemptible=preemptible)  # fmt: skip
        if tracing.ENABLED:
            item.trace = tracing.item_context()
        self._queues.by_priority[priority].append(item)
        self._queued_rows += rows
        self._stats.queue_depth(self._queued_rows)
        self._wakeup.set()
        # one timer handle, not asyncio.timeout(): no Timeout object, no task cancel/uncancel per request (4 % of
        # a 1-row request's CPU); the timer answers the future itself, so the collector always sees it done
        timer = None if deadline is None else item.future.get_loop().call_later(deadline - now, self._expire, item)
        if not preemptible:
            preempt.live_started()  # a running shadow sample gives way (terminated); paired with live_ended below
        try:
            return await item.future
        except asyncio.CancelledError:
            self._drop(item)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not preemptible:
                preempt.live_ended()

    def _expire(self, item: _Item) -> None:
        """The item's deadline passed: answer it ``DeadlineExceeded`` and take it out of the queue (or let its
        running batch finish without it)."""
        if item.future.done():
            return
        where = "while its batch was running" if item.state is _State.RUNNING else "in the queue; it was not run"
        item.future.set_exception(DeadlineExceeded(f"the request deadline passed {where}"))
        self._drop(item)

    def _drop(self, item: _Item) -> None:
        if item.state is _State.QUEUED:
            self._queued_rows -= item.rows
            self._stats.queue_depth(self._queued_rows)
        item.state = _State.DROPPED
        if not item.future.done():
            item.future.cancel()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking work, let queued and running batches finish (up to ``timeout_s``), stop the threads."""
        self._closed = True
        self._wakeup.set()
        self._check_idle()
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            LOG.warning("%s: drain timed out after %.1fs; failing what is left", self.name, timeout_s)
            for q in self._queues.by_priority:
                for item in q:
                    if item.state is _State.QUEUED and not item.future.done():
                        item.future.set_exception(ModelNotReady(f"version {self.name} was unloaded"))
                    self._drop(item)
        if self._loop_task is not None:
            self._loop_task.stop()
            self._loop_task = None  # the supervisor holds our bound methods: break the cycle for refcounting
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_idle(self) -> None:
        if self._closed and self._queued_rows == 0 and self._in_flight == 0:
            self._idle.set()

    # ---- collector ----
    async def _collect(self) -> None:
        while True:
            while self._queued_rows == 0:
                self._check_idle()
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()
            await self._gather_window()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _gather_window(self) -> None:
        """Wait until a full batch is queued or the oldest item's delay budget is spent."""
        oldest = self._queues.oldest()
        if oldest is None or self._closed:
            return
        flush_at = oldest + self.config.max_queue_delay_us / 1e6
        while self._queued_rows < self.config.max_batch_rows and not self._closed:
            remaining = flush_at - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """Pop items, high priority first, up to ``max_batch_rows`` (an oversized item runs alone)."""
        batch: list[_Item] = []
        rows, now, cap = 0, time.monotonic(), self.config.max_batch_rows
        for q in self._queues.by_priority:
            while q:
                item = q[0]
                if item.state is _State.DROPPED:
                    q.popleft()
                    continue
                if batch and rows + item.rows > cap:
                    return self._started(batch, now)
                q.popleft()
                self._queued_rows -= item.rows
                if item.future.done():  # cancelled by its caller (deadline, disconnect) before it could drop it
                    item.state = _State.DROPPED
                    continue
                if item.deadline is not None and item.deadline <= now:
                    item.state = _State.DROPPED
                    item.future.set_exception(DeadlineExceeded("the request deadline passed in the queue"))
                    continue
                batch.append(item)
                rows += item.rows
                if rows >= cap:
                    return self._started(batch, now)
        return self._started(batch, now)

    def _started(self, batch: list[_Item], now: float) -> list[_Item]:
        self._stats.queue_depth(self._queued_rows)
        for item in batch:
            item.state = _State.RUNNING
            self._stats.waited(now - item.enqueued)
        return batch

    # ---- execution ----
    async def _execute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                if self._cheap(batch):
                    results: list[Tensors | None] = [*self._run(batch)]
                else:
                    results = [*await loop.run_in_executor(self._executor, self._run, batch)]
            except Exception as e:  # noqa: BLE001 - any runtime failure is retried per item
                if len(batch) == 1 or self._closed or isinstance(e, preempt.Preempted):
                    for item in batch:
                        self._fail(item, e)
                    return
                LOG.warning("%s: batch of %d items failed (%r); retrying them one by one", self.name, len(batch), e)
                results = await self._run_individually(batch)
            for item, out in zip(batch, results, strict=True):
                if out is not None and not item.future.done():
                    item.future.set_result(out)
        finally:
            self._in_flight -= 1
            self._slots.release()
            self._check_idle()

    def _cheap(self, batch: list[_Item]) -> bool:
        """Whether ``batch`` is expected to cost at most ``inline_max_s`` (fixed + per-row cost, measured)."""
        limit = self.config.inline_max_s
        return limit > 0 and self._cost.estimate(sum(it.rows for it in batch)) <= limit

    async def _run_individually(self, batch: list[_Item]) -> list[Tensors | None]:
        loop = asyncio.get_running_loop()
        results: list[Tensors | None] = []
        for item in batch:
            try:
                results.append((await loop.run_in_executor(self._executor, self._run, [item]))[0])
            except Exception as e:  # noqa: BLE001
                self._fail(item, e)
                results.append(None)
        return results

    def _fail(self, item: _Item, error: Exception) -> None:
        if item.future.done():
            return
        if self._closed and not isinstance(error, ServiceError):  # unloaded under it after the drain timeout
            item.future.set_exception(ModelNotReady(f"version {self.name} was unloaded before this batch finished"))
            return
        if isinstance(error, ServiceError):
            item.future.set_exception(error)
            return
        LOG.error("%s: inference failed for an item of %d rows: %r", self.name, item.rows, error)
        item.future.set_exception(InferenceFailed(f"inference failed on model {self.name}"))

    def _run(self, batch: list[_Item]) -> list[Tensors]:
        """Worker thread: assemble inputs, run, check row counts, split back per item (in ``batch`` order)."""
        started = time.monotonic()  # compute = featurizing raw rows (if any) + the runtime call
        if batch[0].preemptible and all(it.preemptible for it in batch):
            with preempt.preemptible():
                return self._run_batch(batch, started)
        if tracing.ENABLED:
            traced = [it for it in batch if it.trace is not None]
            if traced:
                return self._run_traced(batch, traced, started)
        return self._run_batch(batch, started)

    def _run_traced(self, batch: list[_Item], traced: list[_Item], started: float) -> list[Tensors]:
        rows = sum(it.rows for it in batch)
        token = tracing.begin_batch(
            self.name, [it.trace for it in traced], [it.enqueued for it in traced], started, rows
        )
        try:
            # compute is timed from here: the span bookkeeping above must not count as the batch's cost, or one
            # traced batch would push the inline-run estimate up and send the next untraced ones to the thread
            out = self._run_batch(batch, time.monotonic())
        except BaseException as e:
            tracing.end_batch(token, e)
            raise
        tracing.end_batch(token)
        return out

    def _run_batch(self, batch: list[_Item], started: float) -> list[Tensors]:
        by_item: dict[int, Tensors] = {}
        total = 0
        for items, inputs in _assemble(batch):
            rows = sum(it.rows for it in items)
            side = {k: v for k, v in inputs.items() if k.startswith("_")}
            outputs = self._infer({k: v for k, v in inputs.items() if not k.startswith("_")} if side else inputs)
            if side:
                outputs = {**outputs, **side}
            for name, arr in outputs.items():
                if arr.ndim == 0 or arr.shape[0] != rows:
                    raise RuntimeError(f"output {name!r} has shape {arr.shape} for a batch of {rows} rows")
            start = 0
            for it in items:
                by_item[id(it)] = (
                    outputs if len(items) == 1 else {n: a[start : start + it.rows] for n, a in outputs.items()}
                )
                start += it.rows
            total += rows
        elapsed = time.monotonic() - started
        if total:
            self._cost.observe(total, elapsed)
            spr = elapsed / total
            prev = self._s_per_row
            self._s_per_row = spr if prev is None else prev + EWMA_ALPHA * (spr - prev)
        self._stats.ran(total, elapsed)
        return [by_item[id(it)] for it in batch]


def _assemble(batch: list[_Item]) -> list[tuple[list[_Item], Tensors]]:
    """Model calls for a batch: items grouped by how their inputs are prepared, then concatenated.

    Inputs whose non-batch dimensions differ (e.g. token ids padded to different lengths by different clients)
    cannot be concatenated: they become separate runtime calls within the batch instead of failing it.
    """
    groups: dict[Prepare | None, list[_Item]] = {}
    for it in batch:
        groups.setdefault(it.prepare, []).append(it)
    parts: list[tuple[list[_Item], Tensors]] = []
    for prepare, items in groups.items():
        if prepare is None:
            parts.extend(([it], it.inputs) for it in items)
        else:
            parts.append((items, prepare([row for it in items for row in it.inputs])))
    calls: dict[tuple[tuple[str, tuple[int, ...], str], ...], tuple[list[_Item], list[Tensors]]] = {}
    for items, tensors in parts:
        its, ts = calls.setdefault(_trailing(tensors), ([], []))
        its.extend(items)
        ts.append(tensors)
    return [(items, _concat(ts)) for items, ts in calls.values()]


def _trailing(t: Tensors) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in t.items())


def _concat(parts: list[Tensors]) -> Tensors:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
