"""DynamicBatcher: row counting, splitting, deadlines, queue cap, priority, per-item retry, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.batching import BatchConfig, BatchCost, DynamicBatcher, Priority
from app.errors import DeadlineExceeded, InferenceFailed, ModelNotReady, Overloaded, PayloadTooLarge


class FakeModel:
    """y = 2x; records the marker values of every call; can be gated to hold the run slot; x < 0 raises."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(x[:, 0].tolist())
        self.entered.set()
        self.gate.wait(10)
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v, v] for v in values], dtype=np.float32)}


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


async def started(model: FakeModel, config: BatchConfig) -> DynamicBatcher:
    b = DynamicBatcher("test/1", model, config)
    b.start()
    return b


async def hold_slot(b: DynamicBatcher, model: FakeModel) -> asyncio.Task[dict[str, np.ndarray]]:
    """Occupy the single run slot with a gated batch so later items have to queue."""
    model.gate.clear()
    model.entered.clear()
    task = asyncio.create_task(b.submit(rows(100), 1))
    await asyncio.to_thread(model.entered.wait, 5)
    return task


async def test_concurrent_items_share_one_batch_and_split_back(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=64, max_queue_delay_us=50_000))
    results = await asyncio.gather(b.submit(rows(1), 1), b.submit(rows(2, 3, 4), 3), b.submit(rows(5, 6), 2))
    assert model.calls == [[1, 2, 3, 4, 5, 6]]
    assert [r["y"][:, 0].tolist() for r in results] == [[2], [4, 6, 8], [10, 12]]
    await b.close()


async def test_items_with_different_trailing_shapes_run_as_separate_calls_of_one_batch(model: FakeModel) -> None:
    """Token ids padded to different lengths by different clients cannot be concatenated: the batch makes one
    runtime call per shape instead of failing and retrying every item alone."""
    b = await started(model, BatchConfig(max_batch_rows=64, max_queue_delay_us=50_000))
    wide = {"x": np.full((2, 5), 7.0, dtype=np.float32)}
    results = await asyncio.gather(b.submit(rows(1), 1), b.submit(wide, 2), b.submit(rows(3), 1))
    assert model.calls == [[1, 3], [7, 7]]
    assert results[1]["y"].shape == (2, 5) and results[2]["y"][0, 0] == 6
    await b.close()


async def test_batches_are_bounded_by_rows_not_requests(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=4, max_queue_delay_us=50_000))
    blocker = await hold_slot(b, model)
    items = [asyncio.create_task(b.submit(rows(i, i, i), 3)) for i in range(1, 4)]
    small = [asyncio.create_task(b.submit(rows(9), 1))]
    await asyncio.sleep(0.01)
    assert b.queued_rows == 10
    model.gate.set()
    await asyncio.gather(blocker, *items, *small)
    sizes = [len(c) for c in model.calls[1:]]
    assert max(sizes) <= 4 and sum(sizes) == 10
    await b.close()


async def test_oversized_item_runs_alone(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=2, max_queue_delay_us=0))
    out = await b.submit(rows(1, 2, 3, 4, 5), 5)
    assert out["y"].shape == (5, 2)
    await b.close()


async def test_expired_item_is_answered_and_never_run(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=8, max_queue_delay_us=0))
    blocker = await hold_slot(b, model)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await b.submit(rows(7), 1, deadline=time.monotonic() + 0.05)
    assert time.monotonic() - t0 < 1.0
    assert b.queued_rows == 0
    model.gate.set()
    await blocker
    await b.submit(rows(8), 1)
    assert all(7 not in call for call in model.calls), model.calls
    await b.close()


async def test_deadline_already_passed_is_refused(model: FakeModel) -> None:
    b = await started(model, BatchConfig())
    with pytest.raises(DeadlineExceeded):
        await b.submit(rows(1), 1, deadline=time.monotonic() - 0.001)
    assert model.calls == []
    await b.close()


async def test_queue_cap_counts_rows_and_overloads(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=8, max_queue_delay_us=0, queue_cap_rows=4))
    blocker = await hold_slot(b, model)
    queued = asyncio.create_task(b.submit(rows(1, 2, 3), 3))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await b.submit(rows(4, 5), 2)
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    with pytest.raises(PayloadTooLarge):
        await b.submit(rows(*range(5)), 5)
    model.gate.set()
    await asyncio.gather(blocker, queued)
    await b.close()


async def test_high_priority_goes_first(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=1, max_queue_delay_us=0))
    blocker = await hold_slot(b, model)
    low_a = asyncio.create_task(b.submit(rows(1), 1, priority=Priority.LOW))
    low_b = asyncio.create_task(b.submit(rows(2), 1, priority=Priority.LOW))
    await asyncio.sleep(0)
    high = asyncio.create_task(b.submit(rows(3), 1, priority=Priority.HIGH))
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(blocker, low_a, low_b, high)
    assert model.calls == [[100], [3], [1], [2]]
    await b.close()


