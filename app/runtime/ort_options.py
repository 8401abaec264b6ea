"""ONNX Runtime session settings that a model artifact asks for, shared by the server and the compress toolkit.

A weight-only compressed graph (``compress.weight_only``) stores its weights INT8/INT4 behind
``DequantizeLinear`` and marks itself with :data:`DEQUANTIZE_ON_LOAD`. ORT keeps DequantizeLinear nodes
unfolded by default (so QDQ models can fuse them into integer kernels); with ``session.disable_quant_qdq`` it
constant-folds them once at session creation, and the session runs FP32 kernels on FP32 weights. Without the
setting the same graph re-dequantizes every weight on every call (2x slower per query, measured).
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

DEQUANTIZE_ON_LOAD = "shopinfer.dequantize_weights_on_load"  # ONNX metadata_props key, value "1"
_METADATA_PROPS = 14  # ModelProto field number of metadata_props


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def model_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``, read without parsing the graph.

    Walks the top-level protobuf fields of the memory-mapped file and skips every other one by its length, so the
    weights are neither parsed nor paged in: a model load does not read its file twice.
    """
    from onnx import StringStringEntryProto

    props: dict[str, str] = {}
    if path.stat().st_size == 0:  # mmap refuses empty files; an empty file has no metadata (ORT rejects it later)
        return props
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos, end = 0, len(buf)
        while pos < end:
            tag, pos = _varint(buf, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = _varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(buf, pos)
                if field == _METADATA_PROPS:
                    entry = StringStringEntryProto.FromString(buf[pos : pos + size])
                    props[entry.key] = entry.value
                pos += size
            else:
                raise ValueError(f"{path}: not an ONNX model (protobuf wire type {wire} at byte {pos})")
    return props


def wants_dequantize_on_load(path: Path) -> bool:
    """Whether the ONNX file at ``path`` is marked weight-only (read from its metadata, not its name)."""
    return model_metadata(path).get(DEQUANTIZE_ON_LOAD) == "1"


def session_config(path: Path) -> dict[str, str]:
    """Session config entries ``path`` needs: none for ordinary graphs (QDQ fusion stays on)."""
    return {"session.disable_quant_qdq": "1"} if wants_dequantize_on_load(path) else {}


def session_options(
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    allow_spinning: bool | None = None,
    model_path: Path | None = None,
    optimization: str = "all",
    sequential: bool = False,
    log_severity: int | None = None,
    optimized_model_path: Path | None = None,
) -> Any:
    """The one place an ``onnxruntime.SessionOptions`` is built (server, compress toolkit, benchmarks, tests).

    Both thread pools are always sized (an unset inter-op pool takes every core and skews latency figures);
    ``allow_spinning`` None keeps ORT's default; ``model_path`` adds the config entries that artifact asks for
    (:func:`session_config`); ``optimization`` is ``basic`` or ``all``.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = inter_op_threads
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if sequential:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if log_severity is not None:
        so.log_severity_level = log_severity
    if allow_spinning is not None:
        spin = "1" if allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if model_path is not None:
        for key, value in session_config(model_path).items():
            so.add_session_config_entry(key, value)
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    return so


def cpu_session(model: Path | bytes, **options: Any) -> Any:
    """An ``InferenceSession`` on the CPU provider with :func:`session_options` (a path or serialized bytes)."""
    import onnxruntime as ort

    if isinstance(model, Path):
        options.setdefault("model_path", model)
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, session_options(**options), providers=["CPUExecutionProvider"])
