"""Runs only where TensorRT and a CUDA GPU exist: the QDQ model compiles, and the plan is keyed by SM/TRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
trt = pytest.importorskip("tensorrt")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

from app.manifest import TensorSpec  # noqa: E402
from compress.engine import build_engine, gpu_compute_capability  # noqa: E402
from compress.onnx_tools import export_torch  # noqa: E402
from compress.quantize import quantize_qdq_int8  # noqa: E402


def test_qdq_model_builds_a_keyed_engine(tmp_path: Path) -> None:
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    x = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
    src, qdq = tmp_path / "m.onnx", tmp_path / "q.onnx"
    export_torch(
        m,
        {"x": x},
        [TensorSpec(name="x", dtype="FP32", shape=[-1, 16])],
        [TensorSpec(name="y", dtype="FP32", shape=[-1, 1])],
        src,
    )
    quantize_qdq_int8(src, qdq, lambda: iter([{"x": x[i : i + 64]} for i in range(0, 256, 64)]))
    res = build_engine(qdq, tmp_path, max_batch=64)
    assert res.status == "built" and res.path is not None and res.path.stat().st_size > 0
    assert res.compute_capability == gpu_compute_capability() and res.tensorrt_version == trt.__version__
