"""The runtime protocol the registry and batcher depend on; no engine is imported here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from app.manifest import DType, Manifest, TensorSpec

NP_DTYPES: dict[str, np.dtype] = {
    "FP32": np.dtype(np.float32),
    "FP16": np.dtype(np.float16),
    "INT64": np.dtype(np.int64),
    "INT32": np.dtype(np.int32),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class RuntimeOptions:
    """Engine knobs shared by every loaded version."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    use_tensorrt: bool = False


class RuntimeIncompatible(Exception):
    """The version cannot run here (no usable artifact, or its graph does not match the manifest)."""


@runtime_checkable
class Runtime(Protocol):
    """One loaded model version. ``infer`` is called from worker threads, one batch at a time per thread."""

    def load(self, version_dir: Path, manifest: Manifest) -> None: ...

    def warmup(self, batch_sizes: Sequence[int]) -> None: ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def unload(self) -> None: ...

    @property
    def bytes(self) -> int: ...

    @property
    def platform(self) -> str:
        """KServe v2 ``platform`` of what actually runs (``onnxruntime_onnx``, ``tensorrt_plan``)."""
        ...


def dummy_inputs(specs: Sequence[TensorSpec], rows: int) -> dict[str, np.ndarray]:
    """Zero tensors of ``rows`` rows for warm-up; zeros are valid ids ('missing') for embedding inputs."""
    out = {}
    for spec in specs:
        shape = [rows] + [d if d > 0 else 1 for d in spec.shape[1:]]
        out[spec.name] = np.zeros(shape, dtype=numpy_dtype(spec.dtype))
    return out


def numpy_dtype(dtype: DType | str) -> np.dtype:
    """The numpy dtype of a manifest / KServe datatype; raises KeyError for unsupported ones (BYTES)."""
    return NP_DTYPES[dtype]
