"""Preemptible runs (app.runtime.preempt): a shadow sample's ORT run is terminated when live work is queued.

The model is a chain of 2,000 512x512 MatMuls: seconds of one core for 256 rows, so a run that is not terminated
cannot pass for one that was (the tests wait for the run to be registered, never for a time).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from app.batching import BatchConfig, DynamicBatcher
from app.manifest import Artifact, Gate, Lineage, Manifest, TensorSpec
from app.runtime import preempt
from app.runtime.base import RuntimeOptions
from app.runtime.onnx import OnnxRuntime

NODES, WIDTH, ROWS = 2000, 512, 256


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnnxRuntime]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compress.publish import file_info

    d = tmp_path_factory.mktemp("slow")
    w = np.eye(WIDTH, dtype=np.float32)  # identity: the output equals the input, so answers are checkable
    nodes = [helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]) for i in range(NODES)]
    nodes.append(helper.make_node("Identity", [f"h{NODES}"], ["y"]))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["h0"]), *nodes],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", WIDTH])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), d / "model.onnx")
    manifest = Manifest(
        name="slow",
        version=1,
        task="generic",
        created_at=datetime.now(UTC),
        inputs=[TensorSpec(name="x", dtype="FP32", shape=[-1, WIDTH])],
        outputs=[TensorSpec(name="y", dtype="FP32", shape=[-1, WIDTH])],
        artifacts=[Artifact(format="onnx", precision="fp32", **file_info(d, "model.onnx"))],  # type: ignore[arg-type]
        metrics={},
        gate=Gate(passed=True, rule="test fixture", numbers={}),
        recipe={},
        lineage=Lineage(code_version="test"),
        candidate="fp32",
    )
    rt = OnnxRuntime(RuntimeOptions(intra_op_threads=1))
    rt.load(d, manifest)
    yield rt
    rt.unload()


def feeds(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((ROWS, WIDTH), value, dtype=np.float32)}


def wait_registered() -> None:
    """Until a preemptible run is in progress (the worker thread registered its RunOptions)."""
    deadline = threading.Event()
    for _ in range(200_000):
        if preempt._running:
            return
        deadline.wait(0.001)
    raise AssertionError("no preemptible run was registered within 200,000 polls")


def test_a_live_arrival_terminates_a_running_preemptible_run(runtime: OnnxRuntime) -> None:
    outcome: list[BaseException | dict[str, np.ndarray]] = []

    def shadow() -> None:
        try:
            with preempt.preemptible():
                outcome.append(runtime.infer(feeds(1.0)))
        except BaseException as e:  # noqa: BLE001 - the test reads what happened
            outcome.append(e)

    t = threading.Thread(target=shadow)
    t.start()
    wait_registered()
    preempt.live_started()
    try:
        t.join(60)
    finally:
        preempt.live_ended()
    assert not t.is_alive(), "the terminated run did not return within 60 s"
    assert len(outcome) == 1 and isinstance(outcome[0], preempt.Preempted), f"saw {outcome!r}"
    assert not preempt._running, f"a finished run stayed registered: {preempt._running}"
    assert preempt.live_items() == 0


def test_a_preemptible_run_does_not_start_while_live_work_is_in_flight(runtime: OnnxRuntime) -> None:
    preempt.live_started()
    try:
        with preempt.preemptible(), pytest.raises(preempt.Preempted, match="did not start"):
            runtime.infer(feeds(1.0))
    finally:
        preempt.live_ended()
    assert not preempt._running


def test_without_live_work_a_preemptible_run_answers_like_a_plain_one(runtime: OnnxRuntime) -> None:
    x = np.random.default_rng(0).standard_normal((2, WIDTH)).astype(np.float32)
    plain = runtime.infer({"x": x})["y"]
    with preempt.preemptible():
        assert preempt.requested()
        shadowed = runtime.infer({"x": x})["y"]
    assert not preempt.requested()
    np.testing.assert_allclose(shadowed, plain, rtol=0, atol=0)
    np.testing.assert_allclose(plain, x, rtol=1e-5, atol=1e-5)


async def test_a_live_item_preempts_a_shadow_batch_and_is_answered(runtime: OnnxRuntime) -> None:
    """Through the batcher: the shadow item answers Preempted (not retried, not an inference failure), the live
    item queued behind it on the same single-slot batcher gets its own answer, and no live count leaks."""
    b = DynamicBatcher("slow/1", runtime.infer, BatchConfig(max_batch_rows=ROWS, max_queue_delay_us=0))
    b.start()
    try:
        shadow = asyncio.create_task(b.submit(feeds(1.0), ROWS, preemptible=True))
        await asyncio.to_thread(wait_registered)
        live = asyncio.create_task(b.submit({"x": np.full((1, WIDTH), 3.0, dtype=np.float32)}, 1))
        with pytest.raises(preempt.Preempted):
            await asyncio.wait_for(shadow, 60)
        out = await asyncio.wait_for(live, 60)
        np.testing.assert_allclose(out["y"], np.full((1, WIDTH), 3.0), rtol=1e-5)
    finally:
        await b.close(timeout_s=60)
    assert preempt.live_items() == 0, f"live count leaked: {preempt.live_items()}"
    assert not preempt._running


async def test_the_live_count_returns_to_zero_after_refused_and_cancelled_items(runtime: OnnxRuntime) -> None:
    b = DynamicBatcher("slow/2", runtime.infer, BatchConfig(max_batch_rows=ROWS, max_queue_delay_us=0))
    b.start()
    try:
        running = asyncio.create_task(b.submit({"x": feeds(1.0)["x"][:1]}, 1))
        queued = asyncio.create_task(b.submit({"x": feeds(2.0)["x"][:1]}, 1))
        await asyncio.sleep(0)  # both coroutines reach their queue
        assert preempt.live_items() == 2, f"saw {preempt.live_items()} live items for 2 submitted"
        queued.cancel()
        running.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)
        assert preempt.live_items() == 0, f"live count leaked after cancellation: {preempt.live_items()}"
    finally:
        await b.close(timeout_s=60)
