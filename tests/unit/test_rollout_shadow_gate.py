"""Shadow samples only use time the live path leaves idle, one at a time (real batchers, a fake registry)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.batching import BatchConfig, DynamicBatcher, Tensors
from app.metrics import Metrics
from app.rollout.policy import Policy
from app.rollout.shadow import Mirror, live_busy, published_cost_s
from app.rollout.summary import comparisons
from app.runtime import preempt

POLICY = Policy.model_validate({"stable": 1, "shadow": {"version": 2, "rate": 1.0}})
ROW = {"x": np.ones((1, 2), np.float32)}


class _Gate:
    """An infer function that blocks its worker thread until released: a batch that is running."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()

    def __call__(self, inputs: Tensors) -> Tensors:
        self.entered.set()
        if not self.open.wait(30):
            raise RuntimeError("the test never released the batch")
        return {"y": inputs["x"] * 2}


class _Registry:
    """What :class:`Mirror` reads of a registry: loaded versions, policies, lease and resolve."""

    def __init__(self, batchers: dict[int, DynamicBatcher], policy: Policy | None = POLICY) -> None:
        self.versions = {v: SimpleNamespace(model="m", version=v, batcher=b, task=None) for v, b in batchers.items()}
        self.policies = {} if policy is None else {"m": policy}

    def loaded(self) -> list[Any]:
        return list(self.versions.values())

    def resolve(self, model: str, version: int) -> Any:
        return self.versions[version]

    @contextmanager
    def lease(self, model: str, version: int) -> Iterator[Any]:
        yield self.versions[version]


def _batcher(name: str, infer: Any) -> DynamicBatcher:
    b = DynamicBatcher(name, infer, BatchConfig(max_queue_delay_us=0))
    b.start()
    return b


def _counts(metrics: Metrics) -> tuple[int, int]:
    entry = comparisons(metrics.families(), "m").get(("shadow", "2", "1"), {"scored": 0, "dropped": 0})
    return int(entry["scored"]), int(entry["dropped"])


async def _until(what: str, check: Any) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def setup() -> Any:
    live_gate, shadow_gate = _Gate(), _Gate()
    live, shadow = _batcher("m/1", live_gate), _batcher("m/2", shadow_gate)
    metrics = Metrics()
    registry: Any = _Registry({1: live, 2: shadow})
    mirror = Mirror(registry, metrics, 4, 30.0)
    yield SimpleNamespace(live=live, shadow=shadow, live_gate=live_gate, shadow_gate=shadow_gate, mirror=mirror,
                          metrics=metrics, registry=registry)  # fmt: skip
    live_gate.open.set()
    shadow_gate.open.set()
    await mirror.close()
    await live.close(5)
    await shadow.close(5)


def _answer(s: Any) -> None:
    s.mirror.after(POLICY, "m", 1, None, SimpleNamespace(inputs=ROW), {"y": ROW["x"] * 2}, 1)


async def test_a_running_live_batch_sheds_the_sample_and_an_idle_one_scores_it(setup: Any) -> None:
    s = setup
    running = asyncio.create_task(s.live.submit(ROW, 1))
    await _until("the live batch to start", s.live_gate.entered.is_set)
    assert live_busy(s.registry), "a running live batch is live work"
    _answer(s)
    assert _counts(s.metrics) == (0, 1), f"drawn while a live batch ran: (scored, dropped) = {_counts(s.metrics)}"
    s.live_gate.open.set()
    await running
    assert not live_busy(s.registry), "the live batcher finished its only batch"
    s.shadow_gate.open.set()
    _answer(s)
    await _until("the idle-time sample to be scored", lambda: _counts(s.metrics)[0] == 1)
    assert _counts(s.metrics) == (1, 1), _counts(s.metrics)


async def test_shadow_samples_are_scored_one_at_a_time(setup: Any) -> None:
    s = setup
    s.live_gate.open.set()
    _answer(s)
    await _until("the first sample's shadow batch to start", s.shadow_gate.entered.is_set)
    assert s.mirror.shadow_in_flight == 1, s.mirror.shadow_in_flight
    _answer(s)
    assert _counts(s.metrics) == (0, 1), f"a second sample while one runs: {_counts(s.metrics)}"
    assert not live_busy(s.registry), "the shadow-only version's running batch is not live work"
    s.shadow_gate.open.set()
    await _until("the first sample to be scored", lambda: _counts(s.metrics)[0] == 1)
    await _until("the shadow slot to be freed", lambda: s.mirror.shadow_in_flight == 0)


