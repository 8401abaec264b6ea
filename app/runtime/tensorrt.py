"""TensorRT plan runtime: chosen by :mod:`app.runtime.select` only when the plan's compute capability and TensorRT
version equal the host's. ``tensorrt`` and ``torch`` (for CUDA buffers and the stream) are imported in
:meth:`TensorRTRuntime.load`, so the CPU-only service never touches them.

Not exercised in the CPU test suite (no GPU, and ``tensorrt`` cannot be installed here); tests/gpu/ covers it on a
GPU host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import Manifest
from app.runtime.base import RuntimeIncompatible, dummy_inputs, numpy_dtype
from app.runtime.select import RuntimeChoice

LOG = logging.getLogger(__name__)


class TensorRTRuntime:
    """One deserialized engine and execution context; calls are serialized (one context, one stream)."""

    def __init__(self, choice: RuntimeChoice) -> None:
        self.choice = choice
        self._engine: Any = None
        self._context: Any = None
        self._torch: Any = None
        self._manifest: Manifest | None = None
        self._lock = threading.Lock()

    def load(self, version_dir: Path, manifest: Manifest) -> None:
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise RuntimeIncompatible("a TensorRT plan needs a CUDA device; torch sees none")
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine((version_dir / self.choice.artifact.path).read_bytes())
        if engine is None:
            raise RuntimeIncompatible(f"TensorRT could not deserialize {self.choice.artifact.path}")
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        missing = {s.name for s in [*manifest.inputs, *manifest.outputs]} - names
        if missing:
            raise RuntimeIncompatible(f"the plan lacks tensors {sorted(missing)} named in the manifest")
        self._engine, self._context, self._torch, self._manifest = (
            engine,
            engine.create_execution_context(),
            torch,
            manifest,
        )

    def warmup(self, batch_sizes: Sequence[int]) -> None:
        manifest = self._require()
        for rows in batch_sizes:
            self.infer(dummy_inputs(manifest.inputs, rows))

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        manifest = self._require()
        torch = self._torch
        with self._lock:
            stream = torch.cuda.current_stream()
            keep = []
            for spec in manifest.inputs:
                t = torch.from_numpy(np.ascontiguousarray(inputs[spec.name])).cuda(non_blocking=True)
                keep.append(t)
                self._context.set_input_shape(spec.name, tuple(t.shape))
                self._context.set_tensor_address(spec.name, t.data_ptr())
            outputs = {}
            for spec in manifest.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                out = torch.empty(shape, dtype=_torch_dtype(torch, spec.dtype), device="cuda")
                self._context.set_tensor_address(spec.name, out.data_ptr())
                outputs[spec.name] = out
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            stream.synchronize()
            return {name: t.cpu().numpy() for name, t in outputs.items()}

    def unload(self) -> None:
        self._context = None
        self._engine = None

    @property
    def bytes(self) -> int:
        return self.choice.artifact.bytes if self._engine is not None else 0

    @property
    def platform(self) -> str:
        return self.choice.platform

    def _require(self) -> Manifest:
        if self._context is None or self._manifest is None:
            raise RuntimeError("the runtime is not loaded")
        return self._manifest


def _torch_dtype(torch: Any, dtype: str) -> Any:
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.int8): torch.int8,
        np.dtype(np.uint8): torch.uint8,
        np.dtype(np.bool_): torch.bool,
    }[numpy_dtype(dtype)]
