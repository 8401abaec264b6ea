"""No silent wedge: the deadline race that killed the collector, and supervision of background loops."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from app.batching import BatchConfig, DynamicBatcher
from app.supervisor import Health, supervise


def _double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"y": inputs["x"] * 2}


def _one(v: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v]], dtype=np.float32)}


async def test_a_caller_cancelled_in_the_same_tick_as_the_take_does_not_kill_the_collector() -> None:
    """The race: a deadline cancels the caller's future, and the collector takes the item before the caller's
    ``except`` ran. It used to call ``set_exception`` on the cancelled future and die (InvalidStateError)."""
    b = DynamicBatcher("m/1", _double, BatchConfig(max_queue_delay_us=0))
    caller = asyncio.create_task(b.submit(_one(1.0), 1, deadline=time.monotonic() + 0.02))
    await asyncio.sleep(0)  # queued, not yet collected (the collector is not started)
    assert b.queued_rows == 1
    time.sleep(0.03)  # the deadline passes without the loop running the caller's timeout handler
    caller.cancel()  # what the timeout does: cancels the awaited future now; the caller's cleanup runs later
    taken = b._take()  # what the collector does next, in the same tick (InvalidStateError before the fix)
    assert taken == [] and b.queued_rows == 0
    with pytest.raises(asyncio.CancelledError):
        await caller
    b.start()
    out = await asyncio.wait_for(b.submit(_one(3.0), 1), 5)  # the batcher still serves
    assert out["y"].tolist() == [[6.0]]
    await b.close(1)


async def test_expired_deadlines_under_load_never_wedge_the_batcher() -> None:
    """Many tiny deadlines racing the collector, then a request without a deadline must still be answered."""
    b = DynamicBatcher("m/1", _double, BatchConfig(max_queue_delay_us=0))
    b.start()
    loop = asyncio.get_running_loop()
    calls = [b.submit(_one(float(i)), 1, deadline=loop.time() + (i % 7) * 1e-4) for i in range(2000)]
    await asyncio.gather(*calls, return_exceptions=True)
    assert (await asyncio.wait_for(b.submit(_one(2.0), 1), 5))["y"].tolist() == [[4.0]]
    assert b.collector_alive and b.crashes == 0 and b.queued_rows == 0
    await b.close(1)


async def test_a_crashing_loop_is_restarted_and_counted() -> None:
    runs: list[int] = []
    crashes: list[BaseException] = []
    second_run = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")
        second_run.set()
        await asyncio.Event().wait()

    health = Health()
    sup = supervise("flaky", flaky, lambda e: crashes.append(e) is None, health=health)  # type: ignore[func-returns-value]
    await asyncio.wait_for(second_run.wait(), 5)
    assert len(runs) == 2 and [str(e) for e in crashes] == ["boom"] and health.live
    sup.stop()


async def test_a_loop_that_keeps_crashing_marks_the_process_not_live() -> None:
    health = Health()

    async def always() -> None:
        raise ValueError("corrupt state")

    sup = supervise("doomed", always, lambda _e: True, max_restarts=2, window_s=60, health=health)
    for _ in range(500):
        if not health.live:
            break
        await asyncio.sleep(0.01)
    assert not health.live and "corrupt state" in health.dead["doomed"]
    sup.stop()
    assert health.live  # a stopped loop is not a dead one
