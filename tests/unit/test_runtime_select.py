"""Runtime choice per artifact from the manifest and (fake) host capabilities: no GPU needed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pytest

from app.manifest import Artifact, Gate, Lineage, Manifest, TensorSpec
from app.runtime.base import RuntimeIncompatible
from app.runtime.select import HostCapabilities, choose_runtime

CPU = HostCapabilities(("CPUExecutionProvider",))
H100_TRT10 = HostCapabilities(("CUDAExecutionProvider", "CPUExecutionProvider"), "9.0", "10.3.0")


def _artifact(fmt: Literal["onnx", "tensorrt"], path: str, cc: str | None = None, trt: str | None = None) -> Artifact:
    return Artifact(
        path=path,
        format=fmt,
        precision="int8-qdq",
        sha256="0" * 64,
        bytes=10,  # type: ignore[arg-type]
        compute_capability=cc,
        tensorrt_version=trt,
    )


def _manifest(*artifacts: Artifact) -> Manifest:
    return Manifest(
        name="m",
        version=1,
        task="generic",
        created_at=datetime.now(UTC),
        inputs=[TensorSpec(name="x", dtype="FP32", shape=[-1, 4])],
        outputs=[TensorSpec(name="y", dtype="FP32", shape=[-1, 1])],
        artifacts=list(artifacts),
        metrics={},
        gate=Gate(passed=True, rule="r", numbers={}),
        recipe={},
        lineage=Lineage(code_version="t"),
        candidate="c",
    )


PLAN = _artifact("tensorrt", "model.sm90.trt10.3.0.plan", "9.0", "10.3.0")
ONNX = _artifact("onnx", "model.onnx")


def test_matching_plan_wins_on_a_matching_gpu() -> None:
    choice = choose_runtime(_manifest(ONNX, PLAN), H100_TRT10)
    assert (choice.engine, choice.artifact.path, choice.platform) == ("tensorrt", PLAN.path, "tensorrt_plan")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (CPU, "no GPU with TensorRT here"),
        (HostCapabilities(("CUDAExecutionProvider", "CPUExecutionProvider"), "8.6", "10.3.0"), "host has sm 8.6"),
        (HostCapabilities(("CUDAExecutionProvider", "CPUExecutionProvider"), "9.0", "10.0.1"), "TensorRT 10.0.1"),
    ],
)
def test_mismatched_plan_falls_back_to_onnx_with_the_reason(host: HostCapabilities, why: str) -> None:
    choice = choose_runtime(_manifest(PLAN, ONNX), host)
    assert choice.engine == "onnxruntime" and choice.artifact.path == "model.onnx"
    assert choice.platform == "onnxruntime_onnx" and why in choice.reason


def test_best_available_ort_provider_is_first_and_cpu_last() -> None:
    gpu = HostCapabilities(("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))
    assert choose_runtime(_manifest(ONNX), gpu).providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    with_trt = choose_runtime(_manifest(ONNX), gpu, use_tensorrt_ep=True)
    assert with_trt.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert with_trt.device == "tensorrt" and choose_runtime(_manifest(ONNX), CPU).device == "cpu"


def test_plan_only_version_cannot_run_on_cpu() -> None:
    with pytest.raises(RuntimeIncompatible, match="no GPU with TensorRT here"):
        choose_runtime(_manifest(PLAN), CPU)