async def test_one_bad_item_does_not_fail_the_others(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=64, max_queue_delay_us=50_000))
    good1, bad, good2 = await asyncio.gather(
        b.submit(rows(1), 1), b.submit(rows(-1), 1), b.submit(rows(2, 3), 2), return_exceptions=True
    )
    assert isinstance(bad, InferenceFailed) and bad.status == 500
    assert isinstance(good1, dict) and isinstance(good2, dict), (good1, good2)
    assert good1["y"][:, 0].tolist() == [2] and good2["y"][:, 0].tolist() == [4, 6]
    assert model.calls[0] == [1, -1, 2, 3]  # the batch, then one retry per item
    assert sorted(model.calls[1:]) == [[-1], [1], [2, 3]]
    await b.close()


async def test_output_row_count_mismatch_fails_the_item() -> None:
    b = DynamicBatcher("test/1", lambda inputs: {"y": np.zeros((1, 1), np.float32)}, BatchConfig())
    b.start()
    with pytest.raises(InferenceFailed):
        await b.submit(rows(1, 2), 2)
    await b.close()


async def test_close_drains_queued_work_then_refuses(model: FakeModel) -> None:
    b = await started(model, BatchConfig(max_batch_rows=1, max_queue_delay_us=0))
    blocker = await hold_slot(b, model)
    queued = [asyncio.create_task(b.submit(rows(i), 1)) for i in range(3)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(b.close(timeout_s=10))
    await asyncio.sleep(0.01)
    with pytest.raises(ModelNotReady):
        await b.submit(rows(9), 1)
    model.gate.set()
    await closing
    assert [q.result()["y"][0, 0] for q in queued] == [0, 2, 4] and (await blocker)["y"][0, 0] == 200


async def test_raw_rows_are_prepared_once_per_batch_alongside_tensor_items(model: FakeModel) -> None:
    from app.errors import InvalidInput

    prepared: list[list[float]] = []

    def prepare(raw: list[float]) -> dict[str, np.ndarray]:
        prepared.append(list(raw))
        if 13 in raw:
            raise InvalidInput("13 is not allowed", code="invalid_feature", status=422)
        return rows(*raw)

    b = await started(model, BatchConfig(max_batch_rows=64, max_queue_delay_us=50_000))
    a, t, c, bad = await asyncio.gather(
        b.submit([1.0, 2.0], 2, prepare=prepare),
        b.submit(rows(5), 1),
        b.submit([3.0], 1, prepare=prepare),
        b.submit([13.0], 1, prepare=prepare),
        return_exceptions=True,
    )
    assert prepared[0] == [1.0, 2.0, 3.0, 13.0]  # one featurization for the whole batch
    assert isinstance(a, dict) and isinstance(t, dict) and isinstance(c, dict), (a, t, c)
    assert a["y"][:, 0].tolist() == [2, 4] and t["y"][:, 0].tolist() == [10] and c["y"][:, 0].tolist() == [6]
    assert isinstance(bad, InvalidInput) and bad.code == "invalid_feature"  # isolated by the per-item retry
    await b.close()


def test_batch_cost_separates_the_fixed_cost_from_the_per_row_cost() -> None:
    cost = BatchCost()
    assert cost.estimate(1) == float("inf")  # nothing measured: never inline
    for _ in range(20):  # one batch size only: the average seconds per row
        cost.observe(10, 100e-6)
    assert cost.estimate(20) == pytest.approx(200e-6)
    for r in [1, 2, 4, 8, 16, 32] * 10:  # 20 µs per call + 2 µs per row
        cost.observe(r, 20e-6 + 2e-6 * r)
    assert cost.estimate(1) == pytest.approx(22e-6, rel=0.05)
    assert cost.estimate(64) == pytest.approx(148e-6, rel=0.05)  # per-row alone would say 64 x 22 µs = 1.4 ms


async def test_cheap_batches_run_on_the_event_loop_and_costly_ones_in_a_worker_thread() -> None:
    threads: list[int] = []
    per_row = {"s": 0.0}

    def infer(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        time.sleep(per_row["s"] * len(x["x"]))
        return {"y": x["x"] * 2}

    # A 50 ms limit: a trivial batch stays far under it even when a loaded machine preempts the measuring thread.
    b = DynamicBatcher("test/1", infer, BatchConfig(max_queue_delay_us=0, inline_max_s=0.05))
    b.start()
    await b.submit(rows(1), 1)  # not measured yet: a worker thread
    await b.submit(rows(1, 2), 2)  # measured cheap: on the loop
    loop_thread = threading.get_ident()
    assert threads[0] != loop_thread and threads[1] == loop_thread
    per_row["s"] = 0.2  # now 200 ms per row: 2 rows are far over the 50 ms limit once measured
    await b.submit(rows(1, 2), 2)  # still estimated cheap (runs inline), and measured slow
    await b.submit(rows(1, 2), 2)  # the estimate (EWMA) has moved past the limit: a worker thread
    assert threads[2] == loop_thread and threads[3] != loop_thread
    await b.close(5)