async def test_live_work_queued_after_the_draw_goes_first(setup: Any) -> None:
    s = setup
    s.shadow_gate.open.set()
    _answer(s)  # drawn while idle: the copy's task is created, it has not run yet
    queued = asyncio.create_task(s.live.submit(ROW, 1))  # runs before the copy submits (the copy yields first)
    await _until("the drawn sample to be scored or shed", lambda: sum(_counts(s.metrics)) == 1)
    assert _counts(s.metrics) == (0, 1), f"live work came first: (scored, dropped) = {_counts(s.metrics)}"
    assert not s.shadow_gate.entered.is_set(), "the shed sample must never reach the shadow's runtime"
    s.live_gate.open.set()
    await queued


async def test_a_version_that_is_shadow_and_stable_counts_as_live(setup: Any) -> None:
    s = setup
    running = asyncio.create_task(s.shadow.submit(ROW, 1))
    await _until("the batch to start", s.shadow_gate.entered.is_set)
    assert not live_busy(s.registry), "version 2 is only the shadow: its batch is not live work"
    s.registry.policies["m"] = Policy.model_validate(
        {"stable": 1, "canary": {"version": 2, "weight": 0.1}, "shadow": {"version": 2, "rate": 0.1}}
    )
    assert live_busy(s.registry), "version 2 is also the canary: its batch is live work"
    del s.registry.policies["m"]
    assert live_busy(s.registry), "without a policy every loaded version is live"
    s.shadow_gate.open.set()
    await running


def test_shadow_only_versions() -> None:
    p = Policy.model_validate(
        {"stable": 1, "canary": {"version": 3, "weight": 0.1}, "shadow": {"version": 2, "rate": 1}}
    )
    assert [p.shadow_only(v) for v in (1, 2, 3)] == [False, True, False]
    both = Policy.model_validate(
        {"stable": 1, "canary": {"version": 2, "weight": 0.1}, "shadow": {"version": 2, "rate": 1}}
    )
    assert not both.shadow_only(2), "the canary answers live requests"
    assert not Policy.model_validate({"stable": 1}).shadow_only(1)


async def test_a_sample_past_its_deadline_is_shed_not_an_error(setup: Any) -> None:
    s = setup
    s.mirror.timeout_s = 0.05  # the shadow's batch never finishes while the test holds its gate
    _answer(s)
    await _until("the sample to be counted", lambda: sum(_counts(s.metrics)) == 1)
    entry = comparisons(s.metrics.families(), "m")[("shadow", "2", "1")]
    assert (entry["scored"], entry["dropped"], entry["errors"]) == (0, 1, 0), entry


def _arrivals(n: int) -> None:
    """``n`` live items queued and answered just now (the worker's recent arrival rate)."""
    for _ in range(n):
        preempt.live_started()
        preempt.live_ended()


async def test_a_sample_likely_to_be_terminated_before_it_ends_is_not_started(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At ~100 live arrivals a second a 50 ms shadow sample finishes with chance exp(-5) < 0.25: dropped without
    running; a 0.1 ms one (exp(-0.01)) is scored. The cost comes from the manifest until a sample has run."""
    s = setup
    s.live_gate.open.set()
    s.shadow_gate.open.set()
    s.mirror.min_chance = 0.25
    monkeypatch.setattr(preempt, "_rate", 0.0)
    _arrivals(100)
    assert 50 < preempt.arrival_rate() <= 100, preempt.arrival_rate()
    s.registry.versions[2].manifest = SimpleNamespace(latency={"1": 50.0})
    _answer(s)
    assert _counts(s.metrics) == (0, 1), f"a sample that would be terminated was started: {_counts(s.metrics)}"
    assert not s.shadow_gate.entered.is_set(), "the dropped sample must never reach the shadow's runtime"
    s.registry.versions[2].manifest = SimpleNamespace(latency={"1": 0.1})
    _answer(s)
    await _until("the cheap sample to be scored", lambda: _counts(s.metrics)[0] == 1)
    assert _counts(s.metrics) == (1, 1), _counts(s.metrics)
    # the measured cost (the shadow batcher's own finished batch) now decides, whatever the manifest says
    s.registry.versions[2].manifest = SimpleNamespace(latency={"1": 50.0})
    await _until("the shadow slot to be freed", lambda: s.mirror.shadow_in_flight == 0)
    assert s.shadow.estimate_s(1) < 0.05, s.shadow.estimate_s(1)
    _arrivals(1)
    _answer(s)
    await _until("the second cheap sample to be scored", lambda: _counts(s.metrics)[0] == 2)


def test_published_cost_interpolates_the_manifest_latency_table() -> None:
    table = {"1": 0.02, "64": 0.2, "512": 1.6}
    assert published_cost_s(table, 1) == 0.02 / 1000
    assert abs(published_cost_s(table, 288) - 0.9 / 1000) < 1e-12, "halfway between 64 and 512 rows"
    assert abs(published_cost_s(table, 1024) - 3.2 / 1000) < 1e-12, "scaled from the largest size"
    assert published_cost_s({}, 10) == float("inf"), "no table: unknown"
