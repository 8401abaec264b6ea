"""ONNX Runtime session settings that a model artifact asks for, shared by the server and the compress toolkit.

A weight-only compressed graph (``compress.weight_only``) stores its weights INT8/INT4 behind
``DequantizeLinear`` and marks itself with :data:`DEQUANTIZE_ON_LOAD`. ORT keeps DequantizeLinear nodes
unfolded by default (so QDQ models can fuse them into integer kernels); with ``session.disable_quant_qdq`` it
constant-folds them once at session creation, and the session runs FP32 kernels on FP32 weights. Without the
setting the same graph re-dequantizes every weight on every call (2x slower per query, measured).
"""

from __future__ import annotations

from pathlib import Path

DEQUANTIZE_ON_LOAD = "shopinfer.dequantize_weights_on_load"  # ONNX metadata_props key, value "1"


def wants_dequantize_on_load(path: Path) -> bool:
    """Whether the ONNX file at ``path`` is marked weight-only (read from its metadata, not its name)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(p.key == DEQUANTIZE_ON_LOAD and p.value == "1" for p in model.metadata_props)


def session_config(path: Path) -> dict[str, str]:
    """Session config entries ``path`` needs: none for ordinary graphs (QDQ fusion stays on)."""
    return {"session.disable_quant_qdq": "1"} if wants_dequantize_on_load(path) else {}
