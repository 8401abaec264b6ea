"""TensorRT is optional: without it (or a GPU) the engine step is 'skipped', never an error; importing the
packages does not drag in heavy runtimes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compress.engine import build_engine, engine_filename


def test_engine_is_skipped_without_tensorrt_or_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: covered by tests/gpu")
    except ImportError:
        pass
    res = build_engine(tmp_path / "missing.onnx", tmp_path, max_batch=64)
    assert res.status == "skipped" and res.reason and res.path is None
    assert res.as_dict()["status"] == "skipped"


def test_engine_file_is_keyed_by_gpu_and_tensorrt_version() -> None:
    assert engine_filename("9.0", "10.9.0") == "model.sm90.trt10.9.0.plan"


def test_lean_imports() -> None:
    code = (
        "import sys, compress, compress.cli, compress.config, app, app.manifest, app.repository, app.tasks.ctr.features\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'fastapi') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
