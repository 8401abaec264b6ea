"""ONNX Runtime implementation of :class:`app.runtime.base.Runtime`.

``onnxruntime`` is imported inside :meth:`OnnxRuntime.load`, so importing this module stays cheap. GPU
execution providers are used only when ``onnxruntime.get_available_providers()`` offers them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import Manifest, TensorSpec
from app.runtime import preempt
from app.runtime.base import RuntimeIncompatible, RuntimeOptions, dummy_inputs
from app.runtime.ort_options import session_options
from app.runtime.select import RuntimeChoice, ort_providers

LOG = logging.getLogger(__name__)

ORT_TYPES = {
    "FP32": "tensor(float)",
    "FP16": "tensor(float16)",
    "INT64": "tensor(int64)",
    "INT32": "tensor(int32)",
    "INT8": "tensor(int8)",
    "UINT8": "tensor(uint8)",
    "BOOL": "tensor(bool)",
    "BYTES": "tensor(string)",
}


def check_signature(kind: str, declared: Sequence[TensorSpec], actual: Sequence[Any]) -> None:
    """The graph's inputs/outputs must match the manifest by name, element type and rank."""
    found = {a.name: a for a in actual}
    for spec in declared:
        node = found.get(spec.name)
        if node is None:
            raise RuntimeIncompatible(f"manifest {kind} {spec.name!r} is not in the ONNX graph ({sorted(found)})")
        if node.type != ORT_TYPES[spec.dtype]:
            raise RuntimeIncompatible(f"{kind} {spec.name!r}: graph has {node.type}, manifest says {spec.dtype}")
        if len(node.shape) != len(spec.shape):
            raise RuntimeIncompatible(f"{kind} {spec.name!r}: graph rank {len(node.shape)}, manifest {spec.shape}")
    if kind == "input" and len(found) != len(declared):
        extra = sorted(set(found) - {s.name for s in declared})
        raise RuntimeIncompatible(f"the ONNX graph needs inputs the manifest does not declare: {extra}")


class OnnxRuntime:
    """One ``InferenceSession``; ``run`` releases the GIL, so batches execute off the event loop in threads."""

    def __init__(self, options: RuntimeOptions | None = None, choice: RuntimeChoice | None = None) -> None:
        self.options = options or RuntimeOptions()
        self.choice = choice
        self._session: Any = None
        self._manifest: Manifest | None = None
        self._bytes = 0
        self._output_names: list[str] = []

    def load(self, version_dir: Path, manifest: Manifest) -> None:
        import onnxruntime as ort

        if self.choice is not None:
            artifact, providers = self.choice.artifact, list(self.choice.providers)
        else:
            try:
                artifact = manifest.artifact("onnx")
            except KeyError as e:
                raise RuntimeIncompatible(str(e)) from None
            providers = list(ort_providers(ort.get_available_providers(), self.options.use_tensorrt))
        path = version_dir / artifact.path
        so = session_options(
            intra_op_threads=self.options.intra_op_threads,
            inter_op_threads=self.options.inter_op_threads,
            allow_spinning=self.options.allow_spinning,
            model_path=path if artifact.format == "onnx" else None,  # e.g. fold a weight-only graph's DQ nodes
        )
        session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        check_signature("input", manifest.inputs, session.get_inputs())
        check_signature("output", manifest.outputs, session.get_outputs())
        self._session, self._manifest, self._bytes = session, manifest, artifact.bytes
        self._output_names = [o.name for o in manifest.outputs]
        LOG.info("loaded %s/%s on %s", manifest.name, manifest.version, session.get_providers())

    def warmup(self, batch_sizes: Sequence[int]) -> None:
        """Run every batch size once so the first real requests do not pay for allocation and kernel choice."""
        manifest = self._require()
        for rows in batch_sizes:
            out = self.infer(dummy_inputs(manifest.inputs, rows))
            for name, arr in out.items():
                if arr.shape[0] != rows:
                    raise RuntimeIncompatible(f"warm-up: output {name!r} has {arr.shape[0]} rows for {rows} input rows")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._require()
        if preempt.requested():  # a shadow sample: terminated if live work arrives while it runs
            results = preempt.run(self._session, self._output_names, inputs)
        else:
            results = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, results, strict=True))

    def unload(self) -> None:
        """Drop the session; ORT frees its arena when the last reference goes."""
        self._session = None
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def platform(self) -> str:
        return "onnxruntime_onnx"

    def _require(self) -> Manifest:
        if self._session is None or self._manifest is None:
            raise RuntimeError("the runtime is not loaded")
        return self._manifest
